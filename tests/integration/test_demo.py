"""`carepath demo` (``make demo``): every step on a lab of its own, then a second demo that reuses it.

The demo is what a new user sees first: it must run each of its steps (harden, drift found and
repaired, evidence verified and reported, a web app and an HL7 engine deployed and rolled back
under load) and end with its summary. How long the second demo takes is printed by the demo
itself (the goal, under 5 minutes on 2 cores, is a number to read, not an assertion).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, carepath, cli_env
from tests.integration.conftest import make_lab

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("demo")]

STEPS = ("Start the lab", "Harden every host", "Change sshd_config's mode by hand", "Verify the evidence offline",
         "Deploy a web app release blue-green under load", "Cut an HL7 engine over under MLLP load")


def test_the_demo_shows_every_job_and_a_second_demo_reuses_the_lab(tmp_path: Path) -> None:
    default = yaml.safe_load((ROOT / "src" / "carepath" / "data" / "lab-topology.yml").read_text())
    lab = make_lab(tmp_path, "cpdemo", default["hosts"])  # the built-in lab's hosts and groups, its own name
    env = cli_env(CAREPATH_STATE_DIR=str(tmp_path / "state"))
    carepath("lab", "down", *lab.args(), env=env)
    try:
        first = carepath("demo", *lab.args(), env=env)
        out = first.stdout + first.stderr
        assert first.returncode == 0, out[-6000:]
        for step in STEPS:
            assert f"==> {step}" in out, step
        assert "CP-SSH-01 drifted on bookworm1" in out and "compliant again" in out
        served, failed = map(int, re.search(r"web requests\s+(\d+) served, (\d+) failed", out).groups())
        sent, acked, lost = map(int, re.search(r"HL7 messages\s+(\d+) sent, (\d+) ACKed, (\d+) lost", out).groups())
        assert served > 50 and failed == 0, out[-3000:]
        assert acked > 20 and lost == 0, out[-3000:]
        report = Path(re.search(r"report\s+(\S+report\.html)", out).group(1))
        assert report.is_file() and report.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert "the demo took" in out

        second = carepath("demo", *lab.args(), env=env)
        again = second.stdout + second.stderr
        assert second.returncode == 0, again[-6000:]
        assert "already hardened by run" in again  # the same hosts: the hardening is reused
        for step in STEPS[2:]:
            assert f"==> {step}" in again, step
        assert re.search(r"web requests\s+\d+ served, 0 failed", again) and re.search(r"\d+ ACKed, 0 lost", again)
        print(re.search(r"the demo took .*", again).group(0))  # the second demo's time, for the log
    finally:
        carepath("lab", "down", *lab.args(), env=env)
