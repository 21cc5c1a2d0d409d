"""Bring a lab up, report on it, and take it down again.

A lab is a set of systemd containers on one podman network, each reached over real
SSH with a key generated for the lab. Everything a lab makes carries the label
``carepath.lab=<name>`` so that ``down`` removes exactly what ``up`` made.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from carepath import procs
from carepath.errors import CarepathError
from carepath.lab import images, podman
from carepath.lab.topology import LabHost, Topology

LABEL = "carepath.lab"
HOST_LABEL = "carepath.host"
INVENTORY_FILE = "hosts.yml"
_BOOT_TIMEOUT = 90.0
_SSH_TIMEOUT = 30.0


@dataclass(frozen=True)
class LabFiles:
    """Where one lab keeps its local, never-committed files."""

    state: Path
    inventory_dir: Path

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.inventory_dir / INVENTORY_FILE


@dataclass(frozen=True)
class HostState:
    name: str
    container: str
    release: str
    state: str
    address: str | None = None


def _say(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def inventory_owner(path: Path) -> str | None:
    """The lab a generated inventory belongs to, or None if it is not one of ours."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return None
    owner = (data.get("all", {}).get("vars") or {}).get("carepath_lab")
    return str(owner) if owner else None


def _ensure_key(files: LabFiles, lab: str) -> None:
    files.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not files.key.exists():
        procs.require("ssh-keygen", install_hint="apt-get install -y openssh-client")
        _say(f"generating the lab's SSH key {files.key}")
        procs.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"carepath-lab-{lab}", "-f", str(files.key)],
            what="ssh-keygen",
        )


def _ensure_network(topology: Topology) -> None:
    if not podman.network_exists(topology.network):
        _say(f"creating network {topology.network}")
        podman.podman("network", "create", "--label", f"{LABEL}={topology.name}", topology.network)


def _image_id(release: str) -> str:
    return podman.podman("image", "inspect", "--format", "{{.Id}}", images.image_name(release)).strip()


def _start_container(topology: Topology, host: LabHost) -> None:
    name = topology.container(host)
    _say(f"starting {name} (Debian {host.release})")
    podman.podman(
        "run", "-d", "--name", name, "--hostname", host.name,
        "--network", topology.network,
        "--systemd=always",
        # Firewall roles need nftables in the host's own network namespace; nothing more.
        # Never --privileged and never an unmasked /proc/sys: either would let a role
        # change kernel settings of the machine running the lab.
        "--cap-add", "NET_ADMIN",
        *podman.ulimit_args(),
        "--label", f"{LABEL}={topology.name}", "--label", f"{HOST_LABEL}={host.name}",
        images.image_name(host.release), "/sbin/init",
    )


def _wait_booted(container: str) -> str:
    """Wait until systemd in ``container`` has finished booting; return its state."""
    deadline = time.monotonic() + _BOOT_TIMEOUT
    state = "unknown"
    while time.monotonic() < deadline:
        proc = procs.run(
            ["podman", "exec", container, "systemctl", "is-system-running", "--wait"], check=False
        )
        state = proc.stdout.strip() or state
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)  # "Failed to connect to bus" right after start: retry
    raise CarepathError(f"{container} did not finish booting within {_BOOT_TIMEOUT:.0f}s (state: {state})")


def _authorize(container: str, public_key: str) -> None:
    home = f"/home/{images.ADMIN_USER}"
    podman.podman(
        "exec", "-i", container, "sh", "-c",
        f"umask 077 && mkdir -p {home}/.ssh && cat > {home}/.ssh/authorized_keys && "
        f"chown -R {images.ADMIN_USER}: {home}/.ssh",
        input_text=public_key,
    )


