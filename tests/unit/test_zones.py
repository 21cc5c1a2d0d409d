"""Trust-zone arithmetic for the firewall role: validation, zone lookup, rules and the lock-out guard's question."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from carepath import zones

ZONES = {
    "management": {"cidrs": ["192.0.2.0/24"], "description": "Jump hosts and Ansible controllers"},
    "clinical": {"cidrs": ["198.51.100.0/24", "2001:db8:20::/48", "10.20.0.0/16", "10.3.0.0/16"]},
    "servers": {"cidrs": ["203.0.113.0/24", "2001:db8:30::/48"]},
}
FLOWS = [
    {"name": "ssh-from-management", "from": "management", "to": ["servers", "clinical"], "ports": [22]},
    {"name": "web-from-clinical", "from": "clinical", "to": ["servers"], "proto": "tcp", "ports": ["8000-8010", 443, 443, 80]},
    {"name": "ntp-anywhere", "from": "any", "proto": "udp", "ports": [123]},
    {"name": "syslog-to-servers", "from": "servers", "to": "servers", "proto": "udp", "ports": [514]},
]


def only(found):
    assert len(found) == 1, found
    return found[0]


# --- problems -----------------------------------------------------------------------------


def test_valid_zones_and_flows_have_no_problems():
    assert zones.problems(ZONES, FLOWS) == []
    assert zones.problems(None, None) == []
    assert zones.problems({}, [{"name": "ssh", "from": "any", "to": "any", "ports": [22]}]) == []


@pytest.mark.parametrize("bad", [[{"cidrs": ["192.0.2.0/24"]}], "management", 3])
def test_zones_must_be_a_mapping(bad):
    assert "firewall_zones must be a mapping" in only(zones.problems(bad, []))


@pytest.mark.parametrize("bad", [{"name": "ssh"}, "ssh", 3])
def test_flows_must_be_a_list(bad):
    assert "firewall_flows must be a list" in only(zones.problems(ZONES, bad))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Clinical", "zone names are lowercase letters, digits and _ starting with a letter"),
        ("1st", "zone names are lowercase letters, digits and _ starting with a letter"),
        ("lab-net", "zone names are lowercase letters, digits and _ starting with a letter"),
        (7, "zone names are lowercase letters, digits and _ starting with a letter"),
        ("any", "'any' is reserved for every address"),
    ],
)
def test_bad_zone_names(name, message):
    found = only(zones.problems({name: {"cidrs": ["192.0.2.0/24"]}}, []))
    assert found.startswith(f"firewall_zones.{name}: ")
    assert message in found


def test_good_zone_name_with_digits_and_underscore():
    assert zones.problems({"lab_2": {"cidrs": ["192.0.2.0/24"]}}, []) == []


@pytest.mark.parametrize("zone", [{}, {"cidrs": []}, {"cidrs": None}, {"cidrs": ()}, {"description": "x"}])
def test_missing_or_empty_cidrs(zone):
    assert only(zones.problems({"lab": zone}, [])) == (
        "firewall_zones.lab: missing cidrs; list the zone's networks, e.g. cidrs: [192.0.2.0/24]"
    )


def test_cidrs_must_be_a_list():
    assert "cidrs must be a list of networks, e.g. cidrs: [192.0.2.0/24]" in only(
        zones.problems({"lab": {"cidrs": "192.0.2.0/24"}}, [])
    )


def test_zone_must_be_a_mapping():
    assert "firewall_zones.lab: expected a mapping with cidrs" in only(zones.problems({"lab": ["192.0.2.0/24"]}, []))


@pytest.mark.parametrize(
    "cidr", ["192.0.2.0/33", "192.0.2/24", "010.0.0.0/8", "lab.example", "", 3232235520, None, "2001:db8::/129"]
)
def test_unparseable_cidr(cidr):
    found = only(zones.problems({"lab": {"cidrs": ["198.51.100.0/24", cidr]}}, []))
    assert found == f"firewall_zones.lab: cidrs[1] {cidr!r} is not an IPv4 or IPv6 network; write it like 192.0.2.0/24"


def test_host_bits_set_says_which_network_to_use():
    found = only(zones.problems({"lab": {"cidrs": ["10.0.0.1/24"]}}, []))
    assert found == "firewall_zones.lab: cidrs[0] 10.0.0.1/24 has host bits set; use 10.0.0.0/24"
    found = only(zones.problems({"lab": {"cidrs": ["2001:db8::1/32"]}}, []))
    assert found.endswith("has host bits set; use 2001:db8::/32")


def test_a_bare_address_or_netmask_is_a_network():
    assert zones.problems({"lab": {"cidrs": ["192.0.2.7", "198.51.100.0/255.255.255.0", "2001:db8::7"]}}, []) == []


def test_overlapping_zones_name_both_zones_and_networks():
    found = only(
        zones.problems({"clinical": {"cidrs": ["10.20.0.0/16"]}, "lab": {"cidrs": ["192.0.2.0/24", "10.20.5.0/24"]}}, [])
    )
    assert found == (
        "firewall_zones: zones clinical (10.20.0.0/16) and lab (10.20.5.0/24) overlap; "
        "a host must belong to exactly one zone, so narrow one of them"
    )


def test_overlapping_ipv6_zones_and_identical_networks():
    found = zones.problems(
        {"a": {"cidrs": ["2001:db8::/32"]}, "b": {"cidrs": ["2001:db8:ff::/48"]}, "c": {"cidrs": ["2001:db8::/32"]}}, []
    )
    assert len(found) == 3
    assert "zones a (2001:db8::/32) and b (2001:db8:ff::/48) overlap" in found[0]
    assert "zones a (2001:db8::/32) and c (2001:db8::/32) overlap" in found[1]
    assert "zones b (2001:db8:ff::/48) and c (2001:db8::/32) overlap" in found[2]


def test_overlap_is_checked_after_clearing_host_bits():
    found = zones.problems({"a": {"cidrs": ["192.0.2.9/24"]}, "b": {"cidrs": ["192.0.2.128/25"]}}, [])
    assert len(found) == 2
    assert "use 192.0.2.0/24" in found[0]
    assert "zones a (192.0.2.0/24) and b (192.0.2.128/25) overlap" in found[1]


def test_adjacent_and_cross_family_networks_do_not_overlap():
    # ::ffff:0:0/96 holds the IPv4-mapped addresses, but it is an IPv6 network: no overlap with IPv4 zones
    assert (
        zones.problems({"a": {"cidrs": ["192.0.2.0/25", "::ffff:0:0/96"]}, "b": {"cidrs": ["192.0.2.128/25", "0.0.0.0/1"]}}, [])
        == []
    )


def test_overlap_inside_one_zone_is_refused():
    found = zones.problems({"lab": {"cidrs": ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "192.0.2.0/24"]}}, [])
    assert found == [
        "firewall_zones.lab: 10.0.0.0/8 and 10.1.0.0/16 overlap; drop 10.1.0.0/16",
        "firewall_zones.lab: 192.0.2.0/24 is listed twice; drop one",
    ]


def test_unknown_zone_key():
    found = only(zones.problems({"lab": {"cidrs": ["192.0.2.0/24"], "cidr": ["198.51.100.0/24"], "vlan": 7}}, []))
    assert found == "firewall_zones.lab: unknown key(s) ['cidr', 'vlan']; a zone has only cidrs, description"


def flow(**changes):
    base = {"name": "ssh-from-management", "from": "management", "ports": [22]}
    return {k: v for k, v in (base | changes).items() if v is not ...}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (flow(name=...), "firewall_flows[0]: missing name; give each flow a unique name"),
        (flow(name=""), "firewall_flows[0]: missing name"),
        (
            flow(name="SSH_from_mgmt"),
            "firewall_flows[0] (SSH_from_mgmt): name 'SSH_from_mgmt' may only hold lowercase letters, digits and -",
        ),
        (flow(name=22), "firewall_flows[0]: name 22 may only hold lowercase letters"),
        (
            flow(comment="why"),
            "firewall_flows[0] (ssh-from-management): unknown key(s) ['comment']; a flow has only name, from, to, proto, ports",
        ),
        (flow(**{"from": ...}), "missing from; name the source zone, or 'any'"),
        (
            flow(**{"from": "lab"}),
            "from 'lab' is not a zone in firewall_zones (known: clinical, management, servers); declare it",
        ),
        (flow(**{"from": ["management"]}), "from must be one zone name or 'any', not ['management']"),
        (flow(to=["servers", "lab"]), "to 'lab' is not a zone in firewall_zones (known: clinical, management, servers)"),
        (flow(to="lab"), "to 'lab' is not a zone in firewall_zones"),
        (flow(to=[]), "to is empty, so the flow reaches no host"),
        (flow(to={"zone": "servers"}), "to must be a list of zone names"),
        (flow(proto="icmp"), "proto 'icmp' is not supported; use tcp or udp"),
        (flow(proto="TCP"), "proto 'TCP' is not supported; use tcp or udp"),
        (flow(ports=...), "missing ports"),
        (flow(ports=[]), "ports is empty; list the ports it opens, or remove the flow"),
        (flow(ports=22), "ports must be a list, e.g. ports: [22]"),
        (flow(ports=[True]), "ports[0] True is a boolean, not a port"),
        (flow(ports=[0]), "ports[0] 0 is out of range; ports are 1-65535"),
        (flow(ports=[65536]), "ports[0] 65536 is out of range; ports are 1-65535"),
        (flow(ports=[22.0]), "ports[0] 22.0 is neither a port number nor a 'low-high' range"),
        (flow(ports=["ssh"]), "ports[0] 'ssh' is neither a port number nor a 'low-high' range"),
        (flow(ports=["22"]), "ports[0] '22' is a quoted number; write 22 without quotes"),
        (flow(ports=["8000-"]), "ports[0] '8000-' is neither a port number nor a 'low-high' range"),
        (flow(ports=["8010-8000"]), "ports[0] '8010-8000' runs backwards; write '8000-8010'"),
        (flow(ports=["0-10"]), "ports[0] '0-10' is out of range; ports are 1-65535"),
        (flow(ports=["65000-65536"]), "ports[0] '65000-65536' is out of range"),
    ],
)
def test_bad_flows_are_named(entry, message):
    assert message in only(zones.problems(ZONES, [entry]))


def test_flow_must_be_a_mapping():
    assert only(zones.problems(ZONES, ["ssh"])) == "firewall_flows[0]: expected a mapping with name, from and ports"


def test_duplicate_flow_name_points_at_the_first():
    found = only(zones.problems(ZONES, [flow(), flow(name="web", ports=[443]), flow(ports=[2222])]))
    assert found.startswith(
        "firewall_flows[2] (ssh-from-management): name ssh-from-management is already used by firewall_flows[0]"
    )


def test_good_flow_variants():
    entries = [
        flow(name="a", ports=[1, 65535, "1-65535", "8000-8000"]),
        flow(name="b", to="any", proto="udp"),
        flow(name="c", to=["any"], proto=None),
        flow(name="d-2", to=None, **{"from": "any"}),
    ]
    assert zones.problems(ZONES, entries) == []


def test_every_problem_is_reported_at_once():
    found = zones.problems({"Lab": {"cidrs": ["10.0.0.1/8"]}}, [{"from": "nowhere", "ports": []}])
    assert len(found) == 5
    assert [f.split(":")[0] for f in found] == ["firewall_zones.Lab", "firewall_zones.Lab", *["firewall_flows[0]"] * 3]


def test_flows_against_invalid_zones_still_know_the_zone_names():
    found = zones.problems({"lab": {"cidrs": ["bogus"]}}, [flow(**{"from": "lab"})])
    assert len(found) == 1 and "'bogus' is not an IPv4 or IPv6 network" in found[0]


# --- zone_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "zone"),
    [
        ("192.0.2.10", "management"),
        ("198.51.100.255", "clinical"),
        ("10.20.9.9", "clinical"),
        ("2001:db8:20::5", "clinical"),
        ("2001:DB8:30::1", "servers"),
        ("203.0.113.0", "servers"),
        ("10.21.0.1", None),
        ("2001:db8:40::1", None),
        ("::ffff:192.0.2.10", None),  # IPv4-mapped is IPv6, and no zone lists it
    ],
)
def test_zone_of(address, zone):
    assert zones.zone_of(ZONES, address) == zone


def test_zone_of_with_no_zones():
    assert zones.zone_of({}, "192.0.2.1") is None
    assert zones.zone_of(None, "192.0.2.1") is None


@pytest.mark.parametrize("address", ["db01.hospital.example", "192.0.2.0/24", "192.0.2", "", None, 3221225985, "fe80::1%eth0"])
def test_zone_of_refuses_what_is_not_an_address(address):
    with pytest.raises(ValueError, match=r"is not an IP address"):
        zones.zone_of(ZONES, address)


def test_zone_of_refuses_overlapping_zones():
    with pytest.raises(ValueError, match=r"zones a \(10.0.0.0/8\) and b \(10.1.0.0/16\) overlap"):
        zones.zone_of({"a": {"cidrs": ["10.0.0.0/8"]}, "b": {"cidrs": ["10.1.0.0/16"]}}, "10.1.0.1")


# --- inbound_rules ------------------------------------------------------------------------


def test_inbound_rules_for_servers_exactly():
    assert zones.inbound_rules(ZONES, FLOWS, "servers") == [
        {"name": "ssh-from-management", "proto": "tcp", "ports": ["22"], "saddr4": ["192.0.2.0/24"], "saddr6": []},
        {
            "name": "web-from-clinical",
            "proto": "tcp",
            "ports": ["80", "443", "8000-8010"],
            "saddr4": ["10.3.0.0/16", "10.20.0.0/16", "198.51.100.0/24"],
            "saddr6": ["2001:db8:20::/48"],
        },
        {"name": "ntp-anywhere", "proto": "udp", "ports": ["123"], "saddr4": ["0.0.0.0/0"], "saddr6": ["::/0"]},
        {
            "name": "syslog-to-servers",
            "proto": "udp",
            "ports": ["514"],
            "saddr4": ["203.0.113.0/24"],
            "saddr6": ["2001:db8:30::/48"],
        },
    ]


def test_inbound_rules_only_for_flows_reaching_the_zone():
    assert [r["name"] for r in zones.inbound_rules(ZONES, FLOWS, "clinical")] == ["ssh-from-management", "ntp-anywhere"]
    assert [r["name"] for r in zones.inbound_rules(ZONES, FLOWS, "management")] == ["ntp-anywhere"]


def test_host_in_no_zone_gets_only_flows_to_any():
    flows = [*FLOWS, flow(name="ssh-everywhere", to=["any"])]
    assert [r["name"] for r in zones.inbound_rules(ZONES, flows, None)] == ["ntp-anywhere", "ssh-everywhere"]


def test_inbound_rules_follow_flow_order():
    flows = list(reversed(FLOWS))
    assert [r["name"] for r in zones.inbound_rules(ZONES, flows, "servers")] == [f["name"] for f in flows]


def test_ports_are_sorted_numerically_deduplicated_and_merged():
    rules = zones.inbound_rules(ZONES, [flow(ports=[9000, "8000-8010", 22, 8005, "8008-8020", 22, 23, "100-100"])], None)
    assert rules[0]["ports"] == ["22", "23", "100", "8000-8020", "9000"]


def test_sources_are_normalised_and_deduplicated():
    lab = {"lab": {"cidrs": ["2001:DB8:0:0::/64", "192.0.2.0/255.255.255.0"]}}
    rules = zones.inbound_rules(lab, [flow(**{"from": "lab"})], "lab")
    assert rules[0]["saddr4"] == ["192.0.2.0/24"]
    assert rules[0]["saddr6"] == ["2001:db8::/64"]


def test_inbound_rules_with_no_flows_deny_everything():
    assert zones.inbound_rules(ZONES, [], "servers") == []
    assert zones.inbound_rules(ZONES, None, None) == []


def test_inbound_rules_refuse_invalid_input_listing_every_problem():
    with pytest.raises(ValueError) as caught:
        zones.inbound_rules({"lab": {"cidrs": ["10.0.0.1/8"]}}, [flow(**{"from": "nowhere"})], "lab")
    text = str(caught.value)
    assert text.startswith("firewall zones/flows are invalid:\n- ")
    assert "use 10.0.0.0/8" in text
    assert "from 'nowhere' is not a zone" in text


@pytest.mark.parametrize("zone", ["lab", "any"])
def test_inbound_rules_refuse_an_unknown_host_zone(zone):
    with pytest.raises(ValueError, match=rf"zone '{zone}' is not in firewall_zones \(known: clinical, management, servers\)"):
        zones.inbound_rules(ZONES, FLOWS, zone)


# --- permits ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_rules():
    return zones.inbound_rules(ZONES, FLOWS, "servers")


@pytest.mark.parametrize(
    ("address", "port", "proto", "allowed"),
    [
        ("192.0.2.5", 22, "tcp", True),
        ("192.0.2.5", "22", "tcp", True),  # as SSH_CONNECTION gives it
        ("192.0.2.5", 22, "udp", False),
        ("192.0.2.5", 2222, "tcp", False),
        ("198.51.100.7", 22, "tcp", False),  # clinical may not SSH to servers
        ("198.51.100.7", 8000, "tcp", True),
        ("198.51.100.7", 8005, "tcp", True),
        ("198.51.100.7", 8010, "tcp", True),
        ("198.51.100.7", 8011, "tcp", False),
        ("198.51.100.7", 7999, "tcp", False),
        ("2001:db8:20::9", 443, "tcp", True),
        ("2001:db8:20::9", 22, "tcp", False),
        ("2001:db8:99::1", 123, "udp", True),  # ntp from any, IPv6
        ("203.0.113.44", 123, "udp", True),
        ("203.0.113.44", 514, "udp", True),
        ("2001:db8:30::1", 514, "udp", True),
        ("10.30.0.1", 514, "udp", False),
    ],
)
def test_permits(server_rules, address, port, proto, allowed):
    assert zones.permits(server_rules, address, port, proto) is allowed


def test_permits_respects_address_family():
    v4_only = [{"name": "ssh", "proto": "tcp", "ports": ["22"], "saddr4": ["0.0.0.0/0"], "saddr6": []}]
    assert zones.permits(v4_only, "192.0.2.1", 22)
    assert not zones.permits(v4_only, "2001:db8::1", 22)
    v6_only = [{"name": "ssh", "proto": "tcp", "ports": ["22"], "saddr4": [], "saddr6": ["::/0"]}]
    assert zones.permits(v6_only, "2001:db8::1", 22)
    assert not zones.permits(v6_only, "192.0.2.1", 22)


def test_permits_defaults_to_tcp_and_nothing_permits_nothing():
    assert zones.permits([{"name": "x", "ports": ["20-30"], "saddr4": ["192.0.2.0/24"]}], "192.0.2.1", 25)
    assert not zones.permits([], "192.0.2.1", 22)
    assert not zones.permits([{"name": "x", "proto": "tcp", "ports": [], "saddr4": ["0.0.0.0/0"]}], "192.0.2.1", 22)


@pytest.mark.parametrize(
    ("rules", "address", "port", "proto", "message"),
    [
        ([], "controller.example", 22, "tcp", "is not an IP address"),
        ([], "192.0.2.1", 0, "tcp", "port 0 is not a port number 1-65535"),
        ([], "192.0.2.1", 70000, "tcp", "port 70000 is not a port number"),
        ([], "192.0.2.1", True, "tcp", "port True is not a port number"),
        ([], "192.0.2.1", "ssh", "tcp", "port 'ssh' is not a port number"),
        ([], "192.0.2.1", 22, "sctp", "proto 'sctp' is not supported"),
        ({"name": "x"}, "192.0.2.1", 22, "tcp", "rules must be a list"),
        (["x"], "192.0.2.1", 22, "tcp", "rule 'x' is not a mapping"),
        ([{"name": "x", "ports": ["ssh"], "saddr4": []}], "192.0.2.1", 22, "tcp", "rule 'x': port 'ssh' is neither"),
        ([{"name": "x", "ports": [22], "saddr4": ["bogus"]}], "192.0.2.1", 22, "tcp", "rule 'x': source 'bogus' is not"),
    ],
)
def test_permits_refuses_bad_input(rules, address, port, proto, message):
    with pytest.raises(ValueError, match=message):
        zones.permits(rules, address, port, proto)


def test_lockout_guard_scenario():
    """Dropping the management SSH flow cuts the controller off; the guard sees it before the rules load."""
    controller = "192.0.2.10"
    assert zones.permits(zones.inbound_rules(ZONES, FLOWS, "servers"), controller, 22)
    without_ssh = [f for f in FLOWS if f["name"] != "ssh-from-management"]
    assert not zones.permits(zones.inbound_rules(ZONES, without_ssh, "servers"), controller, 22)


# --- the Ansible filter plugin ------------------------------------------------------------

_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "carepath_zones.py"


@pytest.fixture(scope="module")
def filters():
    spec = importlib.util.spec_from_file_location("carepath_zones_filter", _PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_filter_plugin_exposes_the_functions(filters):
    assert set(filters) == {"carepath_zone_problems", "carepath_zone_of", "carepath_inbound_rules", "carepath_permits",
                            "carepath_exposures"}
    rules = filters["carepath_inbound_rules"](ZONES, FLOWS, "servers")
    assert rules == zones.inbound_rules(ZONES, FLOWS, "servers")
    assert filters["carepath_zone_of"](ZONES, "2001:db8:30::1") == "servers"
    assert filters["carepath_permits"](rules, "192.0.2.10", 22) is True
    assert filters["carepath_permits"](rules, "192.0.2.10", 123, "udp") is True
    assert filters["carepath_zone_problems"](ZONES, [flow(ports=[])]) == [
        "firewall_flows[0] (ssh-from-management): ports is empty; list the ports it opens, or remove the flow"
    ]


def test_filter_plugin_turns_value_errors_into_filter_errors(filters):
    with pytest.raises(AnsibleFilterError, match=r"has host bits set; use 10.0.0.0/24"):
        filters["carepath_inbound_rules"]({"lab": {"cidrs": ["10.0.0.1/24"]}}, [], "lab")
    with pytest.raises(AnsibleFilterError, match=r"is not an IP address"):
        filters["carepath_zone_of"](ZONES, "db01")
    with pytest.raises(AnsibleFilterError, match=r"port 0 is not a port number"):
        filters["carepath_permits"]([], "192.0.2.1", 0)


# --- ports reached only through the load balancers (CP-HL7-04) --------------------------------

LB_ZONES = {"lb": {"cidrs": ["10.1.0.0/24"]}, "engines": {"cidrs": ["10.2.0.0/24"]},
            "clinical": {"cidrs": ["10.20.0.0/16", "fd00:20::/48"]}}


def _engine_rules(*flows: dict) -> list[dict]:
    return zones.inbound_rules(LB_ZONES, [{"name": "ssh", "from": "any", "ports": [22]}, *flows], "engines")


def test_engine_ports_from_the_load_balancers_zone_are_not_an_exposure():
    rules = _engine_rules({"name": "colours-from-lb", "from": "lb", "ports": [12575, 12576]})
    assert zones.exposures(rules, [12575, 12576], ["10.1.0.5"]) == []


def test_engine_ports_open_to_any_address_are_an_exposure_even_through_a_range():
    rules = _engine_rules({"name": "wide", "from": "any", "ports": ["12000-13000"]})
    assert zones.exposures(rules, [12575, 12576], ["10.1.0.5"], "the engine port") == [
        "flow wide lets any address reach the engine port 12575, 12576"]


def test_engine_ports_from_a_zone_without_a_load_balancer_are_an_exposure():
    rules = _engine_rules({"name": "colours-from-clinical", "from": "clinical", "ports": [12575]})
    found = zones.exposures(rules, [12575, 12576], ["10.1.0.5"])
    assert found == ["flow colours-from-clinical lets 10.20.0.0/16, fd00:20::/48 reach port 12575, "
                     "which holds no load balancer"]
    # Load balancers known only by name: only 'any' can be judged, so a zone passes.
    assert zones.exposures(rules, [12575], ["lb1.hospital.example"]) == []


def test_udp_and_other_ports_are_not_exposures():
    rules = _engine_rules({"name": "dns", "from": "any", "proto": "udp", "ports": [12575]},
                          {"name": "web", "from": "any", "ports": [443]})
    assert zones.exposures(rules, [12575], ["10.1.0.5"]) == []
    with pytest.raises(ValueError, match="list of rules"):
        zones.exposures("nope", [12575], [])
