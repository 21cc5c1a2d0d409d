"""Bring a lab up, report on it, and take it down again.

A lab is a set of systemd containers on one podman network, each reached over real
SSH with a key generated for the lab. Everything a lab makes carries the label
``carepath.lab=<name>`` so that ``down`` removes exactly what ``up`` made.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carepath import procs
from carepath.errors import CarepathError
from carepath.lab import images, podman, tls, vm
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

    @property
    def tls(self) -> Path:
        """The lab's CA and per-host certificates (see carepath.lab.tls)."""
        return self.state / "tls"

    @property
    def vm_images(self) -> Path:
        """Guest base images, shared by every lab (``<state dir>/images``)."""
        return self.state.parent.parent / "images"


@dataclass(frozen=True)
class HostState:
    name: str
    container: str
    release: str
    state: str
    address: str | None = None
    port: int = 22
    kind: str = "container"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}" if self.port != 22 else str(self.address or "-")


def _say(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def inventory_owner(path: Path) -> str | None:
    """The lab a generated inventory belongs to, or None if it is not one of ours."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    group = data.get("all") if isinstance(data, dict) else None  # an INI inventory reads as a string
    variables = group.get("vars") if isinstance(group, dict) else None
    owner = variables.get("carepath_lab") if isinstance(variables, dict) else None
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


def free_address(subnet: str, gateway: str, used: set[str]) -> str:
    """The first address of ``subnet`` from .10 on that is neither the gateway nor in use."""
    network = ipaddress.ip_network(subnet)
    for offset, address in enumerate(network.hosts(), start=1):
        if offset >= 10 and str(address) != gateway and str(address) not in used:
            return str(address)
    raise CarepathError(f"no free address left on {subnet}")


def _start_container(topology: Topology, host: LabHost) -> None:
    name = topology.container(host)
    # A fixed address: podman would otherwise hand out a new one on every restart, and the
    # inventory and known_hosts would go stale.
    subnet, gateway = podman.network_subnet(topology.network)
    address = free_address(subnet, gateway, podman.addresses_in_use(topology.network))
    _say(f"starting {name} (Debian {host.release}, {address})")
    podman.podman(
        "run", "-d", "--name", name, "--hostname", host.name,
        "--network", topology.network, "--ip", address,
        # Other lab hosts reach it by its inventory name, as hospital hosts reach each other by DNS.
        "--network-alias", host.name,
        "--systemd=always",
        # Firewall roles need nftables in the host's own network namespace; nothing more.
        # Never --privileged and never an unmasked /proc/sys: either would let a role
        # change kernel settings of the machine running the lab.
        "--cap-add", "NET_ADMIN",
        *podman.ulimit_args(),
        "--label", f"{LABEL}={topology.name}", "--label", f"{HOST_LABEL}={host.name}",
        "--label", f"{podman.ADDRESS_LABEL}={address}",
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


def ssh_argv(files: LabFiles, address: str, *command: str, port: int = 22) -> list[str]:
    """An ssh command line that logs in to a lab host the way Ansible does."""
    return [
        "ssh", "-i", str(files.key), "-p", str(port),
        "-o", f"UserKnownHostsFile={files.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes",
        # A host going down (a VM rebooting) can leave a connection hanging: keep-alives end it.
        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
        f"{images.ADMIN_USER}@{address}", *command,
    ]


def _wait_ssh(
    files: LabFiles, host: str, address: str, port: int = 22, timeout: float = _SSH_TIMEOUT,
    guest: vm.Guest | None = None,
) -> None:
    """Retry an SSH login until it works. For a VM, give up at once if its qemu exits,
    and say every minute that it is still booting (software emulation on a busy machine is slow)."""
    start = time.monotonic()
    deadline = start + timeout
    next_report = start + 60
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(  # noqa: S603
            ssh_argv(files, address, "true", port=port), capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        if guest is not None:
            if guest.pid() is None:
                raise CarepathError(
                    f"{host}: qemu exited before SSH came up; the console's last lines:\n{guest.console_tail()}"
                )
            if time.monotonic() >= next_report:
                next_report += 60
                _say(f"{host} is still booting ({time.monotonic() - start:.0f}s): {guest.console_tail(1)}")
        time.sleep(1)
    where = f"; console: {guest.console}" if guest is not None else ""
    raise CarepathError(f"cannot log in to {host} ({address}) over SSH within {timeout:.0f}s: {last}{where}")


def _write_inventory(topology: Topology, files: LabFiles, states: dict[str, HostState]) -> None:
    groups: dict[str, dict[str, dict[str, None]]] = {}
    for host in topology.hosts:
        for group in (*host.groups, f"debian_{host.release}"):
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = None
    inventory = {
        "all": {
            "vars": {
                "carepath_lab": topology.name,
                "carepath_lab_tls_dir": str(files.tls),
                "ansible_user": images.ADMIN_USER,
                "ansible_ssh_private_key_file": str(files.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={files.known_hosts} -o StrictHostKeyChecking=yes "
                    "-o IdentitiesOnly=yes"
                ),
            },
            "hosts": {h.name: _inventory_host(h, states[h.name]) for h in topology.hosts},
            "children": groups,
        }
    }
    _add_log_collector(inventory["all"], files)
    _add_webapp(inventory["all"], files)
    _add_hl7(inventory["all"], files)
    files.inventory_dir.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Generated by `carepath lab up` from {topology.source}; do not edit.\n"
        f"# `carepath lab down` removes it.\n"
    )
    files.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")


#: The group whose first host is the lab's log collector (see roles/log_forwarding).
COLLECTOR_GROUP = "log_collectors"


def _add_log_collector(inventory: dict[str, Any], files: LabFiles) -> None:
    """Point every host's log forwarding at the lab's collector, over TLS with the lab CA.

    A topology without a host in ``log_collectors`` gets no collector: the baseline then
    refuses to forward, with the message saying what to set.
    """
    collectors = inventory["children"].get(COLLECTOR_GROUP)
    inventory["vars"]["log_forwarding_tls_source_dir"] = str(files.tls)
    if not collectors:
        return
    inventory["vars"]["log_forwarding_collector_host"] = next(iter(collectors["hosts"]))
    collectors["vars"] = {
        "log_forwarding_collector_enabled": True,
        # Syslog over TLS (RFC 5425) reaches the collectors only; SSH stays open as by default.
        "firewall_flows": [
            {"name": "ssh-from-any", "from": "any", "proto": "tcp", "ports": [22]},
            {"name": "syslog-tls-from-any", "from": "any", "proto": "tcp", "ports": [6514]},
        ],
    }


#: Groups of the blue-green web app delivery (roles/haproxy, roles/webapp).
WEBAPP_LB_GROUP, WEBAPP_HOSTS_GROUP = "webapp_lb", "webapp_hosts"
#: The sample app the lab serves (`carepath webapp sample` builds its releases).
WEBAPP_VARS: dict[str, Any] = {
    "webapp_name": "carepath-sample",
    "webapp_ports": {"blue": 8081, "green": 8082},
    "haproxy_webapps": [{"name": "carepath-sample", "group": WEBAPP_HOSTS_GROUP,
                         "ports": {"blue": 8081, "green": 8082}, "health_path": "/healthz"}],
}


def _add_webapp(inventory: dict[str, Any], files: LabFiles) -> None:
    """Serve the sample web app when the topology has load balancers and app hosts.

    The load balancers serve HTTPS with their lab certificate; the app hosts' colours are
    reachable from the load balancers (and, in the lab, from the machine running it).
    """
    children = inventory["children"]
    if not (children.get(WEBAPP_LB_GROUP) and children.get(WEBAPP_HOSTS_GROUP)):
        return
    inventory["vars"].update(WEBAPP_VARS)
    inventory["vars"]["haproxy_tls_source_dir"] = str(files.tls)
    children[WEBAPP_LB_GROUP]["vars"] = {"firewall_flows": [
        {"name": "ssh-from-any", "from": "any", "proto": "tcp", "ports": [22]},
        {"name": "web-from-any", "from": "any", "proto": "tcp", "ports": [80, 443]},
    ]}
    children[WEBAPP_HOSTS_GROUP]["vars"] = {"firewall_flows": [
        {"name": "ssh-from-any", "from": "any", "proto": "tcp", "ports": [22]},
        {"name": "app-colours-from-any", "from": "any", "proto": "tcp", "ports": [8081, 8082]},
    ]}


#: Groups of the HL7 engine delivery (roles/haproxy, roles/hl7_engine) and the downstream system.
HL7_LB_GROUP, HL7_ENGINES_GROUP, HL7_SINKS_GROUP = "hl7_lb", "hl7_engines", "hl7_sinks"
#: MLLP's port by convention: the load balancers' entry for senders, and the sink's listener.
HL7_PORT = 2575
HL7_ENGINE_PORTS = {"blue": 12575, "green": 12576}
#: The lab's interface: ADT messages through HAProxy to the reference engine, routed to the sink.
HL7_VARS: dict[str, Any] = {
    "hl7_engine_name": "adt",
    "hl7_engine_ports": HL7_ENGINE_PORTS,
    "haproxy_tcp_services": [{"name": "adt", "group": HL7_ENGINES_GROUP, "ports": HL7_ENGINE_PORTS,
                              "port": HL7_PORT}],
}


def _add_hl7(inventory: dict[str, Any], files: LabFiles) -> None:
    """Deliver the lab's ADT interface when the topology has engine load balancers and engines.

    The first host of ``hl7_sinks`` is the downstream system the engines route to
    (playbooks/lab_hl7_sink.yml makes it a receiving engine that keeps every message it ACKs).
    """
    children = inventory["children"]
    if not (children.get(HL7_LB_GROUP) and children.get(HL7_ENGINES_GROUP)):
        return
    inventory["vars"].update(HL7_VARS)
    inventory["vars"]["haproxy_tls_source_dir"] = str(files.tls)
    sinks = list((children.get(HL7_SINKS_GROUP) or {}).get("hosts", {}))
    inventory["vars"]["hl7_engine_destinations"] = [
        {"name": "downstream", "type": "mllp", "host": inventory["hosts"][sinks[0]]["ansible_host"], "port": HL7_PORT}
    ] if sinks else []
    _add_zones(inventory)


#: The lab's trust zones, in the order a host in several tiers is placed: a host is in exactly one.
ZONE_TIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lb", (WEBAPP_LB_GROUP, HL7_LB_GROUP)),
    ("app", (WEBAPP_HOSTS_GROUP, HL7_ENGINES_GROUP)),
    ("downstream", (HL7_SINKS_GROUP,)),
    ("servers", ()),
)


def _add_zones(inventory: dict[str, Any]) -> None:
    """Trust zones of the lab's hosts and the firewall flows derived from them (the HL7 lab).

    Each host is a zone member by its address (/32): the load balancers, the app and engine
    hosts, the downstream systems, the other servers. The flows then say who may reach what:
    SSH, the web entry and the MLLP entry (TLS) from anywhere, as senders sit all over a
    hospital; the engines' colours only from the load balancers' zone (CP-HL7-04); the
    downstream systems only from the engines' zone. Hosts reached on a loopback address (qemu
    guests behind a forwarded port) are in no zone, and keep the flows that reach every zone.
    """
    children = inventory["children"]

    def members(*groups: str) -> set[str]:
        return {h for g in groups for h in (children.get(g) or {}).get("hosts", {})}

    zones: dict[str, dict[str, Any]] = {}
    zone_of: dict[str, str] = {}
    for name, groups in ZONE_TIERS:
        hosts = (members(*groups) if groups else set(inventory["hosts"])) - set(zone_of)
        for host in sorted(hosts):
            address = str(inventory["hosts"][host].get("ansible_host") or "")
            if not address or address.startswith("127.") or address == "::1":
                continue
            zone_of[host] = name
            zones.setdefault(name, {"cidrs": [], "description": f"lab hosts: {name}"})["cidrs"].append(
                f"{address}/{128 if ':' in address else 32}")

    def reached(*groups: str) -> list[str]:
        return sorted({zone_of[h] for h in members(*groups) if h in zone_of})

    flows: list[dict[str, Any]] = [{"name": "ssh-from-any", "from": "any", "proto": "tcp", "ports": [22]}]
    wanted = [
        ("syslog-tls-from-any", "any", (COLLECTOR_GROUP,), [6514]),
        ("web-from-any", "any", (WEBAPP_LB_GROUP,), [80, 443]),
        # The app colours stay reachable from the machine running the lab (its tests look at them).
        ("app-colours-from-any", "any", (WEBAPP_HOSTS_GROUP,), list(WEBAPP_VARS["webapp_ports"].values())),
        ("mllp-tls-from-any", "any", (HL7_LB_GROUP,), [HL7_PORT]),
        ("engine-colours-from-lb", "lb", (HL7_ENGINES_GROUP,), list(HL7_ENGINE_PORTS.values())),
        ("downstream-from-engines", "app", (HL7_SINKS_GROUP,), [HL7_PORT]),
    ]
    for name, source, groups, ports in wanted:
        targets = reached(*groups)
        if targets and (source == "any" or source in zones):
            flows.append({"name": name, "from": source, "to": targets, "proto": "tcp", "ports": ports})
    # One list for every host: group-level flows would replace it (and each other) per group.
    for group in children.values():
        (group.get("vars") or {}).pop("firewall_flows", None)
    inventory["vars"]["firewall_zones"] = zones
    inventory["vars"]["firewall_flows"] = flows


def _inventory_host(host: LabHost, state: HostState) -> dict[str, str | int]:
    entry: dict[str, str | int] = {"ansible_host": state.address or "", "carepath_lab_release": host.release}
    if state.port != 22:
        entry["ansible_port"] = state.port
    entry["carepath_lab_kind"] = host.kind
    return entry


def _up_vms(topology: Topology, files: LabFiles) -> list[HostState]:
    """Start the topology's qemu guests (building their base images when needed)."""
    if not topology.vms:
        return []
    bases = {release: vm.build(files.vm_images, release) for release in sorted({h.release for h in topology.vms})}
    public_key = files.key.with_suffix(".pub")
    states = []
    for host in topology.vms:
        guest = vm.Guest(files.state, host.name)
        port = vm.start(guest, bases[host.release], public_key)
        states.append(HostState(host.name, f"qemu:{host.name}", host.release, "running", "127.0.0.1", port, "vm"))
    return states


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

    wanted = {h.name: h for h in topology.containers}
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
    for host in topology.containers:
        if host.name not in existing:
            _start_container(topology, host)
    for stale in sorted(files.state.glob("*.pid")):
        if stale.stem not in {h.name for h in topology.vms} and vm.stop(vm.Guest(files.state, stale.stem)):
            _say(f"stopped VM {stale.stem}: no longer in the topology")
    vm_states = _up_vms(topology, files)

    public_key = files.key.with_suffix(".pub").read_text(encoding="utf-8")
    known_hosts: list[str] = []
    states: list[HostState] = []
    for host in topology.containers:
        container = topology.container(host)
        boot = _wait_booted(container)
        if boot == "degraded":
            failed = podman.podman("exec", container, "systemctl", "--failed", "--plain", "--no-legend")
            _say(f"{host.name}: systemd is degraded: {' '.join(failed.split()[:1]) or '?'}")
        _authorize(container, public_key)
        address = podman.container_ip(container, topology.network)
        known_hosts.append(f"{address} {_host_key(container)}")
        states.append(HostState(host.name, container, host.release, boot, address))
    for state in vm_states:
        known_hosts.append(f"[{state.address}]:{state.port} {vm.Guest(files.state, state.name).public_host_key()}")
    files.known_hosts.write_text("\n".join(known_hosts) + "\n", encoding="utf-8")
    for state in states:
        _wait_ssh(files, state.name, state.address or "")
    for state in vm_states:
        _say(f"waiting for {state.name} to boot (software emulation: a minute or two)")
        _wait_ssh(
            files, state.name, state.address or "", state.port, timeout=vm.BOOT_TIMEOUT,
            guest=vm.Guest(files.state, state.name),
        )
    states.extend(vm_states)
    tls.ensure_ca(files.tls, topology.name)
    for host in topology.hosts:
        tls.ensure_host(files.tls, host.name, [topology.container(host)])
    by_name = {s.name: s for s in states}
    _write_inventory(topology, files, by_name)
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
        if host.kind == "vm":
            guest = vm.Guest(files.state, host.name)
            running = guest.pid() is not None
            port = int(guest.info().get("port") or 22)
            states.append(HostState(
                host.name, f"qemu:{host.name}", host.release, "running" if running else "absent",
                "127.0.0.1" if running else None, port, "vm",
            ))
            continue
        info = found.get(host.name)
        if info is None:
            states.append(HostState(host.name, topology.container(host), host.release, "absent"))
            continue
        address = None
        if info.get("State") == "running":
            address = podman.container_ip(topology.container(host), topology.network)
        states.append(HostState(host.name, topology.container(host), host.release, info.get("State", "?"), address))
    return states


