"""Network trust zones: which sources may reach which ports on a host (the ``firewall`` role).

The firewall is default-deny inbound (nftables). What is allowed in is declared once, in
inventory, as zones (who is where) and flows (who may reach what)::

    firewall_zones:                 # name -> zone
      management:
        cidrs: [10.10.0.0/24]       # IPv4 and/or IPv6 networks; required, non-empty
        description: Jump hosts and Ansible controllers   # optional
      clinical:
        cidrs: [10.20.0.0/16, "fd00:20::/48"]
    firewall_flows:                 # what may reach hosts: list of flows
      - name: ssh-from-management   # required, unique, [a-z0-9-]+
        from: management            # a zone name, or "any" (0.0.0.0/0 and ::/0)
        to: [servers]               # optional: zone names this flow reaches; default all zones ("any")
        proto: tcp                  # tcp (default) or udp
        ports: [22]                 # list of ints 1-65535 or "low-high" range strings

Zones must not overlap: a host belongs to exactly one zone, otherwise which flows reach it
would depend on which zone is looked at first. :func:`inbound_rules` turns this into one
rule per flow for a host's zone, in the shape the nftables template renders::

    {"name": "ssh-from-management", "proto": "tcp", "ports": ["22"],
     "saddr4": ["10.10.0.0/24"], "saddr6": []}

and :func:`permits` answers whether such rules let an address reach a port, so the role can
refuse a rule set that would cut the Ansible controller's SSH path off before loading it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import netaddr

ANY = "any"
ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"
PROTOS = ("tcp", "udp")
DEFAULT_PROTO = "tcp"
ZONE_KEYS = ("cidrs", "description")
FLOW_KEYS = ("name", "from", "to", "proto", "ports")
PORT_MIN, PORT_MAX = 1, 65535

_ZONE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_FLOW_NAME = re.compile(r"[a-z0-9-]+")
_PORT_RANGE = re.compile(r"(\d+)-(\d+)")
_ADDRESS_ERRORS = (netaddr.AddrFormatError, ValueError, TypeError)

Span = tuple[int, int]


# --- validation ---------------------------------------------------------------------------


def problems(zones: Any, flows: Any) -> list[str]:
    """Everything wrong with ``firewall_zones`` and ``firewall_flows`` (empty when both are valid).

    All problems are reported at once, so one run shows the whole fix list rather than
    one mistake per run.
    """
    names = {name for name in zones if isinstance(name, str)} if isinstance(zones, Mapping) else set()
    return zone_problems(zones) + flow_problems(flows, names)


def zone_problems(zones: Any) -> list[str]:
    """What is wrong with ``firewall_zones`` alone: names, keys, CIDRs and overlaps."""
    if zones is None:
        return []
    if not isinstance(zones, Mapping):
        return [f"firewall_zones must be a mapping of zone name to {{cidrs: [...]}}, not a {type(zones).__name__}"]
    found: list[str] = []
    members: list[tuple[str, netaddr.IPNetwork]] = []
    for name, zone in zones.items():
        where = f"firewall_zones.{name}"
        found += _zone_name_problems(where, name)
        if not isinstance(zone, Mapping):
            found.append(f"{where}: expected a mapping with cidrs (and optionally description)")
            continue
        unknown = sorted(str(key) for key in set(zone) - set(ZONE_KEYS))
        if unknown:
            found.append(f"{where}: unknown key(s) {unknown}; a zone has only {', '.join(ZONE_KEYS)}")
        networks, cidr_found = _cidrs(where, zone.get("cidrs"))
        found += cidr_found
        found += _overlaps_within(where, networks)
        members += [(str(name), network) for network in networks]
    return found + _overlaps_between(members)


def flow_problems(flows: Any, zone_names: Iterable[str]) -> list[str]:
    """What is wrong with ``firewall_flows``, given the zone names that exist."""
    if flows is None:
        return []
    if not isinstance(flows, list | tuple):
        return [f"firewall_flows must be a list of flows (name, from, ports), not a {type(flows).__name__}"]
    known = set(zone_names)
    found: list[str] = []
    first_index: dict[str, int] = {}
    for index, flow in enumerate(flows):
        where = f"firewall_flows[{index}]"
        if not isinstance(flow, Mapping):
            found.append(f"{where}: expected a mapping with name, from and ports")
            continue
        name = flow.get("name")
        if isinstance(name, str) and name:
            where = f"{where} ({name})"
        found += _flow_name_problems(where, name, first_index)
        if isinstance(name, str):
            first_index.setdefault(name, index)
        unknown = sorted(str(key) for key in set(flow) - set(FLOW_KEYS))
        if unknown:
            found.append(f"{where}: unknown key(s) {unknown}; a flow has only {', '.join(FLOW_KEYS)}")
        found += _from_problems(where, flow.get("from"), known)
        found += _to_problems(where, flow.get("to"), known)
        proto = flow.get("proto")
        if proto is not None and proto not in PROTOS:
            found.append(f"{where}: proto {proto!r} is not supported; use tcp or udp (or leave it out for tcp)")
        found += _port_problems(where, flow.get("ports"))
    return found


def _zone_name_problems(where: str, name: Any) -> list[str]:
    if not isinstance(name, str) or not _ZONE_NAME.fullmatch(name):
        return [f"{where}: zone names are lowercase letters, digits and _ starting with a letter; rename {name!r}"]
    if name == ANY:
        return [f"{where}: 'any' is reserved for every address (0.0.0.0/0 and ::/0); give the zone another name"]
    return []


def _cidrs(where: str, cidrs: Any) -> tuple[list[netaddr.IPNetwork], list[str]]:
    """The zone's networks (host bits cleared) and what is wrong with its ``cidrs``."""
    if cidrs is None or cidrs == "" or (isinstance(cidrs, list | tuple) and not cidrs):
        return [], [f"{where}: missing cidrs; list the zone's networks, e.g. cidrs: [192.0.2.0/24]"]
    if not isinstance(cidrs, list | tuple):
        return [], [f"{where}: cidrs must be a list of networks, e.g. cidrs: [{cidrs}]"]
    networks: list[netaddr.IPNetwork] = []
    found: list[str] = []
    for index, text in enumerate(cidrs):
        network = _network(text)
        if network is None:
            found.append(f"{where}: cidrs[{index}] {text!r} is not an IPv4 or IPv6 network; write it like 192.0.2.0/24")
            continue
        if network.ip != network.network:
            found.append(f"{where}: cidrs[{index}] {text} has host bits set; use {network.cidr}")
        networks.append(network.cidr)
    return networks, found


