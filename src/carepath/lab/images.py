"""Build the lab's Debian base images with debootstrap (no registry needed).

An image carries the digest of its recipe as the ``carepath.recipe`` label and is
rebuilt only when the recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from carepath import procs
from carepath.errors import CarepathError
from carepath.lab import podman
from carepath.lab.topology import RELEASES

IMAGE_REPO = "localhost/carepath-debian"
RECIPE_LABEL = "carepath.recipe"
#: The user the lab's key logs in as; it has passwordless sudo, like a hospital's automation account.
ADMIN_USER = "carepath"

# Bump when the recipe changes in a way the text below does not show.
_RECIPE_VERSION = 1
_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server",
    "iproute2", "sudo", "ca-certificates", "procps",
)
_SETUP_SCRIPT = Path(__file__).with_name("image-setup.sh")


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str


def image_name(release: str) -> str:
    return f"{IMAGE_REPO}:{release}"


def recipe_digest(release: str) -> str:
    """Digest of everything that decides an image's contents (not the mirror it came from)."""
    recipe = {
        "version": _RECIPE_VERSION,
        "release": release,
        "packages": _PACKAGES,
        "setup": _SETUP_SCRIPT.read_text(encoding="utf-8"),
        "admin": ADMIN_USER,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def parse_sources(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) pairs from one-line (``deb URI SUITE``) or deb822 apt sources."""
    entries: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if match:
            entries.append((match.group(1), [match.group(2)]))
    for stanza in re.split(r"\n\s*\n", text):
        fields = {
            m.group(1).lower(): m.group(2).strip()
            for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE)
        }
        if "uris" in fields and "deb" in fields.get("types", "deb").split():
            entries.extend((uri, fields.get("suites", "").split()) for uri in fields["uris"].split())
    return entries


def find_mirrors(sources: Iterable[Path] | None = None) -> Mirrors:
    """The Debian mirrors this machine's own apt uses (never a hard-coded host).

    ``CAREPATH_DEBIAN_MIRROR`` and ``CAREPATH_DEBIAN_SECURITY_MIRROR`` override them.
    """
    main = os.environ.get("CAREPATH_DEBIAN_MIRROR")
    security = os.environ.get("CAREPATH_DEBIAN_SECURITY_MIRROR")
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for uri, suites in parse_sources(path.read_text(encoding="utf-8", errors="replace")):
            if any(s.endswith(("-security", "/updates")) for s in suites):
                security = security or uri
            elif "debian" in uri:
                main = main or uri
    if not main:
        raise CarepathError(
            "cannot find a Debian mirror in this machine's apt sources",
            hint="set CAREPATH_DEBIAN_MIRROR (and CAREPATH_DEBIAN_SECURITY_MIRROR) to your mirror's URL",
        )
    return Mirrors(main=main, security=security or main.rstrip("/") + "-security")


def is_current(release: str) -> bool:
    labels = podman.image_labels(image_name(release))
    return labels is not None and labels.get(RECIPE_LABEL) == recipe_digest(release)


# debootstrap prints hundreds of lines; these mark its phases.
_PROGRESS = re.compile(
    r"^(I: (Retrieving Release|Checking component|Installing core|Unpacking the base|"
    r"Configuring the base|Base system)|W:|E:)"
)
_print_lock = threading.Lock()


def _say(release: str, line: str) -> None:
    with _print_lock:
        print(f"[image {release}] {line}", file=sys.stderr, flush=True)


def build(release: str, mirrors: Mirrors, workdir: str = "/var/tmp") -> None:
    """Debootstrap ``release`` into a temporary root and import it as a podman image."""
    if release not in RELEASES:
        raise CarepathError(f"unknown Debian release {release!r}; supported: {', '.join(RELEASES)}")
    with tempfile.TemporaryDirectory(prefix=f"carepath-{release}-", dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _say(release, f"debootstrap from {mirrors.main} (about a minute)")
        procs.stream(
            [
                "debootstrap", "--variant=minbase", f"--include={','.join(_PACKAGES)}",
                "--components=main", release, str(rootfs), mirrors.main,
            ],
            on_line=lambda line: _say(release, line) if _PROGRESS.match(line) else None,
            what=f"debootstrap {release}",
        )
        _say(release, "configuring: apt sources, per-host SSH keys, admin user, package index")
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
        procs.run(
            ["chroot", str(rootfs), "/bin/sh", "-s", release, mirrors.main, mirrors.security, ADMIN_USER],
            input_text=_SETUP_SCRIPT.read_text(encoding="utf-8"),
            what=f"image setup for {release}",
        )
        (rootfs / "etc" / "resolv.conf").unlink()
        _say(release, f"importing as {image_name(release)}")
        _import(rootfs, release)
        _say(release, "done")


def _import(rootfs: Path, release: str) -> None:
    argv = [
        "podman", "import",
        "--change", 'CMD ["/sbin/init"]',
        "--change", f"LABEL {RECIPE_LABEL}={recipe_digest(release)}",
        "-", image_name(release),
    ]
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:  # noqa: S607
        proc = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, check=False)  # noqa: S603
        tar_rc = tar.wait()
    if tar_rc != 0 or proc.returncode != 0:
        raise CarepathError(f"importing the {release} image failed: {proc.stderr.strip()}")


def ensure(releases: Iterable[str], *, rebuild: bool = False) -> None:
    """Build the images for ``releases`` that are missing or out of date, in parallel."""
    podman.ensure_available()
    wanted = sorted(set(releases))
    todo = [r for r in wanted if rebuild or not is_current(r)]
    for release in wanted:
        if release not in todo:
            _say(release, f"{image_name(release)} is up to date")
    if not todo:
        return
    procs.require("debootstrap", install_hint=podman.INSTALL_HINT)
    mirrors = find_mirrors()
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        for future in [pool.submit(build, release, mirrors) for release in todo]:
            future.result()
