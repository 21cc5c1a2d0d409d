"""Redaction of evidence: deny by default, then mask secrets by value and PHI by pattern.

Evidence records are built field by field from what a run did (host, task, status, control
ids); no module result is copied wholesale. The few free-text fields that are kept (a failed
task's message, a task name) pass through :class:`Redactor`, which:

- removes every known secret value (vault-decrypted variables, values of secret-looking
  environment variables, anything registered with :meth:`Redactor.add_secret`) and the forms a
  playbook turns it into in one filter (see :func:`variants`);
- masks PHI-like patterns: US SSNs, medical record numbers (a configurable pattern), dates
  of birth, and whole HL7 v2 messages: every segment (``MSH|``, ``PID|``, ``OBX|``, ``NK1|``,
  Z-segments, any three-character segment ID and ``|``) to the end of its line, so a message
  quoted in an error, one segment per line or all on one line with escaped carriage returns,
  leaves nothing behind.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

POLICY_VERSION = "carepath.redaction/2"
MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

SECRET_ENV = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH)", re.IGNORECASE)
# Variable names whose values are secrets wherever the variable comes from (extra vars, inventory):
# connection and become passwords (ansible_password, ansible_ssh_pass, ansible_become_password,
# ansible_become_pass, ansible_sudo_pass, ansible_httpapi_password, ...).
CONNECTION_SECRET = re.compile(r"(?i)^ansible_\w*pass")
# Settings such as ANSIBLE_HOST_KEY_CHECKING=True match SECRET_ENV by name; their values are
# switches: masking them would mask every "True" in the evidence and hide no secret.
NOT_SECRET_VALUE = re.compile(r"(?i)(true|false|yes|no|on|off|none)")
# Applied in this order: the labelled identifiers first, so that an HL7 segment masked to the end
# of its line cannot carry away the label of a value wrapped onto the next line. Any segment:
# patient data is not only in PID (NK1 next of kin, OBX results, PV1 visits, Z-segments).
PHI_PATTERNS: dict[str, str] = {
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "dob": r"(?i)\b(?:dob|date of birth|birth ?date)\s*[:=]?\s*\d{4}-?\d{2}-?\d{2}\b",
    "mrn": r"(?i)\bMRN\s*[:#=]?\s*[A-Z0-9-]{4,}\b",
    # Any segment, however short ("EVN|A01", "ZPI|x"): masking "TCP|UDP" in a task name costs less
    # than a Z-segment of patient data left in the evidence.
    "hl7_segment": r"(?m)(?<![A-Za-z0-9])[A-Z][A-Z0-9]{2}\|[^\r\n\x1c]*",
}


def secret_name(name: object) -> bool:
    """Whether a variable with this name holds a secret: ``*password*``, ``*token*``, ``*secret*``, ``*key*``..."""
    return isinstance(name, str) and bool(SECRET_ENV.search(name))


def secret_values(value: Any, depth: int = 0) -> list[str]:
    """Every string (and number) inside a secret variable's value: the parts a template can print."""
    if depth > 20:
        return []
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in secret_values(item, depth + 1)]
    if isinstance(value, (list, tuple, set)):
        return [s for item in value for s in secret_values(item, depth + 1)]
    if isinstance(value, bool) or value is None:
        return []
    text = str(value)
    return [] if NOT_SECRET_VALUE.fullmatch(text.strip()) else [text]


def named_secrets(variables: Mapping[Any, Any], connection_only: bool = False, depth: int = 0) -> list[str]:
    """The values of the secret-looking variables among ``variables`` (and keys of nested mappings).

    ``connection_only`` keeps to connection and become passwords: inventory and play variables
    named ``*key*`` are mostly paths and switches (``ssh_hardening_host_key_algorithms``), while an
    extra var named so on the command line is taken for a secret.
    """
    found: list[str] = []
    for name, value in variables.items():
        if CONNECTION_SECRET.match(str(name)) or (not connection_only and secret_name(name)):
            found += secret_values(value)
        elif isinstance(value, Mapping) and not connection_only and depth < 20:
            found += named_secrets(value, depth=depth + 1)  # {"db": {"password": ...}}
    return found


