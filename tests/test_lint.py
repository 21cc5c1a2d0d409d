"""The whole project passes ansible-lint's production profile (settings in .ansible-lint)."""

from __future__ import annotations

import subprocess

from tests.conftest import BIN, ROOT, cli_env


def test_ansible_lint_production_profile():
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--nocolor"], capture_output=True, text=True,
        env=cli_env(), cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr


def test_ruff_finds_nothing_in_the_python_code():
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "src", "tests", "plugins", "bench"], capture_output=True, text=True,
        env=cli_env(), cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
