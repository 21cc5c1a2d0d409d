"""A site's change-control policy, read from the inventory's own files and never from run variables.

Whether an inventory is protected, who may approve its changes, its site name and how long an
exception may run are the site's policy. They are read from the files under the inventory's
``group_vars/all`` (``all.yml``, ``all.yaml``, ``all.json``, or every file in ``group_vars/all/``)::

    carepath_site: production                   # the ledger's name; a protected site must set it
    carepath_protected: true
    carepath_change_approver_keys:              # ed25519 public keys; relative paths are relative to the file
      - approvers/alice.pub
    carepath_exception_max_days: 365            # longest allowed exception (default 365)

They are *not* taken from Ansible's variables, because ``-e`` (and AWX's launch-time extra vars)
override every variable: a run that tries to change them (``-e carepath_protected=false``, a
``host_vars`` file, another group, the inventory file itself, a vault file) is refused by the gate,
see :func:`overrides`. The files are found as Ansible finds them: an inventory path that exists is a
path even with a comma in it, and ``group_vars/all.yml`` may be a folder. Inline ``!vault`` values
are read as opaque (a policy variable must be plain); whole-file vaults are not read at all.

A protected site must name itself (``carepath_site``): its name is what its approvals are checked
against, so it never comes from the ``-i`` path or the environment. The name must be usable as an
evidence name (letters, digits, ``.``, ``_``, ``-``; at most 64).

Where the inventory has no files (AWX hands an execution node a generated inventory), the policy
comes from the YAML file named by ``CAREPATH_SITE_POLICY`` (same keys; AWX sets it through a
credential or the execution environment, not at launch). It is used only when the inventory's files
declare no policy variable at all; when they declare any, the file is ignored entirely (and the
recorded policy says so).
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
from carepath.evidence.canonical import canonical_bytes, plain

POLICY_ENV = "CAREPATH_SITE_POLICY"
#: The ledger of runs whose site policy cannot be read (all refused by the gate): never a real site's.
UNREADABLE_SITE = "unreadable-site-policy"
SITE_ENV = "CAREPATH_SITE"
#: The variables that make up a site's policy; none may be given as a run variable.
POLICY_VARS = ("carepath_site", "carepath_protected", "carepath_change_approver_keys", "carepath_exception_max_days")
_SUFFIXES = (".yml", ".yaml", ".json")
#: A site's name is the name of its evidence ledger (``carepath.evidence.bundle.NAME_RE``, at most 64).
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Vaulted:
    """An inline ``!vault`` value: read as an opaque marker (its secret is not needed, nor wanted)."""

    def __repr__(self) -> str:
        return "<vaulted>"


class _Loader(yaml.SafeLoader):
    """YAML as Ansible reads variables files: ``!vault`` values are opaque, ``!unsafe`` ones plain."""


def _vaulted(loader: yaml.SafeLoader, node: yaml.Node) -> Vaulted:
    return Vaulted()


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


for _tag in ("!vault", "!vault-encrypted"):
    _Loader.add_constructor(_tag, _vaulted)
_Loader.add_constructor("!unsafe", _unsafe)


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
    #: what the evidence should know about how the policy was read (e.g. CAREPATH_SITE_POLICY ignored)
    notes: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        record = {"site": self.site, "protected": self.protected,
                  "approver_keys": [str(p) for p in self.approver_keys],
                  "exception_max_days": self.exception_max_days, "files": list(self.files), "sha256": self.sha256}
        if self.notes:
            record["notes"] = list(self.notes)
        return record


def _host_list(source: str) -> bool:
    """Whether Ansible reads ``source`` as a host list (``web1,web2``) rather than a path: a comma, and no
    such path (ansible.inventory.manager, the host_list plugin's ``verify_file``)."""
    return "," in source and not os.path.exists(source)


def inventory_name(sources: Sequence[str]) -> str:
    """The site's default name: its inventory's name.

    ``inventories/production`` is ``production``; ``inventories/lab/hosts.yml`` is ``lab``; an
    inline host list (``-i web1,``) is ``adhoc``.
    """
    if not sources or _host_list(str(sources[0])):
        return "adhoc"
    path = Path(sources[0])
    name = path.parent.name if path.suffix in (".yml", ".yaml", ".ini", ".json") or path.stem in ("hosts", "inventory") \
        else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    return name[:64] or "default"


def _inventory_dirs(sources: Iterable[str]) -> list[Path]:
    dirs: list[Path] = []
    for source in sources:
        if _host_list(str(source)):
            continue
        path = Path(source)
        base = path if path.is_dir() else path.parent
        if base not in dirs:
            dirs.append(base)
    return dirs


def _folder_files(folder: Path) -> list[Path]:
    """The files Ansible reads in a variables folder (``DataLoader._get_dir_vars_files``)."""
    found: list[Path] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.name.endswith("~"):
            continue
        if path.is_dir():
            if not path.suffix:
                found += _folder_files(path)
        elif path.is_file() and path.suffix in ("", *_SUFFIXES):
            found.append(path)
    return found


def _group_all_files(base: Path) -> list[Path]:
    """The files Ansible reads for group ``all`` of an inventory in ``base``: ``all``, ``all.yml``, ``all.yaml``,
    ``all.json``, each a file or a folder (Ansible takes the first that exists; all of them are read here,
    so none can hold a policy unseen)."""
    group_vars = base / "group_vars"
    found: list[Path] = []
    for suffix in ("", *_SUFFIXES):
        path = group_vars / f"all{suffix}"
        if path.is_dir():
            found += _folder_files(path)
        elif path.is_file():
            found.append(path)
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CarepathError(f"cannot read the site policy in {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"$ANSIBLE_VAULT"):
        # A whole-file vault holds secrets, not policy: it is not read. If it sets a policy variable
        # anyway, each host sees a value the files do not declare and the gate refuses (see overrides).
        return {}
    try:
        loaded = yaml.load(data, Loader=_Loader)  # noqa: S506 - a SafeLoader, with !vault and !unsafe added
    except yaml.YAMLError as exc:
        raise CarepathError(f"{path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CarepathError(f"{path} must hold a mapping of variables")
    found = {k: v for k, v in loaded.items() if k in POLICY_VARS}
    for name, value in found.items():
        if _holds_vaulted(value):
            raise CarepathError(f"{path}: {name} is vault-encrypted; the site policy must be plain",
                                hint=f"write {name} without !vault: it is policy, not a secret")
    return found


def _holds_vaulted(value: Any) -> bool:
    if isinstance(value, Vaulted):
        return True
    if isinstance(value, dict):
        return any(_holds_vaulted(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_vaulted(v) for v in value)
    return False


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
    notes: list[str] = []
    extra_file = environ.get(POLICY_ENV)
    if extra_file and declared:
        # The inventory's files hold the policy: the file named in the environment may not add to it,
        # rename the site, list other approvers or lengthen exceptions.
        notes.append(f"{POLICY_ENV}={extra_file} was ignored: the inventory's files declare the site policy "
                     f"({', '.join(sorted(declared))})")
    elif extra_file:
        path = Path(extra_file)
        if not path.is_file():
            raise CarepathError(f"{POLICY_ENV}={extra_file}: no such file")
        files.append(path)
        for name, value in _read(path).items():
            declared[name] = value
            where[name] = path
    protected = declared.get("carepath_protected", False)
    if not isinstance(protected, bool):
        raise CarepathError(f"{where['carepath_protected']}: carepath_protected must be true or false, "
                            f"not {protected!r}")
    site = declared.get("carepath_site")
    if site is not None and not (isinstance(site, str) and SITE_NAME.fullmatch(site)):
        raise CarepathError(f"{where['carepath_site']}: carepath_site {site!r} is not a site name",
                            hint="letters, digits, . _ - (1 to 64, starting with a letter or digit): it names "
                                 "the site's evidence ledger")
    if site is None and protected:
        # A protected site's name is what its approvals are checked against: never the -i path's or
        # the environment's, which the operator chooses.
        raise CarepathError(f"{where['carepath_protected']}: a protected site must name itself: set carepath_site "
                            "in group_vars/all", hint="carepath_site: <the name its approvals are made for>")
    if site is None:
        env_site = environ.get(SITE_ENV)
        site = env_site if env_site and SITE_NAME.fullmatch(env_site) else inventory_name(sources)
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
                      files=tuple(str(p) for p in files), sha256=digest, declared=dict(declared), notes=tuple(notes))


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
    source (``host_vars``, another group, the inventory file itself, a vault file) may only repeat
    the declared value.
    """
    found = [f"{name} cannot be given as an extra variable (-e): the site policy comes from the inventory's "
             "group_vars/all" for name in sorted(set(extra_var_names) & set(POLICY_VARS))]
    for name in POLICY_VARS:
        if name in extra_var_names or name not in variables:
            continue
        value = variables[name]
        if name == "carepath_protected":
            if not (isinstance(value, bool) and value is policy.protected):
                found.append(_elsewhere(name, f"this host has carepath_protected={_shown(value)}, but the site "
                                              f"policy says {str(policy.protected).lower()}"))
        elif name not in policy.declared or plain(value) != policy.declared[name]:
            found.append(_elsewhere(name, f"this host has a value of {name} that the site policy does not declare"))
    return found


def _elsewhere(name: str, what: str) -> str:
    return (f"{what}: the site policy is read only from plain, unvaulted files in the inventory's group_vars/all, "
            f"and this host's {name} comes from elsewhere (host_vars, another group, the inventory file itself, "
            f"or a vault-encrypted file); declare {name} once, in plain group_vars/all, and nowhere else")


def _shown(value: Any) -> str:
    """A host's value of carepath_protected, as the operator wrote it (never a vaulted secret)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)) or value is None:
        return repr(value)
    if type(value) is str and len(value) <= 20:
        return repr(value)
    return "a value that is not true or false"
