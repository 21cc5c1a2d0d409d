"""Parse and validate a lab topology file (hosts, groups, Debian release)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carepath.errors import CarepathError

#: Debian releases the lab can build images for, with their version numbers.
RELEASES: dict[str, str] = {"bookworm": "12", "trixie": "13"}
DEFAULT_RELEASE = "bookworm"
#: What a lab host runs as: a systemd container (fast, shares the lab machine's kernel) or a
#: qemu guest with a kernel of its own (slow; for controls only a real kernel proves).
KINDS = ("container", "vm")

# A DNS label: it becomes a container hostname and an Ansible inventory name.
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def is_name(text: str) -> bool:
    """Whether ``text`` is a valid lab or host name."""
    return bool(_NAME.match(text))


# Ansible group names must be valid Python identifiers.
_GROUP = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED_GROUPS = {"all", "ungrouped"}


@dataclass(frozen=True)
class LabHost:
    name: str
    release: str = DEFAULT_RELEASE
    groups: tuple[str, ...] = ()
    kind: str = "container"


@dataclass(frozen=True)
class Topology:
    name: str
    hosts: tuple[LabHost, ...] = field(default_factory=tuple)
    source: str = "<memory>"

    @property
    def releases(self) -> list[str]:
        return sorted({h.release for h in self.hosts})

    @property
    def containers(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.kind == "container")

    @property
    def vms(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.kind == "vm")

    def container(self, host: LabHost) -> str:
        return f"{self.name}-{host.name}"

    @property
    def network(self) -> str:
        return f"{self.name}-net"


def _fail(source: str, where: str, message: str) -> CarepathError:
    return CarepathError(f"{source}: {where}: {message}")


def parse(data: Any, source: str = "<memory>") -> Topology:
    """Build a Topology from already-loaded YAML, failing on the first problem found."""
    if not isinstance(data, dict):
        raise _fail(source, "top level", "expected a mapping with 'lab' and 'hosts'")
    unknown = set(data) - {"lab", "hosts"}
    if unknown:
        raise _fail(source, "top level", f"unknown key(s) {sorted(unknown)}; allowed: lab, hosts")
    name = data.get("lab", "carepath")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(source, "lab", f"{name!r} is not a valid lab name (lower-case letters, digits, '-')")
    raw_hosts = data.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise _fail(source, "hosts", "expected a non-empty list of hosts")
    hosts: list[LabHost] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_hosts):
        where = f"hosts[{index}]"
        if not isinstance(raw, dict):
            raise _fail(source, where, "expected a mapping with at least 'name'")
        unknown = set(raw) - {"name", "release", "groups", "kind"}
        if unknown:
            raise _fail(source, where, f"unknown key(s) {sorted(unknown)}; allowed: name, release, groups, kind")
        host_name = raw.get("name")
        if not isinstance(host_name, str) or not _NAME.match(host_name):
            raise _fail(
                source, where,
                f"name {host_name!r} is not a valid host name (2-32 lower-case letters, digits, '-')",
            )
        where = f"host {host_name!r}"
        if host_name in seen:
            raise _fail(source, where, "duplicate host name; every host needs its own name")
        seen.add(host_name)
        release = raw.get("release", DEFAULT_RELEASE)
        if release not in RELEASES:
            raise _fail(
                source, where,
                f"unknown Debian release {release!r}; supported: {', '.join(RELEASES)}",
            )
        groups = raw.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise _fail(source, where, "groups must be a list of group names")
        for group in groups:
            if not _GROUP.match(group) or group in _RESERVED_GROUPS:
                raise _fail(
                    source, where,
                    f"group {group!r} is not a valid Ansible group name "
                    "(lower-case letters, digits, '_'; not 'all' or 'ungrouped')",
                )
        kind = raw.get("kind", "container")
        if kind not in KINDS:
            raise _fail(source, where, f"unknown kind {kind!r}; supported: {', '.join(KINDS)}")
        hosts.append(LabHost(name=host_name, release=release, groups=tuple(groups), kind=kind))
    host_names = {h.name for h in hosts}
    for host in hosts:
        clash = host_names.intersection(host.groups)
        if clash:
            raise _fail(source, f"host {host.name!r}", f"group(s) {sorted(clash)} clash with host names")
    return Topology(name=name, hosts=tuple(hosts), source=source)


def load(path: Path) -> Topology:
    """Read and validate a topology file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CarepathError(f"topology file {path} does not exist") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CarepathError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, source=str(path))
