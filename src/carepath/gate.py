"""The policy gate's decision on a whole run: may it touch any host at all?

One function, :func:`decide`, answers for three callers that must agree:

- the gate play's first task (``playbooks/policy_gate.yml``), which refuses the run in the normal
  way, with the reasons, as a recorded task failure;
- the ``carepath_gate`` lookup in the ``hosts:`` line of every play that touches hosts, which
  Ansible evaluates whatever ``--tags``/``--skip-tags`` say, so skipping the gate's tasks stops the
  run instead of skipping the gate;
- the evidence callback, which records the decision and the launch options in the run's bundle,
  so that ``verify`` fails a run that went on after a refusal (a playbook edited to drop the gate).

Its inputs are what a launcher cannot argue with: the site policy from the inventory's files
(:mod:`carepath.sitepolicy`), the change ticket and approval, the operator's evidence key, and the
names of the extra variables (a policy variable among them is refused).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carepath import change, sitepolicy, specs
from carepath.errors import CarepathError
from carepath.evidence import store as evidence_store
from carepath.evidence.dsse import load_private_key
from carepath.runid import RUN_ID_ENV

TICKET_VAR, APPROVAL_VAR = "carepath_change_ticket", "carepath_change_approval"
TICKET_ENV, APPROVAL_ENV = "CAREPATH_CHANGE_TICKET", "CAREPATH_CHANGE_APPROVAL"
#: The tag every task of the gate carries, so evidence can tell the gate's own results from host work.
GATE_TAG = "carepath_policy_gate"
#: A run id names the run's evidence bundle (``carepath.evidence.bundle.NAME_RE``): no path, no ``..``.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Decision:
    """The gate's answer, and what it was based on (recorded in the run's evidence)."""

    policy: sitepolicy.SitePolicy | None
    problems: tuple[str, ...]
    ticket: str | None = None
    approval_path: str | None = None
    approval: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> bool:
        return not self.problems

    @property
    def site(self) -> str:
        return self.policy.site if self.policy else "unknown"

    def to_record(self) -> dict[str, Any]:
        return {"decision": "accepted" if self.accepted else "refused", "problems": list(self.problems),
                "policy": self.policy.to_record() if self.policy else None,
                "ticket": self.ticket, "approval": dict(self.approval) if self.approval else None}


def requested_change(extra_vars: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The ticket and approval a run asks to go under: extra vars (AWX launch) first, then the environment."""
    ticket = extra_vars.get(TICKET_VAR) or environ.get(TICKET_ENV) or None
    approval = extra_vars.get(APPROVAL_VAR) or environ.get(APPROVAL_ENV) or None
    return (str(ticket) if ticket else None), (str(approval) if approval else None)


def key_problem(operator_key: str | None) -> str | None:
    """Why the configured evidence key cannot sign (None: it can, or none is there)."""
    if not operator_key or not Path(operator_key).exists():
        return None
    try:
        load_private_key(Path(operator_key))
    except CarepathError as exc:
        reason = str(exc).replace("\n  hint:", ";")
        return f"the evidence signing key cannot be used: {reason}; the run would leave unsigned evidence"
    return None


#: Tags that would skip the gate's tasks when given to --skip-tags (the gate's tasks carry always and GATE_TAG).
_SKIPPING_TAGS = ("always", "tagged", GATE_TAG)


def launch_problems(cliargs: Mapping[str, Any]) -> list[str]:
    """Launch options that would leave the gate's tasks out: refused, so the whole gate always runs."""
    found = [f"--skip-tags {tag} would skip the policy gate's tasks, which always run"
             for tag in _SKIPPING_TAGS if tag in {str(t) for t in cliargs.get("skip_tags") or ()}]
    if cliargs.get("start_at_task"):
        found.append("--start-at-task would skip the policy gate's tasks, which always run; run the playbook "
                     "whole (its roles are idempotent), or limit it with --tags")
    if cliargs.get("step"):
        found.append("--step would let the policy gate's tasks be skipped, and they always run")
    return found


def extra_var_problems(extra_vars: Mapping[str, Any], roles_dir: Path | None) -> list[str]:
    """Extra variables that do not fit the roles' argument specs (templates are judged by the gate's task)."""
    if roles_dir is None:
        return []
    plain = {k: v for k, v in extra_vars.items() if not (isinstance(v, str) and ("{{" in v or "{%" in v))}
    return specs.problems(plain, specs.load_specs(roles_dir))


def run_id_problem(environ: Mapping[str, str]) -> str | None:
    """Why ``CAREPATH_RUN_ID`` cannot name this run's evidence (None: it can, or it is not set)."""
    run_id = environ.get(RUN_ID_ENV)
    if run_id is None or RUN_ID.fullmatch(run_id):
        return None
    shown = run_id if len(run_id) <= 80 else run_id[:80] + "..."
    return (f"{RUN_ID_ENV}={shown!r} is not a run id (letters, digits, . _ -; 1 to 128, starting with a letter or "
            "digit): it names the run's evidence bundle; unset it, and the evidence callback names the run")


