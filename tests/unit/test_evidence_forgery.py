"""Evidence that cannot be forged without the key, nor rewritten unseen with it (issue 14, item 3).

Runs are recorded by the real :class:`Recorder` (the callback's engine) into a real site folder, with the
ledger witness written to a file as the collector would receive it; the ansible-playbook test drives the
callback itself.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carepath import evidence
from carepath.evidence import ENVELOPE_FILE, EVENTS_FILE, RUN_FILE
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import GENESIS, EventWriter, sha256_hex
from carepath.evidence.ledger import sign_entry
from carepath.evidence.recorder import Recorder
from tests.conftest import BIN, ROOT, carepath, cli_env

OK = {"ok": 1, "changed": 0, "failures": 0, "unreachable": 0}


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "evidence.key"
    evidence.generate_keypair(path, path.with_suffix(".pub"))
    return path


def record(tmp_path: Path, key: Path, n: int, *, finish: bool = True) -> Recorder:
    """One run of site `site1` with a few task results; the witness goes to witness.log."""
    recorder = Recorder(evidence_dir=tmp_path / "ev", site="site1", playbook=str(ROOT / "playbooks" / "site.yml"),
                        run_id=f"20261205T10000{n}Z-site-00000{n}", signing_key=key,
                        witness=f"file:{tmp_path / 'witness.log'}")
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    for i in range(3):
        recorder.task_result("ok", host="web1", task=f"Task {i}", action="ansible.builtin.debug", tags=[], result={})
    if finish:
        recorder.finish("successful", {"web1": OK})
    return recorder


def site(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "ev" / "site1" / "ledger.jsonl", tmp_path / "ev" / "site1" / "bundles"


def verify(tmp_path: Path, key: Path, *witness: Path) -> evidence.Report:
    ledger, bundles = site(tmp_path)
    return evidence.verify_ledger(ledger, bundles, [evidence.load_public_key(key.with_suffix(".pub"))],
                                  witness_files=witness)


def codes(report: evidence.Report) -> list[str]:
    return [f.code for f in report.findings]


def test_ledger_entries_are_signed_and_the_witness_sees_each(tmp_path: Path, key: Path) -> None:
    for n in range(3):
        record(tmp_path, key, n)
    ledger, _ = site(tmp_path)
    entries = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    assert all(e["keyid"] == evidence.keyid(evidence.load_public_key(key.with_suffix(".pub"))) for e in entries)
    assert all(len(e["sig"]) == 88 for e in entries)  # base64 of a 64-byte ed25519 signature
    witness = (tmp_path / "witness.log").read_text().splitlines()
    assert witness[1] == (f"carepath-ledger: site=site1 seq=0 entry={sha256_hex(ledger.read_bytes().splitlines()[0])} "
                          f"bundle={entries[0]['bundle']}")
    assert witness[0] == f"carepath-ledger: site=site1 opened={entries[0]['bundle']}"
    report = verify(tmp_path, key, tmp_path / "witness.log")
    assert report.ok and report.facts["witnessed"] == 3, str(report)


def test_a_keyless_rewrite_of_the_ledger_fails_its_signatures(tmp_path: Path, key: Path) -> None:
    for n in range(3):
        record(tmp_path, key, n)
    ledger, bundles = site(tmp_path)
    entries = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    shutil.rmtree(bundles / entries[1]["bundle"])
    # Drop entry 1 and re-chain the rest, as the review did, keeping the old signatures (no key).
    kept, prev, lines = [entries[0], entries[2]], GENESIS, []
    for seq, entry in enumerate(kept):
        line = canonical_bytes({**entry, "seq": seq, "prev": prev})
        lines.append(line)
        prev = sha256_hex(line)
    ledger.write_bytes(b"\n".join(lines) + b"\n")
    report = verify(tmp_path, key)
    assert codes(report) == ["ledger.signature"] and report.first.line == 2, str(report)
    # Without signatures at all (entries written as before this change), every entry is named.
    prev, unsigned = GENESIS, []
    for line in lines:
        plain = canonical_bytes({k: v for k, v in json.loads(line).items() if k not in ("sig", "keyid")} | {"prev": prev})
        unsigned.append(plain)
        prev = sha256_hex(plain)
    ledger.write_bytes(b"\n".join(unsigned) + b"\n")
    assert codes(verify(tmp_path, key)) == ["ledger.unsigned", "ledger.unsigned"]


def test_deleting_the_last_bundle_and_its_ledger_line_is_caught_by_the_witness(tmp_path: Path, key: Path) -> None:
    for n in range(3):
        record(tmp_path, key, n)
    ledger, bundles = site(tmp_path)
    lines = ledger.read_bytes().splitlines(keepends=True)
    shutil.rmtree(bundles / json.loads(lines[-1])["bundle"])
    ledger.write_bytes(b"".join(lines[:-1]))
    assert verify(tmp_path, key).ok  # signatures and chain alone cannot see a clean cut at the end...
    report = verify(tmp_path, key, tmp_path / "witness.log")  # ...the witness does
    assert codes(report) == ["witness.missing", "witness.run_missing"], str(report)
    assert "cut short" in report.first.message


def test_a_key_holders_rewrite_verifies_with_the_key_but_not_against_the_witness(tmp_path: Path, key: Path) -> None:
    for n in range(3):
        record(tmp_path, key, n)
    ledger, bundles = site(tmp_path)
    entries = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    shutil.rmtree(bundles / entries[1]["bundle"])
    private, prev, lines = evidence.load_private_key(key), GENESIS, []
    for seq, entry in enumerate([entries[0], entries[2]]):  # re-signed with the key: a perfect forgery
        fields = {k: v for k, v in entry.items() if k not in ("sig", "keyid")}
        line = canonical_bytes(sign_entry({**fields, "seq": seq, "prev": prev}, private))
        lines.append(line)
        prev = sha256_hex(line)
    ledger.write_bytes(b"\n".join(lines) + b"\n")
    public = key.with_suffix(".pub")
    base = ["evidence", "verify", str(ledger), "--bundles", str(bundles), "--key", str(public)]
    assert carepath(*base).returncode == 0
    proc = carepath(*base, "--witness", str(tmp_path / "witness.log"), "--json")
    assert proc.returncode == 1
    found = [(f["code"], f.get("seq")) for f in json.loads(proc.stdout)["findings"]]
    assert found == [("witness.rewritten", 1), ("witness.missing", 2), ("witness.run_missing", None)], found


def test_a_bundle_written_by_hand_is_never_sealed_and_verify_names_it(tmp_path: Path, key: Path) -> None:
    record(tmp_path, key, 0)
    ledger, bundles = site(tmp_path)
    forged = bundles / "20261205T090000Z-site-f0f0f0"
    forged.mkdir()
    with EventWriter(forged / EVENTS_FILE) as writer:  # a well-formed chain of invented "compliant" results
        for i in range(3):
            writer.append({"type": "task_ok", "time": "2026-12-05T09:00:00Z", "host": "web1", "task": f"Audit {i}",
                           "control_ids": ["CP-SSH-05"], "data": {"controls": [{"id": "CP-SSH-05", "status": "compliant"}]}})
    report = verify(tmp_path, key)
    assert codes(report) == ["bundle.unbound"] and forged.name in report.first.file, str(report)
    later = record(tmp_path, key, 1)  # the next run does not sign it
    assert not (forged / ENVELOPE_FILE).exists() and forged.name not in ledger.read_text()
    assert len(later.unbound) == 1 and "no signed opening record" in later.unbound[0]


def test_events_grafted_onto_a_killed_runs_opening_are_not_sealed(tmp_path: Path, key: Path) -> None:
    killed = record(tmp_path, key, 0, finish=False)
    killed._writer.close()
    events = killed.bundle_dir / EVENTS_FILE
    lines = events.read_bytes().splitlines(keepends=True)
    # Keep the signed opening, replace the events with a chain of its own (its first line differs).
    with EventWriter(tmp_path / "other.jsonl") as writer:
        for line in lines:
            writer.append({k: v for k, v in json.loads(line).items() if k not in ("seq", "prev")} | {"host": "web9"})
    shutil.copy(tmp_path / "other.jsonl", events)
    later = record(tmp_path, key, 1)
    assert not (killed.bundle_dir / ENVELOPE_FILE).exists()
    assert later.unbound == [f"{killed.run_id}: its events do not begin with the ones signed when it opened"]


def test_events_rewritten_after_a_killed_runs_opening_are_cut_off_when_it_is_sealed(tmp_path: Path, key: Path) -> None:
    """The review's forgery: keep the signed start of a killed run, write a fresh chain of invented results after it."""
    killed = record(tmp_path, key, 0, finish=False)  # run_start, run_gate... then 3 task results, each checkpointed
    killed._writer.close()
    events = killed.bundle_dir / EVENTS_FILE
    lines = events.read_bytes().splitlines(keepends=True)
    opened = json.loads((killed.bundle_dir / "opening.dsse.json").read_text())
    signed_count = json.loads(base64.b64decode(opened["payload"]))["predicate"]["event_count"]
    kept = lines[:signed_count]
    events.write_bytes(b"".join(kept))
    with EventWriter(events) as writer:  # continues the chain after the signed start: every link is valid
        for i in range(4):
            writer.append({"type": "task_ok", "time": "2026-12-05T10:00:09Z", "host": "web1", "task": f"Audit {i}",
                           "control_ids": ["CP-SSH-05"], "data": {"controls": [{"id": "CP-SSH-05", "status": "compliant"}]}})
    later = record(tmp_path, key, 1)
    assert later.aborted == [killed.run_id]
    run = json.loads((killed.bundle_dir / RUN_FILE).read_text())
    assert run["events"]["count"] == signed_count  # only what a signature vouched for is sealed...
    assert run["aborted"]["trimmed_lines"] == 4  # ...and what was cut off is recorded, signed
    assert b"Audit" not in events.read_bytes()
    assert verify(tmp_path, key, tmp_path / "witness.log").ok


