"""A site's change-control policy, read from the inventory's own files and never from run variables.

Whether an inventory is protected, who may approve its changes, its site name and how long an
exception may run are the site's policy. They are read from the files under the inventory's
``group_vars/all`` (``all.yml``, ``all.yaml``, ``all.json``, or every file in ``group_vars/all/``)::

    carepath_site: production                   # the ledger's name (default: the inventory folder's name)
    carepath_protected: true
    carepath_change_approver_keys:              # ed25519 public keys; relative paths are relative to the file
      - approvers/alice.pub
    carepath_exception_max_days: 365            # longest allowed exception (default 365)

They are *not* taken from Ansible's variables, because ``-e`` (and AWX's launch-time extra vars)
override every variable: a run that tries to change them (``-e carepath_protected=false``, a
``host_vars`` file, another group) is refused by the gate, see :func:`overrides`.

Where the inventory has no files (AWX hands an execution node a generated inventory), the policy
comes from the YAML file named by ``CAREPATH_SITE_POLICY`` (same keys; AWX sets it through a
credential or the execution environment, not at launch). That file can only add to what the
inventory's files declare: it can protect an inventory, never unprotect it or change its approvers.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carepath import exceptions
from carepath.errors import CarepathError
from carepath.evidence.canonical import canonical_bytes

POLICY_ENV = "CAREPATH_SITE_POLICY"
SITE_ENV = "CAREPATH_SITE"
#: The variables that make up a site's policy; none may be given as a run variable.
POLICY_VARS = ("carepath_site", "carepath_protected", "carepath_change_approver_keys", "carepath_exception_max_days")
_SUFFIXES = (".yml", ".yaml", ".json")


@dataclass(frozen=True)
class SitePolicy:
    """What the site's files say; ``files`` and ``sha256`` let the evidence show where it came from."""

    site: str
    protected: bool
    approver_keys: tuple[Path, ...]
    exception_max_days: int
    files: tuple[str, ...]
    sha256: str
    #: the policy values as declared (for comparing with what a run's variables say)
    declared: Mapping[str, Any]

    def to_record(self) -> dict[str, Any]:
        return {"site": self.site, "protected": self.protected,
                "approver_keys": [str(p) for p in self.approver_keys],
                "exception_max_days": self.exception_max_days, "files": list(self.files), "sha256": self.sha256}


def inventory_name(sources: Sequence[str]) -> str:
    """The site's default name: its inventory's name.

    ``inventories/production`` is ``production``; ``inventories/lab/hosts.yml`` is ``lab``; an
    inline host list (``-i web1,``) is ``adhoc``.
    """
    if not sources or "," in str(sources[0]):
        return "adhoc"
    path = Path(sources[0])
    name = path.parent.name if path.suffix in (".yml", ".yaml", ".ini", ".json") or path.stem in ("hosts", "inventory") \
        else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    return name[:64] or "default"


def _inventory_dirs(sources: Iterable[str]) -> list[Path]:
    dirs: list[Path] = []
    for source in sources:
        if "," in str(source):
            continue
        path = Path(source)
        base = path if path.is_dir() else path.parent
        if base not in dirs:
            dirs.append(base)
    return dirs


