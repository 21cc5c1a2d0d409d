#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move a backend's traffic between two servers through HAProxy's runtime API, checked and reversible."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_haproxy
short_description: Switch traffic between two HAProxy servers (blue-green) through the runtime API
description:
  - Talks to HAProxy's runtime API (the admin C(stats socket)); HAProxy is never reloaded, so no
    connection is dropped.
  - O(action=switch) moves the traffic of O(backend) from O(from_server) to O(server). The new
    server is made ready (full weight, health forced up, as the caller's health gate just passed);
    the old one keeps weight 1 while the new one is watched for O(smoke_seconds) (HAProxy's health
    checks stay up, no connection or response errors). On success the old server is drained and, once
    its sessions are done or after O(drain_timeout), put in maintenance, still running for a
    rollback. If the watch fails, or the switch is interrupted before it ends (a refused
    command, a failed socket, a server gone in a reload), traffic moves back at once and the
    module fails saying why. If only retiring the old server fails, after the watch passed, the
    new server keeps the traffic and the module fails saying the old one needs a look.
  - With O(cut_sessions) (TCP services such as MLLP, whose connections last for hours), the old
    server stops taking new connections at the switch and its established sessions are shut down
    at once (C(shutdown sessions server)), so that every client reconnects to the new server
    instead of staying pinned to the old one; the drain does not wait for sessions that would
    never end. If the watch fails, the new server's sessions are cut as the traffic moves back.
  - O(action=maint) puts O(server) in maintenance (before its release is replaced);
    O(action=status) only reads the servers of O(backend).
  - After every change the servers' state is saved to O(state_file) (C(show servers state)), which
    HAProxy loads at start (C(server-state-file), C(load-server-state-from-file global)), so a reload
    or a reboot keeps the active colour.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  socket:
    description: Path of HAProxy's admin socket.
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: The backend whose servers are changed.
    type: str
    required: true
  action:
    description: What to do.
    type: str
    choices: [switch, maint, status]
    default: switch
  server:
    description: The server that gets the traffic (O(action=switch)) or is put in maintenance (O(action=maint)).
    type: str
  from_server:
    description: The server the traffic leaves (O(action=switch)); omit it on a first deploy.
    type: str
  smoke_seconds:
    description: How long the new server is watched after the switch before the old one is drained.
    type: float
    default: 3
  drain_timeout:
    description: Seconds to wait for the old server's sessions to end before it goes into maintenance.
    type: float
    default: 30
  cut_sessions:
    description:
      - Shut down the old server's established sessions at the switch (and the new server's if the
        traffic moves back), instead of waiting for them to end. For long-lived TCP sessions (MLLP).
    type: bool
    default: false
  state_file:
    description: Where the servers' state is saved after a change (HAProxy's C(server-state-file)).
    type: path
    default: /var/lib/haproxy/server-state
notes:
  - Supports check mode (nothing is changed; the servers are read).
"""

EXAMPLES = r"""
- name: Move the scheduling app's traffic to app1's green colour
  carepath.core.carepath_haproxy:
    backend: be_scheduling
    server: app1_green
    from_server: app1_blue
    smoke_seconds: 3
  delegate_to: lb1
"""

RETURN = r"""
servers:
  description: The backend's servers after the action, by name (status, weight, current sessions, admin state).
  returned: always
  type: dict
switch_seconds:
  description:
    - Seconds from the start of the switch until HAProxy counted the new server's first request
      (null when no request came).
  returned: when O(action=switch)
  type: float
smoke:
  description: Outcome of the post-switch watch, C(passed) or C(failed), and the reason.
  returned: when O(action=switch)
  type: dict
sessions_cut:
  description: Sessions the old server held when they were shut down (O(cut_sessions)); 0 otherwise.
  returned: when O(action=switch)
  type: int
"""

import csv
import fcntl
import io
import os
import socket as socketlib
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule


class RuntimeApi:
    """One command per connection, HAProxy's non-interactive mode."""

    def __init__(self, path):
        self.path = path

    def call(self, command):
        with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(self.path)
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def command(self, command):
        """A command that answers nothing on success (set server ...)."""
        answer = self.call(command).strip()
        if answer:
            raise RuntimeError(f"HAProxy refused {command!r}: {answer}")

    def servers(self, backend):
        text = self.call("show stat").lstrip("# ")
        rows = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                rows[row["svname"]] = row
        return rows


