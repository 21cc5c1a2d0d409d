"""Drift detection and exceptions on real hosts: exactly the changed control, visibly excepted."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.conftest import carepath
from tests.integration.conftest import Baseline, Lab, run_site

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]

EXCEPTION = {
    "control": "CP-SSH-12",
    "reason": "Vendor scanner needs six attempts during its validation window",
    "owner": "ops-lead@hospital.example",
    # Within the longest an exception may run (carepath_exception_max_days, 365 by default).
    "expires": (dt.date.today() + dt.timedelta(days=60)).isoformat(),
}


def drift(lab: Lab, *extra: str) -> tuple[int, dict]:
    proc = carepath("drift", "-i", str(lab.inventory), "--json", *extra)
    assert proc.stdout.strip().startswith("{"), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def statuses(report: dict, status: str) -> set[tuple[str, str]]:
    return {(h, c) for h, controls in report["hosts"].items() for c, r in controls.items() if r["status"] == status}


def test_drift_names_exactly_the_controls_changed_by_hand(lab: Lab):
    Baseline.ensure(lab)
    rc, report = drift(lab)
    assert rc == 0
    assert statuses(report, "drifted") == set()
    assert len(statuses(report, "compliant")) == report["summary"]["compliant"] > 0
    # Kernel controls cannot hold in a container: reported as such, never as compliant.
    assert {c for _, c in statuses(report, "not_applicable")} >= {"CP-OS-01", "CP-OS-06"}

    # One setting per role changed by hand, each named by exactly its control.
    first, last = min(lab.hosts), max(lab.hosts)
    Baseline.changed(lab)
    lab.ssh(last, "sudo sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' /etc/ssh/sshd_config")
    lab.ssh(last, "sudo sed -i 's/^PASS_MAX_DAYS.*/PASS_MAX_DAYS\t99999/' /etc/login.defs")
    lab.ssh(first, "sudo nft add rule inet carepath input tcp dport 9999 accept")
    lab.ssh(first, "echo 'allow 192.0.2.0/24' | sudo tee -a /etc/chrony/chrony.conf")
    lab.ssh(last, "sudo sed -i '/-k identity$/d' /etc/audit/rules.d/50-carepath.rules")
    lab.ssh(last, "sudo sed -i 's|x509/name|anon|' /etc/rsyslog.d/60-carepath-forward.conf")
    lab.ssh(first, "sudo systemctl disable --now carepath-aide-check.timer")
    # A unit masked by hand is drift too, not an error of the check run.
    lab.ssh(first, "sudo systemctl mask --now chkrootkit.timer")
    rc, report = drift(lab)
    assert rc == 1
    assert statuses(report, "drifted") == {
        (last, "CP-SSH-05"), (last, "CP-OS-11"), (first, "CP-FW-03"), (first, "CP-TIME-02"),
        (last, "CP-AUD-06"), (last, "CP-LOG-04"), (first, "CP-FIM-05"), (first, "CP-OS-26"),
    }
    assert report["hosts"][first]["CP-FIM-05"]["problems"] == [
        "service carepath-aide-check.timer enabled is False, expected True",
        "service carepath-aide-check.timer active is False, expected True",
    ]
    assert report["hosts"][last]["CP-SSH-05"]["problems"] == ["sshd passwordauthentication is 'yes', expected 'no'"]
    assert report["hosts"][last]["CP-OS-11"]["problems"] == [
        "conf /etc/login.defs:PASS_MAX_DAYS is 99999, above the maximum 365"
    ]
    # Drift detection changed nothing.
    assert "PasswordAuthentication yes" in lab.ssh(last, "sudo cat /etc/ssh/sshd_config").stdout
    assert "dport 9999" in lab.ssh(first, "sudo nft list table inet carepath").stdout

    # A real run does not unmask what someone masked: it stops on that host and says why.
    rc, _, _, out = run_site(lab)
    assert rc != 0 and "chkrootkit.timer is masked, so it cannot be enabled or started" in out
    lab.ssh(first, "sudo systemctl unmask chkrootkit.timer")

    assert run_site(lab)[0] == 0
    assert "dport 9999" not in lab.ssh(first, "sudo nft list table inet carepath").stdout
    assert "-k identity" in lab.ssh(last, "sudo cat /etc/audit/rules.d/50-carepath.rules").stdout
    assert drift(lab)[0] == 0


def test_an_exception_is_applied_and_reported_and_an_expired_one_is_refused(lab: Lab):
    extra = json.dumps({"carepath_exceptions": [EXCEPTION], "ssh_hardening_max_auth_tries": 6})
    rc, _, _, out = run_site(lab, "-e", extra)
    assert rc == 0, out[-3000:]
    for host in lab.hosts:
        assert "maxauthtries 6" in lab.ssh(host, "sudo /usr/sbin/sshd -T").stdout
    rc, report = drift(lab, "-e", extra)
    assert rc == 0
    assert statuses(report, "excepted") == {(h, "CP-SSH-12") for h in lab.hosts}
    assert report["hosts"][sorted(lab.hosts)[0]]["CP-SSH-12"]["exception"]["owner"] == EXCEPTION["owner"]

    digests = {h: lab.ssh(h, "sudo sha256sum /etc/ssh/sshd_config").stdout for h in lab.hosts}
    expired = json.dumps({"carepath_exceptions": [EXCEPTION | {"expires": "2024-06-30"}], "ssh_hardening_max_auth_tries": 6})
    rc, changed, _, out = run_site(lab, "-e", expired)
    assert rc != 0
    assert changed == 0
    assert "no host has been touched" in out and "expired on 2024-06-30" in out
    assert {h: lab.ssh(h, "sudo sha256sum /etc/ssh/sshd_config").stdout for h in lab.hosts} == digests

    # Without an exception the same setting is refused too.
    rc, changed, _, out = run_site(lab, "-e", "ssh_hardening_max_auth_tries=6")
    assert (rc != 0, changed) == (True, 0)
    assert "switches off CP-SSH-12" in out

    assert run_site(lab)[0] == 0
    assert all("maxauthtries 3" in lab.ssh(h, "sudo /usr/sbin/sshd -T").stdout for h in lab.hosts)
