"""The reference engine after a blue-green deploy of 2.0.0 over 1.0.0 on Debian 12 and 13."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import testinfra
from conftest import container_address, haproxy_servers

ENGINES = ("hl7-engine12", "hl7-engine13")
LB = "hl7-engine13"
STATE = "/var/lib/carepath/hl7_engine/adt"
DATA = "/var/lib/carepath/hl7/adt"
ARCHIVE = "/var/spool/carepath-hl7/adt-archive"
CANARY = "ZZCANARY-7F3Q"


# Synthetic, no PHI: an ADT^A08 with a Z-segment carrying the canary the logs must never hold.
def _message(control: str) -> str:
    return "\r".join([
        "MSH|^~\\&|MOLECULE|LAB|ADT|HOSP|20261206120000||ADT^A08|" + control + "|P|2.5",
        "EVN|A08|20261206120000",
        "ZZZ|1|" + CANARY,
    ])


def _send_over_tls(address: str, port: int, message: str) -> str:
    """One message through HAProxy's MLLP entry, which speaks TLS only (CP-HL7-03), trusting the CA."""
    context = ssl.create_default_context(cafile=str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "tls" / "ca.crt"))
    with socket.create_connection((address, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=f"{LB}.hospital.example") as conn:
        conn.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode().strip("\x0b\x1c\r").replace("\r", "\n")


@pytest.fixture(scope="module")
def hosts():
    return {name: testinfra.get_host(f"podman://{name}") for name in ENGINES}


def _status(host, port: int) -> dict:
    return json.loads(host.check_output(f"curl -s http://127.0.0.1:{port}/status"))


def test_green_takes_the_traffic_on_both_engine_hosts_and_blue_is_out(hosts):
    servers = haproxy_servers(hosts["hl7-engine13"], "be_adt")
    assert servers == {"hl7-engine12_blue": "MAINT", "hl7-engine12_green": "UP",
                       "hl7-engine13_blue": "MAINT", "hl7-engine13_green": "UP"}


def test_both_colours_run_their_release_on_debian_12_and_13(hosts):
    for host in hosts.values():
        assert _status(host, 12586)["version"] == "2.0.0" and _status(host, 12586)["colour"] == "green"
        assert _status(host, 12585)["version"] == "1.0.0" and _status(host, 12585)["state"] == "running"


def test_a_message_through_haproxy_is_acked_stored_and_routed_and_never_logged(hosts):
    control = f"MOL{int(time.time())}"
    ack = _send_over_tls(container_address(LB), 2575, _message(control))
    assert f"MSA|AA|{control}" in ack
    found = ""
    for _ in range(50):
        found = "".join(h.run(f"grep -rl {control} {ARCHIVE} 2>/dev/null").stdout for h in hosts.values())
        if found:
            break
        time.sleep(0.2)
    assert found, "the message did not reach the archive destination"
    for host in hosts.values():
        assert CANARY not in host.check_output("journalctl -u 'carepath-hl7-adt@*' --no-pager -o cat")


def test_the_stores_are_the_engine_users_only_and_no_hold_is_left(hosts):
    for host in hosts.values():
        for colour in ("blue", "green"):
            folder = host.file(f"{DATA}/{colour}")
            assert folder.user == "hl7-adt" and folder.mode == 0o700
            assert host.file(f"{DATA}/{colour}/store.db").mode & 0o077 == 0
        assert host.check_output(f"ls -A {DATA}/holds") == ""


def test_the_history_records_the_cutover(hosts):
    for host in hosts.values():
        state = json.loads(host.file(f"{STATE}/state.json").content_string)
        assert state["active"] == "green" and state["activations"] == ["1.0.0", "2.0.0"]
        events = [json.loads(line) for line in host.file(f"{STATE}/history.jsonl").content_string.splitlines()]
        switched = [e for e in events if e["action"] == "activated" and e["version"] == "2.0.0"]
        assert len(switched) == 1 and switched[0]["sessions_cut"] >= 0 and switched[0]["kind"] == "hl7_engine"
        drained = [e for e in events if e["action"] == "drained"]
        assert len(drained) == 1 and drained[0]["colour"] == "blue" and drained[0]["queued_at_switch"] == 0
