"""DSSE envelopes signed with ed25519, and the key files behind them.

The signature covers PAE(payloadType, payload) exactly as the DSSE v1 spec defines it, so any DSSE
verifier (e.g. sigstore / in-toto tooling) can check a carepath bundle. ``keyid`` is the SHA-256 hex of the
raw 32-byte public key: the same key always has the same id, and a pinned key list is a list of ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carepath.errors import CarepathError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def keyid(public_key: Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw public key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_envelope(payload: bytes, private_key: Ed25519PrivateKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    """A DSSE envelope with one signature over ``payload``."""
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }


def unverified_predicate(envelope: Any) -> dict[str, Any]:
    """The predicate of the in-toto Statement an envelope carries, read WITHOUT checking the signature.

    For showing or cross-checking a statement whose signature is checked elsewhere (or not at all).
    Raises ValueError when the envelope does not hold a readable statement.
    """
    try:
        predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"not a readable statement: {exc}") from None
    if not isinstance(predicate, dict):
        raise ValueError("the statement's predicate is not an object")
    return predicate


def strict_b64decode(text: Any) -> bytes | None:
    """Standard base64 that must round-trip exactly (no stray padding bits, no whitespace), else None."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def open_envelope(envelope: Any, trusted: Iterable[Ed25519PublicKey]) -> tuple[bytes | None, str | None, list[tuple[str, str]]]:
    """Check an envelope against pinned keys: (payload, keyid that verified, problems as (code, sentence)).

    The payload is returned only when a trusted key's signature verifies. Codes: ``envelope.field``,
    ``signature.invalid``, ``signature.untrusted``; the caller attaches the file name.
    """
    if not isinstance(envelope, dict):
        return None, None, [("envelope.field", "the envelope is not a JSON object")]
    problems = [f"unknown envelope field {k!r}" for k in sorted(set(envelope) - {"payload", "payloadType", "signatures"})]
    payload_type = envelope.get("payloadType")
    payload = strict_b64decode(envelope.get("payload"))
    signatures = envelope.get("signatures")
    if not isinstance(payload_type, str):
        problems.append("payloadType is missing or not a string")
    elif payload_type != IN_TOTO_PAYLOAD_TYPE:
        problems.append(f"payloadType is {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    if payload is None:
        problems.append("payload is missing or not canonical base64")
    if not isinstance(signatures, list) or not signatures:
        problems.append("signatures is missing or empty")
    if problems:
        return None, None, [("envelope.field", p) for p in problems]
    keys = {keyid(k): k for k in trusted}
    seen: list[str] = []
    for index, entry in enumerate(signatures):
        if not isinstance(entry, dict) or set(entry) != {"keyid", "sig"}:
            problems.append(f"signatures[{index}] must have exactly the fields keyid and sig")
            continue
        sig = strict_b64decode(entry["sig"])
        kid = entry["keyid"]
        if sig is None:
            problems.append(f"signatures[{index}].sig is not canonical base64")
            continue
        if not isinstance(kid, str) or kid not in keys:
            seen.append(str(kid)[:80])
            continue
        try:
            keys[kid].verify(sig, pae(payload_type, payload))
        except InvalidSignature:
            problems.append(f"signatures[{index}] by pinned key {kid[:16]}... does not verify: payload or signature altered")
            continue
        return payload, kid, []
    found = [("signature.invalid", p) for p in problems]
    if seen and not found:
        found.append(("signature.untrusted", f"signed only by key(s) not pinned as trusted: {', '.join(seen)}"))
    return None, None, found or [("signature.invalid", "no signature verifies")]


def ensure_keypair(private_path: Path, public_path: Path) -> str | None:
    """Make the key pair unless it exists; returns the new key's id, or None when it was there.

    Safe when several processes do it at once (two labs coming up side by side on a fresh
    checkout): the one that creates the private key wins, the others use that key.
    """
    if Path(private_path).exists():
        return None
    try:
        return generate_keypair(private_path, public_path)
    except CarepathError:
        if Path(private_path).exists():
            return None
        raise


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new ed25519 key pair as PEM (private key mode 0600, never overwritten); returns its keyid."""
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise CarepathError(f"{path} already exists; refusing to overwrite a signing key",
                                hint="move the old key aside first, or choose another path")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(private_path, 0o600)  # the umask may have narrowed it further; make it exactly 0600
    except OSError as exc:
        raise _unwritable_key(private_path, exc) from None
    try:
        public_path.parent.mkdir(parents=True, exist_ok=True)
        public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    except OSError as exc:
        # Without its public half the private key is of no use, and it would block the next attempt.
        private_path.unlink(missing_ok=True)
        raise _unwritable_key(public_path, exc) from None
    return keyid(key.public_key())


def _unwritable_key(path: Path, exc: OSError) -> CarepathError:
    """Why a key file cannot be written, naming it: the user chose the path and can choose another."""
    return CarepathError(f"cannot write key file {path}: {exc.strerror or exc}",
                         hint="choose a --key path in a folder you may write to (it is created when missing)")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a signing key, refusing one that group or others can read (like ssh does)."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise CarepathError(f"cannot read signing key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise CarepathError(f"signing key {path} is readable by others (mode {mode:04o})", hint=f"chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CarepathError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CarepathError(f"{path} is not an ed25519 key", hint="create one with `carepath evidence keygen`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a pinned public key (PEM, SubjectPublicKeyInfo)."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise CarepathError(f"cannot read public key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CarepathError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CarepathError(f"{path} is not an ed25519 public key")
    return key
