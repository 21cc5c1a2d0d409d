"""What `carepath lab up` writes into the inventory for the deliveries a topology has groups for."""

from __future__ import annotations

from pathlib import Path

from carepath.lab import lab
from carepath.lab.lab import LabFiles


def _inventory(groups: dict[str, list[str]]) -> dict:
    hosts = {h: {"ansible_host": f"10.89.0.{i + 10}"} for i, h in enumerate(sorted({h for g in groups.values() for h in g}))}
    return {"vars": {}, "hosts": hosts, "children": {g: {"hosts": dict.fromkeys(members)} for g, members in groups.items()}}


def _files(tmp_path: Path) -> LabFiles:
    return LabFiles(state=tmp_path / "state", inventory_dir=tmp_path / "inventory")


def test_the_hl7_interface_routes_to_the_first_sink_by_address(tmp_path: Path) -> None:
    inventory = _inventory({"hl7_lb": ["lb1"], "hl7_engines": ["eng1"], "hl7_sinks": ["sink1", "sink2"]})
    lab._add_hl7(inventory, _files(tmp_path))
    assert inventory["vars"]["hl7_engine_name"] == "adt"
    assert inventory["vars"]["haproxy_tcp_services"] == [
        {"name": "adt", "group": "hl7_engines", "ports": {"blue": 12575, "green": 12576}, "port": 2575}]
    sink = inventory["hosts"]["sink1"]["ansible_host"]
    assert inventory["vars"]["hl7_engine_destinations"] == [
        {"name": "downstream", "type": "mllp", "host": sink, "port": 2575}]


def test_engines_without_a_sink_route_nowhere_and_no_engines_means_no_interface(tmp_path: Path) -> None:
    inventory = _inventory({"hl7_lb": ["lb1"], "hl7_engines": ["eng1"]})
    lab._add_hl7(inventory, _files(tmp_path))
    assert inventory["vars"]["hl7_engine_destinations"] == []
    bare = _inventory({"hl7_lb": ["lb1"], "servers": ["s1"]})
    lab._add_hl7(bare, _files(tmp_path))
    assert bare["vars"] == {}


def test_the_hl7_lab_derives_its_firewall_flows_from_zones(tmp_path: Path) -> None:
    from carepath import zones

    inventory = _inventory({"webapp_lb": ["lb1"], "hl7_lb": ["lb1"], "webapp_hosts": ["app1", "app2"],
                            "hl7_engines": ["app1"], "hl7_sinks": ["app2"], "servers": ["other1"]})
    lab._add_webapp(inventory, _files(tmp_path))
    lab._add_hl7(inventory, _files(tmp_path))
    address = {h: v["ansible_host"] for h, v in inventory["hosts"].items()}
    found = inventory["vars"]["firewall_zones"]
    assert found == {
        "lb": {"cidrs": [f"{address['lb1']}/32"], "description": "lab hosts: lb"},
        "app": {"cidrs": [f"{address['app1']}/32", f"{address['app2']}/32"], "description": "lab hosts: app"},
        "servers": {"cidrs": [f"{address['other1']}/32"], "description": "lab hosts: servers"},
    }
    flows = inventory["vars"]["firewall_flows"]
    assert zones.problems(found, flows) == []
    # One list for every host: no group replaces it.
    assert all("firewall_flows" not in (g.get("vars") or {}) for g in inventory["children"].values())
    engine = zones.inbound_rules(found, flows, "app")
    assert zones.permits(engine, address["lb1"], 12575) and zones.permits(engine, address["lb1"], 12576)
    assert not zones.permits(engine, address["app2"], 12575)  # the sink, another app host
    assert not zones.permits(engine, "192.0.2.1", 12575)      # the machine running the lab
    assert zones.exposures(engine, [12575, 12576], [address["lb1"]]) == []
    balancer = zones.inbound_rules(found, flows, "lb")
    assert zones.permits(balancer, "192.0.2.1", 2575) and zones.permits(balancer, "192.0.2.1", 443)
    assert zones.permits(engine, address["app1"], 2575)       # engines reach the downstream system
    assert not zones.permits(zones.inbound_rules(found, flows, "servers"), "192.0.2.1", 2575)


def test_a_lab_without_hl7_keeps_its_group_flows(tmp_path: Path) -> None:
    inventory = _inventory({"webapp_lb": ["lb1"], "webapp_hosts": ["app1"]})
    lab._add_webapp(inventory, _files(tmp_path))
    lab._add_hl7(inventory, _files(tmp_path))
    assert "firewall_zones" not in inventory["vars"]
    assert inventory["children"]["webapp_lb"]["vars"]["firewall_flows"]


def test_a_run_against_a_lab_keeps_its_witness_in_the_labs_folder(tmp_path: Path, monkeypatch) -> None:
    """Issue 18: no witness warning on a machine without syslog; other inventories keep the configured witness."""
    from carepath import runner
    from carepath.project import Project

    monkeypatch.setenv("CAREPATH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CAREPATH_EVIDENCE_WITNESS", raising=False)
    project = Project(tmp_path)
    ours = tmp_path / "lab"
    ours.mkdir()
    (ours / "hosts.yml").write_text("all:\n  vars:\n    carepath_lab: ward\n  hosts: {web1: {}}\n")
    ini = tmp_path / "site" / "hosts.ini"
    ini.parent.mkdir()
    ini.write_text("[web]\nweb1 ansible_host=10.0.0.1\n")
    assert lab.inventory_owner(ours / "hosts.yml") == "ward" and lab.inventory_owner(ini) is None
    assert runner._lab_witness(project, ours) == {
        "CAREPATH_EVIDENCE_WITNESS": f"file:{tmp_path / 'state' / 'lab' / 'ward' / 'ledger-witness.log'}"}
    assert (tmp_path / "state" / "lab" / "ward").is_dir()
    assert runner._lab_witness(project, ini) == {} and runner._lab_witness(project, ini.parent) == {}
    (tmp_path / "ansible.cfg").write_text("[carepath_evidence]\nwitness = file:/srv/witness.log ; the site's\n")
    assert runner._lab_witness(project, ours) == {}  # the project's ansible.cfg names one: kept
    (tmp_path / "ansible.cfg").write_text("[defaults]\nforks = 5\n")
    assert runner._lab_witness(project, ours) != {}
    monkeypatch.setenv("CAREPATH_EVIDENCE_WITNESS", "none")  # the operator's choice wins
    assert runner._lab_witness(project, ours) == {}