# What can interrupt a conversation with HAProxy: a refused command, a failed socket, a server
# that a reload removed (KeyError from the servers table).
INTERRUPTED = (RuntimeError, OSError, KeyError)


def servers_or_empty(api, backend):
    try:
        return summary(api.servers(backend))
    except INTERRUPTED:
        return {}


def summary(rows):
    return {name: {"status": row.get("status"), "weight": int(row.get("weight") or 0),
                   "sessions": int(row.get("scur") or 0), "total": int(row.get("stot") or 0)}
            for name, row in rows.items()}


def counter(row, key):
    try:
        return int(row.get(key) or 0)
    except ValueError:
        return 0


def save_state(api, path):
    """Dump the servers' state to ``path``. Under a lock: runs switching several app hosts at
    once each dump after their change, and the file must end with the last dump."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = api.call("show servers state")
        fd, tmp = tempfile.mkstemp(prefix=".server-state.", dir=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(state)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def watch(api, backend, server, seconds, start_total, started):
    """Watch ``server`` for ``seconds``; returns (failure reason or None, seconds from ``started``
    to the new server's first request)."""
    first = None
    begin = time.monotonic()
    rows = api.servers(backend)
    base = rows[server]
    errors0 = (counter(base, "econ"), counter(base, "eresp"), counter(base, "chkdown"))
    while True:
        row = api.servers(backend)[server]
        if first is None and counter(row, "stot") > start_total:
            first = time.monotonic() - started
        status = row.get("status", "")
        if not status.startswith("UP"):
            return f"{server} went {status} in HAProxy (health checks failing)", first
        errors = (counter(row, "econ"), counter(row, "eresp"), counter(row, "chkdown"))
        if errors != errors0:
            return (f"{server} had connection or response errors after the switch "
                    f"(econ, eresp, chkdown went from {errors0} to {errors})"), first
        if time.monotonic() - begin >= seconds:
            return None, first
        time.sleep(0.1)


def cut(api, backend, server):
    """Shut down ``server``'s established sessions; returns how many it held just before."""
    held = counter(api.servers(backend)[server], "scur")
    api.command(f"shutdown sessions server {backend}/{server}")
    return held


def move_back(api, backend, server, old, state_file, cut_sessions=False):
    """Best effort after an interrupted switch: the old server ready, the new one out."""
    try:
        if old:
            api.command(f"set weight {backend}/{old} 100%")
            api.command(f"set server {backend}/{old} state ready")
        api.command(f"set server {backend}/{server} state maint")
        if cut_sessions:
            cut(api, backend, server)
        save_state(api, state_file)
    except INTERRUPTED as exc:
        return f"moving the traffic back failed too ({exc}): check HAProxy's servers by hand"
    return f"traffic moved back to {old}" if old else f"{server} taken out of rotation"


def switch(api, p, rows, result):
    """Move the traffic to the new server and watch it: the failure reason, or None when it
    passed. An exception here (HAProxy refused a command, the socket failed, the server went
    away in a reload) means the switch was interrupted: the caller moves the traffic back."""
    backend, server, old = p["backend"], p["server"], p["from_server"]
    started = time.monotonic()
    start_total = counter(rows[server], "stot")
    api.command(f"set weight {backend}/{server} 100%")
    api.command(f"set server {backend}/{server} state ready")
    api.command(f"set server {backend}/{server} health up")
    result["sessions_cut"] = 0
    if old and p["cut_sessions"]:
        # Long-lived sessions: no new connection to the old colour, and the established ones cut,
        # so that their clients reconnect - to the new colour.
        api.command(f"set server {backend}/{old} state drain")
        result["sessions_cut"] = cut(api, backend, old)
    elif old:
        # The old colour stays eligible (weight 1 of 100) while the new one is watched: a request
        # the new colour fails is retried there (retry-on, redispatch) instead of failing.
        api.command(f"set weight {backend}/{old} 1")
    save_state(api, p["state_file"])
    failure, first = watch(api, backend, server, p["smoke_seconds"], start_total, started)
    result["switch_seconds"] = None if first is None else round(first, 3)
    return failure


def retire(api, p):
    """After a passed check: drain the old server, then take it out of rotation."""
    backend, old = p["backend"], p["from_server"]
    if old:
        api.command(f"set server {backend}/{old} state drain")
        deadline = time.monotonic() + (0 if p["cut_sessions"] else p["drain_timeout"])
        while time.monotonic() < deadline and counter(api.servers(backend)[old], "scur") > 0:
            time.sleep(0.1)
        api.command(f"set server {backend}/{old} state maint")
        if p["cut_sessions"]:
            cut(api, backend, old)  # a client that got in before the drain took effect
        api.command(f"set weight {backend}/{old} 100%")
    save_state(api, p["state_file"])


def reason(exc):
    if isinstance(exc, KeyError):
        return f"HAProxy no longer lists server {exc.args[0]!r} (was it reloaded with another configuration?)"
    return str(exc)


def main():
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "required": True},
            "action": {"type": "str", "choices": ["switch", "maint", "status"], "default": "switch"},
            "server": {"type": "str"},
            "from_server": {"type": "str"},
            "smoke_seconds": {"type": "float", "default": 3},
            "drain_timeout": {"type": "float", "default": 30},
            "cut_sessions": {"type": "bool", "default": False},
            "state_file": {"type": "path", "default": "/var/lib/haproxy/server-state"},
        },
        required_if=[("action", "switch", ["server"]), ("action", "maint", ["server"])],
        supports_check_mode=True,
    )
    p = module.params
    api = RuntimeApi(p["socket"])
    backend = p["backend"]
    try:
        rows = api.servers(backend)
    except OSError as exc:
        if module.check_mode and not os.path.exists(p["socket"]):
            # A first run in check mode: HAProxy is not installed yet; everything would change.
            module.exit_json(changed=p["action"] != "status", servers={},
                             msg=f"HAProxy is not running (no {p['socket']}): nothing to read in check mode")
        module.fail_json(msg=f"cannot reach HAProxy's runtime API at {p['socket']}: {exc}")
    for name in (p["server"], p["from_server"]):
        if name and name not in rows:
            module.fail_json(msg=f"HAProxy has no server {name!r} in backend {backend!r} "
                                 f"(it has: {', '.join(sorted(rows)) or 'no backend of that name'})")
    result = {"changed": False, "servers": summary(rows)}
    if p["action"] == "status":
        module.exit_json(**result)

    server, old = p["server"], p["from_server"]
    if p["action"] == "maint":
        if rows[server]["status"] != "MAINT":
            result["changed"] = True
            if not module.check_mode:
                api.command(f"set server {backend}/{server} state maint")
                save_state(api, p["state_file"])
        result["servers"] = summary(api.servers(backend))
        module.exit_json(**result)

    # switch
    if old == server:
        module.fail_json(msg=f"{server} is both the server to switch to and the one to switch from")
    active = [n for n, r in rows.items() if r["status"] not in ("MAINT", "DRAIN") and n in (server, old)]
    if active == [server] and (old is None or rows[old]["status"] == "MAINT"):
        module.exit_json(**result)  # already switched
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)

    try:
        failure = switch(api, p, rows, result)
    except INTERRUPTED as exc:
        # The switch was interrupted half-way: put the traffic back.
        back = move_back(api, backend, server, old, p["state_file"], p["cut_sessions"])
        module.fail_json(msg=f"switch of {backend} to {server} interrupted: {reason(exc)}; {back}", **result)
    if failure:
        back = move_back(api, backend, server, old, p["state_file"], p["cut_sessions"])
        result["smoke"] = {"result": "failed", "reason": failure}
        result["servers"] = servers_or_empty(api, backend)
        module.fail_json(msg=f"post-switch check failed: {failure}; {back}", **result)
    result["smoke"] = {"result": "passed", "seconds": p["smoke_seconds"]}
    try:
        retire(api, p)
    except INTERRUPTED as exc:
        # The new server passed its check and serves: moving back now would undo a good switch.
        module.fail_json(msg=(f"{server} serves {backend} and passed its check, but retiring {old or 'nothing'} "
                              f"failed: {reason(exc)}; check the old server's state by hand (it may still "
                              f"take a share of the traffic)"), **result)
    result["servers"] = summary(api.servers(backend))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