def _overlaps_within(where: str, networks: list[netaddr.IPNetwork]) -> list[str]:
    """Overlaps inside one zone: harmless for membership, but nftables refuses overlapping set elements."""
    found = []
    for index, first in enumerate(networks):
        for second in networks[index + 1 :]:
            if first == second:
                found.append(f"{where}: {first} is listed twice; drop one")
            elif _overlap(first, second):
                narrower = max(first, second, key=lambda n: n.prefixlen)
                found.append(f"{where}: {first} and {second} overlap; drop {narrower}")
    return found


def _overlaps_between(members: list[tuple[str, netaddr.IPNetwork]]) -> list[str]:
    """Overlaps between zones: an address in both would get the flows of whichever zone wins."""
    found = []
    for index, (zone_a, net_a) in enumerate(members):
        for zone_b, net_b in members[index + 1 :]:
            if zone_a != zone_b and _overlap(net_a, net_b):
                found.append(
                    f"firewall_zones: zones {zone_a} ({net_a}) and {zone_b} ({net_b}) overlap; "
                    f"a host must belong to exactly one zone, so narrow one of them"
                )
    return found


def _overlap(first: netaddr.IPNetwork, second: netaddr.IPNetwork) -> bool:
    return first.version == second.version and first.first <= second.last and second.first <= first.last


