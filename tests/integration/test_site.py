"""`carepath run site` against real hosts over SSH: hardening, idempotence, check/diff, the guard."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.conftest import BIN, ROOT, carepath, cli_env
from tests.integration.conftest import Baseline, Lab, make_lab, run_site

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]


def test_site_hardens_every_host_then_changes_nothing(lab: Lab):
    Baseline.changed(lab)
    for host in lab.hosts:  # back to Debian's stock sshd configuration, whatever ran before
        lab.ssh(host, "sudo cp /usr/share/openssh/sshd_config /etc/ssh/sshd_config && sudo systemctl reload ssh")
        assert "passwordauthentication yes" in lab.ssh(host, "sudo /usr/sbin/sshd -T").stdout
    rc, changed, run_id, out = run_site(lab)
    assert rc == 0, out[-3000:]
    # Issue 18: the defaults are right out of the box; a warning would be about the site's own inputs.
    assert "WARNING" not in out, [line for line in out.splitlines() if "WARNING" in line]
    assert changed >= 2 * len(lab.hosts)  # sshd_config and its reload on every host
    lab.assert_healthy(when="after the converge")  # issue 15: a masked AIDE timer left hosts degraded
    for host in lab.hosts:
        effective = lab.ssh(host, "sudo /usr/sbin/sshd -T").stdout
        assert "passwordauthentication no" in effective
        assert "permitrootlogin no" in effective
    # ansible-runner's artifacts are kept in a predictable per-run folder.
    artifacts = ROOT / ".carepath" / "runs" / run_id / "artifacts" / run_id
    assert (artifacts / "rc").read_text() == "0"
    assert (artifacts / "status").read_text() == "successful"
    assert list((artifacts / "job_events").glob("*.json"))

    rc, changed, _, out = run_site(lab)
    assert (rc, changed) == (0, 0), out[-3000:]
    lab.assert_healthy(when="after the re-run")
    # Ansible still gets in after hardening.
    ping = subprocess.run(
        [str(BIN / "ansible"), "all", "-i", str(lab.inventory), "-m", "ansible.builtin.ping"],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, check=False,
    )
    assert ping.returncode == 0, ping.stdout
    assert ping.stdout.count("SUCCESS") == len(lab.hosts)


def test_check_and_diff_report_drift_without_fixing_it(lab: Lab):
    host = sorted(lab.hosts)[0]
    Baseline.ensure(lab)
    Baseline.changed(lab)
    lab.ssh(host, "sudo sed -i 's/^MaxAuthTries .*/MaxAuthTries 9/' /etc/ssh/sshd_config")
    rc, changed, _, out = run_site(lab, "--limit", host, "--check", "--diff")
    assert rc == 0
    assert changed == 3  # sshd_config, the reload it would trigger, and the CP-SSH-12 check reporting drift
    assert "-MaxAuthTries 9" in out and "+MaxAuthTries 3" in out
    assert "MaxAuthTries 9" in lab.ssh(host, "sudo cat /etc/ssh/sshd_config").stdout
    rc, changed, _, _ = run_site(lab, "--limit", host)
    assert (rc, changed) == (0, 2)
    assert "MaxAuthTries 3" in lab.ssh(host, "sudo cat /etc/ssh/sshd_config").stdout
    Baseline.holds(lab)  # the one change made by hand, repaired


def test_lockout_guard_refuses_before_changing_anything(lab: Lab):
    digests = {h: lab.ssh(h, "sudo sha256sum /etc/ssh/sshd_config").stdout for h in lab.hosts}
    extra = json.dumps({"ssh_hardening_allow_groups": ["clinicians"], "ssh_hardening_max_auth_tries": 2})
    rc, changed, _, out = run_site(lab, "-e", extra)
    assert rc != 0
    assert changed == 0
    assert out.count("would be locked out because user 'carepath'") >= len(lab.hosts)
    assert "is in no group of ssh_hardening_allow_groups" in out
    assert {h: lab.ssh(h, "sudo sha256sum /etc/ssh/sshd_config").stdout for h in lab.hosts} == digests
    assert all(lab.ssh(h, "true").returncode == 0 for h in lab.hosts)


def test_firewall_guard_refuses_rules_that_would_cut_ansible_off(lab: Lab):
    Baseline.ensure(lab)
    tables = {h: lab.ssh(h, "sudo nft list table inet carepath").stdout for h in lab.hosts}
    # The only flow lets web traffic in: the SSH path Ansible uses would be cut.
    extra = json.dumps({"firewall_flows": [{"name": "web-from-any", "from": "any", "ports": [443]}]})
    rc, changed, _, out = run_site(lab, "-e", extra)
    assert rc != 0
    assert changed == 0
    assert out.count("firewall refuses to load rules on") >= len(lab.hosts)
    assert "to port 22, and no flow for this host's zone" in out
    assert {h: lab.ssh(h, "sudo nft list table inet carepath").stdout for h in lab.hosts} == tables
    assert all(lab.ssh(h, "true").returncode == 0 for h in lab.hosts)


def test_invalid_trust_zones_are_refused_before_any_host_is_touched(lab: Lab):
    extra = json.dumps({"firewall_zones": {"clinical": {"cidrs": ["10.20.0.1/16"]}}})
    rc, changed, _, out = run_site(lab, "-e", extra)
    assert (rc != 0, changed) == (True, 0)
    assert "no host has been touched" in out and "use 10.20.0.0/16" in out


def test_bad_role_argument_is_refused_before_any_change(lab: Lab):
    rc, changed, _, out = run_site(lab, "-e", '{"ssh_hardening_port": "twenty-two"}')
    assert rc != 0
    assert changed == 0
    assert "ssh_hardening_port" in out and "int" in out


def test_plain_ansible_playbook_works_too(lab: Lab):
    """The project's ansible.cfg serves ansible-playbook (and AWX) as well as `carepath run`."""
    Baseline.ensure(lab)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", str(lab.inventory), "--check"],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    recap = proc.stdout.split("PLAY RECAP")[-1]
    assert re.findall(r"changed=(\d+)", recap) == ["0"] * len(lab.hosts)


