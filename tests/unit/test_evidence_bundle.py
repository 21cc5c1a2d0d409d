"""Run bundles: keys, DSSE, sealing, and verification that names the first bad record for every kind of tampering.

All data is synthetic: hosts are host0..hostN, tasks are "Synthetic task N", no values resemble PHI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath.errors import CarepathError
from carepath.evidence import (
    ENVELOPE_FILE,
    EVENTS_FILE,
    GENESIS,
    RUN_FILE,
    EventWriter,
    canonical_bytes,
    generate_keypair,
    keyid,
    load_private_key,
    load_public_key,
    seal_bundle,
    verify_bundle,
    verify_bundle_files,
    write_run,
)
from carepath.evidence.dsse import pae
from carepath.evidence.report import Report

EVENTS = 12


def make_bundle(parent: Path, key: Ed25519PrivateKey, run_id: str = "20261202T000000Z-site-aaaaaa", events: int = EVENTS) -> Path:
    """A sealed bundle with synthetic events."""
    bundle = parent / run_id
    bundle.mkdir(parents=True)
    write_run(bundle, {"run_id": run_id, "site": "lab", "playbook": "site.yml", "started": "2026-12-02T00:00:00Z",
                       "finished": "2026-12-02T00:01:00Z", "status": "successful", "check_mode": False,
                       "stats": {f"host{i}": {"ok": 1, "changed": 0, "failures": 0, "unreachable": 0} for i in range(3)}})
    with EventWriter(bundle / EVENTS_FILE) as writer:
        for i in range(events):
            writer.append({"type": "runner_on_ok", "time": "2026-12-02T00:00:30Z", "host": f"host{i % 3}",
                           "task": f"Synthetic task {i}", "changed": i % 2 == 0, "control_ids": ["CP-SSH-05"],
                           "data": {"token": f"fake-{i:04d}", "ratio": i / 7}})
    seal_bundle(bundle, key, chain_head=writer.head, event_count=writer.count)
    return bundle


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, key: Ed25519PrivateKey) -> tuple[str, dict[str, bytes]]:
    bundle = make_bundle(tmp_path_factory.mktemp("bundles"), key)
    return bundle.name, {name: (bundle / name).read_bytes() for name in (RUN_FILE, EVENTS_FILE, ENVELOPE_FILE)}


def check(key: Ed25519PrivateKey, run_id: str, files: dict[str, bytes]) -> Report:
    return verify_bundle_files(files, [key.public_key()], expected_run_id=run_id)


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


# --- keys and DSSE --------------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    kid = generate_keypair(tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pub")
    assert stat.S_IMODE((tmp_path / "keys" / "signing.pem").stat().st_mode) == 0o600
    public = load_public_key(tmp_path / "keys" / "signing.pub")
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == keyid(public) == hashlib.sha256(raw).hexdigest()
    assert keyid(load_private_key(tmp_path / "keys" / "signing.pem").public_key()) == kid


def test_keygen_never_overwrites_and_loose_key_modes_are_refused(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    with pytest.raises(CarepathError, match="already exists"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "other.pub")
    os.chmod(tmp_path / "k.pem", 0o644)
    with pytest.raises(CarepathError, match="chmod 600"):
        load_private_key(tmp_path / "k.pem")


def test_pae_matches_the_dsse_specification() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


# --- round trip -----------------------------------------------------------------------------------------------


def test_sealed_bundle_verifies_and_carries_an_in_toto_statement(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key)
    report = verify_bundle(bundle, [key.public_key()])
    assert report.ok, str(report)
    assert report.facts["event_count"] == EVENTS
    assert report.facts["keyid"] == keyid(key.public_key())
    envelope = json.loads((bundle / ENVELOPE_FILE).read_bytes())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://carepath.dev/run-bundle/v1"
    assert statement["subject"] == [
        {"name": RUN_FILE, "digest": {"sha256": hashlib.sha256((bundle / RUN_FILE).read_bytes()).hexdigest()}},
        {"name": EVENTS_FILE, "digest": {"sha256": hashlib.sha256((bundle / EVENTS_FILE).read_bytes()).hexdigest()}},
    ]
    last = lines_of((bundle / EVENTS_FILE).read_bytes())[-1].rstrip(b"\n")
    assert statement["predicate"] == {"run_id": bundle.name, "chain_head": hashlib.sha256(last).hexdigest(),
                                      "event_count": EVENTS}
    first = json.loads(lines_of((bundle / EVENTS_FILE).read_bytes())[0])
    assert (first["seq"], first["prev"]) == (0, GENESIS)
    assert json.loads((bundle / RUN_FILE).read_bytes())["format"] == "carepath.run-bundle/1"


def test_empty_run_verifies(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key, events=0)
    report = verify_bundle(bundle, [key.public_key()])
    assert report.ok, str(report)
    assert report.facts["chain_head"] == GENESIS


def test_writer_continues_an_existing_chain_and_assigns_seq_itself(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    with EventWriter(path, durable=True) as writer:
        writer.append({"type": "playbook_on_start", "time": "2026-12-02T00:00:00Z"})
        with pytest.raises(CarepathError, match="seq or prev"):
            writer.append({"type": "x", "time": "2026-12-02T00:00:00Z", "seq": 7})
    with EventWriter(path) as again:
        assert again.count == 1
        record = again.append({"type": "playbook_on_stats", "time": "2026-12-02T00:00:01Z"})
    assert record["seq"] == 1
    assert record["prev"] == hashlib.sha256(lines_of(path.read_bytes())[0].rstrip(b"\n")).hexdigest()


def test_run_record_is_checked_against_the_schema_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CarepathError, match="status"):
        write_run(tmp_path, {"run_id": "r1", "site": "lab", "playbook": "site.yml", "started": "2026-12-02T00:00:00Z",
                             "finished": "2026-12-02T00:00:01Z", "status": "fine"})


def test_sealing_refuses_a_broken_chain_and_events_changed_after_writing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key)
    with pytest.raises(CarepathError, match="changed after it was written"):
        seal_bundle(bundle, key, event_count=EVENTS + 1)
    data = lines_of((bundle / EVENTS_FILE).read_bytes())
    (bundle / EVENTS_FILE).write_bytes(b"".join(data[:3] + data[4:]))
    with pytest.raises(CarepathError, match="line 4"):
        seal_bundle(bundle, key)


# --- tampering: every change is found, and the first finding says where ------------------------------------------


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_single_byte_change_is_found_at_its_file_and_line(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey,
                                                             data: st.DataObject) -> None:
    run_id, files = sealed
    name = data.draw(st.sampled_from([EVENTS_FILE, EVENTS_FILE, RUN_FILE, ENVELOPE_FILE]), label="file")
    original = files[name]
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[offset]), label="byte")
    report = check(key, run_id, {**files, name: original[:offset] + bytes([byte]) + original[offset + 1:]})
    assert not report.ok
    assert report.first.file == name, str(report)
    if name == EVENTS_FILE:
        assert report.first.line == original[:offset].count(b"\n") + 1, str(report)


@pytest.mark.parametrize("index", [0, 5, EVENTS - 1])
def test_deleted_event_is_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey, index: int) -> None:
    run_id, files = sealed
    lines = lines_of(files[EVENTS_FILE])
    del lines[index]
    first = check(key, run_id, {**files, EVENTS_FILE: b"".join(lines)}).first
    assert (first.file, first.line, first.seq) == (EVENTS_FILE, index + 1, index), str(first)
    assert first.code == ("chain.truncated" if index == EVENTS - 1 else "chain.seq")


@pytest.mark.parametrize("index", [0, 5, EVENTS - 1])
def test_duplicated_event_is_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey, index: int) -> None:
    run_id, files = sealed
    lines = lines_of(files[EVENTS_FILE])
    lines.insert(index + 1, lines[index])
    first = check(key, run_id, {**files, EVENTS_FILE: b"".join(lines)}).first
    assert (first.file, first.line, first.seq) == (EVENTS_FILE, index + 2, index + 1), str(first)
    assert "again" in first.message


@pytest.mark.parametrize("index", [0, 5, EVENTS - 2])
def test_reordered_events_are_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey, index: int) -> None:
    run_id, files = sealed
    lines = lines_of(files[EVENTS_FILE])
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    first = check(key, run_id, {**files, EVENTS_FILE: b"".join(lines)}).first
    assert (first.file, first.line, first.seq, first.code) == (EVENTS_FILE, index + 1, index, "chain.seq"), str(first)


@pytest.mark.parametrize("keep", [0, 1, EVENTS - 3])
def test_truncated_events_are_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey, keep: int) -> None:
    run_id, files = sealed
    first = check(key, run_id, {**files, EVENTS_FILE: b"".join(lines_of(files[EVENTS_FILE])[:keep])}).first
    assert (first.file, first.line, first.seq, first.code) == (EVENTS_FILE, keep + 1, keep, "chain.truncated"), str(first)
    assert f"covers {EVENTS}" in first.message


def test_event_cut_off_mid_line_is_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey) -> None:
    run_id, files = sealed
    first = check(key, run_id, {**files, EVENTS_FILE: files[EVENTS_FILE][:-40]}).first
    assert (first.file, first.line, first.code) == (EVENTS_FILE, EVENTS, "chain.unterminated"), str(first)


def test_event_appended_after_signing_is_named(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey,
                                               tmp_path: Path) -> None:
    run_id, files = sealed
    (tmp_path / EVENTS_FILE).write_bytes(files[EVENTS_FILE])
    with EventWriter(tmp_path / EVENTS_FILE) as writer:
        writer.append({"type": "runner_on_ok", "time": "2026-12-02T00:02:00Z", "host": "host9"})
    first = check(key, run_id, {**files, EVENTS_FILE: (tmp_path / EVENTS_FILE).read_bytes()}).first
    assert (first.file, first.line, first.seq, first.code) == (EVENTS_FILE, EVENTS + 1, EVENTS, "chain.extended"), str(first)


def test_a_whole_bundle_copied_over_another_is_found(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    victim = make_bundle(tmp_path, key, "20261202T000000Z-site-victim")
    other = make_bundle(tmp_path / "elsewhere", key, "20261202T010000Z-site-other", events=3)
    for name in (RUN_FILE, EVENTS_FILE, ENVELOPE_FILE):
        shutil.copyfile(other / name, victim / name)
    first = verify_bundle(victim, [key.public_key()]).first
    assert (first.file, first.code) == (RUN_FILE, "run_id"), str(first)
    assert "20261202T000000Z-site-victim" in first.message


def test_a_signature_by_an_unpinned_key_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    bundle = make_bundle(tmp_path, Ed25519PrivateKey.generate())
    report = verify_bundle(bundle, [key.public_key()])
    assert (report.first.file, report.first.code) == (ENVELOPE_FILE, "signature.untrusted"), str(report)
    assert "not pinned" in report.first.message


def test_events_edited_and_resealed_with_another_key_are_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """An attacker who edits events and re-seals with their own key is caught by the pinned key."""
    attacker = Ed25519PrivateKey.generate()
    bundle = make_bundle(tmp_path, key)
    lines = lines_of((bundle / EVENTS_FILE).read_bytes())
    (bundle / EVENTS_FILE).write_bytes(b"".join(lines[:-1]))
    seal_bundle(bundle, attacker)
    assert verify_bundle(bundle, [key.public_key()]).first.code == "signature.untrusted"


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff\xfe", b"[" * 100_000, b'{"payload": 1}\n', b"null\n", b"\xef\xbb\xbf{}\n",
                                     canonical_bytes({"payload": "", "payloadType": 1, "signatures": [{"keyid": [], "sig": 2}]})])
@pytest.mark.parametrize("name", [RUN_FILE, EVENTS_FILE, ENVELOPE_FILE])
def test_garbage_files_become_findings_not_exceptions(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey,
                                                      name: str, garbage: bytes) -> None:
    run_id, files = sealed
    report = check(key, run_id, {**files, name: garbage})
    assert not report.ok
    assert report.first.file == name, str(report)


def test_missing_files_are_named(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    bundle = make_bundle(tmp_path, key)
    (bundle / EVENTS_FILE).unlink()
    report = verify_bundle(bundle, [key.public_key()])
    assert [(f.file, f.code) for f in report.findings] == [(EVENTS_FILE, "file.missing")]
    assert verify_bundle(tmp_path / "nowhere", [key.public_key()]).first.code == "file.missing"


def test_envelope_with_a_tampered_signature_list_is_refused(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey) -> None:
    run_id, files = sealed
    envelope = json.loads(files[ENVELOPE_FILE])
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    report = check(key, run_id, {**files, ENVELOPE_FILE: canonical_bytes(envelope) + b"\n"})
    assert (report.first.file, report.first.code) == (ENVELOPE_FILE, "signature.invalid"), str(report)


def test_without_jsonschema_the_required_run_fields_are_still_checked(sealed: tuple[str, dict[str, bytes]],
                                                                      key: Ed25519PrivateKey,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import now raises ImportError
    run_id, files = sealed
    run = json.loads(files[RUN_FILE])
    del run["status"]
    report = check(key, run_id, {**files, RUN_FILE: canonical_bytes(run) + b"\n"})
    assert [(f.file, f.code) for f in report.findings] == [(RUN_FILE, "digest"), (RUN_FILE, "schema")]
    assert "'status' is a required property" in report.findings[1].message


def test_report_reads_as_file_line_seq_and_reason(sealed: tuple[str, dict[str, bytes]], key: Ed25519PrivateKey) -> None:
    run_id, files = sealed
    lines = lines_of(files[EVENTS_FILE])
    del lines[4]
    report = check(key, run_id, {**files, EVENTS_FILE: b"".join(lines)})
    assert str(report.first) == "events.jsonl line 5 (seq 4): found seq 5 where seq 4 belongs: seq 4 deleted or moved"
    assert report.to_dict()["findings"][0]["line"] == 5


def test_a_run_record_that_disagrees_with_its_events_or_lacks_stats_is_incomplete(tmp_path: Path,
                                                                                   key: Ed25519PrivateKey) -> None:
    bundle = tmp_path / "20261202T000000Z-site-bbbbbb"
    bundle.mkdir()
    with EventWriter(bundle / EVENTS_FILE) as writer:
        for i in range(3):
            writer.append({"type": "task_ok", "time": "2026-12-02T00:00:30Z", "host": "h", "task": f"t{i}"})
    write_run(bundle, {"run_id": bundle.name, "site": "lab", "playbook": "site.yml", "started": "2026-12-02T00:00:00Z",
                       "finished": "2026-12-02T00:01:00Z", "status": "failed", "events": {"count": 5}})
    seal_bundle(bundle, key)
    codes = [f.code for f in verify_bundle_files({n: (bundle / n).read_bytes() for n in (RUN_FILE, EVENTS_FILE,
                                                  ENVELOPE_FILE)}, [key.public_key()]).findings]
    assert codes == ["complete.count", "complete.stats"]
