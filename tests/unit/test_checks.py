"""Check and switch evaluation: each operator can hold and can fail."""

from __future__ import annotations

import pytest

from carepath import checks

OBSERVED = {
    "sshd": {"passwordauthentication": "no", "ciphers": "chacha20-poly1305@openssh.com,aes256-ctr",
             "maxauthtries": "4", "loglevel": "VERBOSE"},
    "file": {"/etc/ssh/sshd_config": {"exists": True, "owner": "root", "group": "root", "mode": "0600", "size": 2000},
             "/etc/issue.net": {"exists": False}},
    "package": {"telnet": {"installed": False}},
    "service": {"ssh": {"enabled": True, "active": True}},
    "sysctl": {"net.ipv4.ip_forward": "0"},
    "command": {"auditctl -l": "-w /etc/passwd -p wa -k identity"},
}


@pytest.mark.parametrize(
    "check",
    [
        {"sshd": {"passwordauthentication": {"equals": "no"}}},
        {"sshd": {"ciphers": {"subset_of": ["chacha20-poly1305@openssh.com", "aes256-ctr", "aes128-ctr"]}}},
        {"sshd": {"maxauthtries": {"min": 1, "max": 4}}},
        {"sshd": {"loglevel": {"in": ["VERBOSE", "DEBUG1"]}}},
        {"file": {"/etc/ssh/sshd_config": {"owner": "root", "group": "root", "mode_max": "0600", "min_size": 10}}},
        {"file": {"/etc/issue.net": {"exists": False}}},
        {"package": {"telnet": {"installed": False}}},
        {"service": {"ssh": {"enabled": True, "active": True}}},
        {"sysctl": {"net.ipv4.ip_forward": {"equals": 0}}},
        {"command": {"auditctl -l": {"contains": ["-w /etc/passwd", "identity"]}}},
    ],
)
def test_checks_that_hold(check):
    assert checks.evaluate_check(check, OBSERVED) == []


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ({"sshd": {"passwordauthentication": {"equals": "yes"}}}, "sshd passwordauthentication is 'no', expected 'yes'"),
        ({"sshd": {"ciphers": {"subset_of": ["aes256-ctr"]}}}, "includes ['chacha20-poly1305@openssh.com']"),
        ({"sshd": {"maxauthtries": {"max": 3}}}, "sshd maxauthtries is 4, above the maximum 3"),
        ({"sshd": {"maxauthtries": {"min": 5}}}, "below the minimum 5"),
        ({"sshd": {"loglevel": {"in": ["INFO"]}}}, "expected one of ['INFO']"),
        ({"sshd": {"banner": {"equals": "/etc/issue.net"}}}, "sshd banner is not set"),
        ({"file": {"/etc/ssh/sshd_config": {"mode_max": "0400"}}}, "mode is 0600, wider than 0400"),
        ({"file": {"/etc/ssh/sshd_config": {"owner": "sshd"}}}, "owner is 'root', expected 'sshd'"),
        ({"file": {"/etc/issue.net": {"owner": "root"}}}, "file /etc/issue.net does not exist"),
        ({"package": {"telnet": {"installed": True}}}, "package telnet installed is False, expected True"),
        ({"service": {"ssh": {"active": False}}}, "service ssh active is True, expected False"),
        ({"command": {"auditctl -l": {"contains": ["-k time-change"]}}}, "lacks ['-k time-change']"),
    ],
)
def test_checks_that_fail_say_why(check, problem):
    found = checks.evaluate_check(check, OBSERVED)
    assert len(found) == 1
    assert problem in found[0]


def test_booleans_compare_as_booleans():
    assert checks.evaluate({"v": {"equals": False}}, {"v": False}, "variable") == []
    assert checks.evaluate({"v": {"equals": False}}, {"v": "false"}, "variable") != []


def test_spec_validation_names_unknown_sources_and_operators():
    problems = checks.validate_spec({"kernel": {"x": {"equals": 1}}, "sshd": {"y": {"roughly": 2}}}, nested=True, where="c")
    assert "c: unknown source 'kernel'" in problems[0]
    assert "c: y: unknown operator 'roughly'" in problems[1]
    assert checks.validate_spec({"ssh_hardening_port": {"equals": 22}}, nested=False, where="s") == []