def test_hardened_hosts_boot_again_healthy_and_keep_the_baseline(lab: Lab):
    """`podman restart`: systemd comes back without failed units, with SSH, sudo, sshd and nftables as applied."""
    Baseline.ensure(lab)
    tables = {h: lab.ssh(h, "sudo nft list table inet carepath").stdout for h in lab.hosts}
    containers = [f"{lab.name}-{h}" for h in lab.hosts]
    subprocess.run(["podman", "restart", "-t", "10", *containers], capture_output=True, text=True, check=True)
    lab.assert_healthy(when="after a restart")
    for host in lab.hosts:
        assert lab.ssh(host, "sudo -n true").returncode == 0
        assert "passwordauthentication no" in lab.ssh(host, "sudo /usr/sbin/sshd -T").stdout
        assert lab.ssh(host, "sudo nft list table inet carepath").stdout == tables[host]
    rc, changed, _, out = run_site(lab)
    assert (rc, changed) == (0, 0), out[-3000:]


def test_every_host_forwards_its_logs_to_the_collector_over_tls(lab: Lab):
    """The lab's collector (group log_collectors) receives each host's messages, over TLS only, and the
    auditd low-space warning (the default space_left_action, exec carepath's notifier) with them."""
    Baseline.ensure(lab)
    collector = "it-bookworm"
    tokens = {host: f"carepath-e2e-{host}-{time.monotonic_ns()}" for host in lab.hosts}
    for host, token in tokens.items():
        lab.ssh(host, f"logger -p authpriv.notice -t carepath-e2e {token}")
    notifier = "/usr/local/sbin/carepath-audit-space-left"
    conf = lab.ssh("it-trixie", "sudo grep ^space_left_action /etc/audit/auditd.conf").stdout
    assert conf.split() == ["space_left_action", "=", "exec", notifier], conf
    lab.ssh("it-trixie", f"sudo {notifier}")  # as auditd runs it when the audit partition runs low
    # The collector files each line as "<time> <host> <program> <message>".
    tokens["it-trixie low space"] = "it-trixie carepath-auditd audit log partition below space_left (25%)"
    waiting = dict(tokens)
    for _ in range(60):
        # The glob is expanded by root: the lab user cannot list the collector's directories.
        received = lab.ssh(collector, "sudo sh -c 'cat /var/log/carepath/remote/*/*.log'", check=False).stdout
        waiting = {h: t for h, t in waiting.items() if t not in received}
        if not waiting:
            break
        time.sleep(1)
    assert not waiting, f"never reached the collector: {sorted(waiting)}"
    # The collector's port speaks TLS with a certificate from the lab CA and nothing else.
    handshake = lab.ssh(
        "it-trixie",
        "sudo sh -c 'cd /etc/carepath/tls/log_forwarding && openssl s_client -connect it-bookworm:6514 "
        "-CAfile ca.crt -cert host.crt -key host.key -verify_hostname it-bookworm -brief </dev/null 2>&1'",
        check=False,
    )
    assert "Verification: OK" in handshake.stdout, handshake.stdout


def test_guards_refuse_on_a_fresh_host_before_any_role_changes_it(tmp_path):
    """The preflight play runs every guard before the first role: a fresh host is left untouched."""
    fresh = make_lab(tmp_path, "cpfresh", [{"name": "fresh1", "release": "bookworm", "groups": ["servers"]}])
    assert carepath("lab", "up", *fresh.args()).returncode == 0
    try:
        before = fresh.ssh("fresh1", "sudo sha256sum /etc/ssh/sshd_config /etc/login.defs; dpkg-query -W | sha256sum").stdout
        refusals = {
            '{"ssh_hardening_allow_groups": ["clinicians"], "log_forwarding_collector_host": "fresh1"}':
                "would be locked out because user 'carepath'",
            '{"firewall_flows": [{"name": "web", "from": "any", "ports": [443]}], "log_forwarding_collector_host": "fresh1"}':
                "firewall refuses to load rules on fresh1",
            "{}": "log_forwarding needs a collector on fresh1",
        }
        for extra, message in refusals.items():
            rc, changed, _, out = run_site(fresh, "-e", extra)
            assert (rc != 0, changed) == (True, 0), out[-2000:]
            assert message in out
        after = fresh.ssh("fresh1", "sudo sha256sum /etc/ssh/sshd_config /etc/login.defs; dpkg-query -W | sha256sum").stdout
        assert after == before
    finally:
        carepath("lab", "down", *fresh.args())
