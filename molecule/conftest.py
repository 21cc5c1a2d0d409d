"""Fixtures shared by the scenarios' testinfra verifiers (pytest finds this file above each tests/)."""

from __future__ import annotations

import json
import subprocess

import pytest
import testinfra


def container_address(container: str) -> str:
    """The address of a scenario container on its network."""
    out = subprocess.run(["podman", "inspect", container], capture_output=True, text=True, check=True).stdout
    networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def _peer_name(host) -> str:
    """The scenario's other host: each Debian release is probed from the other one."""
    name = host.backend.name
    return name.replace("bookworm", "trixie") if name.endswith("bookworm") else name.replace("trixie", "bookworm")


@pytest.fixture(scope="module")
def peer(host) -> str:
    """The address of the other scenario host."""
    return container_address(_peer_name(host))


@pytest.fixture(scope="module")
def peer_host(host):
    """The other scenario host, to run commands on (testinfra's podman backend)."""
    return testinfra.get_host(f"podman://{_peer_name(host)}")


def haproxy_command(host, command: str, to_file: str = "") -> str:
    """Send one command to HAProxy's admin socket on ``host``; its answer, or written to ``to_file``."""
    query = (
        "python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
        f"s.sendall(sys.argv[1].encode()+b'\\n'); print(s.makefile().read())\" '{command}'"
    )
    return host.check_output(f"{query} > {to_file}" if to_file else query)


def haproxy_servers(host, backend: str) -> dict[str, str]:
    """The status (UP, MAINT, DOWN...) of every server of ``backend``, by name."""
    rows = haproxy_command(host, "show stat").splitlines()
    header = rows[0].lstrip("# ").split(",")
    stats = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:] if row]
    return {r["svname"]: r["status"] for r in stats if r["pxname"] == backend and r["svname"] != "BACKEND"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared health checks (one restarts the hosts) run after the scenario's own tests."""
    items.sort(key=lambda item: item.path.name == "test_host_health.py")
