"""Change control: protected inventories need a ticket and an approval signed by someone else."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from carepath import change, evidence
from carepath.evidence.canonical import canonical_bytes
from carepath.sitepolicy import SitePolicy
from tests.conftest import ROOT, carepath, cli_env

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for who in ("operator", "approver", "stranger"):
        made[who] = tmp_path / f"{who}.key"
        evidence.generate_keypair(made[who], made[who].with_suffix(".pub"))
    return made


def approval(tmp_path: Path, key: Path, ticket: str = "CHG0012345", site: str = "production",
             when: dt.datetime = NOW, hours: float = 24) -> str:
    out = tmp_path / f"approval-{key.stem}-{ticket}-{site}.json"
    envelope = change.approve(evidence.load_private_key(key), ticket, site, hours=hours, now=when)
    out.write_bytes(canonical_bytes(envelope))
    return str(out)


def site(keys: dict[str, Path], *approvers: str, protected: bool = True) -> SitePolicy:
    return SitePolicy(site="production", protected=protected,
                      approver_keys=tuple(keys[who].with_suffix(".pub") for who in approvers or ("approver",)),
                      exception_max_days=365, files=(), sha256="0" * 64, declared={})


def test_an_unprotected_inventory_needs_nothing(keys: dict[str, Path]) -> None:
    assert change.check(site(keys, protected=False), None, None, None) == ([], None)


def test_a_signed_approval_by_another_person_lets_the_run_proceed(tmp_path: Path, keys: dict[str, Path]) -> None:
    problems, summary = change.check(site(keys), "CHG0012345", approval(tmp_path, keys["approver"]),
                                     str(keys["operator"]), now=NOW + dt.timedelta(hours=1))
    assert problems == []
    assert summary["ticket"] == "CHG0012345" and summary["approver"] == evidence.keyid(
        evidence.load_public_key(keys["approver"].with_suffix(".pub")))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no ticket", "name the approved change ticket"),
        ("no approval", "needs a signed approval"),
        ("own key", "operator's own key"),
        ("stranger", "not signed by an approver"),
        ("other ticket", "not 'CHG0012345'"),
        ("other site", "not 'production'"),
        ("expired", "expired at"),
        ("future", "after the run started"),
    ],
)
def test_refusals_name_the_reason(case: str, expected: str, tmp_path: Path, keys: dict[str, Path]) -> None:
    ticket, signer, kwargs = "CHG0012345", keys["approver"], {}
    if case == "own key":
        hv = site(keys, "approver", "operator")
        signer = keys["operator"]
    else:
        hv = site(keys)
    if case == "stranger":
        signer = keys["stranger"]
    if case == "other ticket":
        kwargs["ticket"] = "CHG0099999"
    if case == "other site":
        kwargs["site"] = "lab"
    if case == "expired":
        kwargs.update(when=NOW - dt.timedelta(hours=30), hours=24)
    if case == "future":
        kwargs["when"] = NOW + dt.timedelta(hours=5)
    path = approval(tmp_path, signer, **kwargs)
    problems, summary = change.check(hv, None if case == "no ticket" else ticket,
                                     None if case == "no approval" else path, str(keys["operator"]),
                                     now=NOW + dt.timedelta(hours=1))
    assert summary is None and len(problems) == 1
    assert expected in problems[0] and "production is a protected inventory" in problems[0]


def _inventory(tmp_path: Path, keys: dict[str, Path]) -> Path:
    inventory = tmp_path / "production"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text(
        f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (inventory / "group_vars" / "all.yml").write_text(
        "carepath_site: production\n"  # a protected site names itself
        f"carepath_protected: true\ncarepath_change_approver_keys: ['{keys['approver'].with_suffix('.pub')}']\n")
    return inventory


def _playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(f"""---
- name: Policy gate
  ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'policy_gate.yml'}
- name: Touch the host
  hosts: all
  gather_facts: false
  tasks:
    - name: Reach the host
      ansible.builtin.ping:
