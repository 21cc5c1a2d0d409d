# Copyright: carepath contributors
# Apache License 2.0 (see LICENSE)
"""Filters for the policy gate play; the logic lives in src/carepath/policy.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from carepath import change, policy
except ImportError:  # running from a checkout that is not pip-installed (e.g. AWX)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from carepath import change, policy


def policy_problems(hostvars: Any) -> list[str]:
    """Why the policy gate refuses this host's variables (empty: it may proceed)."""
    return policy.host_problems(hostvars)


def change_problems(hostvars: Any, ticket: str | None, approval: str | None, operator_key: str | None) -> list[str]:
    """Why a run against a protected inventory is refused (empty: not protected, or approved)."""
    return change.check(hostvars, ticket or None, approval or None, operator_key or None)[0]


class FilterModule:
    """carepath policy filters."""

    def filters(self) -> dict[str, Any]:
        return {"carepath_policy_problems": policy_problems, "carepath_change_problems": change_problems}
