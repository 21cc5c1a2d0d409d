"""Observable behaviour of the load balancer: TLS as configured, HTTP redirected, both colours checked, state kept."""

from __future__ import annotations

import pytest
import testinfra
from conftest import haproxy_command, haproxy_servers


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
