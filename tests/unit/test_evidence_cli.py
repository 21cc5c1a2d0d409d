"""`carepath evidence keygen` and `carepath evidence verify`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from carepath.evidence import append_entry, load_private_key
from tests.conftest import carepath, cli_env
from tests.unit.test_evidence_bundle import make_bundle


def test_keygen_then_verify_a_bundle_and_its_ledger(tmp_path: Path):
    key = tmp_path / "keys" / "signing.key"
    made = carepath("evidence", "keygen", "--key", str(key))
    assert made.returncode == 0, made.stderr
    assert key.stat().st_mode & 0o777 == 0o600 and "key id:" in made.stdout
    again = carepath("evidence", "keygen", "--key", str(key))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr

    bundles = tmp_path / "bundles"
    bundle = make_bundle(bundles, load_private_key(key))
    ledger = tmp_path / "ledger.jsonl"
    append_entry(ledger, bundle.name, bundle / "bundle.dsse.json", private_key=load_private_key(key))
    public = str(key.with_suffix(".pub"))
    ok = carepath("evidence", "verify", str(bundle), "--key", public)
    assert ok.returncode == 0 and ": OK (" in ok.stdout, ok.stdout + ok.stderr
    assert carepath("evidence", "verify", str(ledger), "--bundles", str(bundles), "--key", public).returncode == 0
    beside = carepath("evidence", "verify", str(ledger), "--key", public)  # bundles/ beside it, as in every store
    assert beside.returncode == 0, beside.stdout + beside.stderr

    events = bundle / "events.jsonl"
    lines = events.read_bytes().splitlines(keepends=True)
    events.write_bytes(b"".join(lines[:3] + lines[4:]))  # one event deleted
    bad = carepath("evidence", "verify", str(bundle), "--key", public, "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["findings"][0]["file"] == "events.jsonl"
    assert carepath("evidence", "verify", str(ledger), "--bundles", str(bundles), "--key", public).returncode == 1
    assert carepath("evidence", "verify", str(ledger), "--key", public).returncode == 1


def test_verify_without_a_readable_key_is_a_clear_error(tmp_path: Path):
    proc = carepath("evidence", "verify", str(tmp_path), "--key", str(tmp_path / "missing.pub"), env=cli_env())
    assert proc.returncode != 0 and "cannot read public key" in proc.stderr
