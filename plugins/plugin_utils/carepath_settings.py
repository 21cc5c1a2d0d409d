# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evidence callback's key and evidence folder, as the callback and the policy gate both read them.

A setting (``[carepath_evidence]`` in ansible.cfg, or ``CAREPATH_EVIDENCE_KEY`` / ``CAREPATH_EVIDENCE_DIR``)
wins; without one, the answer is carepath's own (``carepath.project``), the same `carepath run`, `lab up`
and `evidence keygen` give, taken from the folder of the ansible.cfg in use (else the working folder).
Callers import the carepath package first (``carepath_wheel.require``).
"""

from __future__ import annotations

from pathlib import Path

from ansible import constants as C


def config_dir() -> Path:
    """The folder of the ansible.cfg in use, else the working folder."""
    return Path(C.CONFIG_FILE).resolve().parent if C.CONFIG_FILE else Path.cwd()


def evidence_key(configured: str | None) -> Path:
    """The evidence signing key: the setting, else carepath's default."""
    from carepath import project

    return Path(configured) if configured else project.evidence_key(config_dir())


def evidence_dir(configured: str | None) -> Path:
    """Where bundles and ledgers are written: the setting, else carepath's default."""
    from carepath import project

    return Path(configured) if configured else project.evidence_dir(config_dir())
