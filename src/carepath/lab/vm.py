"""Real-kernel lab hosts: qemu guests built from the same debootstrap image as the containers.

Containers share the lab machine's kernel, so controls that need a kernel of their own
(auditd, kernel-global sysctls, module loading, a reboot) are proven on these guests.
A guest boots with qemu's ``-kernel``/``-initrd`` from a qcow2 overlay on a cached base disk,
is reached over SSH through a port forwarded on 127.0.0.1, and takes its hostname, its own
SSH host key and the lab's login key from qemu fw_cfg (nothing is written into the disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from carepath import procs
from carepath.errors import CarepathError
from carepath.lab import images

# Bump when the recipe changes in a way the text of vm-setup.sh does not show.
_RECIPE_VERSION = 1
_SETUP_SCRIPT = Path(__file__).with_name("vm-setup.sh")
_DISK_SIZE = "3G"
INSTALL_HINT = "install it with: apt-get install -y qemu-system-x86 qemu-utils (or run `make setup`)"
#: Software emulation works everywhere; set CAREPATH_VM_ACCEL=kvm where KVM really works.
DEFAULT_ACCEL = "tcg"
#: The ceiling for a guest's first SSH login. Alone it boots in about a minute under tcg;
#: on two busy cores (the full test suite) it has taken over five.
BOOT_TIMEOUT = 900.0


@dataclass(frozen=True)
class BaseImage:
    """A cached, bootable guest: kernel, initramfs and a root disk."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.kernel, self.initrd, self.disk))


def _say(message: str) -> None:
    print(f"[vm] {message}", file=sys.stderr, flush=True)


def require_qemu() -> None:
    if platform.machine() != "x86_64":
        raise CarepathError(
            f"lab VMs need an x86_64 machine; this one is {platform.machine()}",
            hint="use container hosts only (remove 'kind: vm' from the topology)",
        )
    procs.require("qemu-system-x86_64", install_hint=INSTALL_HINT)
    procs.require("qemu-img", install_hint=INSTALL_HINT)
    procs.require("mkfs.ext4", install_hint="apt-get install -y e2fsprogs")


def recipe_digest(release: str) -> str:
    """The container image's recipe plus what turns it into a guest."""
    recipe = {
        "version": _RECIPE_VERSION,
        "image": images.recipe_digest(release),
        "setup": _SETUP_SCRIPT.read_text(encoding="utf-8"),
        "size": _DISK_SIZE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def base_image(cache: Path, release: str) -> BaseImage:
    return BaseImage(cache / f"vm-{release}-{recipe_digest(release)}")


def _export_rootfs(release: str, rootfs: Path) -> None:
    """Unpack the lab's container image for ``release`` into ``rootfs``."""
    name = f"carepath-vm-export-{os.getpid()}"
    procs.run(["podman", "create", "--name", name, images.image_name(release), "true"], what="podman create")
    try:
        rootfs.mkdir()
        with subprocess.Popen(["podman", "export", name], stdout=subprocess.PIPE) as export:  # noqa: S607
            untar = subprocess.run(  # noqa: S603
                ["tar", "-C", str(rootfs), "-x"], stdin=export.stdout, capture_output=True, text=True, check=False  # noqa: S607
            )
            export_rc = export.wait()
        if export_rc != 0 or untar.returncode != 0:
            raise CarepathError(f"exporting the {release} image failed: {untar.stderr.strip()}")
    finally:
        procs.run(["podman", "rm", "-f", name], check=False)


def _progress_line(line: str) -> bool:
    """The lines of the guest setup worth showing (apt's harmless /dev/pts complaint is not)."""
    return line.startswith(("Setting up linux-image", "E:")) and "posix_openpt" not in line


def _chroot_setup(rootfs: Path) -> None:
    """Install a kernel and the boot-time seeding in ``rootfs`` (with /proc, /sys, /dev mounted)."""
    resolv = rootfs / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    mounted: list[Path] = []
    try:
        for fstype, source, target in (("proc", "proc", "proc"), ("sysfs", "sys", "sys"), (None, "/dev", "dev")):
            point = rootfs / target
            argv = ["mount", "--bind", source, str(point)] if fstype is None else ["mount", "-t", fstype, source, str(point)]
            procs.run(argv, what="mount")
            mounted.append(point)
        procs.stream(
            ["chroot", str(rootfs), "/bin/sh", "-s", images.ADMIN_USER],
            input_text=_SETUP_SCRIPT.read_text(encoding="utf-8"),
            on_line=lambda line: _say(line) if _progress_line(line) else None,
            what="guest setup (kernel and initramfs)",
        )
    finally:
        for point in reversed(mounted):
            procs.run(["umount", "-l", str(point)], check=False)


def build(cache: Path, release: str) -> BaseImage:
    """Build (or reuse) the guest base image for ``release``."""
    require_qemu()
    image = base_image(cache, release)
    if image.complete():
        _say(f"guest image {image.directory.name} is up to date")
        return image
    images.ensure([release])
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f"vm-{release}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    started = time.monotonic()
    _say(f"building the {release} guest image (kernel, initramfs, disk; about two minutes)")
    with tempfile.TemporaryDirectory(prefix=f"carepath-vm-{release}-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _export_rootfs(release, rootfs)
        _chroot_setup(rootfs)
        staging = Path(tmp) / "image"
        staging.mkdir()
        shutil.copyfile(rootfs / "vmlinuz", staging / "vmlinuz")
        shutil.copyfile(rootfs / "initrd.img", staging / "initrd.img")
        raw = Path(tmp) / "disk.raw"
        _say("writing the root disk")
        procs.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw), _DISK_SIZE], what="mkfs.ext4")
        procs.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staging / "disk.qcow2")], what="qemu-img convert")
        shutil.move(str(staging), image.directory)
    _say(f"guest image ready in {time.monotonic() - started:.0f}s: {image.directory}")
    return image


