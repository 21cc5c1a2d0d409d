"""Observable behaviour of time_sync: the one time daemon, and what chronyd itself makes of its configuration."""

from __future__ import annotations


def test_chrony_is_the_only_time_daemon(host):
    assert host.package("chrony").is_installed
    for other in ("systemd-timesyncd", "ntp", "ntpsec"):
        assert not host.package(other).is_installed
    assert host.service("chrony").is_enabled


def test_chronyd_reads_only_the_authorised_sources_with_nts(host):
    # chronyd -p prints the configuration as chronyd parses it, includes resolved.
    parsed = host.check_output("/usr/sbin/chronyd -p -f /etc/chrony/chrony.conf")
    sources = [line for line in parsed.splitlines() if line.startswith(("server", "pool", "peer"))]
    assert sources == ["server ntp1.hospital.example iburst nts", "server ntp2.hospital.example iburst nts"]
    assert "sourcedir" not in parsed and "confdir" not in parsed
    assert "cmdport 0" in parsed
    assert not [line for line in parsed.splitlines() if line.startswith("allow")]


def test_the_configuration_is_root_owned(host):
    conf = host.file("/etc/chrony/chrony.conf")
    assert conf.user == "root" and conf.mode == 0o644


def test_chronyd_is_not_started_without_cap_sys_time(host):
    # The container has no CAP_SYS_TIME: systemd skips chronyd rather than letting it fail.
    assert not host.service("chrony").is_running
    assert "ConditionCapability=CAP_SYS_TIME" in host.check_output("systemctl cat chrony")
