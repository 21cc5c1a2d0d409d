"""A run killed with SIGKILL mid-way: the ledger still verifies and the run ends up marked aborted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carepath import evidence
from carepath.evidence.chain import walk_chain
from tests.conftest import BIN, ROOT, cli_env

PLAYBOOK = """---
- name: Slow
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Step one
      ansible.builtin.debug: {msg: one}
    - name: Step two
      ansible.builtin.debug: {msg: two}
    - name: Wait to be killed
      ansible.builtin.command: sleep 120
      changed_when: false
"""
QUICK = """---
- name: Quick
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Step
      ansible.builtin.debug: {msg: quick}
"""


def playbook_argv(path: Path) -> list[str]:
    return [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", str(path)]


def test_a_killed_run_leaves_a_verifiable_ledger_and_is_sealed_as_aborted_by_the_next(tmp_path: Path) -> None:
    key = tmp_path / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    public = evidence.load_public_key(key.with_suffix(".pub"))
    env = cli_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"),
                  CAREPATH_EVIDENCE_KEY=str(key), CAREPATH_SITE="site1")
    (tmp_path / "slow.yml").write_text(PLAYBOOK)
    (tmp_path / "quick.yml").write_text(QUICK)
    bundles, ledger = tmp_path / "ev" / "site1" / "bundles", tmp_path / "ev" / "site1" / "ledger.jsonl"

    subprocess.run(playbook_argv(tmp_path / "quick.yml"), env=env, cwd=tmp_path, check=True, capture_output=True)
    proc = subprocess.Popen(playbook_argv(tmp_path / "slow.yml"), env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            killed = [p for p in bundles.glob("*-slow-*/events.jsonl") if p.read_bytes().count(b"\n") >= 3]
            if killed:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the slow run recorded no events")
        time.sleep(0.5)  # inside `sleep 120` now
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_dir = killed[0].parent
    assert not (killed_dir / "run.json").exists()
    assert walk_chain(killed[0].read_bytes(), "events.jsonl").findings == []

    # Until the next run, the ledger verifies and names the killed run as incomplete.
    report = evidence.verify_ledger(ledger, bundles, [public])
    assert report.ok, str(report)
    assert report.facts["incomplete"] == [killed_dir.name]

    # The next run of the site seals it as aborted, with the events it had recorded.
    subprocess.run(playbook_argv(tmp_path / "quick.yml"), env=env, cwd=tmp_path, check=True, capture_output=True)
    report = evidence.verify_ledger(ledger, bundles, [public])
    assert report.ok and "incomplete" not in report.facts, str(report)
    assert report.facts["entries"] == 3
    record = json.loads((killed_dir / "run.json").read_text())
    assert record["status"] == "aborted" and record["events"]["count"] >= 3
    assert evidence.verify_bundle(killed_dir, [public]).ok
