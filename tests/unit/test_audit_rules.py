"""Audit rules: the line checker, the audit_rules observation, and the auditd role's rules vs the catalog."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jinja2
import pytest
import yaml

from carepath import checks, controls

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _load("carepath_audit_rules", ROOT / "plugins" / "module_utils" / "carepath_audit_rules.py")

# Enough of the x86_64 and i386 tables (ausyscall --dump) for the rules below and the role's.
SYSCALLS = {
    "execve", "adjtimex", "settimeofday", "clock_settime", "sethostname", "setdomainname", "creat", "open",
    "openat", "truncate", "ftruncate", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "mount", "unlink",
    "unlinkat", "rename", "renameat", "init_module", "finit_module", "delete_module", "create_module",
    "query_module",
}


def known_syscall(arch: str, name: str) -> bool | None:
    return name in SYSCALLS if arch in ("b64", "b32") else None


def check(line: str) -> list[str]:
    return rules.check_line(line, known_syscall, lambda u: u in {"root", "ops"}, lambda g: g in {"root", "adm"})


@pytest.mark.parametrize(
    "line",
    [
        "-w /etc/passwd -p wa -k identity",
        "-w /etc/sudoers.d/ -p wa -k scope",
        "-a always,exit -F arch=b64 -S adjtimex,settimeofday -k time-change",
        "-a exit,always -F arch=b32 -S clock_settime -F a0=0x0 -k time-change",
        "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
        "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged",
        "-a always,exit -F arch=b64 -S open -F exit=-EACCES -F auid>=1000 -F auid!=4294967295 -F key=access",
        "-A never,exit -F arch=b64 -S all -F uid=ops",
        "-a never,exclude -F msgtype=CWD",
        "-a always,exit -F dir=/srv/phi -F perm=rwa -F gid=adm -k phi",
        "-a never,filesystem -F fstype=tracefs",
        "-a always,exit -F arch=b64 -S 59 -k by_number",
        "-d always,exit -F path=/usr/bin/su -F perm=x",
        "-W /etc/passwd -p wa -k identity",
        "-D",
        "-D -k identity",
        "-b 8192",
        "-f 1",
        "-e 2",
        "-r 0",
        "-c",
        "--backlog_wait_time 60000",
        "--backlog_wait_time=60000",
        "--loginuid-immutable",
        "-w /srv/clinic\\ share/notes -p wa -k spaced_path",
    ],
)
def test_rules_auditctl_accepts_pass(line):
    assert check(line) == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("-a always,exit -F arch=b64 -S bogus -k x", "unknown syscall 'bogus' for arch b64"),
        ("-a always,exit -F arch=b32 -S open,bogus32 -k x", "unknown syscall 'bogus32' for arch b32"),
        ("-a always,exit -S open -k x", "give the architecture first"),
        ("-a always,exit -S open -F arch=b64 -k x", "the architecture must be given before -S"),
        ("-a always,exit -F arch=b128 -S open", "unknown architecture 'b128'"),
        ("-a sometimes,exit -F arch=b64 -S open", "unknown list or action"),
        ("-a always,exit,now -F arch=b64 -S open", "expected LIST,ACTION"),
        ("-a possible,exit -F arch=b64 -S open", "'possible' action is deprecated"),
        ("-a always,task -F arch=b64 -S open", "only be audited on the exit list"),
        ("-a always,exit -F colour=blue", "unknown field 'colour'"),
        ("-a always,exit -F auid", "missing operator"),
        ("-a always,exit -F auid>=", "expected FIELD>=VALUE"),
        ("-a always,exit -F auid=nosuchuser -F arch=b64 -S open", "unknown user 'nosuchuser'"),
        ("-a always,exit -F gid=nosuchgroup -F path=/x", "unknown group 'nosuchgroup'"),
        ("-a always,exit -F path=/usr/bin/su -F perm=z", "permissions are one to four of the letters"),
        ("-a always,exit -F path=/usr/bin/su -F perm!=x", "perm only takes ="),
        ("-a always,exit -F path=usr/bin/su -F perm=x", "the path must be absolute"),
        ("-a always,exit -F path>/usr/bin/su", "only takes = or !="),
        ("-a always,exit -F arch=b64 -S open -F exit=-ENOTANERRNO", "exit takes a number or an errno name"),
        ("-a always,exit -F arch=b64 -S open -F filetype=pipe", "filetype is one of"),
        ("-a always,exit -F arch=b64 -S open -F a0=zero", "a0 takes a number"),
        ("-a always,user -F path=/etc/passwd", "only valid on the exit list"),
        ("-a never,exclude -F path=/etc", "cannot be used on the exclude list"),
        ("-a always,exit -F msgtype=CWD", "only valid on the exclude and user lists"),
        ("-a always,exit -F arch=b64 -C euid!=gid -S execve", "can be compared with each other"),
        ("-w /etc/passwd -p wxyz -k identity", "permissions are one to four of the letters"),
        ("-w etc/passwd -p wa", "the path must be absolute"),
        ("-w /etc/*.conf -p wa", "wildcards are not supported"),
        ("-w /etc/../etc/passwd -p wa", "relative path notation"),
        ("-w /etc/passwd -p wa -k identity -w /etc/group", "one rule per line"),
        ("-a always,exit -w /etc/passwd", "one rule per line"),
        ("-k lonely", "-k needs a watch"),
        ("-p wa", "-p needs a watch"),
        ("-F arch=b64", "a rule list (-a always,exit) must be given before fields"),
        ("-S open", "-S needs a rule list"),
        ("-w /etc/passwd -p wa -k " + "k" * 257, "longer than 256 characters"),
        ("-w /etc/passwd -p wa -k identity # user accounts", "a comment must be on its own line"),
        ("-w /etc/passwd -p wa identity", "'identity' is given without an option before it"),
        ("-x /etc/passwd", "'-x' is not an auditctl option"),
        ("--no-such-thing", "unknown option --no-such-thing"),
        ("-e 3", "-e 3: must be 0, 1 or 2"),
        ("-f panic", "must be 0, 1 or 2"),
        ("-b lots", "-b lots: must be a number"),
        ("-R /etc/audit/other.rules", "nesting is not supported"),
        ("-l", "it is a command, not a rule"),
        ("-w", "-w needs a value"),
    ],
)
def test_rules_auditctl_refuses_are_named_with_the_reason(line, problem):
    found = check(line)
    assert found, f"{line!r} was accepted"
    assert any(problem in p for p in found), found


def test_syscalls_are_not_looked_up_when_the_table_cannot_tell():
    assert rules.check_line("-a always,exit -F arch=x86_64 -S whatever -k x", known_syscall) == []


def test_check_text_numbers_lines_and_skips_comments():
    text = "## identity\n\n-w /etc/passwd -p wa -k identity\n   # indented comment\n-a always,exit -F arch=b64 -S bogus\n"
    assert rules.check_text(text, known_syscall) == [
        "line 5: unknown syscall 'bogus' for arch b64 (ausyscall b64 bogus does not know it)  "
        "[-a always,exit -F arch=b64 -S bogus]"
    ]
    assert rules.active_rules(text) == [(3, "-w /etc/passwd -p wa -k identity"), (5, "-a always,exit -F arch=b64 -S bogus")]


def test_syscall_tables_and_arches_are_read():
    dump = "Using x86_64 syscall table:\n0\tread\n1\twrite\n257\topenat\n"
    assert rules.parse_syscall_table(dump) == {"read", "write", "openat"}
    assert rules.syscall_arches("-a always,exit -F arch=b64 -S x\n-a always,exit -F  arch=b32 -S y") == {"b64", "b32"}


def test_executed_paths_need_an_execute_permission():
    found = rules.executed_paths([
        "-a always,exit -F path=/usr/bin/su -F perm=x -F auid>=1000 -k privileged",
        "-a always,exit -F path=/usr/bin/passwd -F perm=wa -k not_execution",
        "-w /usr/bin/chsh -p x -k watch_style",
    ])
    assert found == {"/usr/bin/su"}


def test_files_are_read_in_augenrules_order():
    names = ["99-finalize.rules", "10-base.rules", "50-carepath.rules", "9-early.rules", "audit.rules"]
    assert sorted(names, key=rules.natural_key) == [
        "9-early.rules", "10-base.rules", "50-carepath.rules", "99-finalize.rules", "audit.rules"
    ]


# --- the audit_rules observation (plugins/modules/carepath_observe.py) -------------------------


@pytest.fixture(scope="module")
def observe():
    return _load("carepath_observe", ROOT / "plugins" / "modules" / "carepath_observe.py")


def test_observed_rules_are_the_active_lines_of_every_rules_file(observe, tmp_path):
    (tmp_path / "50-carepath.rules").write_text("## ids\n-w /etc/passwd  -p wa -k identity\n#-w /etc/group -p wa\n")
    (tmp_path / "10-base.rules").write_text("-b 8192\n")
    (tmp_path / "notes.txt").write_text("-w /ignored -p wa\n")
    assert observe._audit_rule_lines(str(tmp_path)) == ["-b 8192", "-w /etc/passwd -p wa -k identity"]


def test_setuid_search_covers_root_and_local_filesystems_that_honour_setuid(observe):
    filesystems = "nodev\tsysfs\nnodev\tproc\nnodev\toverlay\nnodev\ttmpfs\n\text4\n\txfs\n"
    mounts = "\n".join([
        "overlay / overlay rw,relatime 0 0",
        "proc /proc proc rw,nosuid,nodev,noexec 0 0",
        "/dev/sda2 /home ext4 rw,nosuid,nodev 0 0",
        "/dev/sda3 /srv/clinic\\040data xfs rw,relatime 0 0",
        "/dev/sda4 /var/tmp ext4 rw,noexec 0 0",
        "tmpfs /run tmpfs rw,nosuid 0 0",
    ])
    assert observe._suid_mounts(mounts, filesystems) == ["/", "/srv/clinic data"]


# --- checks: a list value is matched element by element ----------------------------------------


def test_contains_on_a_list_matches_whole_rules_only():
    observed = {"audit_rules": {"rules": ["-w /etc/passwd -p wa -k identity2"]}}
    check_ = {"audit_rules": {"rules": {"contains": ["-w /etc/passwd -p wa -k identity"]}}}
    assert checks.evaluate_check(check_, observed) == [
        "audit_rules rules lacks ['-w /etc/passwd -p wa -k identity']"
    ]
    observed["audit_rules"]["rules"].append("-w /etc/passwd -p wa -k identity")
    assert checks.evaluate_check(check_, observed) == []


def test_an_unaudited_privileged_program_is_named():
    check_ = {"audit_rules": {"privileged_unaudited": {"equals": []}}}
    assert checks.evaluate_check(check_, {"audit_rules": {"privileged_unaudited": []}}) == []
    assert checks.evaluate_check(check_, {"audit_rules": {"privileged_unaudited": ["/usr/bin/newgrp"]}}) == [
        "audit_rules privileged_unaudited is ['/usr/bin/newgrp'], expected []"
    ]


def test_the_observe_module_is_asked_for_the_audit_rules_keys():
    aud = [c for c in controls.load() if c.role == "auditd"]
    args = controls._observe_args(aud)
    assert set(args["audit_rules"]) == {"rules", "privileged_unaudited", "enabled", "matches_loaded"}


# --- the role's rules template against the catalog ---------------------------------------------


def _render(privileged: list[str]) -> str:
    role = ROOT / "roles" / "auditd"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(role / "templates"), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    private = yaml.safe_load((role / "vars" / "Debian.yml").read_text())
    context = defaults | {
        "ansible_managed": "Managed by Ansible",
        "__auditd_uid_min": private["__auditd_uid_min"],
        "__auditd_host": {"observed": {"audit_rules": {"privileged": privileged}}},
    }
    return env.get_template("carepath.rules.j2").render(context)


def test_the_role_writes_every_rule_the_catalog_checks():
    text = _render(["/usr/bin/su", "/usr/bin/passwd"])
    written = [line for _, line in rules.active_rules(text)]
    for control in (c for c in controls.load() if c.role == "auditd"):
        expected = control.check.get("audit_rules", {}).get("rules", {}).get("contains", [])
        missing = [e for e in expected if e not in written]
        assert missing == [], f"{control.id}: the template does not write {missing}"


def test_the_role_rules_pass_the_checker_and_audit_every_privileged_program():
    privileged = ["/usr/bin/su", "/usr/bin/passwd", "/usr/lib/openssh/ssh-keysign"]
    text = _render(privileged)
    assert rules.check_text(text, known_syscall, lambda u: True, lambda g: True) == []
    assert rules.executed_paths([line for _, line in rules.active_rules(text)]) >= set(privileged)


def test_every_rule_group_is_its_own_control():
    written = [line for _, line in rules.active_rules(_render([]))]
    owners: dict[str, list[str]] = {}
    for control in (c for c in controls.load() if c.role == "auditd"):
        for line in control.check.get("audit_rules", {}).get("rules", {}).get("contains", []):
            owners.setdefault(line, []).append(control.id)
    assert {line: ids for line, ids in owners.items() if len(ids) > 1} == {}
    # Removing any one checked rule drifts exactly one control.
    for line, ids in owners.items():
        rest = {"audit_rules": {"rules": [w for w in written if w != line]}}
        drifted = [c.id for c in controls.load() if c.role == "auditd" and "rules" in c.check.get("audit_rules", {})
                   and checks.evaluate_check({"audit_rules": c.check["audit_rules"]}, rest)]
        assert drifted == ids, line


def test_conf_keys_may_hold_colons_as_apt_keys_do(observe, tmp_path):
    conf = tmp_path / "20auto-upgrades"
    conf.write_text('// comment\nAPT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "0";\n')
    values = observe._conf([f"{conf}:APT::Periodic::Unattended-Upgrade", f"{conf}:APT::Periodic::Missing"])
    assert values[f"{conf}:APT::Periodic::Unattended-Upgrade"] == '"0";'
    assert values[f"{conf}:APT::Periodic::Missing"] is None
