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
