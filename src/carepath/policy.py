"""The policy gate: refuse, before any host is touched, inputs that break the baseline silently.

For one host's variables it finds malformed or expired exceptions, role or feature
variables that switch a control off without a valid exception for it, and network trust
zones or flows that are not valid (bad or overlapping CIDRs, unknown zones, bad ports).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from carepath import checks, controls, exceptions, zones


def host_problems(hostvars: Mapping[str, Any], catalog: list[controls.Control] | None = None,
                  today: dt.date | None = None, max_days: int = exceptions.DEFAULT_MAX_DAYS) -> list[str]:
    """Everything the policy gate refuses for one host (empty: the host may be run against)."""
    catalog = catalog if catalog is not None else controls.load()
    entries = hostvars.get("carepath_exceptions")
    # max_days: the site's carepath_exception_max_days (carepath.sitepolicy), passed by the gate's filter.
    found = exceptions.problems(entries, [c.id for c in catalog], today, max_days=max_days)
    excepted = {e.get("control") for e in entries or [] if isinstance(e, Mapping)} if not found else set()
    for control in catalog:
        if control.id in excepted:
            continue
        switches = {
            f"{control.role}_enabled": {"equals": True},
            f"{control.role}_{control.feature}_enabled": {"equals": True},
            **control.switch,
        }
        for variable, ops in switches.items():
            found_value, value = lookup(hostvars, variable)
            if not found_value:
                continue  # the role's default applies, and defaults are compliant (tested)
            if checks.evaluate({variable: ops}, {variable: value}, "variable"):
                found.append(
                    f"{variable}={value!r} switches off {control.id} ({control.title}); "
                    f"restore it, or add an exception for {control.id} with reason, owner and expiry"
                )
    if "firewall_zones" in hostvars or "firewall_flows" in hostvars:
        found += zones.problems(hostvars.get("firewall_zones") or {}, hostvars.get("firewall_flows") or [])
    return found


def lookup(hostvars: Mapping[str, Any], variable: str) -> tuple[bool, Any]:
    """A variable's value, or one key of a dict variable (``name[key]``); (False, None) when unset."""
    name, bracket, key = variable.partition("[")
    if name not in hostvars:
        return False, None
    value = hostvars[name]
    if not bracket:
        return True, value
    key = key.removesuffix("]")
    if not isinstance(value, Mapping) or key not in value:
        return False, None
    return True, value[key]
