#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep systemd units enabled, running, stopped or masked, reading their state in one systemctl call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_service
short_description: Keep systemd units enabled, started, stopped or masked, in one round trip
description:
  - Reads the state of every unit listed with a single C(systemctl show), then enables, disables,
    masks, unmasks, starts or stops only what differs from what is asked.
  - M(ansible.builtin.systemd_service) queries C(systemctl) several times for each unit, one
    task per unit; on a baseline re-run it took 0.3-0.8 s a unit, where this module's single
    read of several units costs about what any module run costs.
  - Order for each unit, as C(systemctl) needs it - stop (before anything else, so that a
    timer masked while running does not fail and leave the host degraded), reset-failed (of a
    failed unit to be stopped or masked), unmask, disable (of a unit about to be masked), mask,
    enable or disable, then start.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  name:
    description: The unit (C(ssh), C(chrony.service), C(aide.timer)); or use O(units).
    type: str
  enabled:
    description: Whether the unit starts at boot. Static, indirect and generated units count as enabled.
    type: bool
  state:
    description: C(started) starts an inactive unit; C(stopped) stops an active one.
    type: str
    choices: [started, stopped]
  masked:
    description: Whether the unit is masked (it can then never start).
    type: bool
  units:
    description:
      - Several units in one module run, each a dict with C(name) and any of C(enabled), C(state)
        and C(masked). The task is changed when any unit changed.
    type: list
    elements: dict
  daemon_reload:
    description: Run C(systemctl daemon-reload) first (a unit file written a moment ago).
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
  - A unit that systemd does not know is an error, unless it is only to be masked.
  - A masked unit is never enabled or started unless O(masked) is V(false), since a unit is
    usually masked on purpose. Asking for that, or to mask a unit and also enable or start it,
    fails at once; every unit is checked before any is changed. In check mode (a drift run) a
    unit found masked is a warning instead, and the start it would need is reported as a change.
"""

EXAMPLES = r"""
- name: Keep sshd enabled and running
  carepath.core.carepath_service:
    name: ssh
    enabled: true
    state: started

- name: Mask the package's own timer and run ours
  carepath.core.carepath_service:
    units:
      - {name: dailyaidecheck.timer, state: stopped, enabled: false, masked: true}
      - {name: carepath-aide-check.timer, state: started, enabled: true}
"""

RETURN = r"""
units:
  description: Each unit's state before the module ran, and the C(systemctl) actions it took (or would take).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: ssh, load_state: loaded, unit_file_state: enabled, active_state: active, actions: []}
"""

from ansible.module_utils.basic import AnsibleModule

PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState")
# What `systemctl is-enabled` answers with exit status 0.
ENABLED = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"})
DISABLEABLE = frozenset({"enabled", "enabled-runtime"})
RUNNING = frozenset({"active", "activating", "reloading"})
UNIT_KEYS = ("name", "enabled", "state", "masked")


def parse_show(text: str, count: int) -> list[dict[str, str]]:
    """Split ``systemctl show -p ... UNIT...`` output into one property dict per unit, in order."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, unused, value = line.partition("=")
        blocks[-1][key] = value
    blocks = [b for b in blocks if b]
    if len(blocks) != count:
        raise ValueError(f"systemctl show described {len(blocks)} units, {count} were asked for")
    return blocks


def _is_masked(status: dict[str, str]) -> bool:
    return status.get("LoadState") == "masked" or status.get("UnitFileState") in ("masked", "masked-runtime")


def _runs(want: dict) -> list[str]:
    """What of enabled and started the task asks for."""
    return [verb for verb, asked in (("enabled", want.get("enabled") is True),
                                     ("started", want.get("state") == "started")) if asked]


def plan(want: dict, status: dict[str, str]) -> list[str]:
    """The systemctl verbs (in order) that bring a unit from ``status`` to ``want``.

    A unit is stopped before it is disabled or masked: masking a running timer and reloading
    leaves it running with nothing to trigger, and it then fails ("Unit to trigger vanished"),
    which leaves the host degraded. A unit to be stopped that has failed is reset, so an old
    failure does not keep the host degraded either.
    """
    masked = _is_masked(status)
    file_state = status.get("UnitFileState", "")
    active = status.get("ActiveState", "") in RUNNING
    actions: list[str] = []
    if want.get("state") == "stopped" and active:
        actions.append("stop")
    if (want.get("state") == "stopped" or want.get("masked") is True) and status.get("ActiveState") == "failed":
        actions.append("reset-failed")
    if want.get("masked") is False and masked:
        actions.append("unmask")
        masked = False
        file_state = "disabled"
    if want.get("masked") is True and not masked:
        if want.get("enabled") is False and file_state in DISABLEABLE:
            actions.append("disable")
        actions.append("mask")
        masked = True
    if want.get("enabled") is True and not masked and file_state not in ENABLED:
        actions.append("enable")
    elif want.get("enabled") is False and not masked and file_state in DISABLEABLE:
        actions.append("disable")
    if want.get("state") == "started" and not active:
        actions.append("start")
    return actions


