"""Keep secrets out of ansible-runner's artifacts, which auditors read beside the bundle.

ansible-runner keeps the console output (``stdout``), every event in full (``job_events/``) and
the command it ran with the whole process environment (``command``). Under ``carepath run``
nothing unredacted reaches the disk, even for a moment, so a killed run leaves nothing to clean up:

- ``command`` is a FIFO when ansible-runner writes it (:class:`RedactedCommand`): the record is
  read in memory and written redacted in its place;
- ansible-runner's own ``stdout`` file is not written (``suppress_output_file``); carepath writes
  it from the events, redacted (:class:`RedactedStdout`);
- each event passes through :func:`scrub_event` in ansible-runner's ``event_handler`` before
  ansible-runner writes it to ``job_events/``;
- inside ansible-playbook, ansible-runner's display callback first drops each event's data in
  ``job_events/<uuid>-partial.json`` for ansible-runner to pick up; the evidence callback makes it
  scrub that data first (:func:`redact_runner_partials`), with the secrets it knows from the
  first play on.

The secrets the evidence callback learns inside ansible-playbook (vault values, extra vars and
connection passwords) reach ``carepath run`` through a FIFO (:class:`SecretsChannel`), never the
disk: sent at each play start, before any task result, and again at the end.
:func:`redact_runner_artifacts` is a last pass when the run ends.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import stat
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from carepath.evidence.bundle import write_atomic
from carepath.evidence.redact import MASK, SECRET_ENV, Redactor

FIFO_ENV = "CAREPATH_SECRETS_FIFO"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Environment variables whose values ``command`` keeps (after redaction); all others are masked.
KEPT_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "PWD", "SHELL", "TERM", "VIRTUAL_ENV")


class SecretsChannel:
    """A FIFO the evidence callback writes the run's secret values to, one JSON line per message.

    The read end stays open for the whole run (with a write end of our own, so that the reader
    never sees end of file between two senders); a thread drains it as lines come, and
    :meth:`drain` reads what is already there synchronously. The callback sends at play start,
    before the play's first task, so an event handler that drains before redacting an event has
    every secret sent before that event was printed.
    """

    def __init__(self, directory: Path, redactor: Redactor | None = None) -> None:
        self.path = Path(directory) / "secrets.fifo"
        os.mkfifo(self.path, 0o600)
        self.redactor = redactor
        self.secrets: list[str] = []
        self.patterns: dict[str, str] = {}
        self._seen: set[str] = set()
        self._buffer = b""
        self._lock = threading.Lock()
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._keep_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="carepath-secrets", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {FIFO_ENV: str(self.path)}

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        while not self._stopped.is_set():
            if poller.poll(200):
                self.drain()

    def drain(self) -> None:
        """Read and apply every complete message already written to the FIFO."""
        with self._lock:
            if self._read_fd < 0:
                return
            while True:
                try:
                    chunk = os.read(self._read_fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                self._apply(line)

    def _apply(self, line: bytes) -> None:
        try:
            message = json.loads(line) if line.strip() else {}
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        for value in message.get("secrets") or []:
            if isinstance(value, str) and value not in self._seen:
                self._seen.add(value)
                self.secrets.append(value)
                if self.redactor is not None:
                    self.redactor.add_secret(value)
        patterns = {str(k): str(v) for k, v in (message.get("patterns") or {}).items()}
        self.patterns.update(patterns)
        if self.redactor is not None and patterns:
            self.redactor.add_patterns(patterns)

    def close(self) -> list[str]:
        """Stop reading (the run is over) and remove the FIFO; returns the secrets received, sorted."""
        self.drain()
        self._stopped.set()
        self._thread.join(timeout=5)
        with self._lock:
            for fd in (self._read_fd, self._keep_fd):
                if fd >= 0:
                    os.close(fd)
            self._read_fd = self._keep_fd = -1
        self.path.unlink(missing_ok=True)
        return sorted(self.secrets)


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


def send_secrets(values: Iterable[str], environ: Mapping[str, str] | None = None,
                 patterns: Mapping[str, str] | None = None) -> bool:
    """From the callback: hand the secret values (and site PHI patterns) to the waiting wrapper, if any.

    Called at each play start and at the end; every call sends everything known so far (the
    reader keeps what it has), as one line: under PIPE_BUF-size messages cannot interleave.
    """
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
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps({"secrets": sorted(set(values)), "patterns": dict(patterns or {})}).encode() + b"\n")
    except OSError:  # the reader went away (carepath stopped): nothing to hand over
        return False
    return True


class RedactedCommand:
    """ansible-runner's ``command`` artifact (argv and the whole environment), written redacted only.

    ansible-runner writes it before it starts ansible-playbook and offers no way to leave it
    out. It is made a FIFO first, so what ansible-runner writes stays in memory; this reads it,
    redacts it like :func:`redact_runner_artifacts` does, and puts the redacted file in its place.
    """

    def __init__(self, artifact_dir: Path, redactor: Redactor) -> None:
        artifact_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = artifact_dir / "command"
        self.redactor = redactor
        os.mkfifo(self.path, 0o600)
        self._thread = threading.Thread(target=self._receive, name="carepath-command", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        with open(self.path, "rb") as handle:  # blocks until ansible-runner (or close()) opens it
            data = handle.read()
        try:
            record: Any = json.loads(data) if data else None
        except ValueError:
            record = None
        if isinstance(record, dict):
            write_atomic(self.path, redacted_command(record, self.redactor))

    def close(self) -> None:
        if self._thread.is_alive():
            fd = _open_writer(self.path, wait=0.5)  # nobody wrote: let the reader see end of file
            if fd is not None:
                os.close(fd)
            self._thread.join(timeout=5)
        if self.path.is_fifo():
            self.path.unlink(missing_ok=True)


def redacted_command(record: Mapping[str, Any], redactor: Redactor) -> bytes:
    clean = dict(record)
    if isinstance(clean.get("env"), dict):
        clean["env"] = {k: (redactor.text(str(v)) if _kept(k) else MASK) for k, v in clean["env"].items()}
    return json.dumps(redactor.data(clean), sort_keys=True).encode()


class RedactedStdout:
    """The run's ``stdout`` artifact, written by carepath from the redacted events."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._handle = os.fdopen(fd, "w", encoding="utf-8", errors="replace")

    def write(self, event: Mapping[str, Any]) -> None:
        text = event.get("stdout")
        if isinstance(text, str) and text and not self._handle.closed:
            self._handle.write(text + "\n")
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()


