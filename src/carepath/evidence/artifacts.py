"""Redact ansible-runner's artifacts, which auditors read beside the bundle.

ansible-runner keeps the console output (``stdout``), every event in full (``job_events/``) and
the command it ran with the whole process environment (``command``). ``carepath run`` passes
them through :func:`redact_runner_artifacts` when the run ends, with the same :class:`Redactor`
as the evidence plus the secret values the evidence callback found during the run, which it
hands over through a FIFO (:class:`SecretsChannel`) so that they never touch the disk.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

from carepath.evidence.bundle import write_atomic
from carepath.evidence.redact import MASK, SECRET_ENV, Redactor

FIFO_ENV = "CAREPATH_SECRETS_FIFO"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Environment variables whose values ``command`` keeps (after redaction); all others are masked.
KEPT_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "PWD", "SHELL", "TERM", "VIRTUAL_ENV")


class SecretsChannel:
    """A FIFO the evidence callback writes the run's secret values to; read here, in memory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "secrets.fifo"
        os.mkfifo(self.path, 0o600)
        self.secrets: list[str] = []
        self.patterns: dict[str, str] = {}
        self._thread = threading.Thread(target=self._read, name="carepath-secrets", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {FIFO_ENV: str(self.path)}

    def _read(self) -> None:
        with open(self.path, "rb") as handle:  # blocks until a writer opens it (or close() does)
            data = handle.read()
        try:
            message = json.loads(data) if data else {}
        except ValueError:
            message = {}
        message = message if isinstance(message, dict) else {}
        self.secrets = [v for v in message.get("secrets") or [] if isinstance(v, str)]
        self.patterns = {str(k): str(v) for k, v in (message.get("patterns") or {}).items()}

    def close(self) -> list[str]:
        """Stop waiting (the run is over) and remove the FIFO; returns the secrets received."""
        if self._thread.is_alive():
            # Nobody wrote: open the write end ourselves so the reader sees end of file.
            fd = _open_writer(self.path)
            if fd is not None:
                os.close(fd)
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
        return self.secrets


def _open_writer(path: Path, wait: float = 2.0) -> int | None:
    """The FIFO's write end, once its reader is there (ENXIO until then); None if it never comes."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                return None
            time.sleep(0.01)


def send_secrets(values: list[str], environ: dict[str, str] | None = None,
                 patterns: dict[str, str] | None = None) -> bool:
    """From the callback: hand the secret values (and site PHI patterns) to the waiting wrapper, if any."""
    path = (environ if environ is not None else os.environ).get(FIFO_ENV)
    try:
        if not path or not stat.S_ISFIFO(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    fd = _open_writer(Path(path))
    if fd is None:
        return False
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json.dumps({"secrets": sorted(set(values)), "patterns": patterns or {}}).encode())
    return True


def _kept(name: str) -> bool:
    """Whether ``command`` keeps this variable's value: run settings, never secret-looking names."""
    return (name in KEPT_ENV or name.startswith(("ANSIBLE_", "CAREPATH_", "RUNNER_"))) and not SECRET_ENV.search(name)


def _plain_text(value: Any) -> Any:
    """Every string without colour codes (events carry the console text of each result)."""
    if isinstance(value, str):
        return ANSI.sub("", value)
    if isinstance(value, dict):
        return {k: _plain_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_text(v) for v in value]
    return value


def _redact_json(path: Path, redactor: Redactor) -> bool:
    data = path.read_bytes()
    try:
        value: Any = json.loads(data)
    except ValueError:
        return _redact_text(path, redactor)
    clean = json.dumps(redactor.data(_plain_text(value)), sort_keys=True).encode()
    if clean != data:
        write_atomic(path, clean)
        return True
    return False


def _redact_text(path: Path, redactor: Redactor) -> bool:
    text = path.read_text(encoding="utf-8", errors="replace")
    # Colour codes can split a pattern (``MRN:<reset>\n<red>  1234``); the artifact keeps plain text.
    clean = redactor.text(ANSI.sub("", text))
    if clean != text:
        write_atomic(path, clean.encode())
        return True
    return False


def redact_runner_artifacts(artifact_dir: Path, redactor: Redactor) -> list[Path]:
    """Redact one run's artifacts in place; returns the files that changed."""
    changed: list[Path] = []
    command = artifact_dir / "command"
    if command.is_file():
        try:
            record = json.loads(command.read_text(encoding="utf-8"))
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("env"), dict):
            record["env"] = {k: (redactor.text(str(v)) if _kept(k) else MASK) for k, v in record["env"].items()}
            write_atomic(command, json.dumps(redactor.data(record), sort_keys=True).encode())
            changed.append(command)
    for name in ("stdout", "stderr"):
        path = artifact_dir / name
        if path.is_file() and _redact_text(path, redactor):
            changed.append(path)
    for path in sorted((artifact_dir / "job_events").glob("*.json")):
        if _redact_json(path, redactor):
            changed.append(path)
    return changed