def refusal(want: dict, status: dict[str, str]) -> str | None:
    """Why ``want`` cannot be met from ``status`` without a decision the task did not make."""
    name, runs = want["name"], _runs(want)
    if status.get("LoadState") == "not-found" and (runs or not want.get("masked")):
        return f"systemd has no unit {name}"
    if want.get("masked") is True and runs:
        return f"{name} cannot be masked and {' and '.join(runs)} at once"
    return None


def masked_refusal(want: dict, status: dict[str, str]) -> str | None:
    """Why a unit someone masked is not enabled or started, unless the task asks to unmask it."""
    runs = _runs(want)
    if _is_masked(status) and runs and want.get("masked") is not False:
        return (f"{want['name']} is masked, so it cannot be {' or '.join(runs)}; someone may have masked it on "
                "purpose: find out why, then unmask it (systemctl unmask, or masked: false on the task)")
    return None


def _describe(status: dict[str, str]) -> dict[str, object]:
    return {"enabled": status.get("UnitFileState", "") in ENABLED, "active": status.get("ActiveState", "") in RUNNING,
            "masked": _is_masked(status), "failed": status.get("ActiveState") == "failed"}


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "enabled": {"type": "bool"},
            "state": {"type": "str", "choices": ["started", "stopped"]},
            "masked": {"type": "bool"},
            "units": {"type": "list", "elements": "dict"},
            "daemon_reload": {"type": "bool", "default": False},
        },
        required_one_of=[("name", "units")],
        mutually_exclusive=[("name", "units")],
        supports_check_mode=True,
    )
    params = module.params
    if params["units"]:
        wanted = []
        for raw in params["units"]:
            unknown = sorted(set(raw) - set(UNIT_KEYS))
            if not raw.get("name") or unknown:
                module.fail_json(msg=f"each of units needs a name and takes only {', '.join(UNIT_KEYS)}: {sorted(raw)}")
            if raw.get("state") not in (None, "started", "stopped"):
                module.fail_json(msg=f"{raw['name']}: state must be started or stopped, not {raw['state']!r}")
            wanted.append({k: raw.get(k) for k in UNIT_KEYS})
    else:
        wanted = [{k: params[k] for k in UNIT_KEYS}]
    systemctl = module.get_bin_path("systemctl", required=True)

    if params["daemon_reload"] and not module.check_mode:
        rc, unused, err = module.run_command([systemctl, "daemon-reload"])
        if rc != 0:
            module.fail_json(msg=f"systemctl daemon-reload failed: {err.strip()}")

    argv = [systemctl, "show", "--property=" + ",".join(PROPERTIES), "--"] + [w["name"] for w in wanted]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip() or out.strip()}")
    try:
        statuses = parse_show(out, len(wanted))
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    # Every unit is checked before any is changed.
    refused = [reason for want, status in zip(wanted, statuses, strict=True) if (reason := refusal(want, status))]
    masked = [reason for want, status in zip(wanted, statuses, strict=True) if (reason := masked_refusal(want, status))]
    if refused or (masked and not module.check_mode):
        module.fail_json(msg="; ".join(refused + masked))
    # In check mode (a drift run) a unit masked by hand is drift to report, not an error.
    for reason in masked:
        module.warn(reason)

    results, before, after = [], {}, {}
    for want, status in zip(wanted, statuses, strict=True):
        name = want["name"]
        actions = plan(want, status)
        results.append({"name": name, "load_state": status.get("LoadState"),
                        "unit_file_state": status.get("UnitFileState"), "active_state": status.get("ActiveState"),
                        "actions": actions})
        before[name] = _describe(status)
        after[name] = dict(before[name])
        for action in actions:
            after[name].update({"unmask": {"masked": False}, "mask": {"masked": True, "enabled": False},
                                "enable": {"enabled": True}, "disable": {"enabled": False},
                                "start": {"active": True}, "stop": {"active": False},
                                "reset-failed": {"failed": False}}[action])
            if module.check_mode:
                continue
            rc, out, err = module.run_command([systemctl, action, "--", name])
            if rc != 0:
                module.fail_json(msg=f"systemctl {action} {name} failed: {(err or out).strip()}", units=results)

    changed = any(r["actions"] for r in results)
    result = {"changed": changed, "units": results}
    if module._diff and changed:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
