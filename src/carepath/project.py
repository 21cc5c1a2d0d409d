"""Where the carepath project lives on disk, and the paths derived from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carepath.errors import CarepathError

_MARKERS = ("ansible.cfg", "playbooks")
#: The evidence callback's settings in the environment (its options signing_key and evidence_dir).
EVIDENCE_KEY_ENV, EVIDENCE_DIR_ENV = "CAREPATH_EVIDENCE_KEY", "CAREPATH_EVIDENCE_DIR"
STATE_DIR_ENV = "CAREPATH_STATE_DIR"


def state_dir(base: Path) -> Path:
    """Local, never-committed state (lab keys, evidence, run folders): ``$CAREPATH_STATE_DIR``, else ``.carepath``
    in ``base`` (the checkout; for the collection's plugins, the checkout whose ansible.cfg is in use, else
    the working folder)."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env).expanduser().absolute() if env else Path(base) / ".carepath"


def evidence_key(base: Path) -> Path:
    """The evidence signing key: ``$CAREPATH_EVIDENCE_KEY``, else ``keys/evidence.key`` in the state folder.

    The one answer for `carepath run` (it passes it to the evidence callback), `lab up`, `evidence
    keygen`, and the evidence callback and policy gate under any other launcher (the callback's
    settings come from the environment only, so nothing else can name another key).
    """
    env = os.environ.get(EVIDENCE_KEY_ENV)
    return Path(env).expanduser().absolute() if env else state_dir(base) / "keys" / "evidence.key"


def evidence_dir(base: Path) -> Path:
    """Where runs write their evidence: ``$CAREPATH_EVIDENCE_DIR``, else ``evidence`` in the state folder."""
    env = os.environ.get(EVIDENCE_DIR_ENV)
    return Path(env).expanduser().absolute() if env else state_dir(base) / "evidence"


def is_project(path: Path) -> bool:
    """Whether ``path`` is a carepath checkout (ansible.cfg and playbooks/)."""
    return all((path / marker).exists() for marker in _MARKERS)


def find_root(start: Path | None = None) -> Path:
    """Return the project root.

    Order: ``$CAREPATH_PROJECT_DIR``; the checkout this package was installed from
    (editable install); the first parent of ``start`` (default: cwd) that holds
    ``ansible.cfg`` and ``playbooks/``.
    """
    env = os.environ.get("CAREPATH_PROJECT_DIR")
    if env:
        root = Path(env).resolve()
        if not is_project(root):
            raise CarepathError(
                f"CAREPATH_PROJECT_DIR={env} is not a carepath project "
                "(no ansible.cfg and playbooks/ there)"
            )
        return root
    source_root = Path(__file__).resolve().parents[2]
    if is_project(source_root):
        return source_root
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if is_project(candidate):
            return candidate
    raise CarepathError(
        "cannot find the carepath project (a directory with ansible.cfg and playbooks/)",
        hint="run carepath from inside the project, or set CAREPATH_PROJECT_DIR",
    )


@dataclass(frozen=True)
class Project:
    """Paths inside one carepath checkout."""

    root: Path

    @classmethod
    def discover(cls) -> Project:
        return cls(find_root())

    @property
    def ansible_cfg(self) -> Path:
        return self.root / "ansible.cfg"

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def lab_inventory(self) -> Path:
        return self.root / "inventories" / "lab"

    def lab_state(self, lab: str) -> Path:
        """The folder of one lab's local files (key, known hosts, TLS, ledger witness)."""
        return self.state_dir / "lab" / lab

    @property
    def state_dir(self) -> Path:
        return state_dir(self.root)

    @property
    def evidence_key(self) -> Path:
        return evidence_key(self.root)

    @property
    def evidence_dir(self) -> Path:
        return evidence_dir(self.root)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"
