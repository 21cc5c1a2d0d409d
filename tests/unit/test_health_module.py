"""carepath_health: the blue-green health gate, polled on the host within a wall-clock deadline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.unit import modules

health = modules.load("carepath_health")


class _App(BaseHTTPRequestHandler):
    answers: list[tuple[int, str | dict]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, version = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        body = json.dumps(version if isinstance(version, dict) else {"version": version}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[tuple[str, type[_App]]]:
    handler = type("App", (_App,), {"answers": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz", handler
    server.shutdown()


def test_a_release_that_becomes_healthy_passes_at_once(app) -> None:
    url, handler = app
    handler.answers[:] = [(503, "2.0.0"), (200, "1.0.0"), (200, "2.0.0")]
    result = modules.run(health, url=url, version="2.0.0", deadline=10, interval=0.05)
    assert not result["failed"] and result["healthy"] and result["attempts"] == 3, result


def test_a_broken_release_is_refused_when_the_deadline_passes_not_later(app) -> None:
    url, handler = app
    handler.answers[:] = [(503, "3.0.0")]
    started = time.monotonic()
    result = modules.run(health, url=url, version="3.0.0", deadline=1.5, interval=0.1)
    took = time.monotonic() - started
    assert result["failed"] and "not healthy within 1.5 s" in result["msg"] and "HTTP 503" in result["msg"]
    assert 1.0 <= took < 5 and result["attempts"] >= 5, (took, result)


def test_nothing_listening_is_an_answer_too() -> None:
    result = modules.run(health, url="http://127.0.0.1:9/healthz", deadline=0.2, interval=0.1)
    assert result["failed"] and result["attempts"] >= 1 and not result["healthy"]


def test_fields_wait_for_a_state_and_the_first_and_last_bodies_are_returned(app) -> None:
    url, handler = app
    handler.answers[:] = [(200, {"queued": 7, "acked": 100}), (200, {"queued": 2, "acked": 100}),
                          (200, {"queued": 0, "acked": 100})]
    result = modules.run(health, url=url, fields={"queued": 0}, deadline=10, interval=0.05)
    assert not result["failed"] and result["attempts"] == 3, result
    assert result["first_body"] == {"queued": 7, "acked": 100} and result["body"]["queued"] == 0


def test_fields_never_reached_fail_saying_what_was_awaited(app) -> None:
    url, handler = app
    handler.answers[:] = [(200, {"queued": 3})]
    result = modules.run(health, url=url, fields={"queued": 0}, deadline=0.3, interval=0.05)
    assert result["failed"] and "waiting for queued=0" in result["msg"] and result["body"] == {"queued": 3}
