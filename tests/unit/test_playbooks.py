"""The entry-point playbooks agree with each other and with the roles."""

from __future__ import annotations

from pathlib import Path

import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def _load(name: str) -> list[dict]:
    return yaml.safe_load((PLAYBOOKS / name).read_text(encoding="utf-8"))


def test_site_runs_the_policy_gate_then_the_preflight_before_any_role():
    site = _load("site.yml")
    assert [p.get("ansible.builtin.import_playbook") for p in site[:2]] == ["policy_gate.yml", "preflight.yml"]
    assert all("roles" not in play for play in site[:2])


def test_preflight_validates_exactly_the_roles_site_applies():
    roles = [r["role"] for r in _load("site.yml")[2]["roles"]]
    validate = _load("preflight.yml")[0]["tasks"][0]
    assert "validate_argument_spec" in next(k for k in validate if k.startswith("ansible.builtin."))
    assert validate["loop"] == roles


def test_every_guarded_role_has_a_preflight_entry_point():
    included = [
        t["ansible.builtin.include_role"]
        for t in _load("preflight.yml")[0]["tasks"]
        if "ansible.builtin.include_role" in t
    ]
    assert {i["name"] for i in included} == {"ssh_hardening", "firewall", "log_forwarding"}
    for include in included:
        assert (PLAYBOOKS.parent / "roles" / include["name"] / "tasks" / include["tasks_from"]).is_file()
