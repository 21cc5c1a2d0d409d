"""Observable behaviour after a blue-green deploy of 2.0.0 over 1.0.0: who serves, who waits, what is recorded."""

from __future__ import annotations

import json

import pytest
import testinfra
from conftest import haproxy_servers

APP = "carepath-sample"
STATE_DIR = f"/var/lib/carepath/webapp/{APP}"


@pytest.fixture(scope="module")
def lb():
    return testinfra.get_host("podman://webapp-lb")


@pytest.fixture(scope="module")
def app():
    return testinfra.get_host("podman://webapp-app")


def _servers(host) -> dict[str, str]:
    return haproxy_servers(host, f"be_{APP}")


def test_the_load_balancer_serves_the_new_release_over_tls_only(lb):
    host = lb
    answer = host.check_output("curl -sk -D - https://127.0.0.1/")
    assert "x-app-version: 2.0.0" in answer.lower()
    assert "strict-transport-security: max-age=63072000" in answer.lower()
    redirect = host.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/a")
    assert redirect.startswith("301 https://")


def test_new_colour_in_rotation_old_colour_out_and_kept_after_a_reload(lb):
    host = lb
    assert _servers(host) == {"webapp-app_blue": "MAINT", "webapp-app_green": "UP"}
    host.check_output("systemctl reload haproxy && sleep 2")
    assert _servers(host) == {"webapp-app_blue": "MAINT", "webapp-app_green": "UP"}
    assert "webapp-app_blue" in host.file("/var/lib/haproxy/server-state").content_string


def test_both_colours_run_their_release(app):
    host = app
    live = json.loads(host.check_output("curl -s http://127.0.0.1:8082/healthz"))
    warm = json.loads(host.check_output("curl -s http://127.0.0.1:8081/healthz"))
    assert (live["version"], live["colour"]) == ("2.0.0", "green")
    assert (warm["version"], warm["colour"]) == ("1.0.0", "blue")
    for colour in ("blue", "green"):
        unit = host.service(f"carepath-webapp-{APP}@{colour}")
        assert unit.is_running and unit.is_enabled


def test_releases_are_read_only_and_verified(app):
    host = app
    root = f"/srv/carepath/{APP}"
    assert host.file(f"{root}/green").linked_to == f"{root}/releases/2.0.0"
    app = host.file(f"{root}/releases/2.0.0/app.py")
    assert app.user == "root" and app.mode == 0o444
    stamp = json.loads(host.file(f"{root}/releases/2.0.0/.carepath-release.json").content_string)
    artifact = host.check_output(f"sha256sum {STATE_DIR}/artifacts/{APP}-2.0.0.tar.gz").split()[0]
    assert stamp["sha256"] == artifact
    # The app's own user cannot change its code.
    assert host.run(f"runuser -u webapp-{APP} -- touch {root}/releases/2.0.0/app.py").rc != 0


def test_state_and_history_record_the_deploys(app):
    host = app
    state = json.loads(host.file(f"{STATE_DIR}/state.json").content_string)
    assert state["active"] == "green"
    assert state["activations"] == ["1.0.0", "2.0.0"]
    history = [json.loads(line) for line in host.file(f"{STATE_DIR}/history.jsonl").content_string.splitlines()]
    assert [(h["action"], h["version"], h["colour"]) for h in history] == [
        ("installed", "1.0.0", "blue"), ("activated", "1.0.0", "blue"),
        ("installed", "2.0.0", "green"), ("activated", "2.0.0", "green"),
    ]
    assert all(h["run_id"] for h in history)
