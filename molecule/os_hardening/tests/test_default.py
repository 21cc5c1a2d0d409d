"""Observable behaviour of a hardened OS: what PAM, login, sudo and the kernel settings really do."""

from __future__ import annotations

import re

import pytest

# A synthetic password that satisfies the converged policy (16 characters, 4 classes).
GOOD = "Synthetic-Pass-2026!x"


def test_kernel_parameters_are_persisted_for_boot(host):
    conf = host.file("/etc/sysctl.d/60-carepath.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert "net.ipv4.ip_forward = 0" in conf.content_string
    assert "kernel.randomize_va_space = 2" in conf.content_string
    assert "vm.swappiness = 10" in conf.content_string  # os_hardening_sysctl_overrides


def test_kernel_parameters_are_not_applied_where_proc_sys_is_read_only(host):
    # The lab never unmasks /proc/sys: a container cannot change the kernel of the machine running it.
    assert host.run("sysctl -w kernel.sysrq=0").rc != 0
    assert "/proc/sys" in host.check_output("findmnt -no TARGET,OPTIONS /proc/sys") and "ro" in host.check_output(
        "findmnt -no OPTIONS /proc/sys"
    ).split(",")


def test_blocked_modules_cannot_be_loaded(host):
    conf = host.file("/etc/modprobe.d/60-carepath.conf").content_string
    for module in ("cramfs", "udf", "dccp", "sctp"):
        assert f"install {module} /bin/false" in conf
    # modprobe resolves a blocked module to /bin/false without touching the kernel (-n: dry run).
    assert "/bin/false" in host.check_output("modprobe -n -v cramfs 2>&1 || true")


def test_core_dumps_are_off_for_logins(host):
    out = host.check_output("su -s /bin/bash -l nobody -c 'ulimit -H -c' 2>&1 || true")
    assert out.strip().splitlines()[-1] == "0"
    # Login shells also drop the soft limit themselves (/etc/profile.d).
    assert host.check_output("bash -lc 'ulimit -S -c'") == "0"


def test_login_defs(host):
    defs = dict(
        line.split(None, 1) for line in host.file("/etc/login.defs").content_string.splitlines()
        if line.strip() and not line.startswith("#") and len(line.split(None, 1)) == 2
    )
    assert defs["PASS_MAX_DAYS"].strip() == "365"
    assert defs["PASS_MIN_DAYS"].strip() == "1"
    assert defs["ENCRYPT_METHOD"].strip() == "YESCRYPT"
    assert defs["UMASK"].strip() == "027"


def test_login_shells_time_out_and_cannot_unset_it(host):
    out = host.check_output("bash -lc 'echo $TMOUT; unset TMOUT 2>&1; echo $TMOUT'")
    assert out.splitlines()[0] == "600"
    assert "readonly" in out and out.splitlines()[-1] == "600"
    assert host.check_output("bash -lc umask") == "0027"


@pytest.fixture()
def pam_user(host):
    """A synthetic account whose password is set through PAM, as a user would."""
    # Forget the account's password history and failures too: each test starts afresh.
    host.run("userdel -r cp-pam 2>/dev/null; faillock --user cp-pam --reset; sed -i '/^cp-pam:/d' /etc/security/opasswd")
    host.check_output("useradd -m -s /bin/bash cp-pam")
    yield "cp-pam"
    host.run("userdel -r cp-pam")


def _passwd(host, user: str, new: str):
    """Change a password through PAM's password stack, as root would (chpasswd bypasses it)."""
    return host.run(f"printf '%s\\n%s\\n' '{new}' '{new}' | passwd {user}")


def test_pam_refuses_weak_passwords_and_accepts_a_strong_one(host, pam_user):
    weak = _passwd(host, pam_user, "short1A!")
    assert weak.rc != 0
    assert "shorter than 16" in (weak.stdout + weak.stderr).lower()
    assert _passwd(host, pam_user, "alllowercaseletterslong").rc != 0  # one character class
    assert _passwd(host, pam_user, GOOD).rc == 0


def test_pam_refuses_a_reused_password(host, pam_user):
    assert _passwd(host, pam_user, GOOD).rc == 0
    assert _passwd(host, pam_user, "Another-Synthetic-9#q").rc == 0
    reused = _passwd(host, pam_user, GOOD)
    assert reused.rc != 0
    assert "already" in (reused.stdout + reused.stderr).lower()


def test_accounts_lock_after_repeated_failures(host, pam_user):
    assert _passwd(host, pam_user, GOOD).rc == 0
    # Four failed logins through the real PAM stack (su as an unprivileged user asks for the password).
    for _ in range(4):
        host.run(f"su -s /bin/sh nobody -c \"echo wrong-password | su - {pam_user} -c true\"")
    records = [line for line in host.check_output(f"faillock --user {pam_user}").splitlines() if line.endswith(" V")]
    assert len(records) == 4
    # Locked: even the right password is refused now.
    ok = host.run(f"su -s /bin/sh nobody -c \"echo '{GOOD}' | su - {pam_user} -c true\"")
    assert ok.rc != 0


def test_sudo_logs_to_its_own_file_with_a_pty(host):
    sudoers = host.file("/etc/sudoers.d/60-carepath")
    assert sudoers.mode == 0o440
    assert host.run("visudo -c").rc == 0
    defaults = host.check_output("sudo -V | grep -i -E 'pty|log file|timestamp'").lower()
    assert "/var/log/sudo.log" in defaults
    assert "pseudo-terminal" in defaults or "pty" in defaults


def test_account_databases_are_restricted(host):
    assert host.file("/etc/shadow").mode == 0o640 and host.file("/etc/shadow").group == "shadow"
    assert host.file("/etc/gshadow").mode == 0o640
    assert host.file("/etc/passwd").mode == 0o644


def test_plain_text_clients_are_gone(host):
    for package in ("telnet", "rsh-client", "nis", "prelink"):
        assert not host.package(package).is_installed


def test_banners_say_authorized_use_and_not_the_os(host):
    for path in ("/etc/issue", "/etc/motd"):
        text = host.file(path).content_string
        assert "authorized use only" in text
        assert "Debian" not in text and "\\r" not in text


def test_new_accounts_get_ageing_and_yescrypt(host, pam_user):
    assert _passwd(host, pam_user, GOOD).rc == 0
    assert host.check_output(f"chage -l {pam_user} | grep -i 'maximum number'").endswith("365")
    assert host.check_output(f"getent shadow {pam_user} | cut -d: -f2").startswith("$y$")


def test_login_sessions_get_a_private_tmpdir(host, pam_user):
    # pam_tmpdir runs in the PAM session stack of a real login (su -), and makes the directory.
    tmpdir = host.check_output(f"su - {pam_user} -c 'echo $TMPDIR'")
    uid = host.check_output(f"id -u {pam_user}")
    assert tmpdir == f"/tmp/user/{uid}"
    directory = host.file(tmpdir)
    assert directory.is_directory and directory.user == pam_user and directory.mode == 0o700


def test_debsums_finds_a_changed_package_file(host):
    assert "CRON_CHECK=weekly" in host.file("/etc/default/debsums").content_string.splitlines()
    # What the weekly job runs (debsums -c: changed files only) detects a modified program.
    assert host.run("debsums -c kmod").rc == 0
    host.check_output("cp -p /usr/bin/kmod /tmp/kmod.orig && printf x >> /usr/bin/kmod")
    try:
        changed = host.run("debsums -c kmod")
        # (Debian 12 lists the file under its package path, /bin/kmod, before the /usr merge.)
        assert changed.rc != 0 and "bin/kmod" in changed.stdout + changed.stderr
    finally:
        host.check_output("cp -p /tmp/kmod.orig /usr/bin/kmod")


def test_needrestart_lists_and_never_restarts(host):
    effective = "perl -e 'our %nrconf; do q(/etc/needrestart/needrestart.conf); print $nrconf{restart}'"
    out = host.check_output(f"needrestart -b 2>&1; {effective}")
    assert "NEEDRESTART-VER" in out
    assert out.splitlines()[-1] == "l"


def test_only_security_updates_are_applied_automatically(host):
    # unattended-upgrades' own dry run says which archives it would take updates from.
    run = host.run("unattended-upgrade --dry-run --debug 2>&1")
    origins = [line for line in run.stdout.splitlines() if "Allowed origins are:" in line]
    assert origins, run.stdout[-2000:]
    assert "label=Debian-Security" in origins[0]
    assert "label=Debian'" not in origins[0] and "label=Debian," not in origins[0]  # no point releases
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert 'APT::Periodic::Update-Package-Lists "1";' in periodic
    assert host.service("apt-daily-upgrade.timer").is_enabled
    # A package whose configuration was changed is updated, not held back for a question.
    options = host.check_output("apt-config dump --format %v%n DPkg::Options").split()
    assert "--force-confold" in options and "--force-confdef" in options


def test_the_daily_rootkit_scan_reports_a_finding_to_the_journal(host):
    assert host.service("chkrootkit.timer").is_enabled
    # A directory rootkits are known to hide in (synthetic, removed after): quiet mode reports
    # findings only, and the report goes to the journal (forwarded), not to a mailer.
    host.check_output("mkdir -p /usr/lib/.fx")
    try:
        since = host.check_output("date +%s")
        host.check_output("systemctl start chkrootkit.service")  # one scan, as the timer starts it
        assert host.check_output("systemctl show -P Result chkrootkit.service") == "success"
        journal = host.check_output(f"journalctl -q -o cat -u chkrootkit.service --since @{since}")
        # (Debian 12 writes "usr/lib/.fx", Debian 13 "/usr/lib/.fx/ [Not from a Debian package]".)
        found = re.compile(r"WARNING: Suspect directory /?usr/lib/\.fx/? ")
        assert found.search(journal), journal
        assert "sending alert" not in journal  # no mail: nothing would send it
        assert found.search(host.file("/var/log/chkrootkit/log.today").content_string)
    finally:
        host.run("rmdir /usr/lib/.fx")


def test_usbguard_blocks_unknown_devices_and_its_daemon_is_skipped_in_a_container(host):
    conf = host.file("/etc/usbguard/usbguard-daemon.conf")
    assert conf.user == "root" and conf.mode == 0o600
    assert "ImplicitPolicyTarget=block" in conf.content_string.splitlines()
    assert "IPCAllowedGroups=root" in conf.content_string.splitlines()
    assert not host.file("/etc/usbguard/IPCAccessControl.d/:plugdev").exists
    # The carepath rules parse; a USB stick (mass storage, class 08) matches none of them.
    rules = host.file("/etc/usbguard/rules.d/50-carepath.conf").content_string
    assert "allow with-interface match-all { 03:*:* }" in rules  # every interface HID, however many
    assert "allow id 076b:3021 with-interface equals { 0b:00:00 }" in rules  # os_hardening_usbguard_rules
    assert host.run("usbguard-rule-parser --file /etc/usbguard/rules.d/50-carepath.conf").rc == 0
    assert "08:" not in rules
    # No USB bus of its own here: systemd skips the daemon (its condition), and no unit failed.
    assert host.run("systemctl is-enabled usbguard.service").stdout.strip() == "enabled"
    assert host.check_output("systemctl show -P ConditionResult usbguard.service") == "no"
    # ...and it is carepath's condition that skipped it, not one of the package's own.
    assert "/etc/systemd/system/usbguard.service.d/carepath-container.conf" in host.check_output(
        "systemctl show -P DropInPaths usbguard.service").split()
    assert host.run("systemctl is-enabled usbguard-dbus.service").stdout.strip() == "masked"
    assert "usbguard" not in host.run("systemctl --failed --plain --no-legend").stdout


def test_only_root_can_run_an_assembler(host):
    # binutils comes with needrestart: its assembler is root's alone, and stays so.
    real = host.check_output("readlink -f /usr/bin/as")
    assert host.file(real).mode == 0o750 and host.file(real).user == "root"
    assert f"root root 750 {real}" in host.check_output("dpkg-statoverride --list")  # (octal, no leading 0)
    denied = host.run("runuser -u nobody -- /usr/bin/as --version")
    assert denied.rc != 0 and "ermission denied" in denied.stderr
    assert host.run("as --version").rc == 0