# ``ok: [web1] => (item=...)``: the loop item as ansible prints it (its label, or its whole value).
ITEM_LABEL = re.compile(r"\(item=.*?\)(?= =>|\s*$)", re.MULTILINE)
# The ``item:`` key of a loop result printed in YAML (callback_result_format = yaml), with its block.
ITEM_BLOCK = re.compile(r"^(?P<indent>[ \t]*)(?:item|_ansible_item_label):(?:[^\n]*)(?:\n(?P=indent)[ \t]+[^\n]*)*",
                        re.MULTILINE)
ITEM_KEYS = ("item", "_ansible_item_label")


def _mask_items(res: Any) -> Any:
    """A result with its loop items masked: they are the loop's input data, not the task's outcome."""
    if not isinstance(res, dict):
        return res
    res = {k: (MASK if k in ITEM_KEYS else v) for k, v in res.items()}
    if isinstance(res.get("results"), list):
        res["results"] = [_mask_items(r) for r in res["results"]]
    return res


def scrub_event(event: Any, redactor: Redactor) -> Any:
    """One ansible-runner event redacted in place (and returned): plain text, no loop item, no secret."""
    if not isinstance(event, dict):
        return event
    if isinstance(event.get("stdout"), str):
        text = ITEM_BLOCK.sub(lambda m: f"{m.group('indent')}item: {MASK}", ANSI.sub("", event["stdout"]))
        event["stdout"] = redactor.text(ITEM_LABEL.sub(f"(item={MASK})", text))
    data = event.get("event_data")
    if isinstance(data, dict):
        data = {k: (MASK if k in ITEM_KEYS else v) for k, v in data.items()}
        if "res" in data:
            data["res"] = _mask_items(data["res"])
        event["event_data"] = redactor.data(_plain_text(data))
    for key in [k for k in event if k not in ("stdout", "event_data")]:
        if isinstance(event[key], (str, dict, list)):
            event[key] = redactor.data(_plain_text(event[key]))
    return event


def redact_runner_partials(redactor: Redactor, modules: Mapping[str, Any] | None = None) -> bool:
    """Inside ansible-playbook under ansible-runner: scrub each event's data before it is written.

    ansible-runner's display callback (``awx_display``) writes every event's data to
    ``job_events/<uuid>-partial.json`` for ansible-runner to merge; this wraps the writer, so the
    file holds what :func:`scrub_event` leaves, redacted with ``redactor`` as it is at that moment
    (the evidence callback keeps adding to it). Returns whether the display callback was found
    (not under plain ansible-playbook).
    """
    for name, module in list((modules if modules is not None else sys.modules).items()):
        if not name.endswith("awx_display"):
            continue
        cache = getattr(getattr(module, "event_context", None), "cache", None)
        if cache is None or not callable(getattr(cache, "set", None)):
            continue
        if getattr(cache, "carepath_redactor", None) is None:
            original = cache.set

            def scrubbed(key: str, value: Any, _original: Any = original, _cache: Any = cache) -> Any:
                return _original(key, scrub_event(value, _cache.carepath_redactor))

            cache.set = scrubbed
        cache.carepath_redactor = redactor
        return True
    return False


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


def _redact_event(path: Path, redactor: Redactor) -> bool:
    data = path.read_bytes()
    try:
        value: Any = json.loads(data)
    except ValueError:
        return _redact_text(path, redactor)
    clean = json.dumps(scrub_event(value, redactor), sort_keys=True).encode()
    if clean != data:
        write_atomic(path, clean)
        return True
    return False


def _redact_text(path: Path, redactor: Redactor) -> bool:
    text = path.read_text(encoding="utf-8", errors="replace")
    # Colour codes can split a pattern (``MRN:<reset>\n<red>  1234``); the artifact keeps plain text.
    clean = redactor.text(ITEM_LABEL.sub(f"(item={MASK})", ANSI.sub("", text)))
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
        if isinstance(record, dict):
            clean = redacted_command(record, redactor)
            if clean != command.read_bytes():
                write_atomic(command, clean)
                changed.append(command)
    for name in ("stdout", "stderr"):
        path = artifact_dir / name
        if path.is_file() and _redact_text(path, redactor):
            changed.append(path)
    for path in sorted((artifact_dir / "job_events").glob("*.json")):
        if _redact_event(path, redactor):
            changed.append(path)
    return changed