def _flow_name_problems(where: str, name: Any, first_index: Mapping[str, int]) -> list[str]:
    if name is None or name == "":
        return [f"{where}: missing name; give each flow a unique name like ssh-from-management"]
    if not isinstance(name, str) or not _FLOW_NAME.fullmatch(name):
        return [f"{where}: name {name!r} may only hold lowercase letters, digits and -; rename it"]
    if name in first_index:
        return [f"{where}: name {name} is already used by firewall_flows[{first_index[name]}]; names must be unique"]
    return []


def _from_problems(where: str, source: Any, known: set[str]) -> list[str]:
    if source is None or source == "":
        return [f"{where}: missing from; name the source zone, or 'any' for every address"]
    if not isinstance(source, str):
        return [f"{where}: from must be one zone name or 'any', not {source!r}"]
    if source != ANY and source not in known:
        return [f"{where}: from {source!r} is not a zone in firewall_zones ({_known(known)}); declare it or fix the name"]
    return []


def _to_problems(where: str, target: Any, known: set[str]) -> list[str]:
    if target is None:
        return []
    names = [target] if isinstance(target, str) else target
    if not isinstance(names, list | tuple):
        return [f"{where}: to must be a list of zone names (or leave it out to reach every zone), not {target!r}"]
    if not names:
        return [f"{where}: to is empty, so the flow reaches no host; name the zones, or leave it out to reach every zone"]
    return [
        f"{where}: to {name!r} is not a zone in firewall_zones ({_known(known)}); declare it or fix the name"
        for name in names
        if not isinstance(name, str) or (name != ANY and name not in known)
    ]


def _known(known: set[str]) -> str:
    return f"known: {', '.join(sorted(known))}" if known else "none are declared"


def _port_problems(where: str, ports: Any) -> list[str]:
    if ports is None:
        return [f"{where}: missing ports; list the ports it opens, e.g. ports: [22] or ports: ['8000-8010']"]
    if not isinstance(ports, list | tuple):
        return [f"{where}: ports must be a list, e.g. ports: [{ports}]"]
    if not ports:
        return [f"{where}: ports is empty; list the ports it opens, or remove the flow"]
    found = []
    for index, port in enumerate(ports):
        problem = _port_problem(port)
        if problem:
            found.append(f"{where}: ports[{index}] {port!r} {problem}")
    return found


def _port_problem(port: Any) -> str | None:
    """Why one ``ports`` entry is not a port or range (None when it is one)."""
    if isinstance(port, bool):
        return "is a boolean, not a port; write a number 1-65535"
    if isinstance(port, int):
        return None if PORT_MIN <= port <= PORT_MAX else "is out of range; ports are 1-65535"
    if isinstance(port, str) and port.strip().isdigit():
        return f"is a quoted number; write {port.strip()} without quotes, or a 'low-high' range"
    span = _range(port)
    if span is None:
        return "is neither a port number nor a 'low-high' range like '8000-8010'"
    low, high = span
    if not (PORT_MIN <= low <= PORT_MAX and PORT_MIN <= high <= PORT_MAX):
        return "is out of range; ports are 1-65535"
    if low > high:
        return f"runs backwards; write '{high}-{low}'"
    return None


# --- lookups ------------------------------------------------------------------------------


def zone_of(zones: Any, address: Any) -> str | None:
    """The zone holding ``address``, or None when it is in no zone.

    Zones are validated first: with overlapping or malformed zones the answer would be a guess.
    """
    ip = _address(address)
    found = zone_problems(zones)
    if found:
        raise ValueError(_joined(found))
    for name, zone in (zones or {}).items():
        if any(ip in network for network in _zone_networks(zone)):
            return str(name)
    return None


