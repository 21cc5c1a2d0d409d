#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The blue-green state of a service on one host (active colour, releases, bad ones) and its history."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_bluegreen_state
short_description: Read or record the blue-green state and history of a service on a host
description:
  - One state and history for every service delivered blue-green (web apps, HL7 engines;
    roles/bluegreen). The state (C(state.json)) holds the active colour, the release each colour runs, the
    releases that went live in order (C(activations)) and the releases marked bad with why.
  - O(event) records what a deploy or rollback did. It is appended to C(history.jsonl), one JSON
    object per line (when, which run, what, which version and colour), and applied to the
    state; both are written atomically.
  - Without O(event) the module only reads, and also says which release a rollback would go back
    to (C(rollback_target)).
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  dir:
    description: The service's state directory; its name is the service's name.
    type: path
    required: true
  kind:
    description: The kind of service (C(webapp), C(hl7_engine)), kept with each recorded event.
    type: str
  event:
    description:
      - What happened. C(action) is one of C(installed) (a release went into a colour),
        C(activated) (traffic moved to the colour), C(gate_failed) and C(smoke_failed)
        (the release is marked bad), C(rolled_back) (traffic moved back to an earlier release),
        C(drained) (the colour that gave up the traffic finished its work; history only);
        C(version), C(colour) and C(run_id) say which, C(reason) says why.
      - Other keys with scalar values (C(sessions_cut), C(queued_at_switch), C(drained_seconds), ...)
        are kept in the history as they are.
    type: dict
notes:
  - Supports check mode (nothing is written).
"""

EXAMPLES = r"""
- name: Read the state
  carepath.core.carepath_bluegreen_state:
    dir: /var/lib/carepath/webapp/scheduling
  register: state

- name: Record the switch
  carepath.core.carepath_bluegreen_state:
    dir: /var/lib/carepath/webapp/scheduling
    event: {action: activated, version: 2.0.0, colour: green, run_id: "{{ run_id }}"}
"""

RETURN = r"""
state:
  description: The state after the event.
  returned: always
  type: dict
rollback_target:
  description: The release a rollback goes back to (the one live before the active one), and whether it is bad.
  returned: always
  type: dict
carepath.core.carepath_release:
  description:
    - The event recorded, with the service's name (C(app), the state directory's name) and
      O(kind); the evidence callback keeps it in the run's audit evidence.
  returned: when O(event) is given
  type: dict
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

ACTIONS = ("installed", "activated", "gate_failed", "smoke_failed", "rolled_back", "drained")
COLOURS = ("blue", "green")


def empty():
    return {"active": None, "colours": {}, "activations": [], "bad": {}}


def load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return empty()
    base = empty()
    base.update(state)
    return base


def write_atomic(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def apply(state, event):
    action, version, colour = event["action"], event.get("version"), event.get("colour")
    if action == "installed":
        state["colours"][colour] = {"version": version, "installed_at": event["at"]}
    elif action in ("activated", "rolled_back"):
        state["active"] = colour
        state["colours"].setdefault(colour, {})["version"] = version
        # Releases that went live, oldest first, each once. A release rolled back from is
        # dropped: the next rollback goes further back, not to it.
        dropped = {version, event.get("from_version") if action == "rolled_back" else None}
        state["activations"] = [v for v in state["activations"] if v not in dropped] + [version]
        # A release that went live after passing its gate and post-switch check is good again.
        state["bad"].pop(version, None)
    elif action in ("gate_failed", "smoke_failed"):
        state["bad"][version] = {"reason": event.get("reason", action), "at": event["at"], "run_id": event.get("run_id")}
    return state


def rollback_target(state):
    active = state.get("active")
    current = (state["colours"].get(active) or {}).get("version") if active else None
    earlier = [v for v in state["activations"] if v != current]
    if not earlier:
        return {"version": None, "bad": False, "colour": None}
    version = earlier[-1]
    colour = next((c for c, info in state["colours"].items() if info.get("version") == version and c != active), None)
    return {"version": version, "bad": version in state["bad"], "colour": colour,
            "reason": (state["bad"].get(version) or {}).get("reason")}


def main():
    module = AnsibleModule(
        argument_spec={"dir": {"type": "path", "required": True}, "kind": {"type": "str"}, "event": {"type": "dict"}},
        supports_check_mode=True,
    )
    directory, event = module.params["dir"], module.params["event"]
    state_path = os.path.join(directory, "state.json")
    state = load(state_path)
    changed = False
    if event:
        event = {k: v for k, v in event.items() if v is not None and v != ""}
        odd = sorted(k for k, v in event.items() if not isinstance(v, (str, int, float, bool)))
        if odd:
            module.fail_json(msg=f"event values must be scalars: {', '.join(odd)}")
        if module.params["kind"]:
            event["kind"] = module.params["kind"]
        if event.get("action") not in ACTIONS:
            module.fail_json(msg=f"event.action must be one of {', '.join(ACTIONS)}")
        needs_colour = event["action"] in ("installed", "activated", "rolled_back")
        if (needs_colour or event.get("colour") is not None) and event.get("colour") not in COLOURS:
            module.fail_json(msg=f"event.colour must be blue or green, not {event.get('colour')!r}")
        if not event.get("version"):
            module.fail_json(msg="event.version is required")
        event = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}
        state = apply(state, event)
        changed = True
        if not module.check_mode:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            with open(os.path.join(directory, "history.jsonl"), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            write_atomic(state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")
    extra = {"carepath_release": {"app": os.path.basename(directory.rstrip("/")), **event}} if event else {}
    module.exit_json(changed=changed, state=state, rollback_target=rollback_target(state), **extra)


if __name__ == "__main__":
    main()
