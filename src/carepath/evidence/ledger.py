"""The site ledger: an append-only, hash-chained JSONL list of sealed bundles.

Each line is ``{seq, bundle, bundle_digest, prev, time}``: ``bundle`` is the run id (the bundle's directory
name), ``bundle_digest`` the SHA-256 of its bundle.dsse.json, ``prev`` the digest of the previous ledger line.
Removing or swapping a bundle, or editing the ledger in the middle, shows as a broken link.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from carepath.errors import CarepathError
from carepath.evidence.bundle import NAME_RE
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import GENESIS, sha256_hex

LEDGER_FIELDS = frozenset({"seq", "bundle", "bundle_digest", "prev", "time"})


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_line(handle: BinaryIO) -> bytes:
    """The last complete line of a file opened for reading, without reading the whole file."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return b""
    handle.seek(end - 1)
    if handle.read(1) != b"\n":
        raise CarepathError(f"{handle.name}: the last ledger line is incomplete (no newline)",
                            hint="run `carepath evidence verify` on the ledger before appending")
    block, pos, buf = 4096, end - 1, b""
    while pos > 0 and b"\n" not in buf:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        buf = handle.read(step) + buf
    return buf.rsplit(b"\n", 1)[-1] if b"\n" in buf else buf


def append_entry(ledger_path: Path, bundle_id: str, envelope_path: Path, *, time: str | None = None) -> dict[str, Any]:
    """Append one sealed bundle to the ledger (creating it) under an exclusive lock; returns the entry."""
    ledger_path = Path(ledger_path)
    if not NAME_RE.match(bundle_id):
        raise CarepathError(f"bundle id {bundle_id!r} is not a plain name (letters, digits, . _ -)")
    try:
        digest = sha256_hex(Path(envelope_path).read_bytes())
    except OSError as exc:
        raise CarepathError(f"cannot read the bundle envelope {envelope_path}: {exc.strerror}") from None
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        last = _last_line(handle)
        seq, prev = 0, GENESIS
        if last:
            try:
                seq = int(json.loads(last)["seq"]) + 1
            except (ValueError, KeyError, TypeError) as exc:
                raise CarepathError(f"{ledger_path}: the last ledger line is unreadable ({exc})",
                                    hint="run `carepath evidence verify` on the ledger") from None
            prev = sha256_hex(last)
        entry = {"seq": seq, "bundle": bundle_id, "bundle_digest": digest, "prev": prev, "time": time or utc_now()}
        handle.write(canonical_bytes(entry) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry
