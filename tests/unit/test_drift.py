"""The drift report is built from a run's evidence bundle alone, audit results found by action, not task name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carepath import controls, drift, evidence
from carepath.evidence.recorder import Recorder
from tests.conftest import ROOT, carepath

AUDIT = "carepath.core.carepath_control"
SSH_ROLE = "carepath.core.ssh_hardening"


def event(kind: str, host: str, task: str, action: str = AUDIT, **data: object) -> dict:
    return {"type": kind, "host": host, "task": task, "data": {"action": action, "status": kind[5:], **data}}


def report(ident: str, status: str, problems: list[str] | None = None, **extra: object) -> dict:
    return {"id": ident, "status": status, **({"problems": problems} if problems else {}), **extra}


EVENTS = [
    event("task_changed", "web1", "Write the sshd configuration", action="ansible.builtin.template"),
    # Task names are the site's to change: an audit is known by its action.
    event("task_ok", "web1", "Renamed audit task", role=SSH_ROLE, controls=[
        report("CP-SSH-05", "drifted", ["sshd passwordauthentication is 'yes'"]),
        report("CP-SSH-06", "compliant"),
    ]),
    event("task_failed", "db1", "Audit | Check the controls of ssh_hardening", role=SSH_ROLE, msg="exception expired",
          controls=[report("CP-SSH-05", "excepted",
                           exception={"owner": "ops@x", "expires": "2027-01-31", "reason": "legacy analyser"}),
                    report("CP-SSH-06", "failed", ["exception expired"])]),
    event("task_failed", "mail1", "Audit | Check the controls of firewall",  # named like an audit, but is not one
          action="ansible.builtin.assert", msg="The policy gate refuses mail1"),
    {"type": "task_unreachable", "host": "lost1", "task": "Gathering Facts", "data": {"status": "unreachable"}},
]


def test_a_role_switched_off_reports_each_of_its_controls_as_not_applicable():
    results = drift.collect([event("task_skipped", "web1", "any name", role="carepath.core.time_sync")])
    assert {r.control for r in results} == {c.id for c in controls.load() if c.role == "time_sync"}
    assert {r.status for r in results} == {"not_applicable"}


def test_collect_one_result_per_host_and_control():
    results = drift.collect(EVENTS)
    assert [(r.host, r.control, r.status) for r in results] == [
        ("db1", "CP-SSH-05", "excepted"),
        ("db1", "CP-SSH-06", "failed"),
        ("lost1", "*", "unreachable"),
        ("web1", "CP-SSH-05", "drifted"),
        ("web1", "CP-SSH-06", "compliant"),
    ]
    assert drift.summary(results) == {
        "compliant": 1, "drifted": 1, "excepted": 1, "not_applicable": 0, "failed": 1, "unreachable": 1,
    }


def test_an_audit_that_could_not_run_is_failed_under_its_role():
    results = drift.collect([event("task_failed", "web1", "x", role=SSH_ROLE, msg="bad argument")])
    assert [(r.control, r.status, r.problems) for r in results] == [("ssh_hardening", "failed", ["bad argument"])]


def test_table_shows_what_needs_attention_and_json_keeps_everything():
    results = drift.collect(EVENTS)
    text = drift.table(results)
    assert "web1   CP-SSH-05  drifted" in text
    assert "until 2027-01-31 (ops@x): legacy analyser" in text
    assert "CP-SSH-06  compliant" not in text
    assert "CP-SSH-06  compliant" in drift.table(results, all_rows=True)
    report_ = drift.to_json(results, {"id": "r1"})
    assert report_["hosts"]["web1"]["CP-SSH-05"] == {"status": "drifted",
                                                     "problems": ["sshd passwordauthentication is 'yes'"]}
    assert report_["summary"]["drifted"] == 1


def test_failures_outside_audits_are_listed():
    assert drift.failures(EVENTS) == ["mail1: The policy gate refuses mail1"]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path]:
    """A signed bundle of a check-mode run, recorded the way the evidence callback records one."""
    key = tmp_path / "keys" / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    recorder = Recorder(evidence_dir=tmp_path / "ev", site="drift-site", playbook=str(ROOT / "playbooks" / "site.yml"),
                        signing_key=key)
    recorder.start(check_mode=True, limit=None, tags=[], inventory=[])
    recorder.task_result("ok", host="web1", task="Audit | Check the controls of ssh_hardening", action=AUDIT,
                         tags=["cp_ssh_05"], role=SSH_ROLE, result={"carepath_controls": [
                             {"id": "CP-SSH-05", "title": "t", "status": "drifted", "exception": None,
                              "problems": ["sshd passwordauthentication is 'yes'"]}]})
    outcome = recorder.finish("successful", {"web1": {"ok": 1, "failures": 0, "unreachable": 0}})
    return Path(outcome["bundle"]), key.with_suffix(".pub")


def test_drift_reads_any_runs_signed_bundle(recorded: tuple[Path, Path]):
    bundle, public = recorded
    proc = carepath("drift", "--bundle", str(bundle), "--key", str(public), "--json")
    assert proc.returncode == 1, proc.stderr  # drift found
    report_ = json.loads(proc.stdout)
    assert report_["hosts"]["web1"]["CP-SSH-05"] == {"status": "drifted",
                                                     "problems": ["sshd passwordauthentication is 'yes'"]}
    assert report_["run"]["check_mode"] is True and report_["run"]["verified"] is True
    assert "verified" in proc.stderr


def test_drift_refuses_evidence_that_does_not_verify(recorded: tuple[Path, Path]):
    bundle, public = recorded
    events = bundle / "events.jsonl"
    events.write_text(events.read_text().replace("drifted", "compliant"), encoding="utf-8")  # a forged result
    proc = carepath("drift", "--bundle", str(bundle), "--key", str(public))
    assert proc.returncode != 0 and "does not verify" in proc.stderr, proc.stdout + proc.stderr
