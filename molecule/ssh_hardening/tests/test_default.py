"""Observable behaviour of a hardened sshd: what it enforces, and who can log in."""

from __future__ import annotations

import pytest

SSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"


@pytest.fixture(scope="module")
def sshd(host) -> dict[str, str]:
    """sshd's effective configuration (``sshd -T``), as a dict of lower-case keys."""
    out = host.check_output("/usr/sbin/sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_sshd_is_running_and_enabled(host):
    service = host.service("ssh")
    assert service.is_running
    assert service.is_enabled


def test_only_modern_algorithms(host, sshd):
    assert sshd["ciphers"].split(",")[0] == "chacha20-poly1305@openssh.com"
    assert not [c for c in sshd["ciphers"].split(",") if c.endswith("-cbc")]
    assert set(sshd["macs"].split(",")) == {
        "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com",
    }
    kex = sshd["kexalgorithms"].split(",")
    assert "curve25519-sha256" in kex
    assert not [k for k in kex if "sha1" in k or "nistp" in k]
    # The post-quantum hybrid comes first where this OpenSSH has it (Debian 13).
    supported = host.check_output("ssh -Q kex").split()
    expected_first = "mlkem768x25519-sha256" if "mlkem768x25519-sha256" in supported else "sntrup761x25519-sha512"
    assert kex[0] == expected_first


def test_authentication_settings(sshd):
    assert sshd["permitrootlogin"] == "no"
    assert sshd["passwordauthentication"] == "no"
    assert sshd["kbdinteractiveauthentication"] == "no"
    assert sshd["permitemptypasswords"] == "no"
    assert sshd["maxauthtries"] == "2"
    assert sshd["allowgroups"] == "sshusers"


def test_idle_timeout_and_forwarding(sshd):
    assert sshd["clientaliveinterval"] == "240"
    assert sshd["clientalivecountmax"] == "2"
    assert sshd["allowtcpforwarding"] == "no"
    assert sshd["x11forwarding"] == "no"
    assert sshd["loglevel"] == "VERBOSE"


def test_banner_is_shown(host, sshd):
    assert sshd["banner"] == "/etc/issue.net"
    assert host.file("/etc/issue.net").content_string == "carepath molecule banner: authorized use only\n"


def test_key_login_of_allowed_user_is_accepted(host):
    result = host.run(f"su - cp-tester -c '{SSH} cp-tester@127.0.0.1 id -un'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "cp-tester"


def test_key_login_outside_allowed_groups_is_refused(host):
    result = host.run(f"su - cp-outsider -c '{SSH} cp-outsider@127.0.0.1 id -un'")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


def test_correct_password_is_refused(host):
    # The password is right (set in prepare.yml); sshd must not accept passwords at all.
    result = host.run(
        "sshpass -p Synthetic-Test-Pass-1 ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
        "cp-tester@127.0.0.1 id -un"
    )
    assert result.rc != 0
    assert result.stdout.strip() != "cp-tester"
    assert "Permission denied (publickey)" in result.stderr


def test_repeated_failed_logins_get_the_address_banned(host, peer, peer_host):
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled
    # The other scenario host fails to log in as unknown users maxretry (5) times: sshd logs
    # "Invalid user", fail2ban reads it from the journal. (A host never bans itself.)
    # `timeout`: a connection open when the ban lands is dropped, not closed.
    address = host.check_output("hostname -I").split()[0]
    attacker = peer
    host.run(f"fail2ban-client set sshd unbanip {attacker}")
    try:
        for attempt in range(5):
            peer_host.run(f"timeout 10 {SSH} -o PubkeyAuthentication=no cp-nobody-{attempt}@{address} true")
        banned = ""
        for _ in range(20):
            banned = host.check_output("fail2ban-client get sshd banned")
            if attacker in banned:
                break
            host.run("sleep 0.5")
        assert attacker in banned
        # The ban is real: fail2ban's nftables set holds the address and sshd is out of its reach.
        assert attacker in host.check_output("nft list table inet f2b-table")
        refused = peer_host.run(f"timeout 10 {SSH} cp-tester@{address} true")
        assert refused.rc in (124, 255)
        assert "Permission denied" not in refused.stderr
        # carepath's own firewall table is untouched by fail2ban.
        assert "f2b" not in host.run("nft list table inet carepath").stdout
    finally:
        host.run(f"fail2ban-client set sshd unbanip {attacker}")
    # Unbanned, the peer reaches sshd again (and is refused only for want of a key).
    again = peer_host.run(f"timeout 10 {SSH} cp-tester@{address} true")
    assert "Permission denied" in again.stderr
