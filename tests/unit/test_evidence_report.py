"""The auditor's report: built from a signed bundle, checked in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from carepath import evidence
from carepath.evidence.recorder import Recorder
from tests.conftest import carepath

HOSTS = ("ward-db1", "pacs-web2")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("report")
    key = work / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    playbook = work / "site.yml"
    playbook.write_text("---\n")
    recorder = Recorder(evidence_dir=work / "ev", site="hospital-a", playbook=str(playbook), signing_key=key,
                        environ={"CAREPATH_CHANGE_TICKET": "CHG0012345"})
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    for host in HOSTS:
        recorder.task_result("changed", host=host, task="Write the sshd configuration", action="carepath_template",
                             tags=["cp_ssh_05", "cp_ssh_06"], result={"changed": True}, role="ssh_hardening")
        excepted = {"control": "CP-SSH-12", "reason": "legacy <script>analyser</script>", "owner": "ops@example.org",
                    "expires": "2027-03-31"}
        recorder.task_result("ok", host=host, task="Audit | Check the controls of ssh_hardening",
                             action="carepath_control", tags=[], role="ssh_hardening", result={"carepath_controls": [
                                 {"id": "CP-SSH-05", "status": "compliant"}, {"id": "CP-SSH-06", "status": "compliant"},
                                 {"id": "CP-SSH-12", "status": "excepted", "exception": excepted}]})
    recorder.task_result("failed", host=HOSTS[1], task="Load the nftables rules", action="ansible.builtin.command",
                         tags=["cp_fw_02"], result={"msg": "nft: syntax error"})
    recorder.finish("failed", {h: {"ok": 5, "changed": 1, "failures": int(h == HOSTS[1]), "unreachable": 0,
                                   "skipped": 0} for h in HOSTS})
    return recorder.bundle_dir, key.with_suffix(".pub")


def test_report_files_hold_every_host_and_control_with_their_references(bundle: tuple[Path, Path], tmp_path: Path):
    proc = carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))
    assert {(r["host"], r["control"], r["status"]) for r in rows} == {
        (h, c, s) for h in HOSTS for c, s in (("CP-SSH-05", "compliant"), ("CP-SSH-06", "compliant"),
                                               ("CP-SSH-12", "excepted"))}
    ssh05 = next(r for r in rows if r["control"] == "CP-SSH-05")
    assert "164.312(d)" in ssh05["hipaa"] and ssh05["changed_by_tasks"] == "Write the sshd configuration"
    assert next(r for r in rows if r["control"] == "CP-SSH-12")["exception_owner"] == "ops@example.org"
    exported = json.loads((tmp_path / "report.json").read_text())
    assert exported["summary"]["excepted"] == 2 and exported["failures"][0]["msg"] == "nft: syntax error"
    assert exported["verification"].startswith("verified")
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html  # reasons are escaped, never run


def test_a_tampered_bundle_says_so_at_the_top(bundle: tuple[Path, Path], tmp_path: Path):
    copy = tmp_path / bundle[0].name
    shutil.copytree(bundle[0], copy)
    events = copy / "events.jsonl"
    events.write_bytes(events.read_bytes().replace(b"compliant", b"drifted!!", 1))
    proc = carepath("evidence", "report", str(copy), "--key", str(bundle[1]), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert "FAILED" in json.loads((tmp_path / "out" / "report.json").read_text())["verification"]


def test_the_html_renders_in_headless_chromium(bundle: tuple[Path, Path], tmp_path: Path):
    assert carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path)).returncode == 0
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by `make setup` (HOST_PACKAGES); run it first"
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*argv, "--dump-dom", (tmp_path / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "<table" in dom and 'id="controls"' in dom
    for needle in (*HOSTS, "CP-SSH-05", "CP-SSH-12", "CHG0012345", "verified"):
        assert needle in dom
    shot = tmp_path / "report.png"
    subprocess.run([*argv, f"--screenshot={shot}", "--window-size=1200,1600", (tmp_path / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
