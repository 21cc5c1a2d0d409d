"""Observable behaviour of the load balancer: TLS as configured, HTTP redirected, both colours checked, state kept."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import testinfra
from conftest import container_address, haproxy_command, haproxy_servers

from carepath import controls, mllp


@pytest.fixture(scope="module")
def lb():
    return testinfra.get_host("podman://haproxy-lb")


def _status(host) -> dict[str, str]:
    return haproxy_servers(host, "be_carepath-sample")


def test_configuration_is_checked_and_haproxy_runs(lb):
    assert lb.service("haproxy").is_running and lb.service("haproxy").is_enabled
    assert lb.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    pem = lb.file("/etc/haproxy/certs/haproxy-lb.pem")
    assert pem.user == "root" and pem.mode == 0o600


def test_tls_1_2_and_1_3_only_with_hsts_and_no_server_name(lb):
    assert lb.run("openssl s_client -connect 127.0.0.1:443 -tls1_1 </dev/null").rc != 0
    assert lb.run("openssl s_client -connect 127.0.0.1:443 -tls1_2 </dev/null").rc == 0
    assert "TLSv1.3" in lb.check_output("openssl s_client -connect 127.0.0.1:443 </dev/null 2>/dev/null")
    # A CBC cipher is refused even on TLS 1.2.
    assert lb.run("openssl s_client -connect 127.0.0.1:443 -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 </dev/null").rc != 0
    headers = lb.check_output("curl -sk -D - -o /dev/null https://127.0.0.1/healthz").lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert "server:" not in headers


def test_http_is_redirected_to_https(lb):
    out = lb.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/x?y=1")
    assert out == "301 https://127.0.0.1/x?y=1"


def test_both_colours_are_health_checked(lb):
    assert _status(lb) == {"haproxy-app_blue": "UP", "haproxy-app_green": "UP"}


def test_a_colour_in_maintenance_stays_there_after_a_reload(lb):
    haproxy_command(lb, "set server be_carepath-sample/haproxy-app_green state maint")
    haproxy_command(lb, "show servers state", to_file="/var/lib/haproxy/server-state")
    try:
        lb.check_output("systemctl reload haproxy && sleep 2")
        assert _status(lb)["haproxy-app_green"] == "MAINT"
    finally:
        haproxy_command(lb, "set server be_carepath-sample/haproxy-app_green state ready")
        haproxy_command(lb, "show servers state", to_file="/var/lib/haproxy/server-state")


# --- TCP services: an HL7 engine's MLLP listener ----------------------------------------------


def _lb_address() -> str:
    return container_address("haproxy-lb")


def test_mllp_through_the_load_balancer_is_stored_and_acked(lb):
    tally = asyncio.run(mllp.Sender("CPMOL", _lb_address(), 2575, ack_timeout=5, patience=20).run(count=5))
    assert len(tally.acked) == 5 and not tally.unacked, tally
    app = testinfra.get_host("podman://haproxy-app")
    status = json.loads(app.check_output("curl -s http://127.0.0.1:12580/status"))
    assert status["acked"] >= 5


def test_engine_colours_are_checked_with_the_hl7_test_message(lb):
    # Only blue runs: the HL7 check tells them apart, and the engine counted the checks as tests.
    assert haproxy_servers(lb, "be_adt") == {"haproxy-app_blue": "UP", "haproxy-app_green": "DOWN"}
    app = testinfra.get_host("podman://haproxy-app")
    status = json.loads(app.check_output("curl -s http://127.0.0.1:12580/status"))
    assert status["probes_acked"] > 0 and status["destinations"] == {}
    config = lb.file("/etc/haproxy/haproxy.cfg").content_string
    assert "timeout client 3600s" in config and "on-marked-down shutdown-sessions" in config


def test_mllp_over_tls_is_terminated_with_the_site_ca(lb):
    work = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    context = ssl.create_default_context(cafile=str(work / "tls" / "ca.crt"))
    sender = mllp.Sender("CPTLS", _lb_address(), 2576, tls=context, server_name="haproxy-lb.hospital.example",
                         ack_timeout=5, patience=20)
    tally = asyncio.run(sender.run(count=3))
    assert len(tally.acked) == 3, tally
    plain = asyncio.run(mllp.Sender("CPPLAIN", _lb_address(), 2576, ack_timeout=2, patience=3).run(count=1))
    assert not plain.acked


def test_a_reload_does_not_leave_mllp_sessions_on_the_old_process_for_long(lb):
    # An MLLP session opened before a reload is held by the old process, which the runtime API no
    # longer reaches: hard-stop-after (4 s here) closes it; the sender reconnects to the new one.
    with socket.create_connection((_lb_address(), 2575), timeout=10) as conn:
        conn.sendall(b"\x0b" + mllp.message_text("CPRELOAD", "CPRELOAD-1").encode() + b"\x1c\r")
        assert b"MSA|AA|CPRELOAD-1" in conn.recv(4096)
        lb.check_output("systemctl reload haproxy")
        started = time.monotonic()
        conn.settimeout(30)
        try:
            closed = conn.recv(4096) == b""
        except ConnectionResetError:
            closed = True
        took = time.monotonic() - started
    assert closed and took < 15, took
    config = lb.file("/etc/haproxy/haproxy.cfg").content_string
    assert "hard-stop-after 4s" in config


def test_the_tls_control_finds_the_plain_mllp_entry_only(lb):
    # CP-HL7-03's check, run as the role's audit runs it: the plain entry (excepted in this
    # scenario) is found, the TLS one is not.
    check = next(c for c in controls.load() if c.id == "CP-HL7-03")
    (command,) = check.check["command"]
    found = lb.check_output(command)
    assert "bind :2575" in found and ":2576" not in found, found
