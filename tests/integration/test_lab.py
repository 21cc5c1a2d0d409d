"""`carepath lab up | status | down` on real containers: idempotent, isolated, and leaving nothing behind."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, carepath
from tests.integration.conftest import STATE, Lab, make_lab, podman_json

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]


def test_hosts_are_isolated_and_have_their_own_host_keys(lab: Lab):
    keys = (STATE / lab.name / "known_hosts").read_text().splitlines()
    assert len(keys) == len(lab.hosts)
    assert len({line.split()[2] for line in keys}) == len(keys)
    for host in lab.hosts:
        assert lab.ssh(host, "hostname").stdout.strip() == host
        assert lab.ssh(host, "sudo -n true").returncode == 0
        # Debian security and updates suites are in the sources.
        sources = lab.ssh(host, "cat /etc/apt/sources.list").stdout
        assert "-security main" in sources and "-updates main" in sources
        # /proc/sys stays read-only: a role cannot change the kernel of the machine running the lab.
        sysctl = lab.ssh(host, "sudo sh -c 'echo 10 > /proc/sys/vm/swappiness'", check=False)
        assert sysctl.returncode != 0
        assert "Read-only file system" in sysctl.stderr
        # NET_ADMIN in the host's own network namespace, so firewalls can be tested.
        assert lab.ssh(host, "sudo ip addr add 192.0.2.10/32 dev lo && sudo ip addr del 192.0.2.10/32 dev lo").returncode == 0
    for info in podman_json("ps", "--filter", f"label=carepath.lab={lab.name}"):
        inspect = podman_json("container", "inspect", info["Id"])[0]
        assert inspect["HostConfig"]["Privileged"] is False


def test_lab_up_is_idempotent_and_down_removes_everything(tmp_path):
    small = make_lab(tmp_path, "cplife", [{"name": "life1", "release": "bookworm"}])
    carepath("lab", "down", *small.args())
    first = carepath("lab", "up", *small.args())
    assert first.returncode == 0, first.stderr
    before = podman_json("ps", "--filter", "label=carepath.lab=cplife")
    assert [c["Names"][0] for c in before] == ["cplife-life1"]

    again = carepath("lab", "up", *small.args())
    assert again.returncode == 0, again.stderr
    assert "starting cplife-life1" not in again.stderr
    assert [c["Id"] for c in podman_json("ps", "--filter", "label=carepath.lab=cplife")] == [before[0]["Id"]]
    assert small.ssh("life1", "true").returncode == 0

    status = carepath("lab", "status", *small.args())
    assert status.returncode == 0
    assert "life1" in status.stdout and "running" in status.stdout and small.hosts["life1"] in status.stdout

    down = carepath("lab", "down", *small.args())
    assert down.returncode == 0, down.stderr
    assert podman_json("ps", "-a", "--filter", "label=carepath.lab=cplife") == []
    assert [n for n in podman_json("network", "ls") if n["name"] == "cplife-net"] == []
    assert not (STATE / "cplife").exists()
    assert not (small.inventory / "hosts.yml").exists()

    after = carepath("lab", "status", *small.args())
    assert after.returncode == 1
    assert "not up" in after.stdout


def test_an_inventory_of_another_lab_is_not_overwritten(lab: Lab, tmp_path):
    other = make_lab(tmp_path, "cpother", [{"name": "other1"}])
    proc = carepath("lab", "up", "--topology", str(other.topology), "--inventory", str(lab.inventory))
    assert proc.returncode == 2
    assert "belongs to lab 'cpit'" in proc.stderr
    assert podman_json("ps", "-a", "--filter", "label=carepath.lab=cpother") == []
    assert ROOT.exists()
