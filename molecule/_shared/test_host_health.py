"""Run by every scenario's verifier (additional_files_or_dirs in .config/molecule/config.yml).

Hospital monitoring pages on `systemctl is-system-running` not being `running`: a role must leave
its host healthy after the converge and the idempotence re-run (the verifier runs after both), and
after a restart of the host (a container restart boots systemd again). And Ansible reached the
host as it reaches a real one: over SSH, as the automation account (molecule/_shared/ssh_access.yml).
"""

from __future__ import annotations

import subprocess
import time


def health(host) -> tuple[str, str]:
    """systemd's state once start-up is over, and the failed units (empty when none)."""
    state = ""
    for _ in range(30):  # right after a restart, systemctl may not reach the bus for a moment
        state = host.run("timeout 120 systemctl is-system-running --wait").stdout.strip()
        if state not in ("", "offline", "unknown", "starting", "initializing"):
            break
        time.sleep(1)
    return state, host.run("systemctl --failed --plain --no-legend").stdout.strip()


def test_running_with_no_failed_unit_after_converge_and_rerun(host):
    assert health(host) == ("running", "")


def test_ansible_logged_in_over_ssh_as_the_automation_account(host):
    logins = host.run("journalctl --no-pager -o cat --grep 'Accepted publickey for carepath'")
    assert logins.rc == 0 and "Accepted publickey for carepath" in logins.stdout, logins.stderr


def test_running_with_no_failed_unit_after_a_restart(host):
    subprocess.run(["podman", "restart", "-t", "10", host.backend.name], capture_output=True, text=True, check=True)
    assert health(host) == ("running", "")
