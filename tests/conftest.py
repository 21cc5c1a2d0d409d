"""Shared test helpers: where the project is, and how to call the real `carepath` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a user of the project's virtualenv has."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def carepath(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the installed `carepath` command and capture what a user would see."""
    return subprocess.run(
        [str(BIN / "carepath"), *args], capture_output=True, text=True, env=env or cli_env(), cwd=cwd, check=False
    )


@pytest.fixture
def root() -> Path:
    return ROOT
