"""Observable behaviour of the firewall: rules in the host's own namespace, and what really gets through."""

from __future__ import annotations


def _connect(host, address: str, port: int) -> bool:
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"sys.exit(0 if s.connect_ex(({address!r}, {port}))==0 else 1)\n"
    )
    return host.run(f"python3 -c \"{probe}\"").rc == 0


def test_ruleset_is_default_deny_with_the_declared_flows(host):
    ruleset = host.check_output("nft list table inet carepath")
    assert "hook input priority filter; policy drop;" in ruleset
    assert "hook forward priority filter; policy drop;" in ruleset
    assert 'tcp dport 8080 accept comment "web-from-lab"' in ruleset
    assert 'ip saddr 198.51.100.0/24 tcp dport 9100 accept comment "metrics-from-monitoring"' in ruleset
    assert "echo-request" not in ruleset  # firewall_allow_ping: false


def test_rules_are_loaded_at_boot_from_a_checked_file(host):
    assert host.service("nftables").is_enabled
    conf = host.file("/etc/nftables.conf")
    assert conf.mode == 0o600
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_an_allowed_flow_gets_through_from_the_other_host(host, peer):
    # This host connects to its peer: the peer's rules let the lab zone reach 8080.
    assert _connect(host, peer, 8080)


def test_a_port_no_flow_allows_is_really_refused(host, peer):
    # 9100 is open on the peer (prepare.yml) but only the monitoring zone may reach it.
    assert not _connect(host, peer, 9100)
    # ...while the same service answers on this host's loopback: it is the firewall that refuses.
    assert _connect(host, "127.0.0.1", 9100)
