"""Drift report: per host and per control, compliant / drifted / excepted, from a check-mode run.

It reads only the events ansible-runner recorded for the run (``job_events/*.json``);
it never talks to hosts itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from carepath import controls

STATUSES = ("compliant", "drifted", "excepted", "not_applicable", "failed", "unreachable")


@dataclass
class ControlResult:
    host: str
    control: str
    status: str
    problems: list[str] = field(default_factory=list)
    exception: dict[str, str] | None = None


def read_events(artifact_dir: Path) -> list[dict[str, Any]]:
    """The run's events in order."""
    events = [json.loads(p.read_text(encoding="utf-8")) for p in (artifact_dir / "job_events").glob("*.json")]
    return sorted(events, key=lambda e: e.get("counter", 0))


AUDIT_TASK = controls.AUDIT_TASK_PREFIX


def collect(events: Iterable[dict[str, Any]]) -> list[ControlResult]:
    """One result per (host, control) from the audit tasks' events; unreachable hosts are marked."""
    results: dict[tuple[str, str], ControlResult] = {}
    unreachable: set[str] = set()
    for event in events:
        data = event.get("event_data") or {}
        host = data.get("host")
        if event.get("event") == "runner_on_unreachable" and host:
            unreachable.add(host)
            continue
        if event.get("event") not in ("runner_on_ok", "runner_on_failed", "runner_on_skipped") or not host:
            continue
        if not data.get("task", "").startswith(AUDIT_TASK):
            continue
        res = data.get("res") or {}
        if event["event"] == "runner_on_skipped":  # the role is switched off on this host
            role = data["task"].removeprefix(AUDIT_TASK)
            for control in (c for c in controls.load() if c.role == role):
                results[(host, control.id)] = ControlResult(host, control.id, "not_applicable",
                                                            [f"{role} is switched off on this host"])
            continue
        reports = res.get("carepath_controls")
        if reports is None:  # the check could not run at all (e.g. a bad argument)
            role = data["task"].removeprefix(AUDIT_TASK)
            results[(host, role)] = ControlResult(host, role, "failed", [str(res.get("msg", "the check failed"))])
            continue
        for report in reports:
            results[(host, report["id"])] = ControlResult(
                host, report["id"], report["status"], list(report.get("problems") or []), report.get("exception"))
    for host in sorted(unreachable):
        results[(host, "*")] = ControlResult(host, "*", "unreachable")
    return sorted(results.values(), key=lambda r: (r.host, r.control))


def failures(events: Iterable[dict[str, Any]]) -> list[str]:
    """``host: message`` of every failed task that was not a control check (e.g. the policy gate)."""
    found = []
    for event in events:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_failed" and not data.get("task", "").startswith(AUDIT_TASK):
            found.append(f"{data.get('host')}: {(data.get('res') or {}).get('msg', 'failed')}")
    return found


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
