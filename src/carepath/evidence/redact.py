"""Redaction of evidence: deny by default, then mask secrets by value and PHI by pattern.

Evidence records are built field by field from what a run did (host, task, status, control
ids); no module result is copied wholesale. The few free-text fields that are kept (a failed
task's message, a task name) pass through :class:`Redactor`, which:

- removes every known secret value (vault-decrypted variables, values of secret-looking
  environment variables, anything registered with :meth:`Redactor.add_secret`);
- masks PHI-like patterns: US SSNs, medical record numbers (a configurable pattern), dates
  of birth, and whole HL7 v2 PID segments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

POLICY_VERSION = "carepath.redaction/1"
MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

SECRET_ENV = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH)", re.IGNORECASE)
# Settings such as ANSIBLE_HOST_KEY_CHECKING=True match SECRET_ENV by name; their values are
# switches: masking them would mask every "True" in the evidence and hide no secret.
NOT_SECRET_VALUE = re.compile(r"(?i)(true|false|yes|no|on|off|none)")
# Applied in this order: the labelled identifiers first, so that a PID segment masked to the end
# of its line cannot carry away the label of a value wrapped onto the next line.
PHI_PATTERNS: dict[str, str] = {
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "dob": r"(?i)\b(?:dob|date of birth|birth ?date)\s*[:=]?\s*\d{4}-?\d{2}-?\d{2}\b",
    "mrn": r"(?i)\bMRN\s*[:#=]?\s*[A-Z0-9-]{4,}\b",
    "hl7_pid": r"(?m)PID\|[^\r\n]*",
}


class Redactor:
    """Masks known secret values and PHI-like patterns in text and nested data."""

    def __init__(self, extra_patterns: Mapping[str, str] | None = None) -> None:
        self.extra_patterns = dict(extra_patterns or {})
        self._secrets: set[str] = set()
        self._patterns = [re.compile(p) for p in {**PHI_PATTERNS, **(extra_patterns or {})}.values()]
        self._secret_re: re.Pattern[str] | None = None

    @property
    def secrets(self) -> list[str]:
        return sorted(self._secrets)

    def add_secret(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            self._secrets.add(value)
            self._secret_re = None

    def add_secrets(self, values: Iterable[Any]) -> None:
        for value in values:
            self.add_secret(value)

    def add_environment(self, environ: Mapping[str, str] | None = None) -> None:
        """Treat the values of secret-looking environment variables as secrets."""
        for name, value in (os.environ if environ is None else environ).items():
            if SECRET_ENV.search(name) and not NOT_SECRET_VALUE.fullmatch(value.strip()):
                self.add_secret(value)

    def text(self, value: str) -> str:
        if self._secrets:
            if self._secret_re is None:  # longest first, so a secret containing another is masked whole
                self._secret_re = re.compile("|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True)))
            value = self._secret_re.sub(MASK, value)
        for pattern in self._patterns:
            value = pattern.sub(MASK, value)
        return value

    def data(self, value: Any) -> Any:
        """The same structure with every string redacted (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value
