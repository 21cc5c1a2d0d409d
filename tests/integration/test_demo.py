"""`carepath demo` (``make demo``) end to end, on the built-in lab's hosts and groups (a lab of its own).

The demo is what a new user sees first: it must run each of its steps (harden, drift found and
repaired, evidence verified and reported, a web app and an HL7 engine deployed and rolled back
under load) and end with its summary. One demo runs here; what a second demo reuses is decided by
the state this one leaves in the lab's folder, checked below and in tests/unit/test_demo.py (a
second demo's time, under 5 minutes on 2 cores, is a number docs/lab.md gives, not an assertion).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from carepath.lab.lab import HOST_LABEL, LABEL
from tests.conftest import ROOT, carepath, cli_env
from tests.integration.conftest import make_lab, podman_json

# A group of its own: it runs beside the other labs' tests, on whichever worker is free.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("demo")]

STEPS = ("Start the lab", "Harden every host", "Change sshd_config's mode by hand", "Verify the evidence offline",
         "Deploy a web app release blue-green under load", "Cut an HL7 engine over under MLLP load")


def test_the_demo_shows_every_job_and_leaves_what_a_second_demo_reuses(tmp_path: Path) -> None:
    default = yaml.safe_load((ROOT / "src" / "carepath" / "data" / "lab-topology.yml").read_text())
    lab = make_lab(tmp_path, "cpdemo", default["hosts"])  # the built-in lab's hosts and groups, its own name
    # A state folder of its own: the lab's key, the demo's logs and releases, the evidence and its ledger.
    state_dir = tmp_path / "state"
    env = cli_env(CAREPATH_STATE_DIR=str(state_dir))
    carepath("lab", "down", *lab.args(), env=env)
    try:
        proc = carepath("demo", *lab.args(), env=env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        for step in STEPS:
            assert f"==> {step}" in out, step
        assert "CP-SSH-01 drifted on bookworm1" in out and "compliant again" in out
        served, failed = map(int, re.search(r"web requests\s+(\d+) served, (\d+) failed", out).groups())
        sent, acked, lost = map(int, re.search(r"HL7 messages\s+(\d+) sent, (\d+) ACKed, (\d+) lost", out).groups())
        assert served > 50 and failed == 0, out[-3000:]
        assert acked > 20 and lost == 0, out[-3000:]
        compliant, checked = map(int, re.search(r"controls\s+(\d+) of (\d+) host x control", out).groups())
        assert 0 < compliant <= checked, out[-3000:]
        report = Path(re.search(r"report\s+(\S+report\.html)", out).group(1))
        assert report.is_file() and report.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert re.search(r"the demo took \d+ min", out)
        # What a second demo reuses: the hardening run and the very containers it hardened, the
        # releases left live (each demo ends where it started, on 1.0.0).
        state = json.loads((state_dir / "lab" / lab.name / "demo.json").read_text())
        running = podman_json("ps", "--filter", f"label={LABEL}={lab.name}")
        assert state["containers"] == {c["Labels"][HOST_LABEL]: c["Id"] for c in running}
        assert re.search(rf"run {re.escape(state['hardened_run'])} successful", out)
        assert (state["webapp_live"], state["engine_live"]) == ("1.0.0", "1.0.0")
    finally:
        carepath("lab", "down", *lab.args(), env=env)
    assert not (state_dir / "lab" / lab.name).exists()  # the demo's state goes with its lab