@dataclass(frozen=True)
class Guest:
    """One running (or stopped) guest's files in the lab's state directory."""

    state: Path
    name: str

    @property
    def overlay(self) -> Path:
        return self.state / f"{self.name}.qcow2"

    @property
    def host_key(self) -> Path:
        return self.state / f"{self.name}.ssh_host_ed25519_key"

    @property
    def pidfile(self) -> Path:
        return self.state / f"{self.name}.pid"

    @property
    def console(self) -> Path:
        return self.state / f"{self.name}.console.log"

    @property
    def meta(self) -> Path:
        return self.state / f"{self.name}.json"

    def info(self) -> dict[str, str | int]:
        try:
            return dict(json.loads(self.meta.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError):
            return {}

    def pid(self) -> int | None:
        """The qemu process of this guest, if it is running."""
        try:
            pid = int(self.pidfile.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.overlay).encode() in cmdline else None

    def console_tail(self, lines: int = 5) -> str:
        """The last lines the guest wrote to its serial console (empty if none yet)."""
        try:
            text = self.console.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def public_host_key(self) -> str:
        return " ".join(Path(f"{self.host_key}.pub").read_text(encoding="utf-8").split()[:2])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(guest: Guest, image: BaseImage, authorized_key: Path) -> int:
    """Start ``guest`` if it is not running; return its SSH port on 127.0.0.1."""
    info = guest.info()
    if guest.pid() is not None and info.get("image") == image.directory.name:
        return int(info["port"])
    stop(guest)
    if info.get("image") != image.directory.name:
        guest.overlay.unlink(missing_ok=True)
    if not guest.overlay.exists():
        procs.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk.resolve()), str(guest.overlay)],
            what="qemu-img create",
        )
    if not guest.host_key.exists():
        procs.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", guest.name, "-f", str(guest.host_key)],
            what="ssh-keygen",
        )
    port = int(info.get("port") or 0) or _free_port()
    accel = os.environ.get("CAREPATH_VM_ACCEL", DEFAULT_ACCEL)
    _say(f"booting {guest.name} ({accel}; SSH on 127.0.0.1:{port}; console: {guest.console})")
    procs.run(
        [
            "qemu-system-x86_64", "-name", guest.name, "-accel", accel, "-m", "1536", "-smp", "2",
            "-display", "none", "-serial", f"file:{guest.console}",
            "-daemonize", "-pidfile", str(guest.pidfile),
            "-kernel", str(image.kernel.resolve()), "-initrd", str(image.initrd.resolve()),
            "-append", "root=/dev/vda rw console=ttyS0 quiet",
            "-drive", f"file={guest.overlay},if=virtio,format=qcow2",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0",
            "-fw_cfg", f"name=opt/carepath/hostname,string={guest.name}",
            "-fw_cfg", f"name=opt/carepath/ssh_host_ed25519_key,file={guest.host_key}",
            "-fw_cfg", f"name=opt/carepath/authorized_keys,file={authorized_key}",
        ],
        what=f"qemu for {guest.name}",
    )
    guest.meta.write_text(json.dumps({"port": port, "image": image.directory.name}), encoding="utf-8")
    return port


def stop(guest: Guest, timeout: float = 10.0) -> bool:
    """Stop the guest's qemu; True if one was running."""
    pid = guest.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and guest.pid() is not None:
        time.sleep(0.2)
    if guest.pid() is not None:
        os.kill(pid, signal.SIGKILL)
    guest.pidfile.unlink(missing_ok=True)
    return True
