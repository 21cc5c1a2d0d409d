"""Ctrl-C or SIGTERM on `carepath run` stops ansible-playbook and everything it started.

ansible-runner starts ansible-playbook in a session of its own, and Ansible's workers start
sessions of their own too: before, `carepath run` said "canceled" while the task went on.
Runs on the controller alone (connection local): the task sleeps, then writes a marker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN, cli_env

PLAYBOOK = """---
- name: Sleep then write a marker
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep a minute, then write the marker
      ansible.builtin.shell: "sleep 60 && touch {marker}"
      changed_when: true
"""


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def left(*needles: str) -> list[str]:
    return [f"{pid}: {line}" for pid, line in cmdlines().items() if any(n in line for n in needles)]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_ansible_playbook_and_its_children(tmp_path: Path, signum: int, code: int) -> None:
    unique = uuid.uuid4().hex[:12]
    marker = tmp_path / f"marker-{unique}"
    playbook = tmp_path / f"stop-{unique}.yml"
    playbook.write_text(PLAYBOOK.format(marker=marker))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    proc = subprocess.Popen(
        [str(BIN / "carepath"), "run", str(playbook), "-i", str(inventory)],
        env=cli_env(CAREPATH_STATE_DIR=str(tmp_path / "state"), CAREPATH_EVIDENCE_DIR=str(tmp_path / "evidence")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not left(f"sleep 60 && touch {marker}"):
            assert proc.poll() is None and time.monotonic() < deadline, "the task never started"
            time.sleep(0.2)
        assert left(str(playbook)), "ansible-playbook is not running"
        proc.send_signal(signum)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=15)
        # Within ~15 s: carepath and every process of the run are gone.
        while left(str(playbook), str(marker)) and time.monotonic() - stopped < 15:
            time.sleep(0.2)
        assert left(str(playbook), str(marker)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for line in left(str(playbook), str(marker)):
            subprocess.run(["kill", "-9", line.split(":")[0]], check=False)
    name = signal.Signals(signum).name
    assert proc.returncode == code, err[-2000:]
    assert f"stopped by {name}; ansible-playbook and its children are stopped" in err
    assert not marker.exists()
    # ansible-playbook had its chance to stop on SIGINT: its evidence callback recorded the end of the run.
    (run_json,) = (tmp_path / "evidence").rglob("run.json")
    assert json.loads(run_json.read_text())["status"] not in ("successful", "failed")
    (private,) = (tmp_path / "state" / "runs").iterdir()
    assert not list(private.rglob("*.fifo")) and (private / "artifacts" / private.name / "command").is_file()