def test_a_failed_command_is_a_problem_whatever_it_printed():
    observed = {"command": {"find /usr/bin": {"rc": 1, "stdout": "", "stderr": "find: loop\nfind: a loop detected"}}}
    assert checks.evaluate_check({"command": {"find /usr/bin": {"equals": ""}}}, observed) == [
        "command find /usr/bin failed (exit 1): find: a loop detected"]
    observed["command"]["find /usr/bin"]["stderr"] = ""
    assert checks.evaluate_check({"command": {"find /usr/bin": {"equals": ""}}}, observed) == [
        "command find /usr/bin failed (exit 1)"]


def test_command_checks_read_the_output_the_module_returns():
    observed = {"command": {"auditctl -s": {"rc": 0, "stdout": "enabled 1\nfailure 1", "stderr": ""}}}
    assert checks.evaluate_check({"command": {"auditctl -s": {"contains": ["enabled 1"]}}}, observed) == []
    assert checks.evaluate_check({"command": {"auditctl -s": {"equals": "enabled 1\nfailure 1"}}}, observed) == []
    assert checks.evaluate_check({"command": {"auditctl -s": {"contains": ["enabled 2"]}}}, observed) == [
        "command auditctl -s lacks ['enabled 2']"
    ]


def test_none_of_forbids_elements_and_numbers_inside_ranges():
    ok = {"nft": {"tcp_open_to_any": {"none_of": [12575, 12576]}}}
    assert checks.evaluate_check(ok, {"nft": {"tcp_open_to_any": ["22", "2575", "8000-8100"]}}) == []
    assert checks.evaluate_check(ok, {"nft": {"tcp_open_to_any": ["22", "12575"]}}) == [
        "nft tcp_open_to_any includes ['12575'], which must not be there"]
    assert checks.evaluate_check(ok, {"nft": {"tcp_open_to_any": ["12000-13000"]}}) == [
        "nft tcp_open_to_any includes ['12575', '12576'], which must not be there"]
    # No firewall table read: nothing proves the ports are closed.
    assert checks.evaluate_check(ok, {"nft": {"tcp_open_to_any": None}}) == ["nft tcp_open_to_any is not set"]
    # Nothing forbidden (a host that is no engine): always holds.
    assert checks.evaluate_check({"nft": {"tcp_open_to_any": {"none_of": []}}}, {"nft": {"tcp_open_to_any": ["1-65535"]}}) == []


def test_journal_counts_are_checked_like_any_value():
    check = {"journal": {"carepath-hl7-*:MSH[|]": {"equals": 0}}}
    assert checks.evaluate_check(check, {"journal": {"carepath-hl7-*:MSH[|]": 0}}) == []
    assert checks.evaluate_check(check, {"journal": {"carepath-hl7-*:MSH[|]": 2}}) == [
        "journal carepath-hl7-*:MSH[|] is 2, expected 0"]
    assert checks.evaluate_check(check, {"journal": {"carepath-hl7-*:MSH[|]": None}}) == [
        "journal carepath-hl7-*:MSH[|] is not set"]


def test_first_word_in_reads_an_action_with_its_program():
    """auditd's ``space_left_action = exec /path`` is the action exec (CP-AUD-05)."""
    check = {"conf": {"/etc/audit/auditd.conf:space_left_action": {"first_word_in": ["email", "exec", "single"]}}}
    for value in ("exec /usr/local/sbin/carepath-audit-space-left", "single", "email"):
        assert checks.evaluate_check(check, {"conf": {"/etc/audit/auditd.conf:space_left_action": value}}) == []
    for value in ("syslog", "execute /bin/true", ""):
        found = checks.evaluate_check(check, {"conf": {"/etc/audit/auditd.conf:space_left_action": value}})
        assert len(found) == 1 and "expected one of" in found[0], (value, found)
