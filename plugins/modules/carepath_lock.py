#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lock file that one run at a time may hold (e.g. one deploy of an app at a time)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_lock
short_description: Take or release a lock held by one run at a time
description:
  - O(state=acquired) creates the lock file atomically (C(O_EXCL)) with the holder's details. When
    another run holds it, the module fails naming that run, its operator and since when; the same
    run taking it again is a no-op.
  - O(state=released) removes the lock if this run holds it; a lock held by another run is left
    alone (and reported).
  - O(break_lock=true) takes the lock over from another run (a run that died holding it).
  - The module never reports C(changed), as a run takes and gives back its lock without
    changing what the host serves; RV(acquired) says what it did.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  path:
    description: The lock file.
    type: path
    required: true
  state:
    description: Take or give back the lock.
    type: str
    choices: [acquired, released]
    default: acquired
  holder:
    description: Who takes the lock; C(run_id) is required; C(operator), C(detail) and C(since) are shown to whoever is refused.
    type: dict
    required: true
  what:
    description: What the lock protects, for the refusal message (e.g. C(deploy of scheduling)).
    type: str
    default: this operation
  break_lock:
    description: Take the lock even when another run holds it.
    type: bool
    default: false
  hint:
    description: How to take the lock over, appended to the refusal (e.g. the variable that sets O(break_lock)).
    type: str
    default: pass break_lock=true
notes:
  - Supports check mode (the lock is checked, not taken).
"""

EXAMPLES = r"""
- name: Refuse a second deploy of the same app
  carepath.core.carepath_lock:
    path: /run/carepath/locks/webapp-scheduling.lock
    holder: {run_id: "{{ run_id }}", operator: alice}
    what: deploy of scheduling
"""

RETURN = r"""
acquired:
  description: Whether the lock is held by this run after the call.
  returned: always
  type: bool
holder:
  description: The lock's holder after the call (null when released).
  returned: always
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"run_id": "(unreadable lock file)"}
    return holder if isinstance(holder, dict) else {"run_id": "(unreadable lock file)"}


def create(path, holder):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(holder, handle)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["acquired", "released"], "default": "acquired"},
            "holder": {"type": "dict", "required": True},
            "what": {"type": "str", "default": "this operation"},
            "break_lock": {"type": "bool", "default": False},
            "hint": {"type": "str", "default": "pass break_lock=true"},
        },
        supports_check_mode=True,
    )
    p = module.params
    holder = dict(p["holder"])
    if not holder.get("run_id"):
        module.fail_json(msg="holder.run_id is required")
    current = read(p["path"])
    mine = current is not None and current.get("run_id") == holder["run_id"]

    if p["state"] == "released":
        if mine and not module.check_mode:
            os.unlink(p["path"])
        module.exit_json(changed=False, acquired=False, holder=None if mine or current is None else current)

    if mine:
        module.exit_json(changed=False, acquired=True, holder=current)
    if current is not None and not p["break_lock"]:
        module.fail_json(
            msg=(f"{p['what']} refused: run {current.get('run_id')} (operator {current.get('operator', 'unknown')}, "
                 f"{current.get('detail', '')}) has held the lock since {current.get('since', 'an unknown time')}. "
                 f"Wait for it to finish. If that run died, check the hosts, then take the lock over: "
                 f"{p['hint']} (lock file {p['path']})."),
            holder=current)
    if not module.check_mode:
        if current is not None:
            os.unlink(p["path"])
        try:
            create(p["path"], holder)
        except FileExistsError:
            module.fail_json(msg=f"{p['what']} refused: another run took the lock a moment ago ({p['path']})",
                             holder=read(p["path"]))
    module.exit_json(changed=False, acquired=True, holder=holder, broken=current)


if __name__ == "__main__":
    main()