def test_a_live_run_is_never_sealed_by_another_run_of_the_site(tmp_path: Path, key: Path) -> None:
    script = f"""
import sys, time
from pathlib import Path
from carepath.evidence.recorder import Recorder
r = Recorder(evidence_dir=Path({str(tmp_path / 'ev')!r}), site="site1", playbook={str(ROOT / 'playbooks' / 'site.yml')!r},
             run_id="20261205T090000Z-site-live00", signing_key=Path({str(key)!r}))
r.start(check_mode=False, limit=None, tags=[], inventory=[])
print("started", flush=True)
time.sleep(120)
"""
    live = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "started"
        other = record(tmp_path, key, 1)  # a second run of the same site while the first goes on
        assert other.aborted == [] and other.unbound == []
        _, bundles = site(tmp_path)
        assert not (bundles / "20261205T090000Z-site-live00" / ENVELOPE_FILE).exists()
    finally:
        live.kill()
        live.wait()
    later = record(tmp_path, key, 2)  # once it is gone (SIGKILL), the next run seals it
    assert later.aborted == ["20261205T090000Z-site-live00"]
    report = verify(tmp_path, key)
    assert report.ok and [e for e in report.findings if e.code == "ledger.duplicate"] == [], str(report)


def test_a_trimmed_killed_run_is_sealed_with_the_trimming_recorded_and_signed(tmp_path: Path, key: Path) -> None:
    killed = record(tmp_path, key, 0, finish=False)
    killed._writer.close()
    events = killed.bundle_dir / EVENTS_FILE
    cut = b'{"type":"task_ok","host":"web1","ta'  # the write the kill cut off
    with open(events, "ab") as handle:
        handle.write(cut)
    later = record(tmp_path, key, 1)
    assert later.aborted == [killed.run_id]
    run = json.loads((killed.bundle_dir / RUN_FILE).read_text())
    assert run["status"] == "aborted" and run["aborted"]["sealed_by"] == later.run_id
    assert run["aborted"]["trimmed_bytes"] == len(cut)
    assert run["aborted"]["trimmed_sha256"] == sha256_hex(cut)
    # The aborted run keeps who ran it and under which change, from its signed opening.
    assert run["operator"] == killed.run["operator"] and run["change"] == killed.run["change"]
    assert run["source"] == killed.run["source"]
    report = verify(tmp_path, key, tmp_path / "witness.log")
    assert report.ok, str(report)
    # Editing the signed opening afterwards shows.
    opening = killed.bundle_dir / "opening.json"
    opening.write_bytes(opening.read_bytes().replace(b'"site1"', b'"site2"', 1))
    bundle = evidence.verify_bundle(killed.bundle_dir, [evidence.load_public_key(key.with_suffix(".pub"))])
    assert [f.code for f in bundle.findings] == ["opening"], str(bundle)


