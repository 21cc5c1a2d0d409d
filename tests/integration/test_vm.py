"""The controls a container cannot prove, on a lab host with a kernel of its own (a qemu guest).

Containers share the kernel of the machine running the lab, so auditd, kernel-global sysctls,
module loading, a running chronyd and a reboot are proven here instead. Software emulation is
slow, so this test applies only the features behind those controls (selected by their control
tags, derived from the catalog), checks them, reboots the guest and checks them again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from carepath import controls
from carepath.lab import vm
from tests.conftest import BIN, ROOT, carepath, cli_env
from tests.integration.conftest import STATE, Lab, evidence_controls, make_lab, run_site

# Its own xdist group: it runs beside the container lab's tests, not after them.
pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.xdist_group("vm")]

HOST = "it-vm"
#: Every control the catalog marks as needing a real kernel.
KERNEL_ONLY = sorted(c.id for c in controls.load() if c.container == "unsupported")
TAGS = ",".join(i.lower().replace("-", "_") for i in KERNEL_ONLY)
IMMUTABLE = '{"auditd_immutable": true}'
#: Kernel-global parameters (not per network namespace) that os_hardening sets by default.
KERNEL_SYSCTLS = {
    "kernel.randomize_va_space": "2",
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.yama.ptrace_scope": "1",
    "fs.suid_dumpable": "0",
    "fs.protected_regular": "2",
}
#: Forwarding off, and with it the redirect settings Linux resets when forwarding changes.
FORWARDING_OFF = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
}


@pytest.fixture(scope="module")
def vm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    the_lab = make_lab(
        tmp_path_factory.mktemp("vm"), "cpvm",
        [{"name": HOST, "release": "bookworm", "kind": "vm", "groups": ["servers"]}],
    )
    carepath("lab", "down", *the_lab.args())
    proc = carepath("lab", "up", *the_lab.args())
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield the_lab
    carepath("lab", "down", *the_lab.args())


def assert_kernel_controls_hold(lab: Lab, audited_command: str) -> None:
    status = lab.ssh(HOST, "sudo auditctl -s").stdout
    assert "enabled 2" in status, status  # rules loaded and locked (immutable) until reboot
    rules = lab.ssh(HOST, "sudo auditctl -l").stdout
    for expected in ("-w /etc/passwd -p wa -k identity", "-w /etc/sudoers -p wa -k scope", "init_module",
                     "clock_settime", "mount", "key=privileged"):
        assert expected in rules, rules
    # A change to an identity file is recorded by the kernel and found in the audit log.
    lab.ssh(HOST, f"sudo {audited_command} /etc/passwd")
    comm = audited_command.split()[0]
    found = lab.ssh(HOST, f"sudo ausearch --input-logs -ts recent -f /etc/passwd -c {comm}", check=False)
    assert found.returncode == 0 and f'comm="{comm}"' in found.stdout, found.stdout + found.stderr
    for name, value in KERNEL_SYSCTLS.items():
        assert lab.ssh(HOST, f"/usr/sbin/sysctl -n {name}").stdout.strip() == value, name
    refused = lab.ssh(HOST, "sudo modprobe cramfs", check=False)
    assert refused.returncode != 0
    assert "cramfs" not in lab.ssh(HOST, "lsmod").stdout
    # USBGuard guards the USB bus (usbcore, loaded at boot for it) on a real kernel (CP-OS-28).
    assert lab.ssh(HOST, "systemctl is-active auditd chrony usbguard", check=False).stdout.split() == ["active"] * 3


def reboot(lab: Lab) -> None:
    boot_id = lab.ssh(HOST, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    # Scheduled a moment ahead, so that this SSH session ends before the guest goes down.
    lab.ssh(HOST, "sudo systemd-run --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot")
    deadline = time.monotonic() + vm.BOOT_TIMEOUT  # the same ceiling as `lab up` (a busy CI machine)
    while time.monotonic() < deadline:
        try:
            proc = lab.ssh(HOST, "cat /proc/sys/kernel/random/boot_id", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if proc.returncode == 0 and proc.stdout.strip() not in ("", boot_id):
            return
        time.sleep(3)
    # What the guest last wrote to its serial console says where it stopped (shutdown or boot).
    console = vm.Guest(STATE / lab.name, HOST).console_tail(30)
    raise AssertionError(f"{HOST} did not come back over SSH within {vm.BOOT_TIMEOUT:.0f} s of its reboot; "
                         f"its console's last lines:\n{console}")


def assert_sysctls(lab: Lab, expected: dict[str, str]) -> None:
    names = " ".join(expected)
    values = lab.ssh(HOST, f"/usr/sbin/sysctl -n {names}").stdout.split("\n")
    assert dict(zip(expected, values, strict=False)) == expected


def test_kernel_only_controls_hold_on_a_real_kernel_and_survive_a_reboot(vm_lab: Lab):
    assert KERNEL_ONLY, "the catalog marks no control as needing a real kernel"
    # A host that routed: turning forwarding off makes Linux turn accept_redirects back on, so
    # the order the parameters are applied in decides whether they hold (issue 15).
    vm_lab.ssh(HOST, "sudo sysctl -q -w net.ipv4.ip_forward=1")
    rc, _, _, out = run_site(vm_lab, "--tags", TAGS)
    assert rc == 0, out[-4000:]
    assert_sysctls(vm_lab, FORWARDING_OFF)
    vm_lab.assert_healthy(HOST, when="after the converge")
    rc, changed, _, out = run_site(vm_lab, "--tags", TAGS)
    assert (rc, changed) == (0, 0), out[-4000:]
    vm_lab.assert_healthy(HOST, when="after the re-run")
    # journald sets the kernel's audit flag when it starts (Debian 12's default turns it off):
    # a journald restart, as a systemd update makes, must leave auditing on (CP-AUD-20).
    assert "enabled 1" in vm_lab.ssh(HOST, "sudo auditctl -s").stdout
    vm_lab.ssh(HOST, "sudo systemctl restart systemd-journald")
    assert "enabled 1" in vm_lab.ssh(HOST, "sudo auditctl -s").stdout

    # Immutable audit rules (-e 2) are an option: prove that branch here, where it matters.
    rc, _, _, out = run_site(vm_lab, "--tags", TAGS, "-e", IMMUTABLE)
    assert rc == 0, out[-4000:]
    # The run's audits, the checks `carepath drift` reads, report these controls compliant here,
    # where containers report them not applicable (drift's check mode is proven on containers).
    results = {c: s for (h, c), s in evidence_controls(out).items() if h == HOST}
    assert {c: results.get(c) for c in KERNEL_ONLY} == dict.fromkeys(KERNEL_ONLY, "compliant"), out[-3000:]

    assert_kernel_controls_hold(vm_lab, "chmod 0644")
    reboot(vm_lab)
    vm_lab.assert_healthy(HOST, when="after a reboot")
    assert_kernel_controls_hold(vm_lab, "chown root:root")
    assert_sysctls(vm_lab, FORWARDING_OFF)  # systemd-sysctl applied the file in the same order
    # Ansible still gets in and sudo still works after the reboot.
    assert vm_lab.ssh(HOST, "sudo -n true").returncode == 0


def test_a_kernel_parameter_that_does_not_hold_fails_with_its_name(vm_lab: Lab):
    # Two names of one kernel setting asked to differ: the value written first cannot hold.
    args = json.dumps({"path": "/tmp/carepath-test-sysctl.conf",
                       "parameters": {"net.ipv4.ip_forward": 0, "net.ipv4.conf.all.forwarding": 1}})
    proc = subprocess.run([str(BIN / "ansible"), HOST, "-i", str(vm_lab.inventory), "-b", "-m", "carepath.core.carepath_sysctl",
                           "-a", args], capture_output=True, text=True, env=cli_env(), cwd=ROOT, check=False)
    try:
        assert proc.returncode != 0, proc.stdout
        assert "do not hold after being applied: net.ipv4.ip_forward is 1, 0 was set" in proc.stdout, proc.stdout
    finally:
        vm_lab.ssh(HOST, "sudo sysctl -q -w net.ipv4.ip_forward=0; sudo rm -f /tmp/carepath-test-sysctl.conf")


def test_lab_up_keeps_a_running_vm_and_lab_down_stops_it(vm_lab: Lab):
    boot_id = vm_lab.ssh(HOST, "cat /proc/sys/kernel/random/boot_id").stdout
    again = carepath("lab", "up", *vm_lab.args())
    assert again.returncode == 0, again.stderr[-2000:]
    assert vm_lab.ssh(HOST, "cat /proc/sys/kernel/random/boot_id").stdout == boot_id  # not restarted
    status = carepath("lab", "status", *vm_lab.args())
    assert status.returncode == 0 and "running" in status.stdout

    down = carepath("lab", "down", *vm_lab.args())
    assert down.returncode == 0 and f"VM {HOST}" in down.stdout
    qemu = subprocess.run(["pgrep", "-f", f"qemu-system-x86_64 -name {HOST} "], capture_output=True, check=False)
    assert qemu.returncode == 1  # no such process any more
    assert not (vm_lab.inventory / "hosts.yml").exists()