""")
    return playbook


def _run(tmp_path: Path, keys: dict[str, Path], *extra: str) -> tuple[int, str, dict]:
    evidence_dir = tmp_path / f"evidence-{len(list(tmp_path.glob('evidence-*')))}"
    proc = carepath("run", str(_playbook(tmp_path)), "-i", str(_inventory_once(tmp_path, keys)), *extra,
                    env=cli_env(CAREPATH_STATE_DIR=str(tmp_path / "state"), CAREPATH_EVIDENCE_DIR=str(evidence_dir),
                                CAREPATH_EVIDENCE_KEY=str(keys["operator"])))
    (run_json,) = evidence_dir.rglob("run.json")
    return proc.returncode, proc.stdout + proc.stderr, json.loads(run_json.read_text())


def _inventory_once(tmp_path: Path, keys: dict[str, Path]) -> Path:
    inventory = tmp_path / "production"
    return inventory if inventory.exists() else _inventory(tmp_path, keys)


def test_a_protected_inventory_is_refused_without_approval_and_no_host_is_touched(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    rc, out, record = _run(tmp_path, keys)
    assert rc != 0 and "protected inventory" in out and "name the approved change ticket" in out
    assert record["status"] == "refused"
    events = [json.loads(x) for x in next(tmp_path.rglob("events.jsonl")).read_text().splitlines()]
    assert not [e for e in events if e.get("task") == "Reach the host"]  # the host was never reached


def test_with_ticket_and_approval_the_run_proceeds_and_the_approval_is_recorded(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    path = tmp_path / "approval.json"
    made = carepath("change", "approve", "--ticket", "CHG0012345", "--site", "production",
                    "--key", str(keys["approver"]), "--out", str(path))
    assert made.returncode == 0, made.stderr
    rc, out, record = _run(tmp_path, keys, "--ticket", "CHG0012345", "--approval", str(path))
    assert rc == 0, out[-3000:]
    assert record["status"] == "successful" and record["change"]["ticket"] == "CHG0012345"
    assert record["change"]["approval"]["envelope"] == json.loads(path.read_text())


def _recorded(tmp_path: Path, keys: dict[str, Path], signer: str, started: str, ticket: str = "CHG0012345") -> Path:
    """A sealed bundle whose run.json embeds an approval, as the callback writes it."""
    from carepath.evidence.recorder import Recorder

    path = approval(tmp_path, keys[signer])
    recorder = Recorder(evidence_dir=tmp_path / "ev", site="production", playbook=str(tmp_path / "site.yml"),
                        signing_key=keys["operator"],
                        environ={"CAREPATH_CHANGE_TICKET": ticket, "CAREPATH_CHANGE_APPROVAL": path})
    recorder.started = started
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    recorder.finish("successful", {"web1": {"ok": 1, "changed": 0, "failures": 0, "unreachable": 0}})
    return recorder.bundle_dir


@pytest.mark.parametrize(
    ("signer", "started", "ticket", "code"),
    [
        ("approver", "2026-12-02T13:00:00Z", "CHG0012345", None),
        ("approver", "2026-12-02T11:00:00Z", "CHG0012345", "policy.time"),  # before the approval
        ("approver", "2026-12-04T13:00:00Z", "CHG0012345", "policy.time"),  # after it expired
        ("approver", "2026-12-02T13:00:00Z", "CHG0099999", "policy.ticket"),
        ("operator", "2026-12-02T13:00:00Z", "CHG0012345", "policy.two_person"),
    ],
)
def test_verify_checks_the_recorded_approval_offline(tmp_path: Path, keys: dict[str, Path], signer: str,
                                                     started: str, ticket: str, code: str | None) -> None:
    bundle = _recorded(tmp_path, keys, signer, started, ticket)
    report = evidence.verify_bundle(bundle, [evidence.load_public_key(keys["operator"].with_suffix(".pub"))])
    assert [f.code for f in report.findings] == ([code] if code else []), str(report)
