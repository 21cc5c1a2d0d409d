"""Extra variables checked against the roles' argument specs on the controller, before any host.

Each role validates its variables with ``validate_argument_spec`` (``meta/argument_specs.yml``),
but only once it runs on a host: a ``-e firewall_allow_ping=maybe`` or a misspelt
``-e ssh_hardening_typo_var=1`` was found on the hosts, half-way through a run, or never (an
unknown name is simply unused). The policy gate calls :func:`problems` with the run's extra
variables, so such inputs stop the run before any host is touched.

A variable is judged by the role whose name prefixes it (``firewall_`` -> roles/firewall); names
without a role prefix (``carepath_*``, a playbook's own inputs) are left alone. Types and choices
are checked by Ansible's own ``ArgumentSpecValidator``, so ``"true"`` for a bool or ``"8"`` for
an int pass as they do in ``validate_argument_spec``. Lists and dicts must be given as such: the
validator would turn ``5`` or ``"a,b"`` into a list for its check, but the role then receives the
value as given and fails (or iterates over characters) on the host.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from carepath.errors import CarepathError

#: libyaml's safe loader when there is one: the gate loads every spec once per host's worker process.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Spec types whose value the role uses as given, so it must already be of that type.
_CONTAINERS = {"list": (list, tuple), "dict": (dict, Mapping)}


@functools.cache
def load_specs(roles_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every role's options, by role name: the union of its entry points' options (first one wins).

    Cached per process: the gate asks once per host, and the files do not change during a run.
    """
    specs: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(Path(roles_dir).glob("*/meta/argument_specs.yml")):
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}  # noqa: S506 - a safe loader
        except (OSError, yaml.YAMLError) as exc:
            raise CarepathError(f"cannot read the argument specs {path}: {exc}") from None
        options: dict[str, dict[str, Any]] = {}
        for entry in (data.get("argument_specs") or {}).values():
            for name, spec in ((entry or {}).get("options") or {}).items():
                options.setdefault(str(name), dict(spec or {}))
        specs[path.parent.parent.name] = options
    return specs


def problems(extra_vars: Mapping[str, Any], specs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Why the extra variables cannot be given to the roles (empty: every role-prefixed one is valid)."""
    found: list[str] = []
    for name in sorted(extra_vars, key=str):
        roles = [role for role in specs if str(name).startswith(f"{role}_")]
        if not roles:
            continue  # not a role variable: left alone
        declaring = [role for role in roles if name in specs[role]]
        if not declaring:
            found.append(_unknown(str(name), roles, specs))
            continue
        for role in declaring:
            problem = value_problem(str(name), extra_vars[name], specs[role][name])
            if problem:
                found.append(f"-e {name}: {problem} (roles/{role}/meta/argument_specs.yml)")
                break
    return found


def value_problem(name: str, value: Any, spec: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not fit the option's spec, in Ansible's words where it has them; None if it fits."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # late: slow, only the gate needs it

    kind = spec.get("type", "str")
    if isinstance(kind, str) and kind in _CONTAINERS and not isinstance(value, _CONTAINERS[kind]):
        elements = f" of {spec['elements']}" if spec.get("elements") else ""
        return (f"expected a {kind}{elements}, got {_type_name(value)} {value!r}; the role would receive it "
                f"as given. Give it as JSON, e.g. -e '{{\"{name}\": {'[...]' if kind == 'list' else '{...}'}}}'")
    # Only this option, and not required: the others are not given here, and their defaults apply.
    option = {k: v for k, v in spec.items() if k not in ("description", "default", "required", "version_added")}
    result = ArgumentSpecValidator({name: option}).validate({name: value})
    if result.error_messages:
        return "; ".join(str(m) for m in result.error_messages)
    return None


def _type_name(value: Any) -> str:
    """The plain type of a value, not Ansible's tagged wrapper of it (``_AnsibleTaggedInt`` reads as ``int``)."""
    for kind in (bool, int, float, str, dict, list, tuple):
        if isinstance(value, kind):
            return kind.__name__
    return "null" if value is None else type(value).__name__


def _unknown(name: str, roles: list[str], specs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    known = sorted({option for role in roles for option in specs[role]})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    where = ", ".join(f"roles/{role}" for role in roles)
    hint = f"did you mean {' or '.join(close)}?" if close else "no option of the role is close; see its README"
    return f"-e {name}: unknown: no role option of that name ({where}); {hint}"
