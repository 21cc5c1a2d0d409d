"""carepath's sample internal web app: a real WSGI application for the lab and the tests.

It holds no data. Every answer carries the release's version (header ``X-App-Version``)
so that a client under load can tell which release served it. ``/healthz`` is the health
check the deploy gate and HAProxy use: 200 with the version when the release works,
503 when its self-test fails (the deliberately broken sample release).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = json.loads((HERE / "carepath-release.json").read_text(encoding="utf-8"))
VERSION = str(MANIFEST["version"])
COLOUR = os.environ.get("CAREPATH_COLOUR", "")
HEALTHY = MANIFEST.get("selftest", "pass") == "pass"


def application(environ, start_response):  # noqa: ANN001, ANN201 (the WSGI signature)
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        status = "200 OK" if HEALTHY else "503 Service Unavailable"
        body = {"status": "ok" if HEALTHY else "failing", "version": VERSION, "colour": COLOUR}
    else:
        status = "200 OK"
        body = {"app": "carepath-sample", "version": VERSION, "path": path}
    data = (json.dumps(body) + "\n").encode()
    start_response(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("X-App-Version", VERSION),
        ("Cache-Control", "no-store"),
    ])
    return [data]
