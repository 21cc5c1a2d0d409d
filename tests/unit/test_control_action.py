"""The role-wide control check: tag selection, exceptions, containers, drift."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "carepath_control_action", Path(__file__).resolve().parents[2] / "plugins" / "action" / "carepath_control.py"
)
action = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(action)

FORWARDING = {"id": "CP-OS-01", "title": "No routing", "tags": ["cp_os_01", "cis_3_3_1"],
              "check": {"sysctl": {"net.ipv4.ip_forward": {"equals": 0}}}, "container": "unsupported"}
UMASK = {"id": "CP-OS-13", "title": "umask", "tags": ["cp_os_13"],
         "check": {"conf": {"/etc/login.defs:UMASK": {"equals": "027"}}}}
OBSERVED = {"sysctl": {"net.ipv4.ip_forward": "1"}, "conf": {"/etc/login.defs:UMASK": "022"}}


def test_an_untagged_run_checks_everything_and_a_tagged_run_only_what_it_selects() -> None:
    assert action.selected(UMASK, "os_hardening", ["all"], [])
    assert action.selected(FORWARDING, "os_hardening", ["cis_3_3_1"], [])
    assert not action.selected(UMASK, "os_hardening", ["cis_3_3_1"], [])
    assert action.selected(UMASK, "os_hardening", ["os_hardening"], [])  # the whole role
    assert not action.selected(FORWARDING, "os_hardening", ["all"], ["cp_os_01"])


def test_drift_is_reported_with_its_problem() -> None:
    report, error = action.evaluate(UMASK, OBSERVED, [], in_container=False)
    assert (report["status"], error) == ("drifted", None)
    assert "022" in report["problems"][0]


AUDITD = {"id": "CP-AUD-03", "title": "auditd runs", "tags": ["cp_aud_03"],
          "check": {"service": {"auditd": {"active": True}}}, "container": "unsupported"}
REDIRECTS = {"id": "CP-OS-02", "title": "No redirects", "tags": ["cp_os_02"], "container": "unsupported",
             "check": {"sysctl": {"net.ipv4.conf.all.accept_redirects": {"equals": 0},
                                  "kernel.kptr_restrict": {"equals": 2}}}}


def test_a_kernel_control_is_not_applicable_in_a_container_but_checked_on_a_vm() -> None:
    observed = {"service": {"auditd": {"active": False}}}
    assert action.evaluate(AUDITD, observed, [], in_container=True)[0]["status"] == "not_applicable"
    assert action.evaluate(AUDITD, observed, [], in_container=False)[0]["status"] == "drifted"


def test_kernel_parameters_are_judged_by_whether_they_can_be_written_here_not_by_container() -> None:
    # A container whose /proc/sys is writable (privileged, as a VM or bare metal): the value that
    # did not hold is drift, and the run fails on it (issue 15: it passed as not_applicable).
    writable = {**OBSERVED, "sysctl_read_only": []}
    report = action.evaluate(FORWARDING, writable, [], in_container=True)[0]
    assert report["status"] == "drifted" and "net.ipv4.ip_forward" in report["problems"][0]
    # Read-only here (an unprivileged container, or a VM that locked it): not applicable, named.
    read_only = {**OBSERVED, "sysctl_read_only": ["net.ipv4.ip_forward"]}
    report = action.evaluate(FORWARDING, read_only, [], in_container=False)[0]
    assert report["status"] == "not_applicable" and "net.ipv4.ip_forward" in report["problems"][0]
    # Partly writable: the writable parameter is still checked.
    partly = {"sysctl": {"net.ipv4.conf.all.accept_redirects": "1", "kernel.kptr_restrict": "0"},
              "sysctl_read_only": ["kernel.kptr_restrict"]}
    report = action.evaluate(REDIRECTS, partly, [], in_container=True)[0]
    assert report["status"] == "drifted"
    assert report["problems"] and all("accept_redirects" in p for p in report["problems"])


def test_an_exception_excepts_and_an_expired_one_is_an_error() -> None:
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()  # within the site's longest (365 days)
    valid = {"control": "CP-OS-13", "reason": "legacy app", "owner": "ops@example.org", "expires": soon}
    report, error = action.evaluate(UMASK, OBSERVED, [valid], in_container=False)
    assert (report["status"], error, report["exception"]["owner"]) == ("excepted", None, "ops@example.org")
    expired = dict(valid, expires="2020-01-01")
    report, error = action.evaluate(UMASK, OBSERVED, [expired], in_container=False)
    assert report["status"] == "failed" and "expired" in error