def inbound_rules(zones: Any, flows: Any, zone: str | None) -> list[dict[str, Any]]:
    """The inbound accept rules for a host in ``zone`` (None: a host in no zone), one per flow, in flow order.

    A flow applies when its ``to`` is absent or ``any``, or names the zone; a host in no zone only
    gets the flows meant for every zone. Everything else stays denied.
    """
    found = problems(zones, flows)
    if found:
        raise ValueError(_joined(found))
    zones = zones or {}
    if zone is not None and zone not in zones:
        raise ValueError(f"zone {zone!r} is not in firewall_zones ({_known(set(zones))}); use None for a host in no zone")
    rules: list[dict[str, Any]] = []
    for flow in flows or []:
        if not _reaches(flow.get("to"), zone):
            continue
        saddr4, saddr6 = _sources(zones, flow["from"])
        rules.append(
            {
                "name": str(flow["name"]),
                "proto": str(flow.get("proto") or DEFAULT_PROTO),
                "ports": [_port_text(span) for span in _merged([_span(port) for port in flow["ports"]])],
                "saddr4": saddr4,
                "saddr6": saddr6,
            }
        )
    return rules


def permits(rules: Any, address: Any, port: Any, proto: str = DEFAULT_PROTO) -> bool:
    """Whether ``rules`` (from :func:`inbound_rules`) let ``address`` reach ``port`` over ``proto``.

    The lock-out guard asks this for the Ansible controller's SSH path before a rule set is
    loaded. A rule with no ports or no sources of the address's family permits nothing, so
    the guard errs on refusing rather than on locking the controller out.
    """
    ip = _address(address)
    number = _port_number(port)
    if proto not in PROTOS:
        raise ValueError(f"proto {proto!r} is not supported; use tcp or udp")
    if not isinstance(rules, list | tuple):
        raise ValueError(f"rules must be a list of rules from inbound_rules, not {type(rules).__name__}")
    family = "saddr4" if ip.version == 4 else "saddr6"
    for rule in rules:
        if not isinstance(rule, Mapping):
            raise ValueError(f"rule {rule!r} is not a mapping with name, proto, ports, saddr4 and saddr6")
        if (rule.get("proto") or DEFAULT_PROTO) != proto:
            continue
        if not any(low <= number <= high for low, high in (_rule_span(rule, p) for p in rule.get("ports") or [])):
            continue
        if any(ip in _rule_network(rule, cidr) for cidr in rule.get(family) or []):
            return True
    return False


def exposures(rules: Any, ports: Any, allowed: Any, what: str = "port") -> list[str]:
    """Why ``rules`` let a source that is not ``allowed`` reach one of ``ports`` over TCP (empty: none).

    For services that must be reached only through a load balancer (HL7 engines' MLLP ports,
    CP-HL7-04): a rule reaching such a port from any address is refused, and so is one whose
    source networks include one that holds none of the ``allowed`` addresses (the load
    balancers'). ``allowed`` entries that are not IP addresses (host names) are left out; with
    none left, only rules open to any address are refused.
    """
    if not isinstance(rules, list | tuple):
        raise ValueError(f"rules must be a list of rules from inbound_rules, not {type(rules).__name__}")
    numbers = sorted({_port_number(p) for p in (ports or [])})
    addresses = [a for a in (_maybe_address(x) for x in (allowed or [])) if a is not None]
    found: list[str] = []
    for rule in rules:
        if not isinstance(rule, Mapping) or (rule.get("proto") or DEFAULT_PROTO) != "tcp":
            continue
        spans = [_rule_span(rule, p) for p in rule.get("ports") or []]
        reached = [n for n in numbers if any(low <= n <= high for low, high in spans)]
        if not reached:
            continue
        sources = [*(rule.get("saddr4") or []), *(rule.get("saddr6") or [])]
        name = rule.get("name", "?")
        if ANY_V4 in sources or ANY_V6 in sources:
            found.append(f"flow {name} lets any address reach {what} {', '.join(map(str, reached))}")
            continue
        if not addresses:
            continue
        strangers = [c for c in sources
                     if not any(a.version == _rule_network(rule, c).version and a in _rule_network(rule, c)
                                for a in addresses)]
        if strangers:
            found.append(f"flow {name} lets {', '.join(strangers)} reach {what} {', '.join(map(str, reached))}, "
                         "which holds no load balancer")
    return found


