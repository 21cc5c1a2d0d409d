"""Observable behaviour of file_integrity: what AIDE itself makes of the policy, the baseline built in
the background, a tampered file caught, and the daily check reporting to the journal."""

from __future__ import annotations

import json
import time

import pytest

CONFIG = "/etc/aide/aide.conf"
DB = "/var/lib/aide/aide.db"
AIDE = f"aide --config={CONFIG}"
CANARY = "/usr/local/bin/carepath-canary"
ENGINE = "/srv/hl7/engine/bin/hl7-engine"  # under file_integrity_extra_paths (prepare.yml)
ENGINE_LOG = "/srv/hl7/engine/logs/engine.log"  # under file_integrity_extra_exclusions


def _covered(host, kind_path: str):
    """AIDE's own answer to "which rule covers this path?" (aide -p TYPE:PATH; exit 1 when none does)."""
    return host.run(f"{AIDE} -p {kind_path}")


def _journal(host, cursor: str, until: str, timeout: float = 120) -> list[dict]:
    """The aide entries after journal ``cursor``, once the line starting with `until` has reached the
    journal (journald reads a unit's output asynchronously, so it can lag behind the unit's end: more
    than 30 s once in CI, with several scenarios and a lab sharing 2 cores). Entries are not picked by
    the unit's invocation ID: journald reads that from the unit's cgroup, which is gone when it gets
    to a short-lived ExecStopPost's line late, so under load the result line can lack it."""
    deadline = time.monotonic() + timeout
    while True:
        out = host.check_output(f"journalctl --after-cursor='{cursor}' SYSLOG_IDENTIFIER=aide -o json --no-pager")
        entries = [json.loads(line) for line in out.splitlines()]
        if any(e["MESSAGE"].startswith(until) for e in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(1)


def _cursor(host) -> str:
    """The journal's current position (nothing of aide runs in between in this scenario)."""
    out = host.check_output("journalctl -n 0 --show-cursor --no-pager")
    return out.rsplit("-- cursor: ", 1)[1].strip()


@pytest.fixture(scope="module")
def baseline(host):
    """Wait (up to 3 minutes) for the baseline the role started in the background."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = host.check_output("systemctl show -P ActiveState carepath-aide-init.service")
        if state not in ("activating", "deactivating") and host.file(DB).exists:
            return host.check_output("systemctl show -P Result carepath-aide-init.service")
        time.sleep(2)
    pytest.fail("carepath-aide-init.service did not build the AIDE baseline within 3 minutes")


@pytest.fixture(scope="module")
def tampered(host, baseline):
    """Change watched files (and one that is excluded) after the baseline was taken."""
    assert baseline == "success"
    host.run(f"touch {CANARY} && echo '# tampered' >> {ENGINE} && echo 'more' >> {ENGINE_LOG}")
    return host


def test_aide_and_debians_tools_are_installed_without_the_unused_snippets(host):
    assert host.package("aide").is_installed
    assert host.package("aide-common").is_installed
    assert host.file("/etc/aide/aide.conf.d").listdir() == []


def test_the_policy_parses_and_only_root_can_read_it(host):
    assert host.run(f"aide --config-check --config={CONFIG}").rc == 0
    conf = host.file(CONFIG)
    assert conf.user == "root" and conf.mode == 0o600
    assert "@@x_include" not in conf.content_string


def test_system_files_are_watched_by_sha512(host):
    for kind_path in ("f:/usr/bin/passwd", "f:/etc/passwd", "f:/usr/lib/os-release", "l:/bin", "f:/root/.bashrc"):
        result = _covered(host, kind_path)
        assert result.rc == 0, result.stdout
        out = result.stdout
        assert "sha512" in out and "acl" in out and "xattrs" in out


def test_audit_tools_get_exactly_the_cis_attributes(host):
    out = _covered(host, "f:/usr/sbin/auditctl").stdout
    assert "selective rule: '/usr/sbin/auditctl$ f " in out
    attributes = out.split("' (")[0].rsplit(" ", 1)[1]
    assert sorted(attributes.split("+")) == sorted(["p", "i", "n", "u", "g", "s", "b", "acl", "xattrs", "sha512"])


def test_volatile_and_private_paths_are_not_watched(host):
    for kind_path in ("f:/etc/adjtime", "f:/etc/resolv.conf", "f:/var/log/syslog", "f:/tmp/x", "f:/home/clinician/notes",
                      f"f:{ENGINE_LOG}"):
        result = _covered(host, kind_path)
        assert result.rc == 1 and result.stdout.startswith("[ ]"), result.stdout


def test_the_extra_path_from_inventory_is_watched(host):
    result = _covered(host, f"f:{ENGINE}")
    assert result.rc == 0 and "'/srv/hl7/engine CarepathStatic'" in result.stdout


def test_the_baseline_was_built_in_the_background_and_is_root_only(host, baseline):
    assert baseline == "success"
    db = host.file(DB)
    assert db.user == "root" and db.mode == 0o600
    assert host.file("/var/lib/aide").mode == 0o700
    journal = host.check_output("journalctl -u carepath-aide-init.service -t aide --no-pager -o cat")
    assert "AIDE successfully initialized database." in journal


def test_aide_check_catches_the_tampered_files_and_not_the_excluded_log(tampered):
    result = tampered.run(f"{AIDE} --check")
    # 1-7: differences found (bits: 1 added, 2 removed, 4 changed).
    assert 1 <= result.rc <= 7, result.stderr
    assert result.rc & 1 and result.rc & 4
    assert "AIDE found differences between database and filesystem" in result.stdout
    assert f": {CANARY}\n" in result.stdout
    assert f": {ENGINE}\n" in result.stdout
    assert ENGINE_LOG not in result.stdout


def test_the_daily_timer_is_ours_and_scheduled(host):
    assert host.service("carepath-aide-check.timer").is_enabled
    assert host.service("carepath-aide-check.timer").is_running
    show = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show -p TimersCalendar -p NextElapseUSecRealtime -p RandomizedDelayUSec -p Persistent "
            "carepath-aide-check.timer"
        ).splitlines()
    )
    assert "*-*-* 03:15:00" in show["TimersCalendar"]
    assert show["NextElapseUSecRealtime"] not in ("", "0", "n/a")
    assert show["RandomizedDelayUSec"] == "30min"
    assert show["Persistent"] == "yes"
    # The package's own timer is masked, so checks are not doubled.
    assert host.run("systemctl is-enabled dailyaidecheck.timer").stdout.strip() == "masked"
    assert not host.service("dailyaidecheck.timer").is_running


def test_the_check_service_reports_to_the_journal_with_a_result_line(tampered):
    host = tampered
    cursor = _cursor(host)
    assert host.run("systemctl start carepath-aide-check.service").rc == 0
    assert host.check_output("systemctl show -P Result carepath-aide-check.service") == "success"
    report = _journal(host, cursor, until="AIDE check result:")
    messages = [e["MESSAGE"] for e in report]
    assert "AIDE found differences between database and filesystem!!" in messages
    assert any(m.endswith(f": {CANARY}") for m in messages)
    assert any(m.startswith("Summary:") or m == "Summary:" for m in messages)
    # Facility authpriv (10), so syslog and log forwarding file it with security messages.
    assert {e["SYSLOG_FACILITY"] for e in report} == {"10"}
    results = [e for e in report if e["MESSAGE"].startswith("AIDE check result:")]
    assert len(results) == 1
    assert results[0]["PRIORITY"] == "4"  # warning
    assert "DIFFERENCES from the baseline (added, " in results[0]["MESSAGE"]
    assert "changed entries; exit " in results[0]["MESSAGE"]
