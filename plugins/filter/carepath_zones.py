# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the firewall role's trust zones; the logic lives in src/carepath/zones.py."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import unavailable

try:
    from carepath import zones
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None


def zone_problems(firewall_zones: Any, firewall_flows: Any) -> list[str]:
    """Why the firewall role refuses these zones and flows (empty: they are valid)."""
    return zones.problems(firewall_zones, firewall_flows)


def zone_of(firewall_zones: Any, address: Any) -> str | None:
    """The zone holding ``address`` (None: in no zone)."""
    try:
        return zones.zone_of(firewall_zones, address)
    except ValueError as error:
        raise AnsibleFilterError(str(error)) from error


def inbound_rules(firewall_zones: Any, firewall_flows: Any, zone: str | None) -> list[dict[str, Any]]:
    """The inbound accept rules for a host in ``zone``, one per flow."""
    try:
        return zones.inbound_rules(firewall_zones, firewall_flows, zone)
    except ValueError as error:
        raise AnsibleFilterError(str(error)) from error


def permits(rules: Any, address: Any, port: Any, proto: str = "tcp") -> bool:
    """Whether ``rules`` let ``address`` reach ``port`` (the lock-out guard's question)."""
    try:
        return zones.permits(rules, address, port, proto)
    except ValueError as error:
        raise AnsibleFilterError(str(error)) from error


def exposures(rules: Any, ports: Any, allowed: Any, what: str = "port") -> list[str]:
    """Why ``rules`` let a source other than the ``allowed`` addresses' networks reach ``ports``."""
    try:
        return zones.exposures(rules, ports, allowed, what)
    except ValueError as error:
        raise AnsibleFilterError(str(error)) from error


class FilterModule:
    """carepath trust-zone filters."""

    def filters(self) -> dict[str, Any]:
        found = {
            "carepath_zone_problems": zone_problems,
            "carepath_zone_of": zone_of,
            "carepath_inbound_rules": inbound_rules,
            "carepath_permits": permits,
            "carepath_exposures": exposures,
        }
        return found if CAREPATH_IMPORT_ERROR is None else unavailable(found, CAREPATH_IMPORT_ERROR)
