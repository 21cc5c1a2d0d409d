"""The drift report is built from ansible-runner events alone."""

from __future__ import annotations

from carepath import controls, drift


def event(kind: str, host: str, task: str, res: dict | None = None) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res or {}}}


SSH = "Audit | Check the controls of ssh_hardening"


def report(ident: str, status: str, problems: list[str] | None = None, **extra: object) -> dict:
    return {"id": ident, "title": "t", "status": status, "problems": problems or [], "exception": None, **extra}


EVENTS = [
    event("runner_on_ok", "web1", "Write the sshd configuration", {"changed": True}),
    event("runner_on_ok", "web1", SSH, {"changed": True, "carepath_controls": [
        report("CP-SSH-05", "drifted", ["sshd passwordauthentication is 'yes'"]),
        report("CP-SSH-06", "compliant"),
    ]}),
    event("runner_on_failed", "db1", SSH, {"msg": "exception expired", "carepath_controls": [
        report("CP-SSH-05", "excepted",
               exception={"owner": "ops@x", "expires": "2027-01-31", "reason": "legacy analyser"}),
        report("CP-SSH-06", "failed", ["exception expired"]),
    ]}),
    event("runner_on_failed", "mail1", "Policy gate | Refuse invalid exceptions", {"msg": "The policy gate refuses mail1"}),
    event("runner_on_unreachable", "lost1", "Gathering Facts"),
]


def test_a_role_switched_off_reports_each_of_its_controls_as_not_applicable():
    results = drift.collect([event("runner_on_skipped", "web1", "Audit | Check the controls of time_sync")])
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


def test_table_shows_what_needs_attention_and_json_keeps_everything():
    results = drift.collect(EVENTS)
    text = drift.table(results)
    assert "web1   CP-SSH-05  drifted" in text
    assert "until 2027-01-31 (ops@x): legacy analyser" in text
    assert "CP-SSH-06  compliant" not in text
    assert "CP-SSH-06  compliant" in drift.table(results, all_rows=True)
    report = drift.to_json(results, {"id": "r1"})
    assert report["hosts"]["web1"]["CP-SSH-05"] == {"status": "drifted", "problems": ["sshd passwordauthentication is 'yes'"]}
    assert report["summary"]["drifted"] == 1


def test_failures_outside_audits_are_listed():
    assert drift.failures(EVENTS) == ["mail1: The policy gate refuses mail1"]
