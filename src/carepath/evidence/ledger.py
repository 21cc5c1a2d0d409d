"""The site ledger: an append-only, hash-chained, signed JSONL list of sealed bundles.

Each line is ``{seq, bundle, bundle_digest, prev, time, keyid, sig}``: ``bundle`` is the run id (the bundle's
directory name), ``bundle_digest`` the SHA-256 of its bundle.dsse.json, ``prev`` the digest of the previous
ledger line, ``sig`` an ed25519 signature by the evidence key ``keyid`` over the rest of the entry. Removing
or swapping a bundle, or editing the ledger in the middle, shows as a broken link; re-chaining the lines
after such an edit needs the key. What the key holder could still do (rewrite the whole ledger) is caught
by the witness (:mod:`carepath.evidence.witness`): each entry's digest is also sent off the controller.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carepath.errors import CarepathError
from carepath.evidence.bundle import NAME_RE
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import GENESIS, sha256_hex
from carepath.evidence.dsse import keyid, strict_b64decode

LEDGER_FIELDS = frozenset({"seq", "bundle", "bundle_digest", "prev", "time"})
SIGNATURE_DOMAIN = b"carepath-ledger-entry/1\n"


def signed_bytes(entry: dict[str, Any]) -> bytes:
    """What an entry's signature covers: every field but ``sig``, canonical, after a domain prefix."""
    return SIGNATURE_DOMAIN + canonical_bytes({k: v for k, v in entry.items() if k != "sig"})


def sign_entry(entry: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    signed = {**entry, "keyid": keyid(private_key.public_key())}
    return {**signed, "sig": base64.b64encode(private_key.sign(signed_bytes(signed))).decode("ascii")}


def entry_signature_problem(entry: dict[str, Any], trusted: dict[str, Ed25519PublicKey]) -> tuple[str, str] | None:
    """(code, message) when the entry is not signed by a trusted key, else None."""
    sig, kid = entry.get("sig"), entry.get("keyid")
    if sig is None:
        return "ledger.unsigned", "the entry carries no signature: written or re-chained without the evidence key"
    key = trusted.get(str(kid))
    if key is None:
        return "ledger.untrusted", f"signed by key {str(kid)[:16]}..., which is not pinned as trusted"
    raw = strict_b64decode(sig)
    try:
        if raw is None:
            raise InvalidSignature
        key.verify(raw, signed_bytes(entry))
    except InvalidSignature:
        return "ledger.signature", "the signature does not match the entry: it was edited or re-chained"
    return None


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


def listed_entry(handle: BinaryIO, bundle_id: str, digest: str) -> dict[str, Any] | None:
    """The ledger's entry for this very bundle (same name and envelope digest), if it has one."""
    handle.seek(0)
    needle = json.dumps(bundle_id).encode()
    for line in handle:
        if needle in line:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if (isinstance(entry, dict) and entry.get("bundle") == bundle_id and entry.get("bundle_digest") == digest
                    and type(entry.get("seq")) is int):
                return dict(entry)
    return None


def append_entry(ledger_path: Path, bundle_id: str, envelope_path: Path, *, time: str | None = None,
                 private_key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    """Append one sealed bundle to the ledger (creating it) under an exclusive lock; returns the entry as written.

    A bundle the ledger already lists (same name and envelope digest) is not listed again: its entry is
    returned, so retrying an append whose outcome was lost is safe. With ``private_key`` (the evidence key,
    as every run has) the entry is signed.
    """
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
        listed = listed_entry(handle, bundle_id, digest)
        if listed is not None:  # a retry after an append whose answer was lost: listed once, never twice
            return listed
        entry = next_entry(_last_line(handle), bundle_id, digest, time=time, private_key=private_key,
                           where=str(ledger_path))
        handle.write(canonical_bytes(entry) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def next_entry(last: bytes, bundle_id: str, digest: str, *, time: str | None = None,
               private_key: Ed25519PrivateKey | None = None, where: str = "the ledger") -> dict[str, Any]:
    """The entry that follows the ledger line ``last`` (empty: the first entry), signed with ``private_key``.

    The caller holds the ledger's lock from reading ``last`` until the entry is written.
    """
    seq, prev = 0, GENESIS
    if last:
        try:
            seq = int(json.loads(last)["seq"]) + 1
        except (ValueError, KeyError, TypeError) as exc:
            raise CarepathError(f"{where}: the last ledger line is unreadable ({exc})",
                                hint="run `carepath evidence verify` on the ledger") from None
        prev = sha256_hex(last)
    entry = {"seq": seq, "bundle": bundle_id, "bundle_digest": digest, "prev": prev, "time": time or utc_now()}
    if private_key is not None:
        entry = sign_entry(entry, private_key)
    return entry