def decide(inventory_sources: Sequence[str], *, extra_vars: Mapping[str, Any], operator_key: str | None,
           environ: Mapping[str, str] | None = None, host_variables: Iterable[Mapping[str, Any]] = (),
           cliargs: Mapping[str, Any] | None = None, roles_dir: Path | None = None,
           store: str | None = None, store_ssh_args: str | None = None,
           now: dt.datetime | None = None) -> Decision:
    """May this run touch its hosts? See the module docstring for who asks and why.

    Besides change control, it refuses launch options that would skip the gate's tasks and extra
    variables that do not fit the roles' specs: the per-host checks of the gate's play (exceptions,
    weakened controls) then cannot be left out either. With an evidence ``store`` it refuses a run whose
    evidence the store cannot take (checked once per process).
    """
    environ = os.environ if environ is None else environ
    ticket, approval_path = requested_change(extra_vars, environ)
    try:
        policy = sitepolicy.load(inventory_sources, environ)
    except CarepathError as exc:
        reason = str(exc).replace("\n  hint:", ";")
        return Decision(None, (f"the site policy cannot be read: {reason}",), ticket, approval_path)
    problems: list[str] = launch_problems(cliargs or {}) + extra_var_problems(extra_vars, roles_dir)
    bad_run_id = run_id_problem(environ)
    if bad_run_id:
        problems.append(bad_run_id)
    problems += sitepolicy.overrides(policy, {}, extra_vars.keys())
    unsourced = awx_policy_problem(policy, extra_vars)
    if unsourced:
        problems.append(unsourced)
    for variables in host_variables:
        for problem in sitepolicy.overrides(policy, variables, extra_vars.keys()):
            if problem not in problems:
                problems.append(problem)
    unusable = key_problem(operator_key)
    if unusable:
        problems.append(unusable)
    unstorable = evidence_store.problem(store, store_ssh_args, policy.site)
    if unstorable:
        problems.append(unstorable)
    elif store not in (None, "", "none") and not (operator_key and Path(operator_key).exists()):
        problems.append(f"an evidence store is set ({store}) but there is no evidence signing key at {operator_key}: "
                        "only signed bundles are stored, and this run's would stay where it ran (on an execution "
                        "node, deleted with the job); give the key (CAREPATH_EVIDENCE_KEY)")
    refused, approval = change.check(policy, ticket, approval_path, operator_key, now=now)
    problems += refused
    return Decision(policy, tuple(problems), ticket, approval_path, approval)


#: The extra variables AWX / Automation Platform gives every job it launches.
AWX_JOB_VARS = ("awx_job_id", "tower_job_id")


def awx_policy_problem(policy: sitepolicy.SitePolicy, extra_vars: Mapping[str, Any]) -> str | None:
    """Why a job launched by AWX may not run on a site policy that declares nothing (None: it may).

    AWX hands an execution node a generated inventory without the project's ``group_vars``: a protected
    site whose policy lives there would be read as an unprotected one and run without its change
    approval. A job from AWX must therefore bring its policy (``CAREPATH_SITE_POLICY``, or an inventory
    whose files declare it); an unprotected site says so (``carepath_protected: false``).
    """
    launched_by = next((name for name in AWX_JOB_VARS if name in extra_vars), None)
    if launched_by is None or policy.declared:
        return None
    return (f"this job was launched by AWX ({launched_by}) but its site policy declares nothing: AWX gives the "
            "execution node a generated inventory without the project's group_vars, so a protected site would "
            f"read as unprotected; give the policy file ({sitepolicy.POLICY_ENV}, through a credential; docs/awx.md), "
            "even for an unprotected site (carepath_protected: false)")


def message(decision: Decision) -> str:
    """The refusal as one line for the operator."""
    return "The policy gate refuses the run; no host has been touched: " + " | ".join(decision.problems)


def launch_record(cliargs: Mapping[str, Any], extra_var_names: Iterable[str]) -> dict[str, Any]:
    """Every launch option that changes what a run does (values of extra vars are never kept, only names)."""
    def listed(name: str) -> list[str]:  # Ansible keeps tags as a set: sorted, so records compare
        return sorted({str(v) for v in (cliargs.get(name) or ())})

    return {
        "tags": listed("tags"), "skip_tags": listed("skip_tags"), "limit": str(cliargs.get("subset") or ""),
        "check": bool(cliargs.get("check")), "diff": bool(cliargs.get("diff")),
        "extra_var_names": sorted({str(n) for n in extra_var_names}),
        "start_at_task": str(cliargs.get("start_at_task") or ""), "step": bool(cliargs.get("step")),
        "forks": cliargs.get("forks"), "become": bool(cliargs.get("become")),
        "become_user": str(cliargs.get("become_user") or ""),
        "connection": str(cliargs.get("connection") or ""), "remote_user": str(cliargs.get("remote_user") or ""),
        "vault_ids": len(cliargs.get("vault_ids") or ()) + (1 if cliargs.get("vault_password_files") else 0),
    }
