"""The ssh_hardening lock-out guard's rules, as sshd_config(5) applies them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "carepath_ssh_access.py"
_spec = importlib.util.spec_from_file_location("ssh_access", _PATH)
assert _spec and _spec.loader
ssh_access = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ssh_access)

SAFE = {
    "permit_root_login": False, "password_authentication": False, "allow_users": [], "allow_groups": [],
    "deny_users": [], "deny_groups": [], "port": 22, "listen_addresses": [],
}


def login(user="ops", groups=("ops", "sudo"), *, password=False, port=22, server="10.0.0.5"):
    text = f"{user}\n{' '.join(groups)}\n10.0.0.1 50000 {server} {port}\n"
    return ssh_access.parse_login(text) | {"password": password}


def test_parse_login_reads_id_and_ssh_connection():
    assert ssh_access.parse_login("ops\nops sudo\n10.0.0.1 5000 10.0.0.5 2222\n") == {
        "user": "ops", "groups": ["ops", "sudo"], "ssh": True, "client": "10.0.0.1",
        "server_address": "10.0.0.5", "server_port": 2222,
    }
    assert ssh_access.parse_login("root\nroot\n\n")["ssh"] is False


def test_default_hardening_is_safe_for_a_key_user():
    assert ssh_access.lockout_reasons(login(), SAFE) == []


@pytest.mark.parametrize(
    ("who", "change", "expected"),
    [
        (login(user="root", groups=["root"]), {}, "logs in as root"),
        (login(password=True), {}, "logs in with a password"),
        (login(), {"allow_groups": ["clinicians"]}, "is in no group of ssh_hardening_allow_groups"),
        (login(), {"allow_users": ["svc-*"]}, "matches no entry of ssh_hardening_allow_users"),
        (login(), {"allow_users": ["ops@192.168.*"]}, "matches no entry of ssh_hardening_allow_users"),
        (login(), {"deny_users": ["o?s"]}, "matches ssh_hardening_deny_users"),
        (login(), {"deny_groups": ["sud*"]}, "matched by ssh_hardening_deny_groups"),
        (login(), {"port": 2222}, "Ansible connects to port 22, and ssh_hardening_port is 2222"),
        (login(), {"listen_addresses": ["10.9.9.9"]}, "not in ssh_hardening_listen_addresses"),
    ],
)
def test_each_lockout_is_named(who, change, expected):
    reasons = ssh_access.lockout_reasons(who, SAFE | change)
    assert len(reasons) == 1
    assert expected in reasons[0]


@pytest.mark.parametrize(
    "change",
    [
        {"allow_groups": ["sudo"]},
        {"allow_groups": ["su*"]},
        {"allow_users": ["ops@10.0.0.*"]},
        {"allow_users": ["ops"], "allow_groups": ["ops"]},
        {"deny_users": ["guest"]},
        {"listen_addresses": ["10.0.0.5"]},
        {"password_authentication": True},
    ],
)
def test_settings_that_still_let_ansible_in(change):
    assert ssh_access.lockout_reasons(login(), SAFE | change) == []


def test_root_with_a_key_is_fine_when_root_may_use_keys():
    assert ssh_access.lockout_reasons(login(user="root", groups=["root"]), SAFE | {"permit_root_login": True}) == []


def test_a_connection_that_is_not_ssh_cannot_be_locked_out():
    local = ssh_access.parse_login("root\nroot\n\n") | {"password": False}
    assert ssh_access.lockout_reasons(local, SAFE | {"allow_groups": ["nobody-here"]}) == []


def test_several_problems_are_all_reported():
    reasons = ssh_access.lockout_reasons(login(user="root", groups=["root"]), SAFE | {"port": 2200})
    assert len(reasons) == 2
