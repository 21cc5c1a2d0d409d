"""A run bundle on disk: ``<bundles>/<run id>/{run.json, events.jsonl, bundle.dsse.json}``.

The callback writes run.json and events.jsonl during the run; :func:`seal_bundle` then signs an in-toto
Statement naming both files by digest, with the chain head and event count as predicate, so cutting events
off the end is as visible as changing one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carepath.errors import CarepathError
from carepath.evidence import schema
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import sha256_hex, walk_chain
from carepath.evidence.dsse import sign_envelope

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
ENVELOPE_FILE = "bundle.dsse.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://carepath.dev/run-bundle/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write a whole file so readers see either the old or the new content, never half (0600 unless ``mode``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run(bundle_dir: Path, run: Mapping[str, Any]) -> dict[str, Any]:
    """Write run.json (canonical, with ``format`` set) after checking it against the schema."""
    record = {**run, "format": schema.FORMAT}
    problems = schema.validate(record, "run")
    if problems:
        raise CarepathError(f"{bundle_dir / RUN_FILE}: not a valid run record: {'; '.join(problems)}")
    write_atomic(Path(bundle_dir) / RUN_FILE, canonical_bytes(record) + b"\n")
    return record


def statement(run_id: str, run_digest: str, events_digest: str, chain_head: str, event_count: int) -> dict[str, Any]:
    """The in-toto Statement v1 a bundle's signature covers."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": RUN_FILE, "digest": {"sha256": run_digest}},
            {"name": EVENTS_FILE, "digest": {"sha256": events_digest}},
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"run_id": run_id, "chain_head": chain_head, "event_count": event_count},
    }


def seal_bundle(bundle_dir: Path, private_key: Ed25519PrivateKey, *, chain_head: str | None = None,
                event_count: int | None = None) -> Path:
    """Sign the bundle: re-read both files, check the chain, write bundle.dsse.json; returns its path.

    ``chain_head``/``event_count`` (from the :class:`EventWriter`) are cross-checked against the file, so a
    bundle whose events changed between writing and sealing is refused instead of signed.
    """
    bundle_dir = Path(bundle_dir)
    try:
        run_bytes = (bundle_dir / RUN_FILE).read_bytes()
        events_bytes = (bundle_dir / EVENTS_FILE).read_bytes()
    except OSError as exc:
        raise CarepathError(f"cannot seal {bundle_dir}: {exc.strerror}: {exc.filename}") from None
    walk = walk_chain(events_bytes, EVENTS_FILE, schema.required("event"))
    if walk.findings:
        raise CarepathError(f"{bundle_dir}: refusing to sign a broken event chain: {walk.findings[0]}")
    if (chain_head is not None and chain_head != walk.head) or (event_count is not None and event_count != walk.count):
        raise CarepathError(f"{bundle_dir}: events.jsonl changed after it was written "
                            f"(writer: {event_count} events, file: {walk.count})")
    try:
        run = json.loads(run_bytes)
    except ValueError as exc:
        raise CarepathError(f"{bundle_dir / RUN_FILE}: not valid JSON: {exc}") from None
    problems = schema.validate(run, "run")
    if problems:
        raise CarepathError(f"{bundle_dir / RUN_FILE}: {'; '.join(problems)}")
    payload = canonical_bytes(statement(run["run_id"], sha256_hex(run_bytes), sha256_hex(events_bytes), walk.head, walk.count))
    envelope_path = bundle_dir / ENVELOPE_FILE
    write_atomic(envelope_path, canonical_bytes(sign_envelope(payload, private_key)) + b"\n")
    return envelope_path


# --- the opening record: a bundle bound to its run from the first event -----------------------------------

OPENING_FILE = "opening.json"
OPENING_ENVELOPE_FILE = "opening.dsse.json"
OPENING_PREDICATE_TYPE = "https://carepath.dev/run-opening/v1"


def seal_opening(bundle_dir: Path, record: Mapping[str, Any], event_count: int, chain_head: str,
                 private_key: Ed25519PrivateKey) -> str:
    """Write opening.json (the run as it started) and sign it with its events so far; returns its digest.

    A run killed before it ends is sealed later by the site's next run; that run only seals a bundle whose
    opening was signed by the evidence key and whose events still begin with the signed ones, so a bundle
    written by hand (or grafted onto another run's start) is never signed.
    """
    data = canonical_bytes(dict(record)) + b"\n"
    write_atomic(Path(bundle_dir) / OPENING_FILE, data)
    digest = sha256_hex(data)
    payload = canonical_bytes({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": OPENING_FILE, "digest": {"sha256": digest}}],
        "predicateType": OPENING_PREDICATE_TYPE,
        "predicate": {"run_id": record["run_id"], "site": record["site"], "started": record["started"],
                      "event_count": event_count, "chain_head": chain_head},
    })
    write_atomic(Path(bundle_dir) / OPENING_ENVELOPE_FILE, canonical_bytes(sign_envelope(payload, private_key)) + b"\n")
    return digest