def variants(secret: str) -> set[str]:
    """The forms of ``secret`` one filter or encoding away, each of which would disclose it.

    Matched case-insensitively (so ``| upper``, ``| lower``, ``| capitalize`` are covered, and
    upper- or lower-case hex): the value itself; URL-encoded (``| urlencode``, query strings);
    hex (``| hexlify``-style dumps, ``xxd``); JSON-escaped (artifacts are JSON, so a secret
    holding a quote or backslash appears escaped). Base64 (``| b64encode``, HTTP basic auth,
    Kubernetes secrets) is matched exactly, in its standard and URL-safe alphabets, with and
    without padding. Not covered: a secret encoded together with other text (base64 of
    ``user:secret``), hashes (not reversible) and encryption.
    """
    raw = secret.encode("utf-8")
    return {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), raw.hex(), json.dumps(secret)[1:-1]}


def base64_variants(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return forms | {f.rstrip("=") for f in forms}


#: How a failed task's message is classified when it may quote what a module read or printed.
FAILURE_CLASSES = (
    ("rc", "command returned non-zero"),
    ("module_stderr", "module failure"),
    ("exception", "module failure"),
    ("unreachable", "host unreachable"),
)
#: Actions whose message is written in the playbook (``msg:``), not read from the host.
AUTHORED_MESSAGES = ("fail", "assert")
MAX_AUTHORED = 1000
MAX_FIRST_LINE = 200


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
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
            self._secrets.add(value)
            self._secret_re = None

    def add_patterns(self, patterns: Mapping[str, str]) -> None:
        """More PHI-like patterns (a site's record-number format learned during the run)."""
        for name, pattern in patterns.items():
            if self.extra_patterns.get(name) != pattern:
                self.extra_patterns[name] = pattern
                self._patterns.append(re.compile(pattern))

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
            if self._secret_re is None:
                self._secret_re = self._compile()
            value = self._secret_re.sub(MASK, value)
        for pattern in self._patterns:
            value = pattern.sub(MASK, value)
        return value

    def _compile(self) -> re.Pattern[str]:
        """One pattern for every secret and its variants, longest first, so a secret containing another is masked whole."""
        plain = {v for s in self._secrets for v in variants(s) if len(v) >= MIN_SECRET_LENGTH}
        exact = {v for s in self._secrets for v in base64_variants(s) if len(v) >= MIN_SECRET_LENGTH} - plain
        parts = [f"(?i:{re.escape(v)})" for v in plain] + [re.escape(v) for v in exact]
        ordered = sorted(zip([*plain, *exact], parts, strict=True), key=lambda pair: len(pair[0]), reverse=True)
        return re.compile("|".join(part for _, part in ordered))

    def failure_message(self, action: str, result: Mapping[str, Any]) -> str:
        """A failed task's message in a form that cannot carry a secret or PHI the redactor does not know.

        A ``fail``/``assert`` message is the playbook's own words: kept, redacted, up to 1000
        characters. Any other message may quote what the module read or printed on the host
        (file contents, command output, an HTTP body): only its redacted first line, up to 200
        characters, is kept, after a fixed classification when the result's keys give one
        (``command returned non-zero``, ``module failure``, ``host unreachable``).
        """
        msg = str(result.get("msg", "") or "")
        if str(action).rsplit(".", 1)[-1] in AUTHORED_MESSAGES and not result.get("module_stderr"):
            return self.text(msg)[:MAX_AUTHORED]
        kind = next((label for key, label in FAILURE_CLASSES if result.get(key) not in (None, "", 0)), None)
        first = self.text(msg.strip().splitlines()[0] if msg.strip() else "")
        first = "".join(c if c.isprintable() else " " for c in first)[:MAX_FIRST_LINE]
        if kind is None:  # nothing in the result to classify it by: the first line says what failed
            return first or "task failed"
        return f"{kind}: {first}" if first else kind

    def data(self, value: Any) -> Any:
        """The same structure with every string redacted (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value
