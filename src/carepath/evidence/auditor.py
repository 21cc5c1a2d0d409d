"""The auditor's report of one run bundle: HTML to read, CSV to filter, JSON to import, PDF to hand on.

``carepath evidence report BUNDLE`` reads only the bundle (and the control catalog for titles
and HIPAA / CIS / NIST references), so it works offline on a copy handed to an auditor. With
pinned public keys it verifies the bundle first and shows the outcome at the top.

What it shows, first things first: where the site stands per HIPAA Security Rule standard and per
CIS section (the overview), what changed since the site's previous run (read from the site's
ledger beside the bundle: the last earlier run that checked controls), then a hosts x controls
matrix with drifted, failed and excepted controls first, filterable by status, host and safeguard
with no network (the page carries its own script; the filters are kept in the address's
``#fragment``, so a filtered view can be linked). ``--pdf`` prints it through headless Chromium.

The machine-readable export is carepath's own JSON (``report.json``): the rows of the CSV with
the run's facts. OSCAL assessment-results was considered: compliance-trestle, the maintained
library for it, pulls in a large dependency tree for a format our auditors have not asked for;
the JSON maps onto OSCAL's observations and findings one to one if that changes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carepath import controls, frameworks
from carepath.errors import CarepathError
from carepath.evidence.dsse import unverified_predicate
from carepath.evidence.verify import verify_bundle, verify_ledger

STATUS_ORDER = ("drifted", "failed", "excepted", "not_applicable", "compliant")
#: A control that a run did not report on a host (the host or its role was not in that run).
ABSENT = "absent"


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
    #: the HIPAA standards the control's citations fall under (frameworks.hipaa_standard)
    safeguards: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    run: dict[str, Any]
    hosts: dict[str, dict[str, int]]
    rows: list[ControlRow]
    changes: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    verification: str | None
    #: what changed since the site's previous run that checked controls (see :func:`since_previous`)
    previous: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return _counts(self.rows)

    def host_names(self) -> list[str]:
        return sorted({row.host for row in self.rows})

    def overview(self) -> dict[str, list[dict[str, Any]]]:
        """Host x control results per HIPAA standard and per CIS section, worst first within their order."""
        hipaa: dict[str, list[ControlRow]] = {}
        cis: dict[str, list[ControlRow]] = {}
        for row in self.rows:
            for standard in row.safeguards:
                hipaa.setdefault(standard, []).append(row)
            for section in sorted({frameworks.cis_section(c)[0] for c in row.cis.split(", ") if c}):
                cis.setdefault(section, []).append(row)
        names = dict(frameworks.HIPAA_STANDARDS.values())
        return {
            "hipaa": [{"standard": std, "name": names.get(std, ""), "kind": frameworks.safeguard_kind(std),
                       "controls": len({r.control for r in rows}), "counts": _counts(rows)}
                      for std, rows in sorted(hipaa.items(), key=lambda item: _citation_key(item[0]))],
            "cis": [{"section": sec, "name": frameworks.cis_section(sec)[1],
                     "controls": len({r.control for r in rows}), "counts": _counts(rows)}
                    for sec, rows in sorted(cis.items(), key=lambda item: [int(p) for p in item[0].split(".")])],
        }

    def matrix(self) -> list[dict[str, Any]]:
        """One line per control: its status on each host; lines with the worst status first."""
        lines: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            line = lines.setdefault(row.control, {"control": row.control, "title": row.title, "hipaa": row.hipaa,
                                                  "cis": row.cis, "safeguards": row.safeguards, "cells": {}})
            line["cells"][row.host] = row.status
        for line in lines.values():
            line["worst"] = min((_rank(s) for s in line["cells"].values()), default=len(STATUS_ORDER))
        return sorted(lines.values(), key=lambda line: (line["worst"], line["control"]))


def _rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _counts(rows: Iterable[ControlRow]) -> dict[str, int]:
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def _citation_key(citation: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.()]+", citation) if p]


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
            nist=", ".join(known.nist) if known else "", exception=result.exception,
            safeguards=sorted({frameworks.hipaa_standard(h)[0] for h in known.hipaa}, key=_citation_key)
            if known else [])
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
    rows = sorted(results.values(), key=lambda r: (_rank(r.status), r.control, r.host))
    report = AuditReport(run, run.get("stats") or {}, rows, changes, failures, verification)
    report.previous = since_previous(Path(bundle_dir), run, rows, keys)
    return report


#: How many earlier runs the comparison with the site's history reads at most (newest first).
MAX_EARLIER_RUNS = 200


def since_previous(bundle_dir: Path, run: dict[str, Any], rows: list[ControlRow],
                   keys: Iterable[Ed25519PublicKey] | None) -> dict[str, Any]:
    """What changed since the site's earlier runs, per host and control, read from the site's ledger.

    The ledger (``<site>/ledger.jsonl``, beside ``bundles/``) lists the site's runs in order. For
    each host x control this run checked, its latest earlier result is found by reading the earlier
    runs newest first (at most MAX_EARLIER_RUNS) until every one has its result: a deploy or a run
    with ``--limit`` or ``--tags`` in between answers for what it checked and is passed over for the
    rest. With keys, the ledger is verified first (its chain and signatures, and every listed bundle
    in full); if it does not verify nothing is compared, and the report says why. Returns ``found``
    False with the reason when there is nothing to compare with.
    """
    from carepath import drift

    ledger_path = bundle_dir.resolve().parent.parent / "ledger.jsonl"
    run_id = str(run.get("run_id") or bundle_dir.name)
    if not ledger_path.is_file():
        return {"found": False, "reason": "no site ledger beside the bundle (a copy of the bundle alone)"}
    if keys is not None:
        checked = verify_ledger(ledger_path, ledger_path.parent / "bundles", list(keys))
        if not checked.ok:
            return {"found": False, "reason": f"the site's ledger does not verify: {checked.first}"}
    listed: list[str] = []
    for line in ledger_path.read_text(encoding="utf-8").splitlines():
        try:
            listed.append(str(json.loads(line)["bundle"]))
        except (ValueError, KeyError, TypeError):
            continue
    if run_id not in listed:
        return {"found": False, "reason": f"this run is not listed in {ledger_path}"}
    after = {(r.host, r.control): r.status for r in rows}
    before: dict[tuple[str, str], tuple[str, str]] = {}
    used: list[dict[str, str]] = []
    for earlier in reversed(listed[:listed.index(run_id)][-MAX_EARLIER_RUNS:]):
        if len(before) == len(after):
            break
        try:
            earlier_run, events = drift.read_bundle(ledger_path.parent / "bundles" / earlier)
        except CarepathError:
            continue
        answered = 0
        for result in drift.collect(events):
            key = (result.host, result.control)
            if key in after and key not in before:
                before[key] = (result.status, earlier)
                answered += 1
        if answered:
            used.append({"run_id": earlier, "playbook": Path(str(earlier_run.get("playbook", ""))).name,
                         "started": str(earlier_run.get("started") or NOT_RECORDED)})
    if not used:
        return {"found": False, "reason": "no earlier run of this site checked these controls"}
    changed = [{"host": host, "control": control, "before": before.get((host, control), (ABSENT, ""))[0],
                "after": status, "before_run": before.get((host, control), (ABSENT, ""))[1]}
               for (host, control), status in sorted(after.items())
               if before.get((host, control), (ABSENT, ""))[0] != status]
    changed.sort(key=lambda c: (_rank(c["after"]), c["control"], c["host"]))
    return {"found": True, **used[0], "runs": used, "changes": changed}


def to_csv(report: AuditReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", "host", "control", "title", "status", "hipaa", "hipaa_standards", "cis", "nist",
                     "exception_owner", "exception_expires", "exception_reason", "changed_by_tasks"])
    for row in report.rows:
        exception = row.exception or {}
        writer.writerow([_cell(v) for v in (
            report.run.get("run_id", ""), row.host, row.control, row.title, row.status, row.hipaa,
            ", ".join(row.safeguards), row.cis, row.nist, exception.get("owner", ""), exception.get("expires", ""),
            exception.get("reason", ""), "; ".join(row.changes))])
    return out.getvalue()


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one starting =, +, -, @ (or a tab or CR) would be a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_json(report: AuditReport) -> dict[str, Any]:
    return {"format": "carepath.audit-report/2", "run": report.run, "verification": report.verification,
            "aborted": aborted_note(report.run), "summary": report.summary(), "overview": report.overview(),
            "since_previous_run": report.previous, "hosts": report.hosts,
            "controls": [row.__dict__ for row in report.rows], "changes": report.changes, "failures": report.failures}


def to_html(report: AuditReport) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("carepath", "data/evidence"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(
        r=report, summary=report.summary(), approval=_approval(report.run), facts=run_facts(report.run),
        aborted=aborted_note(report.run), overview=report.overview(), matrix=report.matrix(),
        host_names=report.host_names(), statuses=STATUS_ORDER, previous=report.previous,
        since=grouped_changes(report.previous.get("changes") or []))


def grouped_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes since the previous run, one line per control and change (the hosts it happened on)."""
    lines: dict[tuple[str, str, str], list[str]] = {}
    for change in changes:
        lines.setdefault((change["control"], change["before"], change["after"]), []).append(change["host"])
    grouped = [{"control": c, "before": b, "after": a, "hosts": sorted(h)} for (c, b, a), h in lines.items()]
    return sorted(grouped, key=lambda g: (_rank(g["after"]), g["control"], g["before"]))


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


