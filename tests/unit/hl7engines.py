"""Real reference engines (src/carepath/data/hl7_engine/engine.py) as local processes, for unit tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ENGINE = Path(__file__).resolve().parents[2] / "src" / "carepath" / "data" / "hl7_engine" / "engine.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Engine:
    """One engine process: ``start()``, ``status()``, ``stop()`` (SIGTERM) or ``kill()`` (SIGKILL)."""

    def __init__(self, workdir: Path, name: str = "adt", *, destinations: list[dict[str, Any]] | None = None,
                 behaviour: str = "ok", version: str = "1.0.0", **config: Any) -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.status_port = free_port(), free_port()
        self.config = {
            "name": name, "colour": "blue", "listen": {"host": "127.0.0.1", "port": self.port},
            "status": {"host": "127.0.0.1", "port": self.status_port}, "store": str(self.dir / "store" / "store.db"),
            "destinations": destinations or [], "retry": {"initial": 0.1, "max": 1}, **config,
        }
        # The engine reads its release manifest next to itself: run a copy, as a release does.
        self.release = self.dir / "release"
        self.release.mkdir(exist_ok=True)
        (self.release / "engine.py").write_bytes(ENGINE.read_bytes())
        (self.release / "carepath-release.json").write_text(
            json.dumps({"app": "carepath-hl7-engine", "version": version, "behaviour": behaviour}))
        self.config_path = self.dir / "config.json"
        self.log = self.dir / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Engine:
        self.config_path.write_text(json.dumps(self.config))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(self.release / "engine.py"), "--config",
                                          str(self.config_path)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.status()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"engine exited: {self.log.read_text()}") from None
                time.sleep(0.05)
        raise AssertionError(f"engine did not start: {self.log.read_text()}")

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status", timeout=2) as answer:
            return json.loads(answer.read())

    def wait(self, predicate, timeout: float = 15) -> dict[str, Any]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        status = self.status()
        while not predicate(status):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status: {status}")
            time.sleep(0.05)
            status = self.status()
        return status

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
