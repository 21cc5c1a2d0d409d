"""Exceptions are rare and visible: malformed or expired ones, and silent switch-offs, are refused."""

from __future__ import annotations

import datetime as dt

import pytest

from carepath import controls, exceptions, policy

TODAY = dt.date(2026, 11, 22)
CATALOG = controls.load()
IDS = [c.id for c in CATALOG]
GOOD = {"control": "CP-SSH-05", "reason": "Legacy analyser logs in with a password", "owner": "ops@x", "expires": "2027-01-31"}


def test_a_valid_exception_passes():
    assert exceptions.problems([GOOD], IDS, TODAY) == []
    assert exceptions.problems([GOOD | {"expires": dt.date(2026, 11, 22), "ticket": "CHG-1"}], IDS, TODAY) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (GOOD | {"expires": "2026-11-21"}, "expired on 2026-11-21"),
        (GOOD | {"expires": "next year"}, "is not a date"),
        ({k: v for k, v in GOOD.items() if k != "owner"}, "missing owner"),
        (GOOD | {"reason": ""}, "missing reason"),
        (GOOD | {"reason": "because"}, "the reason must say why"),
        (GOOD | {"control": "CP-XYZ-99"}, "'CP-XYZ-99' is not a control in the catalog"),
        (GOOD | {"approved": True}, "unknown key(s) ['approved']"),
    ],
)
def test_bad_exceptions_are_named(entry, message):
    found = exceptions.problems([entry], IDS, TODAY)
    assert len(found) == 1
    assert message in found[0]
    assert found[0].startswith("carepath_exceptions[0] (")


def test_duplicates_and_non_lists():
    assert "excepted twice" in exceptions.problems([GOOD, GOOD], IDS, TODAY)[0]
    assert "must be a list" in exceptions.problems({"control": "CP-SSH-05"}, IDS, TODAY)[0]


def test_policy_passes_defaults_and_compliant_settings():
    assert policy.host_problems({}, CATALOG, TODAY) == []
    assert policy.host_problems({"ssh_hardening_max_auth_tries": 3, "ssh_hardening_port": 2222}, CATALOG, TODAY) == []


def test_policy_refuses_a_control_switched_off_without_an_exception():
    found = policy.host_problems({"ssh_hardening_password_authentication": True}, CATALOG, TODAY)
    assert len(found) == 1
    assert "ssh_hardening_password_authentication=True switches off CP-SSH-05" in found[0]


def test_an_exception_permits_the_switch_off():
    hostvars = {"ssh_hardening_password_authentication": True, "carepath_exceptions": [GOOD]}
    assert policy.host_problems(hostvars, CATALOG, TODAY) == []


def test_an_expired_exception_permits_nothing():
    hostvars = {"ssh_hardening_password_authentication": True, "carepath_exceptions": [GOOD | {"expires": "2020-01-01"}]}
    found = policy.host_problems(hostvars, CATALOG, TODAY)
    assert any("expired on 2020-01-01" in f for f in found)
    assert any("switches off CP-SSH-05" in f for f in found)


def test_turning_a_role_off_needs_an_exception_for_each_of_its_controls():
    found = policy.host_problems({"ssh_hardening_enabled": False}, CATALOG, TODAY)
    assert len(found) == len([c for c in CATALOG if c.role == "ssh_hardening"])


def test_weakening_an_algorithm_list_is_caught():
    found = policy.host_problems({"ssh_hardening_ciphers": ["aes128-cbc"]}, CATALOG, TODAY)
    assert "switches off CP-SSH-02" in found[0]


def test_a_feature_switch_and_a_dict_key_switch_need_exceptions():
    found = policy.host_problems({"os_hardening_sysctl_enabled": False}, CATALOG, TODAY)
    assert any("os_hardening_sysctl_enabled=False switches off CP-OS-01" in f for f in found)
    found = policy.host_problems({"os_hardening_sysctl_overrides": {"net.ipv4.ip_forward": 1}}, CATALOG, TODAY)
    assert len(found) == 1 and "switches off CP-OS-01" in found[0]
    assert policy.host_problems({"os_hardening_sysctl_overrides": {"vm.swappiness": 10}}, CATALOG, TODAY) == []


def test_the_gate_refuses_invalid_trust_zones_before_any_host_is_touched():
    found = policy.host_problems(
        {"firewall_zones": {"clinical": {"cidrs": ["10.20.0.1/16"]}, "lab": {"cidrs": ["10.20.5.0/24"]}},
         "firewall_flows": [{"name": "hl7", "from": "wards", "ports": [2575]}]},
        CATALOG, TODAY,
    )
    text = " | ".join(found)
    assert "use 10.20.0.0/16" in text
    assert "clinical" in text and "lab" in text and "overlap" in text
    assert "wards" in text
