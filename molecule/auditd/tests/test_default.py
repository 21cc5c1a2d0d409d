"""Observable behaviour of auditd in a container: package, configuration, rules on disk, the rule checker.

A container has no kernel audit subsystem: auditd running and the rules loaded (CP-AUD-03) are
proven by the lab's VM test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RULES = "/etc/audit/rules.d/50-carepath.rules"
ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))


def _conf(host) -> dict[str, str]:
    values = {}
    for line in host.file("/etc/audit/auditd.conf").content_string.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def _rules(host, path: str) -> list[str]:
    lines = host.file(path).content_string.splitlines()
    return [" ".join(line.split()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _module(host, args: str) -> subprocess.CompletedProcess[str]:
    """Run the role's carepath_audit_rules module directly on the container, as an ad-hoc task."""
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(ROOT / "playbooks" / "collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    argv = [str(Path(sys.executable).parent / "ansible"), "all", "-i", f"{host.backend.name},",
            "-c", "containers.podman.podman", "-e", "ansible_python_interpreter=/usr/bin/python3",
            "-m", "carepath.core.carepath_audit_rules", "-a", args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def test_auditd_is_installed_and_enabled_but_not_started_without_a_kernel_audit_subsystem(host):
    assert host.package("auditd").is_installed
    service = host.service("auditd")
    assert service.is_enabled
    assert not service.is_running
    # No audit netlink socket here: the reason the role skips the kernel half.
    assert host.run("auditctl -s").rc != 0
    # ... and it did not try: nothing was loaded, so nothing was recorded as loaded.
    assert not host.file("/var/lib/carepath/auditd.loaded").exists


def test_auditd_conf_keeps_logs_and_stops_rather_than_lose_records(host):
    conf = _conf(host)
    assert conf["max_log_file"] == "64"
    assert conf["max_log_file_action"] == "keep_logs"
    assert conf["space_left"] == "25%"
    assert conf["space_left_action"] == "single"
    assert conf["admin_space_left"] == "5%"
    assert conf["admin_space_left_action"] == "single"
    assert conf["disk_full_action"] == "single"
    assert conf["disk_error_action"] == "single"
    assert conf["log_group"] == "adm"
    assert "tcp_listen_port" not in conf
    f = host.file("/etc/audit/auditd.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o640)


def test_audit_directories_are_closed_to_others(host):
    for path, group, mode in [("/etc/audit", "root", 0o750), ("/etc/audit/rules.d", "root", 0o750),
                              ("/var/log/audit", "adm", 0o750)]:
        d = host.file(path)
        assert (d.user, d.group, d.mode) == ("root", group, mode), path


def test_every_rule_group_is_written(host):
    rules = _rules(host, RULES)
    for expected in [
        "-w /etc/passwd -p wa -k identity",
        "-w /etc/sudoers.d -p wa -k scope",
        "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
        "-w /var/log/sudo.log -p wa -k sudo_log_file",
        "-a always,exit -F arch=b32 -S clock_settime -F a0=0x0 -k time-change",
        "-a always,exit -F arch=b64 -S sethostname,setdomainname -k system-locale",
        "-a always,exit -F arch=b64 -S creat,open,openat,truncate,ftruncate -F exit=-EPERM -F auid>=1000 "
        "-F auid!=unset -k access",
        "-a always,exit -F arch=b32 -S chown,fchown,lchown,fchownat -F auid>=1000 -F auid!=unset -k perm_mod",
        "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts",
        "-w /var/log/wtmp -p wa -k session",
        "-w /var/run/faillock -p wa -k logins",
        "-a always,exit -F arch=b32 -S unlink,unlinkat,rename,renameat -F auid>=1000 -F auid!=unset -k delete",
        "-a always,exit -F arch=b64 -S init_module,finit_module,delete_module,create_module,query_module "
        "-F auid>=1000 -F auid!=unset -k kernel_modules",
        "-w /etc/apparmor.d -p wa -k MAC-policy",
        "-w /etc/cp-synthetic-hl7 -p wa -k hl7_config",  # auditd_rules_extra
    ]:
        assert expected in rules
    f = host.file(RULES)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o640)


def test_every_setuid_program_on_the_host_is_audited(host):
    found = host.check_output("find / -xdev -type f -perm /6000").split()
    assert "/usr/local/bin/cp-synthetic-suid" in found  # prepare.yml
    assert "/usr/bin/sudo" in found or "/usr/bin/su" in found
    rules = _rules(host, RULES)
    for path in [*found, "/opt/cp-synthetic/bin/engine-admin"]:  # ... and auditd_privileged_commands_extra
        assert f"-a always,exit -F path={path} -F perm=x -F auid>=1000 -F auid!=unset -k privileged" in rules


def test_the_rules_a_boot_loads_are_merged_and_locked(host):
    assert _rules(host, "/etc/audit/rules.d/99-carepath-immutable.rules") == ["-e 2"]  # auditd_immutable
    merged = _rules(host, "/etc/audit/audit.rules")
    assert "-w /etc/passwd -p wa -k identity" in merged
    assert merged[0] == "-D" and merged[-1] == "-e 2"
    assert "No change" in host.check_output("augenrules --check")


def test_the_checker_refuses_a_bogus_syscall_and_writes_nothing(host):
    bad = "/etc/audit/rules.d/40-cp-bad.rules"
    proc = _module(host, f"path={bad} content='-a always,exit -F arch=b64 -S openat,bogus_call -k x'")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "unknown syscall 'bogus_call' for arch b64" in out
    assert "nothing was written" in out
    assert not host.file(bad).exists


def test_the_checker_names_each_bad_line_of_an_existing_file(host):
    path = "/tmp/cp-vendor.rules"
    host.run(f"printf '%s\\n' '-w /etc/passwd -p wa -k identity' '-a always,exit -F arch=b32 -S bogus32' "
             f"'-w /etc/shadow -p wz' > {path}")
    proc = _module(host, f"path={path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "line 2: unknown syscall 'bogus32' for arch b32" in out
    assert "line 3: -p wz: permissions are one to four of the letters r, w, x, a" in out
    assert "line 1:" not in out


@pytest.mark.parametrize("path", [RULES, "/etc/audit/rules.d/99-carepath-immutable.rules"])
def test_the_checker_accepts_what_the_role_wrote(host, path):
    proc = _module(host, f"path={path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"changed": false' in proc.stdout


def test_systemd_skips_auditd_in_a_container_instead_of_failing(host):
    # The package tries to start auditd when it is installed; the role's unit condition makes
    # systemd skip it (and Debian 13's rule loader), so no unit is left failed.
    for unit in ("auditd.service", "audit-rules.service"):
        assert "ConditionVirtualization=!container" in host.file(
            f"/etc/systemd/system/{unit}.d/carepath-container.conf").content_string
    assert host.check_output("systemctl show -P ConditionResult auditd.service") == "no"
    failed = host.check_output("systemctl --failed --plain --no-legend")
    assert "audit" not in failed
