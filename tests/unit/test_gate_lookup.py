"""The gate lookup's `optional` groups: silent for the baseline's kinds of host a site lacks, never elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from carepath import evidence
from tests.conftest import BIN, ROOT, cli_env

PLAYBOOK = """---
- name: Optional group the site does not have
  hosts: "{{ lookup('carepath.core.carepath_gate', 'hl7_lb', optional=true) }}"
  gather_facts: false
  tasks:
    - {name: Never, ansible.builtin.debug: {msg: not-this-one}}
- name: Optional group the site has
  hosts: "{{ lookup('carepath.core.carepath_gate', 'web', optional=true) }}"
  gather_facts: false
  tasks:
    - {name: Mark the optional group's host, ansible.builtin.debug: {msg: optional-web-ran}}
- name: Localhost is never rewritten
  hosts: "{{ lookup('carepath.core.carepath_gate', 'localhost', optional=true) }}"
  gather_facts: false
  tasks:
    - {name: Mark localhost, ansible.builtin.debug: {msg: localhost-ran}}
- name: A deploy's group is never optional
  hosts: "{{ lookup('carepath.core.carepath_gate', 'webapp_lb') }}"
  gather_facts: false
  tasks:
    - {name: Never either, ansible.builtin.debug: {msg: not-this-one}}
"""


def test_only_optional_groups_a_site_lacks_are_matched_silently(tmp_path: Path) -> None:
    key = tmp_path / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    inventory = tmp_path / "site"
    inventory.mkdir()
    (inventory / "hosts.ini").write_text(
        f"[web]\nweb1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env=cli_env(CAREPATH_EVIDENCE_KEY=str(key), CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"),
                                      CAREPATH_EVIDENCE_WITNESS="none"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Could not match supplied host pattern, ignoring: hl7_lb" not in out
    assert "Could not match supplied host pattern, ignoring: webapp_lb" in out  # a deploy's missing group is said
    assert "optional-web-ran" in out and "localhost-ran" in out and "not-this-one" not in out


def test_evidence_settings_ansible_cfg_no_longer_gives_stop_the_run_before_any_host(tmp_path: Path) -> None:
    """[carepath_evidence] signing_key in an ansible.cfg would sign with another key than `carepath run`:
    the gate says what to do instead, before any host."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text((ROOT / "ansible.cfg").read_text(encoding="utf-8")
                   + "signing_key = /etc/carepath/evidence.key ; the site's old setting\n", encoding="utf-8")
    inventory = tmp_path / "site"
    inventory.mkdir()
    (inventory / "hosts.ini").write_text(f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=tmp_path, check=False,
                          env=cli_env(ANSIBLE_CONFIG=str(cfg), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "playbooks" / "collections"),
                                      CAREPATH_EVIDENCE_DIR=str(tmp_path / "ev"), CAREPATH_EVIDENCE_WITNESS="none"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "[carepath_evidence] signing_key are no longer read" in " ".join(out.split()), out[-3000:]
    assert "CAREPATH_EVIDENCE_KEY" in out and "optional-web-ran" not in out and "localhost-ran" not in out
