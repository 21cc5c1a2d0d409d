"""Change control for protected inventories: a ticket, and an approval signed by someone else.

An inventory is protected when its site policy says so (``carepath_protected: true`` in the
inventory's ``group_vars/all``, read from the files by :mod:`carepath.sitepolicy`, never from run
variables). A run against it is refused by the policy gate, before any host is touched, unless it
names a change ticket and carries an approval that:

- is an in-toto Statement in a DSSE envelope signed by one of the site's
  ``carepath_change_approver_keys`` (ed25519 public keys, PEM files);
- is a Statement about ``change/<ticket>`` alone (its one subject, with the ticket's sha256);
- names the same ticket and site, and is valid now (approved before the run, not expired), for at
  most 14 days;
- is not signed by the operator's own key (two-person rule): the operator's key is the one
  that signs the run's evidence.

``carepath change approve`` makes approvals; the evidence records the ticket and approval.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carepath.errors import CarepathError
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.dsse import (
    keyid,
    load_private_key,
    load_public_key,
    open_envelope,
    sign_envelope,
    unverified_predicate,
)

if TYPE_CHECKING:  # only for annotations: sitepolicy reaches this module through carepath.evidence
    from carepath.sitepolicy import SitePolicy

PREDICATE_TYPE = "https://carepath.dev/change-approval/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: A change ticket id; always used with ``fullmatch`` (``$`` would let a trailing newline through).
TICKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: The longest an approval may be valid, from its approved_at to its expires.
MAX_VALIDITY = dt.timedelta(days=14)


def _subject(ticket: str) -> dict[str, Any]:
    return {"name": f"change/{ticket}", "digest": {"sha256": hashlib.sha256(ticket.encode()).hexdigest()}}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def approve(private_key: Ed25519PrivateKey, ticket: str, site: str, *, hours: float = 24,
            now: dt.datetime | None = None) -> dict[str, Any]:
    """A signed approval of ``ticket`` for runs against ``site`` during the next ``hours``."""
    if not TICKET.fullmatch(ticket):
        raise CarepathError(f"change ticket {ticket!r} is not a ticket id (letters, digits, . _ -; 3 to 64)")
    if not 0 < hours <= MAX_VALIDITY.total_seconds() / 3600:
        raise CarepathError("an approval is valid for more than 0 and at most 336 hours (14 days)")
    now = now or _now()
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [_subject(ticket)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "ticket": ticket,
            "site": site,
            "approved_at": now.strftime(TIME_FORMAT),
            "expires": (now + dt.timedelta(hours=hours)).strftime(TIME_FORMAT),
            "approver": keyid(private_key.public_key()),
        },
    }
    return sign_envelope(canonical_bytes(statement), private_key)


def approve_file(key_path: Path, ticket: str, site: str, out: Path, hours: float = 24) -> dict[str, Any]:
    envelope = approve(load_private_key(key_path), ticket, site, hours=hours)
    out.write_bytes(canonical_bytes(envelope) + b"\n")
    return unverified_predicate(envelope)


def verify_approval(envelope: Any, approver_keys: Sequence[Ed25519PublicKey], *, ticket: str, site: str,
                    at: dt.datetime, operator_keyid: str | None, name: str = "the approval") -> tuple[list[str], dict[str, Any]]:
    """Why ``envelope`` does not approve ``ticket`` for ``site`` at time ``at`` (empty: it does), and its predicate.

    Used by the policy gate before a run and by ``carepath evidence verify`` on the approval a bundle
    embeds, so both judge an approval the same way: signed by a pinned approver key, a statement about
    this ticket alone, for this ticket and site, valid at that time for at most 14 days, and not signed
    by the key that signs the run's evidence (two-person rule).
    """
    found, predicate, signer = _judge(envelope, approver_keys, ticket=ticket, site=site, at=at, name=name)
    if signer is None:
        return found, predicate
    return found + _two_person(signer, operator_keyid), predicate


def _judge(envelope: Any, approver_keys: Sequence[Ed25519PublicKey], *, ticket: str, site: str, at: dt.datetime,
           name: str) -> tuple[list[str], dict[str, Any], str | None]:
    """Everything :func:`verify_approval` checks but the two-person rule, and the signer (None: no approver signed)."""
    payload, signer, problems = open_envelope(envelope, list(approver_keys))
    if payload is None:
        return [f"{name} is not signed by an approver of this site: " + "; ".join(p for _, p in problems)], {}, None
    try:
        statement = json.loads(payload)
    except ValueError:
        statement = None
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    if not isinstance(predicate, dict):
        return [f"{name} does not hold a readable statement"], {}, signer
    found = []
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        found.append(f"{name} is not a change approval")
    if not (isinstance(ticket, str) and TICKET.fullmatch(ticket)):
        found.append(f"{ticket!r} is not a change ticket id")
    elif statement.get("subject") != [_subject(ticket)]:
        found.append(f"{name} is not a statement about change/{ticket} alone (its subject must be that one "
                     "change, with the ticket's sha256)")
    if predicate.get("ticket") != ticket:
        found.append(f"the approval is for ticket {predicate.get('ticket')!r}, not {ticket!r}")
    if predicate.get("site") != site:
        found.append(f"the approval is for site {predicate.get('site')!r}, not {site!r}")
    try:
        approved = dt.datetime.strptime(predicate["approved_at"], TIME_FORMAT).replace(tzinfo=dt.UTC)
        expires = dt.datetime.strptime(predicate["expires"], TIME_FORMAT).replace(tzinfo=dt.UTC)
    except (KeyError, TypeError, ValueError):
        found.append("the approval has no valid approved_at and expires times")
    else:
        if approved > at:
            found.append(f"the approval is dated {predicate['approved_at']}, after the run started")
        if expires <= at:
            found.append(f"the approval expired at {predicate['expires']}")
        if expires - approved > MAX_VALIDITY:
            found.append(f"the approval is valid from {predicate['approved_at']} to {predicate['expires']}: "
                         "more than the 14 days an approval may last")
    return found, {**predicate, "approver": signer}, signer


def _two_person(signer: str, operator_keyid: str | None) -> list[str]:
    if operator_keyid is None:
        return ["the operator has no evidence signing key, so the two-person rule cannot be checked"]
    if operator_keyid == signer:
        return ["the approval is signed with the operator's own key: a second person must approve"]
    return []


def check(policy: SitePolicy, ticket: str | None, approval_path: str | None, operator_key: str | None,
          now: dt.datetime | None = None) -> tuple[list[str], dict[str, Any] | None]:
    """(why the run is refused, the verified approval): nothing is asked of unprotected sites."""
    if not policy.protected:
        return [], None
    site = policy.site
    intro = f"{site} is a protected inventory"
    if not ticket:
        return [f"{intro}: name the approved change ticket (carepath run --ticket ID, or CAREPATH_CHANGE_TICKET)"], None
    if not TICKET.fullmatch(ticket):
        return [f"{intro}: {ticket!r} is not a change ticket id"], None
    if not approval_path:
        return [f"{intro}: ticket {ticket} needs a signed approval (carepath run --approval FILE; an approver "
                "makes it with `carepath change approve`)"], None
    keys = []
    for path in policy.approver_keys:
        try:
            keys.append(load_public_key(path))
        except CarepathError as exc:
            return [f"{intro}: approver key {path}: {exc}"], None
    if not keys:
        return [f"{intro} but lists no carepath_change_approver_keys to check approvals against"], None
    try:
        data = Path(approval_path).read_bytes()
        envelope = json.loads(data)
    except (OSError, ValueError) as exc:
        return [f"{intro}: cannot read the approval {approval_path}: {exc}"], None
    found: list[str] = []
    operator, unreadable = None, None
    if operator_key and Path(operator_key).exists():
        try:
            operator = keyid(load_private_key(Path(operator_key)).public_key())
        except CarepathError as exc:
            unreadable = f"cannot read the operator's key {operator_key}: {exc}"
            found.append(unreadable)
    problems, predicate, signer = _judge(envelope, keys, ticket=ticket, site=site, at=now or _now(),
                                         name=f"the approval {approval_path}")
    found += problems
    if signer is not None and unreadable is None:  # an unreadable key is already the reason
        found += _two_person(signer, operator)
    if found:
        return [f"{intro}: " + "; ".join(found)], None
    summary = {"ticket": ticket, "site": site, "approver": predicate["approver"],
               "approved_at": predicate["approved_at"], "expires": predicate["expires"],
               "approval_sha256": hashlib.sha256(data).hexdigest()}
    return [], summary
