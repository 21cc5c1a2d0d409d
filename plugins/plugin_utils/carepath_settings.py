# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evidence callback's key and evidence folder, as the callback and the policy gate both read them.

``CAREPATH_EVIDENCE_KEY`` / ``CAREPATH_EVIDENCE_DIR`` win (what `carepath run` and an AWX credential
set); without them, the answer is carepath's own (``carepath.project``), the same `carepath run`, `lab
up` and `evidence keygen` give: in the checkout whose ansible.cfg is in use, else in the working folder
(an AWX job's project folder; never beside a ``~/.ansible.cfg`` or ``/etc/ansible/ansible.cfg``).
Callers import the carepath package first (``carepath_wheel.require``).
"""

from __future__ import annotations

import configparser
from pathlib import Path

from ansible import constants as C


def base_dir() -> Path:
    """The carepath checkout whose ansible.cfg is in use, else the working folder."""
    from carepath import project

    folder = Path(C.CONFIG_FILE).resolve().parent if C.CONFIG_FILE else None
    return folder if folder is not None and project.is_project(folder) else Path.cwd()


def evidence_key() -> Path:
    """The evidence signing key (``$CAREPATH_EVIDENCE_KEY``, else carepath's default)."""
    from carepath import project

    return project.evidence_key(base_dir())


def evidence_dir() -> Path:
    """Where bundles and ledgers are written (``$CAREPATH_EVIDENCE_DIR``, else carepath's default)."""
    from carepath import project

    return project.evidence_dir(base_dir())


#: Settings of the evidence callback that ansible.cfg no longer gives (the environment does, for every launcher).
REMOVED = ("signing_key", "evidence_dir")


def removed_settings() -> list[str]:
    """The ``[carepath_evidence]`` settings of the ansible.cfg in use that are no longer read."""
    if not C.CONFIG_FILE:
        return []
    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";",))
    try:
        parser.read(C.CONFIG_FILE, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return []
    return [key for key in REMOVED if parser.has_option("carepath_evidence", key)]
