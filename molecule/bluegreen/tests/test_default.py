"""The shared blue-green machinery with a service that is neither a web app nor an engine."""

from __future__ import annotations

import json

import pytest
import testinfra
from conftest import haproxy_servers

STATE = "/var/lib/carepath/static/static-site"


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("podman://bluegreen-host")


def test_green_serves_2_0_0_through_haproxy_and_blue_stays_warm_on_1_0_0(host):
    assert haproxy_servers(host, "be_static-site") == {"bluegreen-host_blue": "MAINT", "bluegreen-host_green": "UP"}
    assert json.loads(host.check_output("curl -sk https://127.0.0.1/healthz"))["version"] == "2.0.0"
    assert json.loads(host.check_output("curl -s http://127.0.0.1:8091/healthz"))["version"] == "1.0.0"


def test_the_broken_release_was_refused_at_the_gate_and_marked_bad(host):
    refusal = host.file("/var/tmp/bluegreen-refusal.txt").content_string
    assert "static-site 1.5.0 failed its health gate" in refusal and "blue still serves 1.0.0" in refusal
    state = json.loads(host.file(f"{STATE}/state.json").content_string)
    assert state["active"] == "green" and state["colours"]["green"]["version"] == "2.0.0"
    assert "1.5.0" in state["bad"] and state["activations"] == ["1.0.0", "2.0.0"]
    events = [json.loads(line) for line in host.file(f"{STATE}/history.jsonl").content_string.splitlines()]
    assert [(e["action"], e["version"]) for e in events] == [
        ("installed", "1.0.0"), ("activated", "1.0.0"), ("installed", "1.5.0"), ("gate_failed", "1.5.0"),
        ("installed", "2.0.0"), ("activated", "2.0.0")]
    assert {e["kind"] for e in events} == {"static"}


def test_the_hooks_ran_around_the_switch_and_again_when_the_release_was_live(host):
    assert host.file("/var/tmp/bluegreen-hooks.log").content_string.splitlines() == [
        "after_start to=green", "before_switch to=green from=blue from_version=1.0.0",
        "after_switch switched to=green from=blue"]


def test_the_lock_was_given_back(host):
    assert not host.file("/run/carepath/locks/static-static-site.lock").exists