def read_opening(bundle_dir: Path, trusted: list[Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """(the opening record, its signed predicate, problems): both None unless a trusted key signed it intact."""
    from carepath.evidence.dsse import open_envelope

    bundle_dir = Path(bundle_dir)
    try:
        envelope = json.loads((bundle_dir / OPENING_ENVELOPE_FILE).read_bytes())
        data = (bundle_dir / OPENING_FILE).read_bytes()
    except OSError as exc:
        return None, None, [f"no signed opening record ({exc.strerror}: {Path(exc.filename).name})"]
    except ValueError:
        return None, None, [f"{OPENING_ENVELOPE_FILE} is not valid JSON"]
    payload, _, problems = open_envelope(envelope, trusted)
    if payload is None:
        return None, None, [f"{OPENING_ENVELOPE_FILE}: " + "; ".join(p for _, p in problems)]
    try:
        statement = json.loads(payload)
        predicate = statement["predicate"]
        (subject,) = statement["subject"]
        signed_digest = subject["digest"]["sha256"]
        record = json.loads(data)
        int(predicate["event_count"]), str(predicate["chain_head"])
    except (ValueError, KeyError, TypeError):
        return None, None, ["the opening record cannot be read"]
    if statement.get("predicateType") != OPENING_PREDICATE_TYPE or signed_digest != sha256_hex(data):
        return None, None, [f"{OPENING_FILE} differs from what was signed when the run opened"]
    if predicate.get("run_id") != bundle_dir.name or record.get("run_id") != bundle_dir.name:
        return None, None, [f"the opening is for run {predicate.get('run_id')!r}, not {bundle_dir.name!r}"]
    return record, predicate, []


# --- checkpoints: every event of a running bundle vouched for as it is written ----------------------------

CHECKPOINTS_FILE = "checkpoints.jsonl"
LOCK_FILE = "run.lock"
_CHECKPOINT_DOMAIN = b"carepath-checkpoint/1\n"


def _checkpoint_bytes(run_id: str, count: int, head: str) -> bytes:
    return _CHECKPOINT_DOMAIN + canonical_bytes({"run_id": run_id, "count": count, "head": head})


def checkpoint_line(run_id: str, count: int, head: str, private_key: Ed25519PrivateKey) -> bytes:
    """One line of checkpoints.jsonl: the events' count and chain head, signed, so none can be rewritten later."""
    sig = base64.b64encode(private_key.sign(_checkpoint_bytes(run_id, count, head))).decode("ascii")
    return canonical_bytes({"count": count, "head": head, "sig": sig}) + b"\n"


def vouched_prefix(run_id: str, events: bytes, checkpoints: bytes, opening: Mapping[str, Any],
                   public_key: Ed25519PublicKey) -> tuple[int, int]:
    """(events, bytes) of ``events`` that a signature vouches for: the opening's, or the last checkpoint's.

    A killed run's events after its last valid checkpoint (a line cut off by the kill, or lines someone
    rewrote) are not vouched for by anything: the run that seals it keeps only the vouched prefix.
    """
    lines = events.split(b"\n")
    heads: dict[int, tuple[str, int]] = {0: ("0" * 64, 0)}
    offset = 0
    for index, line in enumerate(lines[:-1]):  # the last piece is empty, or a line the kill cut off
        offset += len(line) + 1
        heads[index + 1] = (sha256_hex(line), offset)
    best = (0, 0)
    candidates = [(int(opening["event_count"]), str(opening["chain_head"]))]
    for raw in checkpoints.splitlines():
        try:
            entry = json.loads(raw)
            count, head, sig = int(entry["count"]), str(entry["head"]), base64.b64decode(entry["sig"], validate=True)
            public_key.verify(sig, _checkpoint_bytes(run_id, count, head))
        except (ValueError, KeyError, TypeError, InvalidSignature, binascii.Error):
            continue
        candidates.append((count, head))
    for count, head in candidates:
        if count in heads and heads[count][0] == head and count > best[0]:
            best = (count, heads[count][1])
    return best
