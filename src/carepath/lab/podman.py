"""A thin wrapper over the podman CLI: the calls the lab needs, with clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import resource
from typing import Any

from carepath import procs
from carepath.errors import CarepathError

INSTALL_HINT = "install it with: apt-get install -y podman runc debootstrap (or run `make setup`)"


def ensure_available() -> None:
    procs.require("podman", install_hint=INSTALL_HINT)
    if os.geteuid() != 0:
        raise CarepathError(
            "the lab needs rootful podman: container addresses must be reachable from this machine",
            hint="run carepath lab as root (e.g. with sudo)",
        )


def ulimit_args() -> list[str]:
    """``--ulimit`` flags at most the caller's hard limits.

    Podman's defaults are higher than what an unprivileged sandbox may grant, and the
    OCI runtime then fails with EPERM; so set both limits explicitly.
    """
    return [f"--ulimit={name}={value}:{value}" for name, value in ulimits().items()]


def ulimits() -> dict[str, int]:
    """Open-file and process limits for lab containers, capped by our own hard limits."""
    wanted = {"nofile": (resource.RLIMIT_NOFILE, 20000), "nproc": (resource.RLIMIT_NPROC, 32768)}
    result: dict[str, int] = {}
    for name, (rlimit, preferred) in wanted.items():
        hard = resource.getrlimit(rlimit)[1]
        result[name] = preferred if hard == resource.RLIM_INFINITY else min(preferred, hard)
    return result


def podman(*args: str, input_text: str | None = None, check: bool = True) -> str:
    return procs.run(["podman", *args], input_text=input_text, check=check, what=f"podman {args[0]}").stdout


def image_labels(image: str) -> dict[str, str] | None:
    """Labels of a local image, or None when there is no such image."""
    proc = procs.run(["podman", "image", "inspect", image], check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)[0]
    return dict(info.get("Labels") or info.get("Config", {}).get("Labels") or {})


def containers(label: str) -> list[dict[str, Any]]:
    """All containers (running or not) carrying ``label`` (``key=value``)."""
    out = podman("ps", "-a", "--filter", f"label={label}", "--format", "json")
    return json.loads(out or "[]")


def network_exists(name: str) -> bool:
    return procs.run(["podman", "network", "exists", name], check=False).returncode == 0


def container_ip(name: str, network: str) -> str:
    info = json.loads(podman("container", "inspect", name))[0]
    nets = info.get("NetworkSettings", {}).get("Networks", {})
    address = (nets.get(network) or {}).get("IPAddress")
    if not address:
        raise CarepathError(f"container {name} has no address on network {network}")
    return str(address)


def network_subnet(name: str) -> tuple[str, str]:
    """The first IPv4 subnet of a podman network and its gateway."""
    info = json.loads(podman("network", "inspect", name))[0]
    for subnet in info.get("subnets") or []:
        if ":" not in subnet.get("subnet", ""):
            return str(subnet["subnet"]), str(subnet.get("gateway", ""))
    raise CarepathError(f"podman network {name} has no IPv4 subnet")


def addresses_in_use(network: str) -> set[str]:
    """IPv4 addresses taken on ``network``: those of its running containers, and those that
    stopped containers have asked for (the ``carepath.address`` label the lab sets)."""
    used = set()
    for info in json.loads(podman("ps", "-a", "--filter", f"network={network}", "--format", "json") or "[]"):
        label = (info.get("Labels") or {}).get(ADDRESS_LABEL)
        if label:
            used.add(label)
        if info.get("State") == "running":
            with contextlib.suppress(CarepathError):
                used.add(container_ip(info["Names"][0], network))
    return used


#: The fixed address a lab container was created with.
ADDRESS_LABEL = "carepath.address"
