"""Drift report: per host and per control, compliant / drifted / excepted, from a run's evidence bundle.

It reads only the run's signed bundle (``events.jsonl``, verified first when a public key is
given): the same report comes from a `carepath drift` run, from a check-mode job on AWX whose
bundle is in the site's store, or from any earlier run. It never talks to hosts itself.

An audit result is recognised by what the evidence recorded of the task, never by its name: the
audit action (``carepath_control``) and the controls it reported; a skipped audit task is its
role switched off on that host.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carepath import controls
from carepath.errors import CarepathError
from carepath.evidence.bundle import EVENTS_FILE, RUN_FILE

STATUSES = ("compliant", "drifted", "excepted", "not_applicable", "failed", "unreachable")
#: The action of every audit task (plugins/action/carepath_control.py), as the evidence records it.
AUDIT_ACTION = "carepath_control"


@dataclass
class ControlResult:
    host: str
    control: str
    status: str
    problems: list[str] = field(default_factory=list)
    exception: dict[str, str] | None = None


def read_bundle(bundle_dir: Path, keys: Sequence[Ed25519PublicKey] | None = None) -> tuple[dict[str, Any],
                                                                                            list[dict[str, Any]]]:
    """A bundle's run record and events; with ``keys``, only once ``verify`` has found it intact."""
    bundle_dir = Path(bundle_dir)
    if keys is not None:
        from carepath.evidence.verify import verify_bundle

        report = verify_bundle(bundle_dir, list(keys))
        if not report.ok:
            raise CarepathError(f"{bundle_dir}: the evidence does not verify: {report.first}",
                                hint="a drift report is only as good as its evidence: run `carepath evidence verify`")
    try:
        run = json.loads((bundle_dir / RUN_FILE).read_text(encoding="utf-8"))
        events = [json.loads(line) for line in (bundle_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as exc:
        raise CarepathError(f"{bundle_dir} is not a readable run bundle: {exc}") from None
    return run, events


def is_audit(event: dict[str, Any]) -> bool:
    """Whether an evidence event is an audit task's (by its action, however it was called)."""
    action = str((event.get("data") or {}).get("action") or "")
    return action == AUDIT_ACTION or action.endswith("." + AUDIT_ACTION)


def collect(events: Iterable[dict[str, Any]]) -> list[ControlResult]:
    """One result per (host, control) from a bundle's audit events; unreachable hosts are marked."""
    results: dict[tuple[str, str], ControlResult] = {}
    unreachable: set[str] = set()
    for event in events:
        kind, host, data = event.get("type"), event.get("host"), event.get("data") or {}
        if not host:
            continue
        if kind == "task_unreachable":
            unreachable.add(host)
            continue
        if not is_audit(event):
            continue
        role = str(data.get("role") or "").rsplit(".", 1)[-1]  # carepath.core.ssh_hardening: ssh_hardening
        if kind == "task_skipped":  # the role is switched off on this host
            for control in (c for c in controls.load() if c.role == role):
                results[(host, control.id)] = ControlResult(host, control.id, "not_applicable",
                                                            [f"{role} is switched off on this host"])
            continue
        reports = data.get("controls")
        if reports is None:  # the check could not run at all (e.g. a bad argument)
            results[(host, role or "?")] = ControlResult(host, role or "?", "failed",
                                                         [str(data.get("msg") or "the check failed")])
            continue
        for report in reports:
            results[(host, report["id"])] = ControlResult(
                host, report["id"], report["status"], list(report.get("problems") or []), report.get("exception"))
    for host in sorted(unreachable):
        results[(host, "*")] = ControlResult(host, "*", "unreachable")
    return sorted(results.values(), key=lambda r: (r.host, r.control))


def failures(events: Iterable[dict[str, Any]]) -> list[str]:
    """``host: message`` of every failed task that was not a control check (e.g. the policy gate)."""
    return [f"{e.get('host')}: {(e.get('data') or {}).get('msg', 'failed')}"
            for e in events if e.get("type") == "task_failed" and not is_audit(e)]


def summary(results: list[ControlResult]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


def to_json(results: list[ControlResult], run: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable report (kept in the run's artifacts as drift.json)."""
    hosts: dict[str, dict[str, Any]] = {}
    for result in results:
        entry = {k: v for k, v in asdict(result).items() if k not in ("host", "control") and v not in (None, [])}
        hosts.setdefault(result.host, {})[result.control] = entry
    return {"format": "carepath-drift/1", "run": run, "summary": summary(results), "hosts": hosts}


def table(results: list[ControlResult], *, all_rows: bool = False) -> str:
    """A terminal table: drifted, failed and excepted controls (every control with ``all_rows``)."""
    shown = [r for r in results if all_rows or r.status not in ("compliant", "not_applicable")]
    rows = [("HOST", "CONTROL", "STATUS", "DETAIL")]
    for r in shown:
        if r.exception:
            detail = f"until {r.exception.get('expires')} ({r.exception.get('owner')}): {r.exception.get('reason')}"
        else:
            detail = "; ".join(r.problems)
        rows.append((r.host, r.control, r.status, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]).rstrip() for row in rows]
    counts = summary(results)
    total = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    hosts = len({r.host for r in results})
    lines.append(f"\n{hosts} host(s): {total or 'no controls checked'}")
    return "\n".join(lines if len(rows) > 1 else lines[-1:])
