"""How `carepath run` resolves its inputs, and refuses bad ones before touching a host."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from carepath import policy, runid, runner, zones
from carepath.errors import CarepathError
from carepath.project import Project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project() -> Project:
    return Project(ROOT)


@pytest.fixture
def empty_project(tmp_path: Path) -> Project:
    (tmp_path / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text("---\n", encoding="utf-8")
    return Project(tmp_path)


def test_playbook_by_name_by_file_name_and_by_path(project):
    expected = ROOT / "playbooks" / "site.yml"
    assert runner.resolve_playbook(project, "site") == expected
    assert runner.resolve_playbook(project, "site.yml") == expected
    assert runner.resolve_playbook(project, str(expected)) == expected


def test_unknown_playbook_lists_the_choices(project):
    with pytest.raises(CarepathError) as excinfo:
        runner.resolve_playbook(project, "deploy_nothing")
    assert "unknown playbook 'deploy_nothing'" in str(excinfo.value)
    assert "site" in str(excinfo.value.hint)


def test_lab_not_up_is_a_clear_error(empty_project):
    with pytest.raises(CarepathError) as excinfo:
        runner.resolve_inventory(empty_project, None)
    assert "the lab is not up" in str(excinfo.value)
    assert "carepath lab up" in str(excinfo.value)


def test_missing_inventory_path(project, tmp_path):
    with pytest.raises(CarepathError, match="does not exist"):
        runner.resolve_inventory(project, tmp_path / "nowhere")


def test_broken_inventory_is_refused_before_any_host(project, tmp_path):
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts:\n    web1: [not, a, mapping\n", encoding="utf-8")
    with pytest.raises(CarepathError, match="is not valid"):
        runner.validate_inventory(project, bad, None)


def test_inventory_hosts_and_limit(project, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    web1: {}\n    db1: {}\n", encoding="utf-8")
    assert runner.validate_inventory(project, inv, None) == ["db1", "web1"]
    assert runner.validate_inventory(project, inv, "web*") == ["web1"]
    with pytest.raises(CarepathError, match="no hosts matching --limit 'mail1'"):
        runner.validate_inventory(project, inv, "mail1")


def test_the_inventory_is_read_when_carepath_gets_a_non_blocking_stdin(project, tmp_path, monkeypatch):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    web1: {}\n", encoding="utf-8")
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)  # Ansible refuses to start on such a stdin
    saved = os.dup(0)
    try:
        os.dup2(read_end, 0)
        assert runner.validate_inventory(project, inv, None) == ["web1"]
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)


def test_cmdline_passes_check_diff_tags_and_extra_vars():
    request = runner.RunRequest(
        playbook="site", check=True, diff=True, tags="ssh_hardening", skip_tags="slow",
        extra_vars=("a=1", "@vars.yml"),
    )
    assert runner.cmdline(request) == [
        "--check", "--diff", "--tags", "ssh_hardening", "--skip-tags", "slow",
        "--extra-vars", "a=1", "--extra-vars", "@vars.yml",
    ]


def test_run_ids_are_unique_and_sortable():
    ids = {runid.new_run_id(Path("playbooks/site.yml")) for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-site-[0-9a-f]{6}", i) for i in ids)


def test_example_hospital_inventory_is_valid(project):
    hosts = runner.validate_inventory(project, ROOT / "inventories" / "example-hospital", None)
    assert hosts == ["hl7-engine-01", "hl7-engine-02", "lb-01", "logs-01", "portal-01"]
    assert runner.validate_inventory(project, ROOT / "inventories" / "example-hospital", "hl7_engines") == [
        "hl7-engine-01", "hl7-engine-02",
    ]


def test_example_hospital_passes_the_policy_gate_and_puts_every_host_in_a_zone():
    base = ROOT / "inventories" / "example-hospital"
    hostvars = yaml.safe_load((base / "group_vars" / "all.yml").read_text())
    assert policy.host_problems(hostvars) == []
    inventory = yaml.safe_load((base / "hosts.yml").read_text())
    addresses = []
    for group in inventory["all"]["children"]["servers"]["children"].values():
        addresses += [h["ansible_host"] for h in group["hosts"].values()]
    assert {zones.zone_of(hostvars["firewall_zones"], a) for a in addresses} == {"servers"}
    rules = zones.inbound_rules(hostvars["firewall_zones"], hostvars["firewall_flows"], "servers")
    assert zones.permits(rules, "198.51.100.7", 22) and not zones.permits(rules, "203.0.113.9", 22)
    assert zones.permits(rules, "203.0.113.9", 2575)
