"""carepath run's output to a pipe or a file holds no terminal escape codes (issue 15, item 5).

ansible-runner runs ansible-playbook on a pseudo-terminal, so Ansible colours its output; carepath
prints each event's text after redacting it, which also takes the escape codes out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import carepath, cli_env

ESC = "\x1b["


def test_output_to_a_pipe_holds_no_escape_codes(tmp_path: Path) -> None:
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
    proc = carepath("run", str(tmp_path / "pb.yml"), "-i", str(tmp_path / "hosts.ini"),
                    env=cli_env(CAREPATH_STATE_DIR=str(tmp_path / "state"), CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"),
                                CAREPATH_EVIDENCE_WITNESS="none"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "changed: [web1]" in proc.stdout
    assert ESC not in proc.stdout and ESC not in proc.stderr
