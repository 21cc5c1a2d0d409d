"""What a verification found: findings that name the file, line and seq, and a report that lists them in order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the evidence, precise enough for an auditor to open the file at the right line.

    ``line`` is 1-based; ``seq`` is the record's expected sequence number at that line. ``code`` is a stable,
    machine-readable name for the kind of problem (e.g. ``chain.prev``, ``signature.untrusted``).
    """

    file: str
    code: str
    message: str
    line: int | None = None
    seq: int | None = None

    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.seq is not None:
            where += f" (seq {self.seq})"
        return where

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"


@dataclass
class Report:
    """The outcome of verifying one bundle or one ledger: findings in file order, first one first."""

    subject: str
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The first bad record: where an auditor should start looking."""
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "facts": self.facts, "findings": [asdict(f) for f in self.findings]}

    def __str__(self) -> str:
        if self.ok:
            facts = ", ".join(f"{k}={v}" for k, v in self.facts.items())
            return f"{self.subject}: OK ({facts})"
        lines = [f"{self.subject}: {len(self.findings)} problem(s), first: {self.first}"]
        lines += [f"  - {f}" for f in self.findings]
        return "\n".join(lines)