def test_ansible_playbook_stopped_with_ctrl_c_seals_its_bundle_at_once(tmp_path: Path, key: Path) -> None:
    (tmp_path / "slow.yml").write_text("""---
- name: Slow
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Step one
      ansible.builtin.debug: {msg: one}
    - name: Wait to be stopped
      ansible.builtin.command: sleep 120
      changed_when: false
""")
    env = cli_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"),
                  CAREPATH_EVIDENCE_KEY=str(key), CAREPATH_SITE="site1",
                  CAREPATH_EVIDENCE_WITNESS=f"file:{tmp_path / 'witness.log'}")
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e",
            f"ansible_python_interpreter={sys.executable}", str(tmp_path / "slow.yml")]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _, bundles = site(tmp_path)
    deadline = time.monotonic() + 60
    while not list(bundles.glob("*/events.jsonl")) or b"Step one" not in next(bundles.glob("*/events.jsonl")).read_bytes():
        assert time.monotonic() < deadline and proc.poll() is None, "the run recorded nothing"
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    (bundle,) = bundles.iterdir()
    assert (bundle / ENVELOPE_FILE).exists(), out
    assert json.loads((bundle / RUN_FILE).read_text())["status"] == "canceled"
    report = verify(tmp_path, key, tmp_path / "witness.log")
    assert report.ok and report.facts["entries"] == 1 and "incomplete" not in report.facts, str(report)
    assert "sealed as stopped (canceled)" in out