def down(name: str, files: LabFiles, network: str, *, remove_images: bool = False) -> list[str]:
    """Remove every container, the network, the key and the inventory of lab ``name``."""
    podman.ensure_available()
    removed: list[str] = []
    for info in podman.containers(f"{LABEL}={name}"):
        container = info["Names"][0]
        podman.podman("rm", "-f", "-t", "2", container)
        removed.append(f"container {container}")
    if podman.network_exists(network):
        labels = podman.podman("network", "inspect", "--format", "{{.Labels}}", network)
        if f"{LABEL}:{name}" in labels.replace(" ", ""):
            podman.podman("network", "rm", network)
            removed.append(f"network {network}")
    for pidfile in sorted(files.state.glob("*.pid")):
        if vm.stop(vm.Guest(files.state, pidfile.stem)):
            removed.append(f"VM {pidfile.stem}")
    if files.state.exists():
        shutil.rmtree(files.state)
        removed.append(f"key and known_hosts in {files.state}")
    if inventory_owner(files.inventory) == name:
        files.inventory.unlink()
        removed.append(f"inventory {files.inventory}")
    if remove_images:
        for release in images.RELEASES:
            if podman.image_labels(images.image_name(release)) is not None:
                podman.podman("rmi", images.image_name(release))
                removed.append(f"image {images.image_name(release)}")
    return removed
