#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Poll a release's health endpoint on the host itself, within a wall-clock deadline."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_health
short_description: Wait, on the host, until a release's health endpoint answers with its version
description:
  - The health gate of a blue-green deploy. Polls O(url) from the managed host every
    O(interval) seconds until it answers HTTP 200 with a JSON body whose C(version) is
    O(version) (and which holds O(fields)), or until O(deadline) seconds have passed.
  - With O(fields) it also waits for a state, such as an HL7 engine's status reporting
    C(queued) 0 once it gave up the traffic (roles/hl7_engine).
  - The deadline is wall-clock time on the host. A loop of M(ansible.builtin.uri) with
    C(retries) pays a whole module round trip per try (seconds each on a loaded controller), so a
    release that never becomes healthy was refused only after several minutes; here every try
    costs one HTTP request.
version_added: "0.2.0"
author: carepath contributors (@carepath)
options:
  url:
    description: The health endpoint, e.g. C(http://127.0.0.1:8081/healthz).
    type: str
    required: true
  version:
    description: The version the JSON body's C(version) must name; empty accepts any 200.
    type: str
    default: ""
  fields:
    description: Top-level fields the JSON body must hold with exactly these values.
    type: dict
    default: {}
  deadline:
    description: Seconds to keep trying; at least one try is always made.
    type: float
    default: 15
  interval:
    description: Seconds between tries.
    type: float
    default: 0.5
  timeout:
    description: Seconds one try may take.
    type: float
    default: 2
extends_documentation_fragment: [ansible.builtin.action_common_attributes]
attributes:
  check_mode:
    support: full
    details: Reads only; polls in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Health gate
  carepath.core.carepath_health:
    url: http://127.0.0.1:8081/healthz
    version: 2.0.0
    deadline: 15

- name: Wait until the engine that gave up the traffic has routed its queue
  carepath.core.carepath_health:
    url: http://127.0.0.1:8581/status
    fields: {queued: 0}
    deadline: 60
  register: drained
"""

RETURN = r"""
healthy:
  description: Whether the endpoint answered 200 with the version in time.
  returned: always
  type: bool
attempts:
  description: How many requests were made.
  returned: always
  type: int
elapsed:
  description: Seconds from the first try to the answer (or to the deadline).
  returned: always
  type: float
answer:
  description: The last answer, short (C(HTTP 503 ...) or the connection error).
  returned: always
  type: str
first_body:
  description: The JSON body of the first answer (e.g. the queue when the wait began); null when it had none.
  returned: always
  type: dict
body:
  description: The JSON body of the last answer; null when it had none.
  returned: always
  type: dict
"""

import contextlib
import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.carepath.core.plugins.module_utils.carepath_deadline import until_deadline


def probe(url, version, timeout, fields=None):
    """(healthy, a short description of the answer, the JSON body or None) for one request."""
    try:
        response = open_url(url, timeout=timeout, validate_certs=False, follow_redirects="none")
        status, body = response.getcode(), response.read(4096).decode("utf-8", "replace")
    except Exception as err:  # noqa: BLE001 - every failure to answer is an answer: not healthy
        status = getattr(err, "code", None)
        if status is None:
            return False, str(getattr(err, "reason", err))[:160], None
        body = ""
        with contextlib.suppress(Exception):  # an HTTPError's body, when it has one
            body = err.read(4096).decode("utf-8", "replace")
    answer = f"HTTP {status} {' '.join(body.split())[:120]}".strip()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else None
    if status != 200:
        return False, answer, doc
    if not version and not fields:
        return True, answer, doc
    if doc is None:
        return False, answer + " (no JSON body)", None
    if version and doc.get("version") != version:
        return False, answer, doc
    wrong = sorted(k for k, v in (fields or {}).items() if doc.get(k) != v)
    if wrong:
        return False, answer + f" (waiting for {', '.join(f'{k}={fields[k]!r}' for k in wrong)})", doc
    return True, answer, doc


def wait_healthy(url, version, deadline, interval, timeout, fields=None):
    bodies = []

    def attempt():
        healthy, answer, doc = probe(url, version, timeout, fields)
        bodies.append(doc)
        return healthy, {"healthy": healthy, "answer": answer, "first_body": bodies[0], "body": doc}

    return until_deadline(attempt, deadline, interval)


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "version": {"type": "str", "default": ""},
            "fields": {"type": "dict", "default": {}},
            "deadline": {"type": "float", "default": 15},
            "interval": {"type": "float", "default": 0.5},
            "timeout": {"type": "float", "default": 2},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["deadline"] < 0 or p["interval"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="deadline must be 0 or more, interval and timeout more than 0")
    result = wait_healthy(p["url"], p["version"], p["deadline"], p["interval"], p["timeout"], fields=p["fields"])
    if not result["healthy"]:
        module.fail_json(msg=f"{p['url']} was not healthy within {p['deadline']:g} s ({result['attempts']} tries): "
                             f"{result['answer']}", changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