def _host_key(container: str) -> str:
    """The host's own ed25519 public key as ``type base64`` (the known_hosts form)."""
    key = podman.podman("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    return " ".join(key)


def ssh_argv(files: LabFiles, address: str, *command: str) -> list[str]:
    """An ssh command line that logs in to a lab host the way Ansible does."""
    return [
        "ssh", "-i", str(files.key),
        "-o", f"UserKnownHostsFile={files.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
        f"{images.ADMIN_USER}@{address}", *command,
    ]


def _wait_ssh(files: LabFiles, host: str, address: str) -> None:
    deadline = time.monotonic() + _SSH_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(  # noqa: S603
            ssh_argv(files, address, "true"), capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        time.sleep(1)
    raise CarepathError(f"cannot log in to {host} ({address}) over SSH: {last}")


def _write_inventory(topology: Topology, files: LabFiles, addresses: dict[str, str]) -> None:
    groups: dict[str, dict[str, dict[str, None]]] = {}
    for host in topology.hosts:
        for group in (*host.groups, f"debian_{host.release}"):
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = None
    inventory = {
        "all": {
            "vars": {
                "carepath_lab": topology.name,
                "ansible_user": images.ADMIN_USER,
                "ansible_ssh_private_key_file": str(files.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={files.known_hosts} -o StrictHostKeyChecking=yes "
                    "-o IdentitiesOnly=yes"
                ),
            },
            "hosts": {
                h.name: {"ansible_host": addresses[h.name], "carepath_lab_release": h.release}
                for h in topology.hosts
            },
            "children": groups,
        }
    }
    files.inventory_dir.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Generated by `carepath lab up` from {topology.source}; do not edit.\n"
        f"# `carepath lab down` removes it.\n"
    )
    files.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")


def up(topology: Topology, files: LabFiles, *, rebuild_images: bool = False) -> list[HostState]:
    """Make the running lab match ``topology``; safe to repeat."""
    podman.ensure_available()
    owner = inventory_owner(files.inventory)
    if files.inventory.exists() and owner not in (None, topology.name):
        raise CarepathError(
            f"{files.inventory} belongs to lab {owner!r}, not {topology.name!r}",
            hint=f"take that lab down first, or pass --inventory DIR for lab {topology.name!r}",
        )
    images.ensure(topology.releases, rebuild=rebuild_images)
    _ensure_key(files, topology.name)
    _ensure_network(topology)

    wanted = {h.name: h for h in topology.hosts}
    image_ids = {release: _image_id(release) for release in topology.releases}
    for info in podman.containers(f"{LABEL}={topology.name}"):
        host_name = (info.get("Labels") or {}).get(HOST_LABEL)
        container = info["Names"][0]
        host = wanted.get(host_name or "")
        if host is None:
            _say(f"removing {container}: no longer in the topology")
            podman.podman("rm", "-f", "-t", "2", container)
        elif info.get("ImageID") != image_ids[host.release]:
            _say(f"recreating {container}: its image has been rebuilt")
            podman.podman("rm", "-f", "-t", "2", container)
        elif info.get("State") != "running":
            _say(f"starting existing {container}")
            podman.podman("start", container)
    existing = {
        (info.get("Labels") or {}).get(HOST_LABEL) for info in podman.containers(f"{LABEL}={topology.name}")
    }
    for host in topology.hosts:
        if host.name not in existing:
            _start_container(topology, host)

    public_key = files.key.with_suffix(".pub").read_text(encoding="utf-8")
    addresses: dict[str, str] = {}
    known_hosts: list[str] = []
    states: list[HostState] = []
    for host in topology.hosts:
        container = topology.container(host)
        boot = _wait_booted(container)
        if boot == "degraded":
            failed = podman.podman("exec", container, "systemctl", "--failed", "--plain", "--no-legend")
            _say(f"{host.name}: systemd is degraded: {' '.join(failed.split()[:1]) or '?'}")
        _authorize(container, public_key)
        addresses[host.name] = podman.container_ip(container, topology.network)
        known_hosts.append(f"{addresses[host.name]} {_host_key(container)}")
        states.append(HostState(host.name, container, host.release, boot, addresses[host.name]))
    files.known_hosts.write_text("\n".join(known_hosts) + "\n", encoding="utf-8")
    for state in states:
        _wait_ssh(files, state.name, state.address or "")
    _write_inventory(topology, files, addresses)
    _say(f"{len(states)} host(s) up and reachable over SSH; inventory: {files.inventory}")
    return states


def status(topology: Topology, files: LabFiles) -> list[HostState]:
    """What is running for this lab, host by host (empty when the lab is not up)."""
    podman.ensure_available()
    found = {
        (info.get("Labels") or {}).get(HOST_LABEL): info
        for info in podman.containers(f"{LABEL}={topology.name}")
    }
    states = []
    for host in topology.hosts:
        info = found.get(host.name)
        if info is None:
            states.append(HostState(host.name, topology.container(host), host.release, "absent"))
            continue
        address = None
        if info.get("State") == "running":
            address = podman.container_ip(topology.container(host), topology.network)
        states.append(HostState(host.name, topology.container(host), host.release, info.get("State", "?"), address))
    return states


def down(
    name: str, files: LabFiles, network: str, *, fact_cache: Path | None = None, remove_images: bool = False
) -> list[str]:
    """Remove every container, the network, the key, the inventory and cached facts of lab ``name``."""
    podman.ensure_available()
    removed: list[str] = []
    hosts: list[str] = []
    for info in podman.containers(f"{LABEL}={name}"):
        container = info["Names"][0]
        hosts.append((info.get("Labels") or {}).get(HOST_LABEL, ""))
        podman.podman("rm", "-f", "-t", "2", container)
        removed.append(f"container {container}")
    if podman.network_exists(network):
        labels = podman.podman("network", "inspect", "--format", "{{.Labels}}", network)
        if f"{LABEL}:{name}" in labels.replace(" ", ""):
            podman.podman("network", "rm", network)
            removed.append(f"network {network}")
    if files.state.exists():
        shutil.rmtree(files.state)
        removed.append(f"key and known_hosts in {files.state}")
    if inventory_owner(files.inventory) == name:
        files.inventory.unlink()
        removed.append(f"inventory {files.inventory}")
    if fact_cache is not None and fact_cache.is_dir():
        # ansible-core names cache files after the host, with a schema prefix (``s1_<host>``).
        for cached in fact_cache.iterdir():
            if cached.name.split("_", 1)[-1] in hosts:
                cached.unlink()
    if remove_images:
        for release in images.RELEASES:
            if podman.image_labels(images.image_name(release)) is not None:
                podman.podman("rmi", images.image_name(release))
                removed.append(f"image {images.image_name(release)}")
    return removed
