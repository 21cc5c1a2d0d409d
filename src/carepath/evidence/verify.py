"""Verify a run bundle or a site ledger, reading files only; every corruption becomes a finding, never a traceback.

Order of findings: the envelope first (without a trusted signature nothing else is vouched for), then
run.json, then events.jsonl line by line, then whole-file digests. ``Report.first`` is the first bad record.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carepath import change as change_control
from carepath.evidence import schema, witness
from carepath.evidence.bundle import (
    ENVELOPE_FILE,
    EVENTS_FILE,
    NAME_RE,
    OPENING_FILE,
    PREDICATE_TYPE,
    RUN_FILE,
    STATEMENT_TYPE,
    read_opening,
)
from carepath.evidence.canonical import CanonicalError, canonical_bytes
from carepath.evidence.chain import sha256_hex, walk_chain
from carepath.evidence.dsse import keyid, open_envelope, unverified_predicate
from carepath.evidence.ledger import LEDGER_FIELDS, entry_signature_problem
from carepath.evidence.report import Finding, Report

HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Actions that run on the controller and never reach a host: all a refused run may show.
CONTROLLER_ONLY_ACTIONS = frozenset({"assert", "fail", "debug", "set_fact", "meta", "pause", "add_host", "group_by"})
BUNDLE_FILES = (ENVELOPE_FILE, RUN_FILE, EVENTS_FILE)


def _read(path: Path) -> bytes | OSError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return exc


def _loads(data: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(data), None
    except (ValueError, RecursionError) as exc:
        return None, f"not valid JSON ({str(exc)[:80]})"


def verify_bundle(bundle_dir: Path, trusted_public_keys: Iterable[Ed25519PublicKey], *, check_dir_name: bool = True,
                  approver_keys: Sequence[Ed25519PublicKey] | None = None) -> Report:
    """Verify one bundle directory against pinned public keys.

    With ``check_dir_name`` the run id must equal the directory name, so a whole bundle copied over another
    one is caught even without the ledger.
    """
    bundle_dir = Path(bundle_dir)
    keys = list(trusted_public_keys)
    files = {name: _read(bundle_dir / name) for name in BUNDLE_FILES}
    report = verify_bundle_files(files, keys, subject=str(bundle_dir),
                                 expected_run_id=bundle_dir.name if check_dir_name else None, approver_keys=approver_keys)
    report.findings.extend(_opening_findings(bundle_dir, files, keys))
    return report


def _opening_findings(bundle_dir: Path, files: Mapping[str, bytes | OSError | None],
                      keys: list[Ed25519PublicKey]) -> list[Finding]:
    """A run that says it was opened with a signed record must still have it, intact, for its first event."""
    run, error = _loads(files[RUN_FILE]) if isinstance(files.get(RUN_FILE), bytes) else (None, "missing")
    if error or not isinstance(run, dict) or not isinstance(run.get("opening"), dict):
        return []
    opening, signed, problems = read_opening(bundle_dir, keys)
    if opening is None or signed is None:
        return [Finding(OPENING_FILE, "opening", problems[0] if problems else "the opening record is missing")]
    found = []
    if run["opening"].get("sha256") != sha256_hex((bundle_dir / OPENING_FILE).read_bytes()):
        found.append(Finding(OPENING_FILE, "opening.digest", "differs from the opening run.json names"))
    events = files.get(EVENTS_FILE)
    if isinstance(events, bytes):
        count, head = int(signed["event_count"]), str(signed["chain_head"])
        lines = events.split(b"\n")[:-1]
        if len(lines) < count or (count and sha256_hex(lines[count - 1]) != head):
            found.append(Finding(EVENTS_FILE, "opening.events", f"the first {count} event(s) are not the ones signed "
                                                               "when the run opened: the events were replaced"))
    return found


def _statement_problems(statement: Any) -> list[str]:
    if not isinstance(statement, dict):
        return ["the signed payload is not a JSON object"]
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"predicateType is {statement.get('predicateType')!r}, expected {PREDICATE_TYPE!r}")
    subjects = statement.get("subject")
    names = sorted(str(s.get("name")) for s in subjects if isinstance(s, dict)) if isinstance(subjects, list) else None
    if names != sorted([RUN_FILE, EVENTS_FILE]) or not all(
        isinstance(s.get("digest"), dict) and HEX64.match(str(s["digest"].get("sha256", ""))) for s in subjects
    ):
        problems.append(f"subject must name {RUN_FILE} and {EVENTS_FILE} once each with a sha256 digest")
    predicate = statement.get("predicate")
    if not (isinstance(predicate, dict) and isinstance(predicate.get("run_id"), str)
            and HEX64.match(str(predicate.get("chain_head", "")))
            and type(predicate.get("event_count")) is int and predicate["event_count"] >= 0):
        problems.append("predicate must carry run_id, chain_head (sha256 hex) and event_count (integer >= 0)")
    return problems


def verify_bundle_files(files: Mapping[str, bytes | OSError | None], trusted_public_keys: Iterable[Ed25519PublicKey], *,
                        subject: str = "bundle", expected_run_id: str | None = None,
                        approver_keys: Sequence[Ed25519PublicKey] | None = None) -> Report:
    """Verify a bundle given its files' bytes (or the error reading each); the core of :func:`verify_bundle`."""
    report = Report(subject)
    add = report.findings.append
    data: dict[str, bytes] = {}
    for name in BUNDLE_FILES:
        content = files.get(name)
        if isinstance(content, bytes):
            data[name] = content
        else:
            reason = content.strerror if isinstance(content, OSError) else "not present"
            add(Finding(name, "file.missing", f"cannot read the file: {reason}"))

    # 1. The envelope: canonical bytes, a pinned key's signature, a well-formed statement.
    predicate: dict[str, Any] | None = None
    digests: dict[str, str] = {}
    if ENVELOPE_FILE in data:
        envelope, error = _loads(data[ENVELOPE_FILE])
        if error:
            add(Finding(ENVELOPE_FILE, "envelope.json", error))
        else:
            try:
                canonical = canonical_bytes(envelope) + b"\n" == data[ENVELOPE_FILE]
            except CanonicalError:
                canonical = False
            if not canonical:
                add(Finding(ENVELOPE_FILE, "envelope.bytes", "bytes differ from the canonical form written at sealing: edited"))
            payload, kid, findings = open_envelope(envelope, trusted_public_keys)
            for code, problem in findings:
                add(Finding(ENVELOPE_FILE, code, problem))
            if payload is not None:
                report.facts["keyid"] = kid
                statement, error = _loads(payload)
                problems = [error] if error else _statement_problems(statement)
                for problem in problems:
                    add(Finding(ENVELOPE_FILE, "statement", f"signed statement: {problem}"))
                if not problems:
                    predicate = statement["predicate"]
                    digests = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
                    report.facts.update(run_id=predicate["run_id"], event_count=predicate["event_count"],
                                        chain_head=predicate["chain_head"])

    # 2. run.json: signed digest, schema, and the same run id as the signature and the directory.
    if RUN_FILE in data:
        if digests and sha256_hex(data[RUN_FILE]) != digests[RUN_FILE]:
            add(Finding(RUN_FILE, "digest", "sha256 does not match the signed subject digest: the file was changed"))
        run, error = _loads(data[RUN_FILE])
        if error:
            add(Finding(RUN_FILE, "run.json", error))
        else:
            for problem in schema.validate(run, "run"):
                add(Finding(RUN_FILE, "schema", problem))
            run_id = run.get("run_id") if isinstance(run, dict) else None
            if predicate is not None and run_id != predicate["run_id"]:
                add(Finding(RUN_FILE, "run_id", f"run_id {run_id!r} differs from the signed run_id {predicate['run_id']!r}"))
            if expected_run_id is not None and run_id != expected_run_id:
                add(Finding(RUN_FILE, "run_id", f"run_id {run_id!r} but the bundle directory is {expected_run_id!r}: "
                                                "a bundle was copied or replaced"))

    # 3. events.jsonl: every line's seq and prev, then count and head against the signature.
    if EVENTS_FILE in data:
        walk = walk_chain(data[EVENTS_FILE], EVENTS_FILE, schema.required("event"),
                          signed_count=predicate["event_count"] if predicate else None,
                          signed_head=predicate["chain_head"] if predicate else None)
        report.findings.extend(walk.findings)
        if digests and sha256_hex(data[EVENTS_FILE]) != digests[EVENTS_FILE]:
            add(Finding(EVENTS_FILE, "digest", "sha256 does not match the signed subject digest: the file was changed"))
        report.facts.setdefault("event_count", walk.count)
        if RUN_FILE in data and not error and isinstance(run, dict):
            events = _records(data[EVENTS_FILE])
            for code, problem in (_completeness(run, walk.count, walk.head)
                                  + _policy(run, report.facts.get("keyid"), events, approver_keys)):
                add(Finding(RUN_FILE, code, problem))
    return report