def _maybe_address(text: Any) -> netaddr.IPAddress | None:
    try:
        return _address(text)
    except ValueError:
        return None


# --- helpers ------------------------------------------------------------------------------


def _joined(found: list[str]) -> str:
    return "firewall zones/flows are invalid:\n- " + "\n- ".join(found)


def _network(text: Any) -> netaddr.IPNetwork | None:
    """A parsed network, or None; only strings count (netaddr would turn an int into an address)."""
    if not isinstance(text, str):
        return None
    try:
        return netaddr.IPNetwork(text.strip())
    except _ADDRESS_ERRORS:
        return None


def _address(address: Any) -> netaddr.IPAddress:
    if isinstance(address, str):
        try:
            return netaddr.IPAddress(address.strip())
        except _ADDRESS_ERRORS:
            pass
    raise ValueError(f"{address!r} is not an IP address (a hostname or network? give the host's IPv4 or IPv6 address)")


def _port_number(port: Any) -> int:
    """A port to check: an int, or a digit string as ``SSH_CONNECTION`` and ``ansible_port`` may give it."""
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not PORT_MIN <= port <= PORT_MAX:
        raise ValueError(f"port {port!r} is not a port number 1-65535")
    return port


def _zone_networks(zone: Mapping[str, Any]) -> list[netaddr.IPNetwork]:
    return [network.cidr for network in map(_network, zone.get("cidrs") or []) if network is not None]


def _reaches(target: Any, zone: str | None) -> bool:
    if target is None or target == ANY:
        return True
    names = [target] if isinstance(target, str) else list(target)
    return ANY in names or (zone is not None and zone in names)


def _sources(zones: Mapping[str, Any], source: str) -> tuple[list[str], list[str]]:
    """The source networks of a flow, by family, each sorted by address."""
    if source == ANY:
        return [ANY_V4], [ANY_V6]
    networks = sorted(set(_zone_networks(zones[source])))
    return [str(n) for n in networks if n.version == 4], [str(n) for n in networks if n.version == 6]


def _range(port: Any) -> Span | None:
    match = _PORT_RANGE.fullmatch(port.strip()) if isinstance(port, str) else None
    return (int(match[1]), int(match[2])) if match else None


def _span(port: int | str) -> Span:
    """A validated port entry as (low, high)."""
    if isinstance(port, int):
        return int(port), int(port)
    span = _range(port)
    assert span is not None  # validated by problems()
    return span


def _merged(spans: list[Span]) -> list[Span]:
    """Sorted, with duplicates and overlapping ranges merged (nftables refuses overlapping set elements).

    Adjacent ports stay separate, so [22, 23] stays as written.
    """
    merged: list[Span] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _port_text(span: Span) -> str:
    low, high = span
    return str(low) if low == high else f"{low}-{high}"


def _rule_span(rule: Mapping[str, Any], port: Any) -> Span:
    if isinstance(port, int) and not isinstance(port, bool):
        return port, port
    if isinstance(port, str) and port.strip().isdigit():
        return int(port), int(port)
    span = _range(port)
    if span is None:
        raise ValueError(f"rule {rule.get('name')!r}: port {port!r} is neither a port number nor a 'low-high' range")
    return span


def _rule_network(rule: Mapping[str, Any], cidr: Any) -> netaddr.IPNetwork:
    network = _network(cidr)
    if network is None:
        raise ValueError(f"rule {rule.get('name')!r}: source {cidr!r} is not an IPv4 or IPv6 network")
    return network
