"""carepath run colours its output on a terminal only, and honours NO_COLOR (issue 15, item 5).

ansible-runner runs ansible-playbook on a pseudo-terminal, so Ansible colours its output; carepath
prints each event's text after redacting it, which also takes the escape codes out.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import BIN, carepath, cli_env

ESC = "\x1b["


def _project(tmp_path: Path) -> None:
    """A local host and a playbook with one changed task (Ansible colours it yellow on a terminal)."""
    (tmp_path / "hosts.ini").write_text(f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "pb.yml").write_text("""---
- name: Say something
  hosts: all
  gather_facts: false
  tasks:
    - name: A changed result, which Ansible colours yellow on a terminal
      ansible.builtin.command: "true"
      changed_when: true
""")


def test_output_to_a_pipe_holds_no_escape_codes(tmp_path: Path) -> None:
    _project(tmp_path)
    proc = carepath("run", str(tmp_path / "pb.yml"), "-i", str(tmp_path / "hosts.ini"),
                    env=cli_env(CAREPATH_STATE_DIR=str(tmp_path / "state"), CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"),
                                CAREPATH_EVIDENCE_WITNESS="none"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "changed: [web1]" in proc.stdout
    assert ESC not in proc.stdout and ESC not in proc.stderr


def _under_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """What ``argv`` prints on a pseudo-terminal (as a person at a console sees it)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_colour_unless_no_color_is_set(tmp_path: Path) -> None:
    _project(tmp_path)
    argv = [str(BIN / "carepath"), "run", str(tmp_path / "pb.yml"), "-i", str(tmp_path / "hosts.ini")]
    base = {"CAREPATH_STATE_DIR": str(tmp_path / "state"), "CAREPATH_EVIDENCE_DIR": str(tmp_path / "ev"),
            "CAREPATH_EVIDENCE_WITNESS": "none", "TERM": "xterm"}
    env = cli_env(**base)
    env.pop("NO_COLOR", None)
    env.pop("ANSIBLE_NOCOLOR", None)
    coloured = _under_a_terminal(argv, env)
    assert "\x1b[0;33mchanged: [web1]" in coloured, coloured[-2000:]  # yellow, as Ansible colours a change
    plain = _under_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert "changed: [web1]" in plain and ESC not in plain, plain[-2000:]
    # The artifacts and the evidence hold plain text whatever the terminal.
    stdout_files = list((tmp_path / "state").rglob("artifacts/*/stdout"))
    assert stdout_files and all(ESC not in f.read_text() for f in stdout_files)
