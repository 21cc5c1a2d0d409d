"""What a second `carepath demo` reuses: the hardening, only on the very containers a demo hardened.

The whole demo runs end to end in tests/integration/test_demo.py; here the decision alone, with
the lab's container ids given instead of read from podman, and `carepath run site` recorded
instead of run.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from carepath.demo import Demo
from carepath.lab import topology
from carepath.lab.lab import INVENTORY_FILE, LabFiles
from carepath.project import Project

HOSTS = {"bookworm1": "aaa", "trixie1": "bbb"}
RUN = "20261207T000000Z-site-abc123"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Demo:
    monkeypatch.setenv("CAREPATH_STATE_DIR", str(tmp_path / "state"))
    files = LabFiles(state=tmp_path / "state" / "lab" / "cpunit", inventory_dir=tmp_path / "inventory")
    files.state.mkdir(parents=True)
    files.inventory_dir.mkdir()
    (files.inventory_dir / INVENTORY_FILE).write_text(yaml.safe_dump(
        {"all": {"hosts": {h: {"ansible_host": "10.0.0.1"} for h in HOSTS}, "children": {}}}), encoding="utf-8")
    topo = topology.parse({"lab": "cpunit", "hosts": [{"name": h} for h in HOSTS]})
    the_demo = Demo(Project(tmp_path), topo, files, out=io.StringIO())
    the_demo.folder.mkdir(parents=True)
    return the_demo


def runs_recorded(demo: Demo, monkeypatch: pytest.MonkeyPatch, containers: dict[str, str]) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def carepath(step: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:  # noqa: ARG001
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, f"carepath: run {RUN} successful (rc=0, changed=42)\n", "")

    monkeypatch.setattr(demo, "carepath", carepath)
    monkeypatch.setattr(demo, "containers", lambda: dict(containers))
    return calls


def test_the_first_demo_hardens_and_remembers_the_run_and_the_containers(demo: Demo, monkeypatch: pytest.MonkeyPatch):
    calls = runs_recorded(demo, monkeypatch, HOSTS)
    result = demo.harden()
    assert calls == [("run", "site", "-i", str(demo.files.inventory_dir))]
    assert "changes on 2 hosts" in result
    state = json.loads((demo.files.state / "demo.json").read_text())
    assert state == {"hardened_run": RUN, "containers": HOSTS}


def test_a_second_demo_on_the_same_containers_reuses_the_hardening(demo: Demo, monkeypatch: pytest.MonkeyPatch):
    demo.remember(hardened_run=RUN, containers=HOSTS)
    calls = runs_recorded(demo, monkeypatch, HOSTS)
    assert demo.harden().startswith(f"already hardened by run {RUN} (the same hosts): reused")
    assert calls == []
    assert demo.numbers["harden_run"] == RUN


@pytest.mark.parametrize("containers", [{"bookworm1": "aaa", "trixie1": "ccc"},  # a host re-created
                                        {"bookworm1": "aaa"},                     # a host gone
                                        {**HOSTS, "collector1": "ddd"}])          # a host added
def test_other_containers_are_hardened_again(demo: Demo, monkeypatch: pytest.MonkeyPatch, containers: dict[str, str]):
    demo.remember(hardened_run="20261206T000000Z-site-old", containers=HOSTS, webapp_live="1.0.0", engine_live="1.0.0")
    calls = runs_recorded(demo, monkeypatch, containers)
    demo.harden()
    assert len(calls) == 1 and calls[0][:2] == ("run", "site")
    # New hosts: what an earlier demo left live is not there, so the first releases are deployed again.
    assert json.loads((demo.files.state / "demo.json").read_text()) == {"hardened_run": RUN, "containers": containers}
