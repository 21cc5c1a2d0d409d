"""The policy gate: refuse, before any host is touched, inputs that break the baseline silently.

For one host's variables it finds malformed or expired exceptions, and role or feature
variables that switch a control off without a valid exception for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from carepath import checks, controls, exceptions


def host_problems(hostvars: Mapping[str, Any], catalog: list[controls.Control] | None = None,
                  today: dt.date | None = None) -> list[str]:
    """Everything the policy gate refuses for one host (empty: the host may be run against)."""
    catalog = catalog if catalog is not None else controls.load()
    entries = hostvars.get("carepath_exceptions")
    found = exceptions.problems(entries, [c.id for c in catalog], today)
    excepted = {e.get("control") for e in entries or [] if isinstance(e, Mapping)} if not found else set()
    for control in catalog:
        if control.id in excepted:
            continue
        switches = {f"{control.role}_enabled": {"equals": True}, **control.switch}
        for variable, ops in switches.items():
            if variable not in hostvars:
                continue  # the role's default applies, and defaults are compliant (tested)
            value = hostvars[variable]
            if checks.evaluate({variable: ops}, {variable: value}, "variable"):
                found.append(
                    f"{variable}={value!r} switches off {control.id} ({control.title}); "
                    f"restore it, or add an exception for {control.id} with reason, owner and expiry"
                )
    return found