def _group_all_files(base: Path) -> list[Path]:
    """The files Ansible reads for group ``all`` of an inventory in ``base`` (vault files excluded)."""
    group_vars = base / "group_vars"
    found = [group_vars / f"all{suffix}" for suffix in ("", *_SUFFIXES) if (group_vars / f"all{suffix}").is_file()]
    folder = group_vars / "all"
    if folder.is_dir():
        found += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in ("", *_SUFFIXES)
                        and not p.name.startswith("."))
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CarepathError(f"cannot read the site policy in {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"$ANSIBLE_VAULT"):
        return {}  # a whole-file vault holds secrets, not policy; the gate refuses if it sets policy anyway
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise CarepathError(f"{path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CarepathError(f"{path} must hold a mapping of variables")
    return {k: v for k, v in loaded.items() if k in POLICY_VARS}


def _keys(value: Any, relative_to: Path, where: Path) -> tuple[Path, ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CarepathError(f"{where}: carepath_change_approver_keys must be a list of public key paths")
    return tuple((relative_to / v) if not Path(v).is_absolute() else Path(v) for v in value)


def load(sources: Sequence[str], environ: Mapping[str, str] | None = None) -> SitePolicy:
    """The policy of the inventory given as ``sources`` (Ansible's ``-i`` values)."""
    environ = os.environ if environ is None else environ
    declared: dict[str, Any] = {}
    where: dict[str, Path] = {}
    files: list[Path] = []
    for base in _inventory_dirs(sources):
        for path in _group_all_files(base):
            values = _read(path)
            files.append(path)
            for name, value in values.items():
                if name in declared and declared[name] != value:
                    raise CarepathError(f"{path} sets {name} to {value!r}, but {where[name]} sets {declared[name]!r}",
                                        hint="declare the site policy once, in group_vars/all")
                declared.setdefault(name, value)
                where.setdefault(name, path)
    extra_file = environ.get(POLICY_ENV)
    if extra_file:
        path = Path(extra_file)
        if not path.is_file():
            raise CarepathError(f"{POLICY_ENV}={extra_file}: no such file")
        files.append(path)
        for name, value in _read(path).items():
            if name == "carepath_protected":
                declared[name] = bool(declared.get(name)) or value is True
                where.setdefault(name, path)
            elif name not in declared:
                declared[name] = value
                where[name] = path
    protected = declared.get("carepath_protected", False)
    if not isinstance(protected, bool):
        raise CarepathError(f"{where['carepath_protected']}: carepath_protected must be true or false, "
                            f"not {protected!r}")
    site = declared.get("carepath_site")
    if site is not None and (not isinstance(site, str) or not site.strip()):
        raise CarepathError(f"{where['carepath_site']}: carepath_site must be a name")
    if site is None:
        env_site = environ.get(SITE_ENV)
        # A protected site's name is part of what its approvals are checked against: only its files name it.
        site = env_site if env_site and not protected else inventory_name(sources)
    max_days = declared.get("carepath_exception_max_days", exceptions.DEFAULT_MAX_DAYS)
    if type(max_days) is not int or not 1 <= max_days <= 3650:
        raise CarepathError(f"{where.get('carepath_exception_max_days')}: carepath_exception_max_days must be "
                            f"a whole number of days from 1 to 3650, not {max_days!r}")
    keys_from = where.get("carepath_change_approver_keys")
    keys = _keys(declared.get("carepath_change_approver_keys"), keys_from.parent if keys_from else Path("."),
                 keys_from or Path("."))
    digest = hashlib.sha256(canonical_bytes({str(p): hashlib.sha256(p.read_bytes()).hexdigest()
                                             for p in files})).hexdigest()
    return SitePolicy(site=str(site), protected=protected, approver_keys=keys, exception_max_days=max_days,
                      files=tuple(str(p) for p in files), sha256=digest, declared=dict(declared))


def exception_max_days(sources: Sequence[str] | None) -> int:
    """The longest an exception may run at this site (the default where the policy cannot be read:
    the gate's first task refuses such a run and says why)."""
    try:
        return load(list(sources or ())).exception_max_days
    except CarepathError:
        return exceptions.DEFAULT_MAX_DAYS


def overrides(policy: SitePolicy, variables: Mapping[str, Any], extra_var_names: Iterable[str] = ()) -> list[str]:
    """Why the run's variables disagree with the site's files (empty: they agree or are unset).

    Extra vars (``-e``, AWX launch variables) may not name a policy variable at all; any other
    source (``host_vars``, another group, a vault file) may only repeat the declared value.
    """
    found = [f"{name} cannot be given as an extra variable (-e): the site policy comes from the inventory's "
             "group_vars/all" for name in sorted(set(extra_var_names) & set(POLICY_VARS))]
    for name in POLICY_VARS:
        if name in extra_var_names or name not in variables:
            continue
        value = variables[name]
        if name == "carepath_protected":
            if bool(value) != policy.protected:
                found.append(f"carepath_protected is {value!r} for this host, but the site's files say "
                             f"{policy.protected}: set it once, in group_vars/all")
        elif name not in policy.declared or _plain(value) != policy.declared[name]:
            found.append(f"{name} is set for this host where the site's files do not declare that value: set it "
                         "once, in group_vars/all")
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return str(value)
