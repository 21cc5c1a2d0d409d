# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a role's controls against state observed by carepath_observe, on the controller.

The ``Audit | Check the controls of <role>`` task generated from the control catalog calls
it once per host: no connection is needed, the host was read once by ``carepath_observe``.
One call per role, not one task per control: ~75 tasks of controller overhead become 7.

Result ``carepath_controls``: one ``{id, title, status, problems, exception}`` per control
checked, where status is ``compliant``, ``drifted`` (in check mode the task reports changed;
otherwise it fails, because enforcement did not hold), ``excepted`` or ``not_applicable``.
Controls outside the run's ``--tags`` (or inside ``--skip-tags``) are left out, so a tagged
run checks what it enforced. An invalid exception fails the task, naming it.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import require

try:
    from carepath import checks, exceptions, sitepolicy
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None


def selected(control: dict[str, Any], role: str, run_tags: list[str], skip_tags: list[str]) -> bool:
    """Whether the run's tags select this control (Ansible's own rule, applied per control)."""
    mine = set(control.get("tags") or [])
    if mine & set(skip_tags):
        return False
    return "all" in run_tags or bool((mine | {role, f"{role}_audit"}) & set(run_tags))


def evaluate(control: dict[str, Any], observed: dict[str, Any], entries: list[Any],
             in_container: bool, max_days: int | None = None) -> tuple[dict[str, Any], str | None]:
    """The report of one control, and an error if its exception is invalid."""
    ident = control["id"]
    report = {"id": ident, "title": control.get("title", ""), "status": "compliant", "problems": [],
              "exception": None}
    entry = exceptions.find(entries, ident)
    if entry is not None:
        invalid = exceptions.problems([entry], [ident],
                                      max_days=exceptions.DEFAULT_MAX_DAYS if max_days is None else max_days)
        if invalid:
            report["status"] = "failed"
            report["problems"] = invalid
            return report, "; ".join(invalid)
        report.update(status="excepted", exception={k: str(v) for k, v in entry.items()})
        return report, None
    check = dict(control["check"])
    if "sysctl" in check:
        # Kernel parameters: whether they can be written is a fact of the host, per parameter,
        # not of "is this a container" (a privileged container or a VM writes them).
        read_only = set(observed.get("sysctl_read_only") or [])
        skipped = sorted(set(check["sysctl"]) & read_only)
        check["sysctl"] = {k: v for k, v in check["sysctl"].items() if k not in read_only}
        if not check["sysctl"]:
            del check["sysctl"]
        if not check:
            report["status"] = "not_applicable"
            report["problems"] = [f"kernel parameters read-only on this host: {', '.join(skipped)}; "
                                  "the lab's VM test proves them on a real kernel"]
            return report, None
    elif in_container and control.get("container") == "unsupported":
        report["status"] = "not_applicable"
        report["problems"] = ["needs a real kernel and cannot hold in a container; the lab's VM test proves it"]
        return report, None
    problems = checks.evaluate_check(check, observed)
    if problems:
        report.update(status="drifted", problems=problems)
    return report, None


class ActionModule(ActionBase):
    """Evaluate the checks of one role's controls."""

    _requires_connection = False
    _VALID_ARGS = frozenset({"role", "controls", "observed", "exceptions", "container"})

    def run(self, tmp=None, task_vars=None):
        require(CAREPATH_IMPORT_ERROR)
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        unused, args = self.validate_argument_spec(
            argument_spec={
                "role": {"type": "str", "required": True},
                "controls": {"type": "list", "elements": "dict", "required": True},
                "observed": {"type": "dict", "required": True},
                "exceptions": {"type": "list", "elements": "raw", "default": []},
                "container": {"type": "bool", "default": False},
            }
        )
        run_tags = list(task_vars.get("ansible_run_tags") or ["all"])
        skip_tags = list(task_vars.get("ansible_skip_tags") or [])
        # The same longest exception as the policy gate allowed (the site policy's).
        max_days = sitepolicy.exception_max_days(task_vars.get("ansible_inventory_sources"))
        reports, errors = [], []
        for control in args["controls"]:
            if not selected(control, args["role"], run_tags, skip_tags):
                continue
            report, error = evaluate(control, args["observed"], args["exceptions"], args["container"], max_days)
            reports.append(report)
            if error:
                errors.append(error)
        result["carepath_controls"] = reports

        counts: dict[str, int] = {}
        for report in reports:
            counts[report["status"]] = counts.get(report["status"], 0) + 1
        summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
        notes = [f"{r['id']} is excepted until {r['exception']['expires']} (owner {r['exception']['owner']}): "
                 f"{r['exception']['reason']}" for r in reports if r["status"] == "excepted"]
        drifted = [f"{r['id']} ({r['title']}): " + "; ".join(r["problems"]) for r in reports if r["status"] == "drifted"]
        result["changed"] = False
        if errors:
            result.update(failed=True, msg="; ".join(errors))
        elif drifted and self._task.check_mode:
            result.update(changed=True, msg=f"{args['role']}: {summary}. Drifted: " + " | ".join(drifted))
        elif drifted:
            result.update(failed=True, msg=f"{args['role']}: controls do not hold after enforcement: "
                          + " | ".join(drifted))
        else:
            result["msg"] = f"{args['role']}: {summary or 'no control selected'}" + (
                ". " + " | ".join(notes) if notes else "")
        return result