def _records(data: bytes) -> list[dict[str, Any]]:
    """The event records that parse (the chain walk has reported those that do not)."""
    found = []
    for line in data.splitlines():
        record, error = _loads(line)
        if not error and isinstance(record, dict):
            found.append(record)
    return found


def _completeness(run: dict[str, Any], count: int, head: str) -> list[tuple[str, str]]:
    """run.json agrees with the events it sums up, and an ended run has its per-host stats."""
    found = []
    events = run.get("events")
    if isinstance(events, dict):
        if events.get("count") != count:
            found.append(("complete.count", f"run.json counts {events.get('count')} events, events.jsonl holds {count}"))
        if events.get("chain_head") not in (None, head):
            found.append(("complete.head", "run.json names another chain head than events.jsonl ends with"))
    if run.get("status") in ("successful", "failed") and not run.get("stats"):
        found.append(("complete.stats", f"a {run.get('status')} run without per-host stats: the record is incomplete"))
    return found


def _policy(run: dict[str, Any], signer: str | None, events: list[dict[str, Any]],
            approver_keys: Sequence[Ed25519PublicKey] | None) -> list[tuple[str, str]]:
    """The run kept to change control: no host work after a refusal, and an approval fit for the run.

    A refused run is the gate doing its job: its approval is not judged, but any task that ran on a
    host after the refusal (a playbook edited to drop the gate) is a violation. With the site's pinned
    ``approver_keys`` (a protected site), every other run must carry an approval signed by one of them,
    for its ticket and site, valid when it started, and not signed by the run's own evidence key.
    """
    gate = run.get("gate") if isinstance(run.get("gate"), dict) else {}
    refused = run.get("status") == "refused" or gate.get("decision") == "refused"
    if refused:
        # Host work is judged by what a task did (its action), never by a name or tag the playbook gives it.
        worked = sorted({str(e.get("host")) for e in events if str(e.get("type", "")).startswith("task_")
                         and str((e.get("data") or {}).get("action", "")).removeprefix("ansible.builtin.")
                         not in CONTROLLER_ONLY_ACTIONS})
        if worked:
            return [("policy.bypass", f"the policy gate refused this run, yet tasks ran on {', '.join(worked[:10])}: "
                                      "the gate was bypassed")]
        return []
    change = run.get("change") if isinstance(run.get("change"), dict) else {}
    approval = change.get("approval") if isinstance(change.get("approval"), dict) else None
    found = []
    if approver_keys is not None:
        if not gate:
            found.append(("policy.gate", "the run records no policy gate decision: it did not pass the gate"))
        elif not (gate.get("policy") or {}).get("protected"):
            found.append(("policy.unprotected", "the site is protected, but this run's gate did not treat it as "
                                                "protected: its inventory's site policy was changed or left out"))
        if not approval or "envelope" not in approval:
            return [*found, ("policy.approval", "a run against a protected site without a recorded change approval")]
        try:
            at = dt.datetime.strptime(str(run.get("started")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return [*found, ("policy.time", "the run's start time cannot be read")]
        problems, _ = change_control.verify_approval(approval["envelope"], approver_keys, ticket=str(change.get("ticket")),
                                      site=str(run.get("site")), at=at, operator_keyid=signer,
                                      name="the recorded approval")
        return found + [("policy.approval", p) for p in problems]
    if not approval or "envelope" not in approval:
        return found
    try:
        predicate = unverified_predicate(approval["envelope"])  # its signature was checked by the policy gate
        approved, expires, started = (predicate["approved_at"], predicate["expires"], run["started"])
    except (KeyError, TypeError, ValueError):
        return [("policy.approval", "the recorded approval cannot be read")]
    if predicate.get("ticket") != change.get("ticket"):
        found.append(("policy.ticket", f"the approval is for {predicate.get('ticket')!r}, the run for "
                                       f"{change.get('ticket')!r}"))
    if predicate.get("site") != run.get("site"):
        found.append(("policy.site", f"the approval is for site {predicate.get('site')!r}, the run for "
                                     f"{run.get('site')!r}"))
    if not approved <= started < expires:  # the same fixed-width UTC format: strings compare as times
        found.append(("policy.time", f"the run started {started}, outside its approval ({approved} to {expires})"))
    if signer is not None and predicate.get("approver") == signer:
        found.append(("policy.two_person", "the approval and the run's evidence are signed by the same key"))
    return found


def verify_ledger(ledger_path: Path, bundles_dir: Path,
                  trusted_public_keys: Iterable[Ed25519PublicKey] | None = None, *,
                  approver_keys: Sequence[Ed25519PublicKey] | None = None,
                  witness_files: Sequence[Path] = (), site: str | None = None) -> Report:
    """Verify a site ledger: chain continuity, and every listed bundle present with the recorded digest.

    With ``trusted_public_keys`` each listed bundle is also verified in full. Sealed bundles in
    ``bundles_dir`` that the ledger does not list are reported too (a ledger cut short at the end).
    """
    ledger_path, bundles_dir = Path(ledger_path), Path(bundles_dir)
    name = ledger_path.name
    report = Report(str(ledger_path))
    raw = _read(ledger_path)
    if isinstance(raw, OSError):
        report.findings.append(Finding(name, "file.missing", f"cannot read the ledger: {raw.strerror}"))
        return report
    keys = list(trusted_public_keys) if trusted_public_keys is not None else None
    by_id = {keyid(k): k for k in keys or ()}
    entry_findings: list[Finding] = []
    deep: list[Finding] = []
    listed: dict[str, int] = {}

    def check_entry(lineno: int, entry: dict[str, Any]) -> None:
        seq = lineno - 1
        if keys is not None:
            problem = entry_signature_problem(entry, by_id)
            if problem:
                entry_findings.append(Finding(name, problem[0], problem[1], lineno, seq))
        bundle, digest = entry.get("bundle"), entry.get("bundle_digest")
        if not isinstance(bundle, str) or not NAME_RE.match(bundle):
            entry_findings.append(Finding(name, "ledger.bundle", f"bundle {bundle!r} is not a plain bundle name", lineno, seq))
            return
        if bundle in listed:
            entry_findings.append(Finding(name, "ledger.duplicate", f"bundle {bundle} is listed again (first on line "
                                          f"{listed[bundle]})", lineno, seq))
            return
        listed[bundle] = lineno
        envelope = _read(bundles_dir / bundle / ENVELOPE_FILE)
        if isinstance(envelope, OSError):
            entry_findings.append(Finding(name, "ledger.missing", f"bundle {bundle} is listed but its {ENVELOPE_FILE} cannot "
                                          f"be read ({envelope.strerror}): removed?", lineno, seq))
            return
        actual = sha256_hex(envelope)
        if actual != digest:
            entry_findings.append(Finding(name, "ledger.digest", f"bundle {bundle}: {ENVELOPE_FILE} has sha256 {actual[:16]}... "
                                          f"but the ledger recorded {str(digest)[:16]}...: replaced or re-signed", lineno, seq))
            return
        if keys is not None:
            sub = verify_bundle(bundles_dir / bundle, keys, approver_keys=approver_keys)
            deep.extend(Finding(f"{bundle}/{f.file}", f.code, f.message, f.line, f.seq) for f in sub.findings)

    walk = walk_chain(raw, name, LEDGER_FIELDS, on_record=check_entry)
    report.findings = sorted([*walk.findings, *entry_findings], key=lambda f: (f.line is None, f.line or 0)) + deep
    try:
        # Only folders named like a run: a store's in-flight copies (.incoming.*) are not bundles yet.
        sealed = sorted(p.parent.name for p in bundles_dir.glob(f"*/{ENVELOPE_FILE}") if NAME_RE.match(p.parent.name))
    except OSError:
        sealed = []
    for bundle in sealed:
        if bundle not in listed:
            report.findings.append(Finding(f"{bundle}/{ENVELOPE_FILE}", "ledger.unlisted",
                                           "a sealed bundle the ledger does not list: the ledger was cut short or edited"))
    # A run that is still going, or was killed: its events are there, not yet signed. The site's
    # next run seals it as aborted and lists it; until then it is reported, not failed.
    try:
        unsealed = sorted(p.name for p in bundles_dir.iterdir()
                          if p.is_dir() and NAME_RE.match(p.name) and not (p / ENVELOPE_FILE).exists())
    except OSError:
        unsealed = []
    report.facts.update(entries=walk.count, head=walk.head)
    if keys is not None:
        # Only a bundle its run opened with a signed record can be sealed later; any other is not evidence.
        for bundle in list(unsealed):
            opening, _, problems = read_opening(bundles_dir / bundle, keys)
            if opening is None:
                unsealed.remove(bundle)
                report.findings.append(Finding(f"{bundle}/", "bundle.unbound", f"an unsealed bundle no run opened: "
                                               f"{problems[0] if problems else 'no opening'} (written by hand?)"))
    if unsealed:
        report.facts["incomplete"] = unsealed
    if witness_files:
        witnessed = witness.read(witness_files, site or ledger_path.parent.name)
        try:
            present = [p.name for p in bundles_dir.iterdir() if p.is_dir()]
        except OSError:
            present = []
        report.findings.extend(witness.check(raw, witnessed, [*listed, *present], name))
        report.facts["witnessed"] = len(witnessed.entries)
    return report
