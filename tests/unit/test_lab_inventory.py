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
