"""One run id per run: the evidence bundle, the deploy lock and the host history carry the same one,
whether carepath chose it (CAREPATH_RUN_ID) or the evidence callback did (plain ansible-playbook,
ansible-runner, AWX); and one evidence key and folder. Real ansible-playbook runs on the controller;
no host needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from carepath import evidence, project, runid
from carepath.project import Project
from tests.conftest import BIN, ROOT, cli_env

PLAYBOOK = """---
- name: Read the run id as the deploy lock does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write what the lookup and the environment say
      ansible.builtin.copy:
        content: "{{ {'lookup': lookup('carepath.core.carepath_run_id', 'adt'),
                      'env': lookup('ansible.builtin.env', 'CAREPATH_RUN_ID')} | to_json }}"
        dest: "{{ out_dir }}/seen.json"
        mode: "0600"
"""


def _run(work: Path, **env: str) -> tuple[dict, str]:
    (work / "read_run_id.yml").write_text(PLAYBOOK, encoding="utf-8")
    key = work / "keys" / "evidence.key"
    if not key.exists():
        evidence.generate_keypair(key, key.with_suffix(".pub"))
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"out_dir={work}",
         "-e", f"ansible_python_interpreter={sys.executable}", str(work / "read_run_id.yml")],
        capture_output=True, text=True, cwd=work, check=False,
        env=cli_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), CAREPATH_EVIDENCE_DIR=str(work / "evidence"),
                    CAREPATH_EVIDENCE_KEY=str(key), CAREPATH_SITE="runid", CAREPATH_CHANGE_TICKET="CHG0000042",
                    **env))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    seen = json.loads((work / "seen.json").read_text(encoding="utf-8"))
    bundles = sorted((work / "evidence" / "runid" / "bundles").iterdir(), key=lambda p: p.stat().st_mtime)
    run = json.loads((bundles[-1] / "run.json").read_text(encoding="utf-8"))
    assert run["run_id"] == bundles[-1].name
    return seen, run["run_id"]


def test_plain_ansible_playbook_gives_the_bundles_run_id_to_the_run(tmp_path: Path):
    seen, bundle_id = _run(tmp_path)
    assert re.fullmatch(r"\d{8}T\d{6}Z-read_run_id-[0-9a-f]{6}", bundle_id)
    assert seen == {"lookup": bundle_id, "env": bundle_id}


def test_a_run_id_chosen_by_the_launcher_is_the_one_everything_carries(tmp_path: Path):
    seen, bundle_id = _run(tmp_path, CAREPATH_RUN_ID="20261206T100000Z-site-abc123")
    assert bundle_id == "20261206T100000Z-site-abc123"
    assert seen == {"lookup": bundle_id, "env": bundle_id}
    # Given twice, the second run gets an id of its own, and its tasks see that one.
    seen, second = _run(tmp_path, CAREPATH_RUN_ID="20261206T100000Z-site-abc123")
    assert second.startswith("20261206T100000Z-site-abc123-") and seen["lookup"] == second


def test_without_the_callback_the_lookup_makes_one_the_same_way(monkeypatch: pytest.MonkeyPatch):
    sys.path.insert(0, str(ROOT / "plugins" / "lookup"))
    try:
        import carepath_run_id  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    monkeypatch.delenv(runid.RUN_ID_ENV, raising=False)
    (made,) = carepath_run_id.LookupModule().run(["adt"])
    assert re.fullmatch(r"\d{8}T\d{6}Z-adt-[0-9a-f]{6}", made)
    monkeypatch.setenv(runid.RUN_ID_ENV, "20261206T100000Z-x-000000")
    assert carepath_run_id.LookupModule().run(["adt"]) == ["20261206T100000Z-x-000000"]


def test_plain_ansible_playbook_signs_with_the_key_and_writes_where_carepath_run_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One key path: with nothing but the state folder set, the callback under a plain ansible-playbook
    takes carepath.project's key and evidence folder, the ones `carepath run`, `lab up` and keygen use."""
    state = tmp_path / "state"
    for name in (project.EVIDENCE_KEY_ENV, project.EVIDENCE_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(project.STATE_DIR_ENV, str(state))
    key, evidence_dir = project.evidence_key(ROOT), project.evidence_dir(ROOT)
    assert (key, evidence_dir) == (Project(ROOT).evidence_key, Project(ROOT).evidence_dir)
    assert key.is_relative_to(state) and evidence_dir.is_relative_to(state)
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    (tmp_path / "read_run_id.yml").write_text(PLAYBOOK, encoding="utf-8")
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"out_dir={tmp_path}",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "read_run_id.yml")],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=cli_env(CAREPATH_SITE="runid", CAREPATH_CHANGE_TICKET="CHG0000042"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (bundle,) = (evidence_dir / "runid" / "bundles").iterdir()
    assert evidence.verify_bundle(bundle, [evidence.load_public_key(key.with_suffix(".pub"))]).ok
