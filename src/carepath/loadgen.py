"""Continuous HTTP load with a real load generator (wrk), recording which release answered.

``Load`` runs wrk (Debian's package) against a URL with several keep-alive connections and no
retries; its Lua script (data/wrk_versions.lua) writes one line per answer: wall-clock time,
HTTP status and the ``X-App-Version`` header. ``Load.stop()`` returns the answers and wrk's own
error counts, so a test can prove that no request failed and that every answer came from a
release that was live at that moment (``unexpected_versions``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carepath import procs

SCRIPT = Path(__file__).resolve().parent / "data" / "wrk_versions.lua"
_SUMMARY = re.compile(r"carepath-wrk requests=(\d+) connect=(\d+) read=(\d+) write=(\d+) status=(\d+) timeout=(\d+)")


@dataclass(frozen=True)
class Answer:
    at: float
    status: int
    version: str


@dataclass
class Result:
    answers: list[Answer]
    requests: int
    errors: dict[str, int]
    output: str

    @property
    def failed(self) -> int:
        """Requests that failed: socket errors, timeouts, and answers other than 2xx/3xx."""
        return sum(self.errors.values())


@dataclass
class Load:
    """``with Load(url) as load: ...; result = load.result`` (or call start/stop)."""

    url: str
    connections: int = 8
    threads: int = 2
    delay_ms: int = 2
    headers: Sequence[str] = ()
    result: Result | None = None
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def start(self) -> Load:
        procs.require("wrk", install_hint="apt-get install -y wrk")
        self._dir = tempfile.TemporaryDirectory(prefix="carepath-wrk-")
        env = {**os.environ, "CAREPATH_WRK_OUT": str(Path(self._dir.name) / "answers"),
               "CAREPATH_WRK_DELAY_MS": str(self.delay_ms)}
        argv = ["wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", "3600s",
                "--timeout", "10s", "-s", str(SCRIPT)]
        for header in self.headers:
            argv += ["-H", header]
        self._proc = subprocess.Popen([*argv, self.url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                                      text=True, env=env)
        # wrk opens its connections at once; wait for the first answers before the caller acts.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self.answers():
            if self._proc.poll() is not None:
                raise RuntimeError(f"wrk exited at start: {self._proc.stdout.read() if self._proc.stdout else ''}")
            time.sleep(0.05)
        if not self.answers():
            self.stop()
            raise RuntimeError(f"no answer from {self.url} within 15 s")
        return self

    def answers(self) -> list[Answer]:
        """Every answer so far (the files grow while wrk runs)."""
        if self._dir is None:
            return []
        found = []
        for path in Path(self._dir.name).glob("answers.*"):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    found.append(Answer(float(parts[0]), int(parts[1]), parts[2]))
        return sorted(found, key=lambda a: a.at)

    def wait_for_version(self, version: str, timeout: float = 120) -> float:
        """Block until an answer from ``version`` arrives; returns its time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((a for a in self.answers() if a.version == version), None)
            if hit:
                return hit.at
            time.sleep(0.05)
        raise TimeoutError(f"no answer from release {version} within {timeout} s")

    def stop(self) -> Result:
        if self._proc is None:
            raise RuntimeError("stop() before start()")
        self._proc.send_signal(signal.SIGINT)
        output, _ = self._proc.communicate(timeout=30)
        answers = self.answers()
        if self._dir is not None:
            self._dir.cleanup()
        match = _SUMMARY.search(output or "")
        if not match:
            raise RuntimeError(f"wrk did not report its summary:\n{output}")
        numbers = [int(n) for n in match.groups()]
        errors = dict(zip(("connect", "read", "write", "status", "timeout"), numbers[1:], strict=True))
        self.result = Result(answers=answers, requests=numbers[0], errors=errors, output=output)
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.result is None and self._proc is not None:
            self.stop()


@dataclass(frozen=True)
class Window:
    """From ``start`` to ``end`` (a deploy or rollback running) any of ``versions`` may answer."""

    start: float
    end: float
    versions: frozenset[str]
    after: str  # the one release live once the window is over


def unexpected_versions(answers: Iterable[Answer], first: str, windows: Sequence[Window]) -> list[Answer]:
    """Answers from a release that was not live at that moment.

    Before the first window only ``first`` is live; inside a window any of its versions; between
    windows, the release the previous window left live.
    """
    wrong = []
    for answer in answers:
        live = frozenset({first})
        for window in windows:
            if answer.at < window.start:
                break
            live = window.versions if answer.at <= window.end else frozenset({window.after})
        if answer.version not in live:
            wrong.append(answer)
    return wrong
