"""What every carepath benchmark states about the conditions it ran in, and its reference unit.

Shared machines vary 2-3x in speed from one to the next and from minute to minute, so a number in
seconds alone says little. Each bench therefore prints the machine (CPU model, cores, memory,
kernel) and what it went through during the run (CPU steal, load average), and measures a
**reference unit in the same run**: the wall time of one Ansible task against the same lab host
(a playbook of ``ansible.builtin.ping`` tasks, over the same SSH path, per task). carepath's times
are printed in seconds and as multiples of that unit; a reader on another machine multiplies the
multiples by their own unit (any bench prints it) to know what to expect there.
"""

from __future__ import annotations

import configparser
import datetime as dt
import io
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
#: Tasks in the reference playbook; its per-task wall time is the unit.
REFERENCE_TASKS = 20


def carepath(*args: str) -> subprocess.CompletedProcess[str]:
    """The project's `carepath` command, run from the checkout, its output captured."""
    return subprocess.run([str(BIN / "carepath"), *args], capture_output=True, text=True, cwd=ROOT, check=False)


def machine() -> dict[str, str]:
    """The machine's fixed facts."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": model,
            "cores": str(os.cpu_count()), "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
            "kernel": platform.release()}


def _cpu_times() -> list[int]:
    with open("/proc/stat", encoding="utf-8") as handle:
        return [int(v) for v in handle.readline().split()[1:]]


@dataclass
class Watch:
    """Samples load average and CPU steal while a bench runs (a background thread, every second)."""

    loads: list[float] = field(default_factory=list)
    _start: list[int] = field(default_factory=list)
    _end: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._start = _cpu_times()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.loads.append(os.getloadavg()[0])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._end = _cpu_times()

    @property
    def steal_percent(self) -> float:
        """Share of CPU time the hypervisor gave to others (the 8th field of /proc/stat's cpu line)."""
        delta = [b - a for a, b in zip(self._start, self._end or _cpu_times(), strict=False)]
        total = sum(delta[:8]) or 1
        return 100.0 * (delta[7] if len(delta) > 7 else 0) / total

    def summary(self) -> str:
        loads = self.loads or [os.getloadavg()[0]]
        return (f"load average (1 min) median {statistics.median(loads):.2f}, max {max(loads):.2f}; "
                f"CPU steal {self.steal_percent:.1f} %")


def print_machine(title: str) -> None:
    facts = machine()
    print(f"{title}\nmachine: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}, "
          f"kernel {facts['kernel']}; {facts['date']}", flush=True)


def _plain_config() -> str:
    """The project's ansible.cfg connection settings (SSH multiplexing, pipelining, interpreter),
    without its plugins and callbacks: the unit is plain Ansible's cost of one task."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "ansible.cfg")
    keep = {"defaults": ("forks", "interpreter_python", "host_key_checking"), "ssh_connection": None}
    out = configparser.ConfigParser(interpolation=None)
    for section, keys in keep.items():
        if parser.has_section(section):
            out[section] = {k: v for k, v in parser[section].items() if keys is None or k in keys}
    buffer = io.StringIO()
    out.write(buffer)
    return buffer.getvalue()


def reference_unit(inventory: Path, host: str, tasks: int = REFERENCE_TASKS) -> float:
    """Seconds per Ansible task against ``host``: a playbook of ``tasks`` pings, over the project's
    project's SSH settings (as carepath's runs have them), without carepath's plugins."""
    with tempfile.TemporaryDirectory(prefix="carepath-ref-") as tmp:
        playbook = Path(tmp) / "reference.yml"
        steps = "\n".join(f"    - name: Ping {i}\n      ansible.builtin.ping:" for i in range(tasks))
        playbook.write_text(f"---\n- name: Reference unit\n  hosts: all\n  gather_facts: false\n  tasks:\n{steps}\n")
        config = Path(tmp) / "ansible.cfg"
        config.write_text(_plain_config())
        env = {**os.environ, "ANSIBLE_CONFIG": str(config), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), "--limit", host, str(playbook)]
        # One warm-up run opens the SSH master connection (ControlPersist), as a carepath run has.
        subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        start = time.monotonic()
        subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        return (time.monotonic() - start) / tasks


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median M (min-max, n=N)`` of ``values``."""
    if not values:
        return "n/a"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return f"{med} (n=1)"
    return f"median {med} ({fmt.format(min(values))}-{fmt.format(max(values))}, n={len(values)})"