def test_a_run_refused_by_the_gates_lookup_is_sealed_as_refused(tmp_path: Path, key: Path) -> None:
    (tmp_path / "prod" / "group_vars").mkdir(parents=True)
    (tmp_path / "prod" / "hosts.ini").write_text(f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "prod" / "group_vars" / "all.yml").write_text("carepath_site: prod\ncarepath_protected: true\n")
    (tmp_path / "pb.yml").write_text(f"""---
- name: Policy gate
  ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'policy_gate.yml'}
- name: Touch
  hosts: "{{{{ lookup('carepath.core.carepath_gate', 'all') }}}}"
  gather_facts: false
  tasks:
    - name: Reach the host
      ansible.builtin.ping:
""")
    env = cli_env(CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"), CAREPATH_EVIDENCE_KEY=str(key))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "prod"), str(tmp_path / "pb.yml"),
                           "--skip-tags", "always"], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    (bundle,) = (tmp_path / "ev" / "prod" / "bundles").iterdir()
    run = json.loads((bundle / RUN_FILE).read_text())
    assert run["status"] == "refused" and run["launch"]["skip_tags"] == ["always"]
    events = [json.loads(x) for x in (bundle / EVENTS_FILE).read_text().splitlines()]
    assert [e["type"] for e in events] == ["run_start", "run_gate", "run_end"]
    assert evidence.verify_bundle(bundle, [evidence.load_public_key(key.with_suffix(".pub"))]).ok



def test_a_witness_that_cannot_be_reached_is_said_not_silently_dropped(tmp_path: Path, key: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("carepath.evidence.witness.SYSLOG_SOCKET", str(tmp_path / "no-such-socket"))
    recorder = Recorder(evidence_dir=tmp_path / "ev", site="site1", playbook=str(ROOT / "playbooks" / "site.yml"),
                        signing_key=key, witness="syslog")
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    outcome = recorder.finish("successful", {"web1": OK})
    assert outcome["signed"] is True  # the evidence itself is complete...
    assert recorder.warnings == [  # ...and the run says, once, that its witness got nothing
        f"the ledger witness (syslog) did not take the entry: this controller has no syslog socket "
        f"({tmp_path / 'no-such-socket'}); run a syslog daemon that forwards to the site's collector, or set "
        "CAREPATH_EVIDENCE_WITNESS=file:PATH (or none)"]


def test_with_a_witness_every_entry_must_have_been_witnessed_and_planted_lines_do_not_count(tmp_path: Path,
                                                                                          key: Path) -> None:
    record(tmp_path, key, 0)
    unwitnessed = Recorder(evidence_dir=tmp_path / "ev", site="site1", playbook=str(ROOT / "playbooks" / "site.yml"),
                           run_id="20261205T100009Z-site-000009", signing_key=key, witness="none")
    unwitnessed.start(check_mode=False, limit=None, tags=[], inventory=[])
    unwitnessed.finish("successful", {"web1": OK})
    witness_log = tmp_path / "witness.log"
    with open(witness_log, "a", encoding="utf-8") as handle:  # lines anyone could get into a syslog file
        handle.write("Dec  5 10:00:00 app1 notcarepath-ledger: site=site1 seq=0 entry=" + "a" * 64 + " bundle=zz\n")
        handle.write('Dec  5 10:00:01 app1 app: said "carepath-ledger: site=site1 opened=ghost-run" once\n')
    report = verify(tmp_path, key, witness_log)
    assert [(f.code, f.seq) for f in report.findings] == [("witness.unwitnessed", 1)], str(report)


def test_a_run_id_that_is_not_a_plain_name_never_becomes_a_path(tmp_path: Path, key: Path) -> None:
    recorder = Recorder(evidence_dir=tmp_path / "ev", site="site1", playbook=str(ROOT / "playbooks" / "site.yml"),
                        run_id="../../escape", signing_key=key)
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    recorder.finish("successful", {"web1": OK})
    assert recorder.bundle_dir.parent == tmp_path / "ev" / "site1" / "bundles"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "ev" / "escape").exists()
    assert recorder.warnings[0].startswith("run id '../../escape' is not a plain name; this run is ")
