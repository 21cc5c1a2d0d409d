"""Topology files: what is accepted, and the errors for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carepath.errors import CarepathError
from carepath.lab import topology

DEFAULT = Path(__file__).resolve().parents[2] / "src" / "carepath" / "data" / "lab-topology.yml"


def test_default_topology_has_one_host_per_release_and_a_collector():
    topo = topology.load(DEFAULT)
    assert topo.name == "carepath"
    assert topo.releases == ["bookworm", "trixie"]
    assert topo.network == "carepath-net"
    assert [topo.container(h) for h in topo.hosts] == ["carepath-bookworm1", "carepath-trixie1", "carepath-collector1"]
    assert [h.name for h in topo.hosts if "log_collectors" in h.groups] == ["collector1"]


def test_release_defaults_to_bookworm_and_groups_are_kept():
    topo = topology.parse({"lab": "tt", "hosts": [{"name": "lb1", "groups": ["lb", "dmz"]}]})
    assert topo.hosts[0] == topology.LabHost(name="lb1", release="bookworm", groups=("lb", "dmz"))


def test_kind_defaults_to_container_and_vms_are_told_apart():
    topo = topology.parse({"lab": "tt", "hosts": [{"name": "c1"}, {"name": "v1", "kind": "vm", "release": "trixie"}]})
    assert [h.name for h in topo.containers] == ["c1"]
    assert [(h.name, h.release) for h in topo.vms] == [("v1", "trixie")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hosts": [{"name": "a1"}, {"name": "a1"}]}, "host 'a1': duplicate host name"),
        ({"hosts": [{"name": "a1", "release": "buster"}]}, "unknown Debian release 'buster'; supported: bookworm, trixie"),
        ({"hosts": [{"name": "A_1"}]}, "name 'A_1' is not a valid host name"),
        ({"hosts": []}, "hosts: expected a non-empty list"),
        ({"hosts": [{"name": "a1", "groups": ["all"]}]}, "group 'all' is not a valid Ansible group name"),
        ({"hosts": [{"name": "a1", "groups": ["web-tier"]}]}, "group 'web-tier' is not a valid"),
        ({"hosts": [{"name": "a1", "groups": ["b1"]}, {"name": "b1"}]}, "clash with host names"),
        ({"hosts": [{"name": "a1", "ram": 4}]}, "unknown key(s) ['ram']"),
        ({"hosts": [{"name": "a1", "kind": "lxc"}]}, "unknown kind 'lxc'; supported: container, vm"),
        ({"lab": "Bad Name", "hosts": [{"name": "a1"}]}, "'Bad Name' is not a valid lab name"),
        (["a1"], "expected a mapping"),
    ],
)
def test_bad_topologies_are_refused_with_where_and_what(data, message):
    with pytest.raises(CarepathError) as excinfo:
        topology.parse(data, source="topo.yml")
    assert str(excinfo.value).startswith("topo.yml: ")
    assert message in str(excinfo.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(CarepathError, match="does not exist"):
        topology.load(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("hosts: [\n", encoding="utf-8")
    with pytest.raises(CarepathError, match="not valid YAML"):
        topology.load(bad)


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text(yaml.safe_dump({"lab": "ward", "hosts": [{"name": "db1", "release": "trixie"}]}), encoding="utf-8")
    topo = topology.load(path)
    assert topo.source == str(path)
    assert topo.releases == ["trixie"]
