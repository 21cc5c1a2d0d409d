"""The auditor's report of one run bundle: HTML to read, CSV to filter, JSON to import.

``carepath evidence report BUNDLE`` reads only the bundle (and the control catalog for titles
and HIPAA / CIS / NIST references), so it works offline on a copy handed to an auditor. With
pinned public keys it verifies the bundle first and shows the outcome at the top.

The machine-readable export is carepath's own JSON (``report.json``): the rows of the CSV with
the run's facts. OSCAL assessment-results was considered: compliance-trestle, the maintained
library for it, pulls in a large dependency tree for a format our auditors have not asked for;
the JSON maps onto OSCAL's observations and findings one to one if that changes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carepath import controls
from carepath.evidence.dsse import unverified_predicate
from carepath.evidence.verify import verify_bundle

STATUS_ORDER = ("drifted", "failed", "excepted", "not_applicable", "compliant")


@dataclass
class ControlRow:
    host: str
    control: str
    status: str
    title: str = ""
    hipaa: str = ""
    cis: str = ""
    nist: str = ""
    exception: dict[str, str] | None = None
    changes: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    run: dict[str, Any]
    hosts: dict[str, dict[str, int]]
    rows: list[ControlRow]
    changes: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    verification: str | None

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUS_ORDER, 0)
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


def build(bundle_dir: Path, keys: Iterable[Ed25519PublicKey] | None = None) -> AuditReport:
    """Read a bundle into the report's data (verifying it first when keys are given)."""
    from carepath import drift

    run, events = drift.read_bundle(bundle_dir)
    verification = None
    if keys is not None:
        report = verify_bundle(Path(bundle_dir), list(keys))
        verification = "verified: signature, digests and event chain intact" if report.ok else f"FAILED: {report.first}"
    catalog = controls.by_id(controls.load())
    results: dict[tuple[str, str], ControlRow] = {}
    for result in drift.collect(events):  # one reading of the audit results, shared with `carepath drift`
        if result.control == "*":  # an unreachable host: listed with the failures
            continue
        known = catalog.get(result.control)
        results[(result.host, result.control)] = ControlRow(
            result.host, result.control, result.status, title=known.title if known else "",
            hipaa=", ".join(known.hipaa) if known else "", cis=", ".join(known.cis) if known else "",
            nist=", ".join(known.nist) if known else "", exception=result.exception)
    changes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for event in events:
        data = event.get("data") or {}
        host = event.get("host")
        if not host:
            continue
        if event.get("changed"):
            changes.append({"host": host, "task": event.get("task", ""), "controls": event.get("control_ids") or [],
                            "role": data.get("role", ""), "time": event.get("time", "")})
        if event.get("type") in ("task_failed", "task_unreachable"):
            failures.append({"host": host, "task": event.get("task", ""), "msg": data.get("msg", "")})
    for change in changes:
        for ident in change["controls"]:
            row = results.get((change["host"], ident))
            if row is not None:
                row.changes.append(change["task"])
    rows = sorted(results.values(), key=lambda r: (STATUS_ORDER.index(r.status) if r.status in STATUS_ORDER else 9,
                                                   r.control, r.host))
    return AuditReport(run, run.get("stats") or {}, rows, changes, failures, verification)


def to_csv(report: AuditReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", "host", "control", "title", "status", "hipaa", "cis", "nist", "exception_owner",
                     "exception_expires", "exception_reason", "changed_by_tasks"])
    for row in report.rows:
        exception = row.exception or {}
        writer.writerow([report.run.get("run_id", ""), row.host, row.control, row.title, row.status, row.hipaa,
                         row.cis, row.nist, exception.get("owner", ""), exception.get("expires", ""),
                         exception.get("reason", ""), "; ".join(row.changes)])
    return out.getvalue()


def to_json(report: AuditReport) -> dict[str, Any]:
    return {"format": "carepath.audit-report/1", "run": report.run, "verification": report.verification,
            "aborted": aborted_note(report.run), "summary": report.summary(), "hosts": report.hosts,
            "controls": [row.__dict__ for row in report.rows], "changes": report.changes, "failures": report.failures}


def to_html(report: AuditReport) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("carepath", "data/evidence"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(r=report, summary=report.summary(),
                                                     approval=_approval(report.run), facts=run_facts(report.run),
                                                     aborted=aborted_note(report.run))


NOT_RECORDED = "not recorded"


def run_facts(run: dict[str, Any]) -> dict[str, str]:
    """The summary's facts as text, each one saying "not recorded" when the bundle lacks it.

    A bundle sealed as aborted (the run was killed; a later run sealed what it had recorded)
    holds no operator, change, source or stats: the report must still be written, and must say
    what is missing rather than leave it blank or fail.
    """
    operator = run.get("operator")
    source = run.get("source")
    change = run.get("change")
    check_mode = run.get("check_mode")
    if isinstance(source, dict):
        commit = str(source.get("commit") or "unknown")
        source_text = f"commit {commit}" + (" (uncommitted changes)" if source.get("dirty") else "")
    else:
        source_text = NOT_RECORDED
    return {
        "site": str(run.get("site") or NOT_RECORDED),
        "playbook": str(run.get("playbook") or NOT_RECORDED),
        "started": str(run.get("started") or NOT_RECORDED),
        "finished": str(run.get("finished") or NOT_RECORDED),
        "check_mode": NOT_RECORDED if check_mode is None else ("yes" if check_mode else "no"),
        "operator": ", ".join(f"{k}: {v}" for k, v in sorted(operator.items())) if isinstance(operator, dict)
        else NOT_RECORDED,
        "ticket": str(change.get("ticket") or "none") if isinstance(change, dict) else NOT_RECORDED,
        "source": source_text,
    }


def aborted_note(run: dict[str, Any]) -> str | None:
    """For an aborted run, the sentence the report opens with; None for a run that ended."""
    if run.get("status") != "aborted":
        return None
    info = run.get("aborted") if isinstance(run.get("aborted"), dict) else {}
    note = "This run was aborted: it was stopped before it ended, and only the events it recorded are shown."
    if info.get("sealed_by"):
        note += f" Its bundle was sealed by the later run {info['sealed_by']}."
    if info.get("trimmed_bytes"):
        note += f" {info['trimmed_bytes']} bytes of an event cut off mid-write were removed."
    missing = [name for name in ("operator", "change", "source", "stats") if name not in run]
    if missing:
        note += f" Not recorded: {', '.join(missing)}."
    return note


def _approval(run: dict[str, Any]) -> dict[str, Any] | None:
    approval = (run.get("change") or {}).get("approval") or {}
    envelope = approval.get("envelope")
    if not envelope:
        return None
    try:
        predicate = unverified_predicate(envelope)
    except ValueError:
        return {"error": "unreadable approval"}
    return {**predicate, "sha256": approval.get("sha256", "")}


def write(bundle_dir: Path, out_dir: Path, keys: Iterable[Ed25519PublicKey] | None = None) -> dict[str, Path]:
    """Write report.html, report.csv and report.json; returns their paths."""
    report = build(bundle_dir, keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "csv": out_dir / "report.csv", "json": out_dir / "report.json"}
    paths["html"].write_text(to_html(report), encoding="utf-8")
    paths["csv"].write_text(to_csv(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_json(report), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return paths
