# Copyright: carepath contributors
# Apache License 2.0 (see LICENSE)
"""Check one control against state observed by carepath_observe, on the controller.

Named ``<ID> | AUDIT | <title>`` tasks generated from the control catalog call it. It
needs no connection: the host was read once by ``carepath_observe``.

Result ``carepath_control``: ``{id, status, problems, exception}`` where status is
``compliant``, ``drifted`` (check mode: reported as changed; otherwise the task fails,
because enforcement did not hold), ``excepted`` or ``not_applicable``. The last two are
"ok" results, not "skipped" ones: ansible-runner drops the result of skipped tasks, and
the status must reach drift reports and evidence.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.plugins.action import ActionBase

try:
    from carepath import checks, exceptions
except ImportError:  # running from a checkout that is not pip-installed (e.g. AWX)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from carepath import checks, exceptions


class ActionModule(ActionBase):
    """Evaluate one control's check."""

    _requires_connection = False
    _VALID_ARGS = frozenset({"id", "check", "observed", "exceptions", "container"})

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "id": {"type": "str", "required": True},
                "check": {"type": "dict", "required": True},
                "observed": {"type": "dict", "required": True},
                "exceptions": {"type": "list", "elements": "raw", "default": []},
                "container": {"type": "bool", "default": False},
            }
        )
        control = args["id"]
        report = {"id": control, "status": "compliant", "problems": [], "exception": None}
        result["carepath_control"] = report

        entry = exceptions.find(args["exceptions"], control)
        if entry is not None:
            invalid = exceptions.problems([entry], [control])
            if invalid:
                result.update(failed=True, msg="; ".join(invalid))
                return result
            report.update(status="excepted", exception={k: str(v) for k, v in entry.items()})
            result.update(
                changed=False,
                msg=f"{control} is excepted until {entry['expires']} (owner {entry['owner']}): {entry['reason']}",
            )
            return result
        if args["container"]:
            report["status"] = "not_applicable"
            result.update(
                changed=False,
                msg=f"{control} needs a real kernel and cannot hold in a container; the lab's VM test proves it",
            )
            return result

        problems = checks.evaluate_check(args["check"], args["observed"])
        if not problems:
            result.update(changed=False, msg=f"{control} is compliant")
            return result
        report.update(status="drifted", problems=problems)
        if self._task.check_mode:
            result.update(changed=True, msg=f"{control} has drifted: " + "; ".join(problems))
        else:
            result.update(failed=True, msg=f"{control} does not hold after enforcement: " + "; ".join(problems))
        return result