def write(bundle_dir: Path, out_dir: Path, keys: Iterable[Ed25519PublicKey] | None = None, *,
          pdf: bool = False) -> dict[str, Path]:
    """Write report.html, report.csv and report.json (and report.pdf); returns their paths."""
    browser = chromium() if pdf else None  # before anything is written: a clear error, no half-done report
    report = build(bundle_dir, keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "csv": out_dir / "report.csv", "json": out_dir / "report.json"}
    paths["html"].write_text(to_html(report), encoding="utf-8")
    paths["csv"].write_text(to_csv(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_json(report), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if browser is not None:
        paths["pdf"] = out_dir / "report.pdf"
        print_pdf(browser, paths["html"], paths["pdf"])
    return paths


CHROMIUM_HINT = "install Debian's chromium (`apt-get install --no-install-recommends chromium fonts-liberation`, " \
                "or `make setup`), or set CAREPATH_CHROMIUM to the browser to use"


def chromium() -> str:
    """The headless browser that prints the PDF: ``$CAREPATH_CHROMIUM``, else chromium on PATH."""
    import os

    found = os.environ.get("CAREPATH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not shutil.which(found):
        raise CarepathError("--pdf needs a headless Chromium and none was found", hint=CHROMIUM_HINT)
    return found


def headless_argv(browser: str, profile: Path) -> list[str]:
    """Chromium with no window, no sandbox (it may run as root in CI), no GPU, no network beyond the file."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}"]


def print_pdf(browser: str, html: Path, pdf: Path, *, timeout: float = 120) -> None:
    """Print ``html`` to ``pdf`` (A4 by the page's @page rule, no browser header or footer)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="carepath-chromium-") as profile:
        argv = [*headless_argv(browser, Path(profile)), "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                html.resolve().as_uri()]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CarepathError(f"Chromium did not print {html} within {timeout:.0f} s") from None
    if proc.returncode != 0 or not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        raise CarepathError(f"Chromium could not print {html} to PDF (exit {proc.returncode}): "
                            f"{proc.stderr.strip()[-500:]}", hint=CHROMIUM_HINT)
