# Copyright: carepath contributors
# Apache License 2.0 (see LICENSE)
"""Filters for the policy gate play; the logic lives in src/carepath/policy.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from carepath import policy
except ImportError:  # running from a checkout that is not pip-installed (e.g. AWX)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from carepath import policy


def policy_problems(hostvars: Any) -> list[str]:
    """Why the policy gate refuses this host's variables (empty: it may proceed)."""
    return policy.host_problems(hostvars)


class FilterModule:
    """carepath policy filters."""

    def filters(self) -> dict[str, Any]:
        return {"carepath_policy_problems": policy_problems}
