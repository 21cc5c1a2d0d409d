"""Lab pieces that need no hosts: the guest recipe digest, the guest's files, and the lab CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from carepath.errors import CarepathError
from carepath.lab import tls, vm


def test_guest_recipe_follows_the_container_image_and_the_setup_script(monkeypatch: pytest.MonkeyPatch):
    first = vm.recipe_digest("bookworm")
    assert first == vm.recipe_digest("bookworm")
    assert first != vm.recipe_digest("trixie")
    monkeypatch.setattr(vm.images, "recipe_digest", lambda release: "another-image")
    assert vm.recipe_digest("bookworm") != first


def test_a_guest_without_a_live_qemu_is_not_running(tmp_path: Path):
    guest = vm.Guest(tmp_path, "vm1")
    assert guest.pid() is None
    guest.pidfile.write_text("1\n")  # PID 1 exists but is not this guest's qemu
    assert guest.pid() is None
    assert vm.stop(guest) is False
    assert guest.info() == {}


def test_waiting_for_a_guest_whose_qemu_exited_fails_at_once_with_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from carepath.lab import lab

    guest = vm.Guest(tmp_path, "vm1")
    guest.console.write_text("Booting...\n\nKernel panic - not syncing: VFS: Unable to mount root fs\n")
    tries: list[list[str]] = []

    def refused(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        tries.append(argv)
        return subprocess.CompletedProcess(argv, 255, "", "Connection refused")

    monkeypatch.setattr(lab.subprocess, "run", refused)
    files = lab.LabFiles(tmp_path, tmp_path)
    with pytest.raises(CarepathError, match="qemu exited before SSH came up") as err:
        lab._wait_ssh(files, "vm1", "127.0.0.1", 2222, timeout=600, guest=guest)
    assert "Kernel panic" in str(err.value)
    assert len(tries) == 1


def test_progress_shows_the_kernel_and_errors_but_not_apts_pty_complaint():
    assert vm._progress_line("Setting up linux-image-6.1.0-57-amd64 (6.1.192-3) ...")
    assert vm._progress_line("E: Unable to locate package zstd")
    assert not vm._progress_line("E: Can not write log (Is /dev/pts mounted?) - posix_openpt (19: No such device)")
    assert not vm._progress_line("Unpacking kmod ...")


def test_lab_ca_signs_host_certificates_for_their_names(tmp_path: Path):
    ca = tls.ensure_ca(tmp_path, "tt")
    cert, key = tls.ensure_host(tmp_path, "collector1", ["tt-collector1"])
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    show = ["openssl", "x509", "-in", str(cert), "-noout", "-text"]
    text = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    assert "DNS:collector1, DNS:tt-collector1" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert key.stat().st_mode & 0o077 == 0
    # Created once: a second call keeps the same certificate.
    before = cert.read_bytes()
    assert tls.ensure_host(tmp_path, "collector1", ["tt-collector1"])[0].read_bytes() == before
    assert not list(tmp_path.glob("*.csr"))


def test_lab_containers_get_the_first_free_fixed_address_from_ten_on():
    from carepath.lab.lab import free_address

    assert free_address("10.89.1.0/24", "10.89.1.1", set()) == "10.89.1.10"
    assert free_address("10.89.1.0/24", "10.89.1.1", {"10.89.1.10", "10.89.1.11"}) == "10.89.1.12"
    assert free_address("10.89.1.0/24", "10.89.1.10", set()) == "10.89.1.11"  # never the gateway
    with pytest.raises(CarepathError, match="no free address left on 10.89.1.0/29"):
        free_address("10.89.1.0/29", "10.89.1.1", set())
