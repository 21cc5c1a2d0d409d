"""The control catalog is the single source: roles, tags, audit tasks and docs agree with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from carepath import checks, controls, policy
from carepath.errors import CarepathError

ROOT = Path(__file__).resolve().parents[2]
CATALOG = controls.load()


def test_derived_files_are_in_sync_with_the_catalog():
    stale = controls.sync(ROOT, write=False)
    assert stale == [], "run `carepath controls sync`"


def test_a_task_and_the_catalog_disagreeing_is_caught(tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(ROOT / "roles", root / "roles")
    banner = root / "roles" / "ssh_hardening" / "tasks" / "banner.yml"
    banner.write_text(banner.read_text().replace("Write the pre-login banner", "Write a banner"), encoding="utf-8")
    with pytest.raises(CarepathError, match="CP-SSH-17: no task named 'Write the pre-login banner'"):
        controls.sync(root, write=False)
    audit = root / "roles" / "ssh_hardening" / "tasks" / "audit.yml"
    banner.write_text(banner.read_text().replace("Write a banner", "Write the pre-login banner"), encoding="utf-8")
    audit.write_text(audit.read_text().replace("id: CP-SSH-05", "id: CP-SSH-55"), encoding="utf-8")
    assert audit in controls.sync(root, write=False)


def test_every_control_is_checked_once_by_its_role_with_the_catalog_tags():
    for role in sorted({c.role for c in CATALOG}):
        tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "audit.yml").read_text())
        (audit,) = [t for t in tasks if "carepath.core.carepath_control" in t]
        assert audit["name"] == controls.audit_task_name(role)
        listed = {entry["id"]: entry for entry in audit["carepath.core.carepath_control"]["controls"]}
        mine = [c for c in CATALOG if c.role == role]
        assert sorted(listed) == sorted(c.id for c in mine)
        for control in mine:
            assert listed[control.id]["tags"] == control.tags
            assert listed[control.id]["check"] == control.check
            assert set(control.tags) <= set(audit["tags"])


def test_tags_are_derived_from_ids():
    ssh05 = controls.by_id(CATALOG)["CP-SSH-05"]
    assert ssh05.tags == ["cp_ssh_05", "hipaa_164_312_d", "nist_ia_2", "nist_ia_5"]
    ssh09 = controls.by_id(CATALOG)["CP-SSH-09"]
    assert "hipaa_164_312_a_2_iii" in ssh09.tags and "cis_5_1_7" in ssh09.tags


def test_role_defaults_satisfy_every_switch():
    for control in CATALOG:
        defaults = yaml.safe_load((ROOT / "roles" / control.role / "defaults" / "main.yml").read_text())
        for variable, ops in control.switch.items():
            name = variable.partition("[")[0]
            assert name in defaults, f"{control.id}: switch {variable} is not a variable of {control.role}"
            found, value = policy.lookup(defaults, variable)
            if found:  # a key of a dict variable (name[key]) may be absent from the default
                assert checks.evaluate({variable: ops}, {variable: value}, "default") == [], control.id


def test_the_generated_table_lists_every_control():
    text = (ROOT / "roles" / "CONTROLS.md").read_text()
    for control in CATALOG:
        assert f"| {control.id} | {control.title}" in text


def test_catalog_errors_are_reported(tmp_path):
    bad = tmp_path / "controls.yml"
    bad.write_text(yaml.safe_dump({"controls": [
        {"id": "CP-X-1", "title": "t", "role": "r", "feature": "f", "task": "t", "cis": [], "hipaa": ["164.999(a)"],
         "nist": [], "check": {"kernel": {}}},
    ]}))
    with pytest.raises(CarepathError) as excinfo:
        controls.load(bad)
    text = str(excinfo.value)
    assert "id must be unique and look like CP-AREA-NN" in text
    assert "'164.999(a)' is not a 45 CFR 164 section" in text
    assert "unknown source 'kernel'" in text


def test_the_compilers_check_looks_for_the_names_the_task_protects():
    (control,) = [c for c in CATALOG if c.id == "CP-OS-29"]
    (command,) = control.check["command"]
    protected = yaml.safe_load((ROOT / "roles" / "os_hardening" / "vars" / "Debian.yml").read_text())
    assert f" -regex {protected['__os_hardening_compiler_regex']} " in command
