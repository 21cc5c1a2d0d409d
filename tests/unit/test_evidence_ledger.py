"""The site ledger: continuity, and every listed bundle present with the recorded envelope digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carepath.errors import CarepathError
from carepath.evidence import ENVELOPE_FILE, EVENTS_FILE, GENESIS, append_entry, seal_bundle, verify_ledger
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import sha256_hex
from carepath.evidence.ledger import next_entry
from tests.unit.test_evidence_bundle import make_bundle

RUNS = [f"20261202T00000{i}Z-site-run{i}" for i in range(4)]


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, Ed25519PrivateKey]:
    """A ledger listing four sealed bundles."""
    key = Ed25519PrivateKey.generate()
    bundles, ledger = tmp_path / "bundles", tmp_path / "ledger.jsonl"
    for i, run_id in enumerate(RUNS):
        bundle = make_bundle(bundles, key, run_id, events=3)
        append_entry(ledger, run_id, bundle / ENVELOPE_FILE, time=f"2026-12-02T00:00:0{i}Z", private_key=key)
    return ledger, bundles, key


def test_ledger_entries_chain_and_verify(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, key = site
    entries = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    assert [e["seq"] for e in entries] == [0, 1, 2, 3]
    assert entries[0]["prev"] == GENESIS
    assert entries[2]["prev"] == sha256_hex(ledger.read_bytes().splitlines()[1])
    assert entries[1]["bundle_digest"] == sha256_hex((bundles / RUNS[1] / ENVELOPE_FILE).read_bytes())
    report = verify_ledger(ledger, bundles, [key.public_key()])
    assert report.ok, str(report)
    assert report.facts["entries"] == 4


def test_edited_ledger_line_is_named(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, _ = site
    lines = ledger.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"T000001Z", b"T000009Z")  # the time of entry seq 1
    ledger.write_bytes(b"".join(lines))
    first = verify_ledger(ledger, bundles).first
    assert (first.file, first.line, first.seq, first.code) == ("ledger.jsonl", 2, 1, "chain.altered"), str(first)


def test_removed_ledger_line_is_named(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, _ = site
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:2] + lines[3:]))
    report = verify_ledger(ledger, bundles)
    assert (report.first.line, report.first.seq, report.first.code) == (3, 2, "chain.seq"), str(report)
    assert any(f.code == "ledger.unlisted" and RUNS[2] in f.file for f in report.findings)


def test_ledger_cut_short_shows_unlisted_bundles(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, _ = site
    ledger.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:3]))
    report = verify_ledger(ledger, bundles)
    assert [(f.file, f.code) for f in report.findings] == [(f"{RUNS[3]}/{ENVELOPE_FILE}", "ledger.unlisted")]


def test_replaced_or_resigned_bundle_is_named(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, key = site
    events = bundles / RUNS[2] / EVENTS_FILE
    events.write_bytes(b"".join(events.read_bytes().splitlines(keepends=True)[:-1]))
    seal_bundle(bundles / RUNS[2], key)  # a validly signed but different bundle
    first = verify_ledger(ledger, bundles, [key.public_key()]).first
    assert (first.line, first.seq, first.code) == (3, 2, "ledger.digest"), str(first)
    assert RUNS[2] in first.message


def test_missing_bundle_is_named(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, _ = site
    shutil.rmtree(bundles / RUNS[1])
    first = verify_ledger(ledger, bundles).first
    assert (first.line, first.seq, first.code) == (2, 1, "ledger.missing"), str(first)


def test_deep_verification_reports_a_bad_bundle_under_its_name(site: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    ledger, bundles, _ = site
    other = Ed25519PrivateKey.generate()
    report = verify_ledger(ledger, bundles, [other.public_key()])
    assert (report.first.file, report.first.line, report.first.code) == ("ledger.jsonl", 1, "ledger.untrusted")
    assert [f.code for f in report.findings if f.file == f"{RUNS[0]}/{ENVELOPE_FILE}"] == ["signature.untrusted"]


def test_duplicate_and_unsafe_bundle_names_are_findings(site: tuple[Path, Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    ledger, bundles, _ = site
    # append_entry lists a bundle once (a retry returns its entry); a ledger edited by hand may not.
    assert append_entry(ledger, RUNS[0], bundles / RUNS[0] / ENVELOPE_FILE)["seq"] == 0
    assert len(ledger.read_bytes().splitlines()) == 4
    digest = sha256_hex((bundles / RUNS[0] / ENVELOPE_FILE).read_bytes())
    with open(ledger, "ab") as handle:
        handle.write(canonical_bytes(next_entry(ledger.read_bytes().splitlines()[-1], RUNS[0], digest)) + b"\n")
    report = verify_ledger(ledger, bundles)
    assert (report.first.line, report.first.code) == (5, "ledger.duplicate"), str(report)
    with pytest.raises(CarepathError, match="plain name"):
        append_entry(ledger, "../etc", bundles / RUNS[0] / ENVELOPE_FILE)


def test_appending_to_a_damaged_ledger_is_refused_and_missing_ledger_is_a_finding(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(b'{"seq":0')
    (tmp_path / "env.json").write_bytes(b"{}")
    with pytest.raises(CarepathError, match="incomplete"):
        append_entry(ledger, "r1", tmp_path / "env.json")
    assert verify_ledger(tmp_path / "absent.jsonl", tmp_path).first.code == "file.missing"
    assert verify_ledger(ledger, tmp_path).first.code in {"chain.unterminated", "chain.json"}
