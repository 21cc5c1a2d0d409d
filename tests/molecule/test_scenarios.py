"""Every Molecule scenario under molecule/: check mode, converge, idempotence, verify."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from carepath.lab import podman
from tests.conftest import BIN, ROOT, cli_env

SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


def molecule_env() -> dict[str, str]:
    """Container ulimits derived from our own hard limits, as the shared base config expects."""
    limits = podman.ulimits()
    return cli_env(CAREPATH_LAB_NOFILE=str(limits["nofile"]), CAREPATH_LAB_NPROC=str(limits["nproc"]))


@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, tmp_path: Path):
    log = tmp_path / "molecule.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [str(BIN / "molecule"), "test", "-s", scenario],
            stdout=out, stderr=subprocess.STDOUT, env=molecule_env(), cwd=ROOT, check=False,
        )
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{_failures(text)}{text[-4000:]}"
    assert "idempotence: Executed: Successful" in _plain(text)
    assert "verify: Executed: Successful" in _plain(text)


def _plain(text: str) -> str:
    """Molecule's output without colour codes or its arrow between scenario and step."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("➜ ", "")


def _failures(text: str) -> str:
    """The verifier's failure report (pytest's FAILURES section), which the end of the log no longer holds."""
    plain = _plain(text)
    start = plain.find("= FAILURES")
    if start < 0:
        return ""
    end = plain.find("short test summary info", start)
    return plain[start:end if end > 0 else start + 6000][:6000] + "\n...\n"
