"""The whole project passes ansible-lint's production profile (settings in .ansible-lint), ruff, and
ansible-test sanity on the collection as it is built."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from carepath import dist
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


def test_ansible_test_sanity_passes_on_the_built_collection(tmp_path: Path):
    """Every sanity test of ansible-core 2.19 on the collection as `carepath dist` stages it (ignores:
    the collection's tests/sanity/ignore-2.19.txt). Its virtualenvs are kept in the checkout's state."""
    collection = dist.stage(ROOT, tmp_path)
    home = ROOT / ".carepath" / "ansible-test-home"  # ansible-test keeps its virtualenvs under ~/.ansible/test
    env = cli_env(HOME=str(home))

    def sanity() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ansible-test"), "sanity", "--python", "3.11", "--requirements", "--color", "no"],
                              capture_output=True, text=True, env=env, cwd=collection, check=False, timeout=1800)

    proc = sanity()
    wanted = re.search(r"can be manually downloaded and saved to: (\S+)", proc.stdout + proc.stderr)
    if wanted:  # its pip bootstrap script is not reachable from here: give it ours, once
        Path(wanted.group(1)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "tests" / "sanity" / "get_pip.py", wanted.group(1))
        proc = sanity()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, "\n".join(line for line in out.splitlines() if line.startswith(("ERROR", "FATAL")))[-6000:]
    assert 'Running sanity test "validate-modules"' in out and 'Running sanity test "import"' in out
