"""carepath as AWX / Automation Platform installs it: the collection tarball and the wheel built by
`carepath dist`, installed offline into a fresh virtualenv and collections folder outside the
checkout, run the collection's own playbook (FQCNs only) against a lab host and leave a bundle
that the installed `carepath evidence verify` accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from carepath import dist
from tests.conftest import ROOT
from tests.integration.conftest import Baseline, Lab

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder outside the checkout with the wheel in ``venv`` and the collection in ``collections``.

    Offline: pip gets only the wheel (--no-index), its pinned dependencies come from the
    project's virtualenv through a .pth line (they are what an execution environment would
    hold); ansible-galaxy installs the tarball --offline, community.general found installed.
    """
    site = tmp_path_factory.mktemp("installed")
    built = dist.build(ROOT, site / "dist")
    base = getattr(sys, "_base_executable", sys.executable)
    assert _run([base, "-m", "venv", str(site / "venv")], site).returncode == 0
    purelib = Path(_run([str(site / "venv" / "bin" / "python"), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], site).stdout.strip())
    (purelib / "carepath-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    pip = _run([str(site / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                str(built.wheel)], site)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    galaxy = _run([str(site / "venv" / "bin" / "python"), "-m", "ansible.cli.galaxy", "collection", "install",
                   "--offline", "-p", str(site / "collections"), str(built.collection)], site)
    assert galaxy.returncode == 0 and "carepath.core:" in galaxy.stdout, galaxy.stdout + galaxy.stderr
    return site


def test_the_installed_collection_runs_its_playbook_by_fqcn_and_leaves_a_verifiable_bundle(lab: Lab, installed: Path):
    Baseline.changed(lab)  # the installed collection's playbook, with its own settings, runs on the lab
    site, python = installed, str(installed / "venv" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAREPATH_", "ANSIBLE_"))}
    env.update(ANSIBLE_CONFIG=str(site / "ansible.cfg"), ANSIBLE_HOST_KEY_CHECKING="True",
               PATH=f"{site / 'venv' / 'bin'}:{env['PATH']}")
    where = _run([python, "-c", "import carepath; print(carepath.__file__)"], site, env)
    assert where.stdout.startswith(str(site / "venv")), where.stdout  # the wheel, not the checkout
    # The key where the installed keygen puts it by default, which is where the callback looks by default
    # outside a checkout (.carepath/ in the working folder): one key path, with nothing configured.
    keygen = _run([str(site / "venv" / "bin" / "carepath"), "evidence", "keygen"], site, env)
    assert keygen.returncode == 0, keygen.stderr
    assert (site / ".carepath" / "keys" / "evidence.key").exists(), keygen.stdout
    (site / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = collections\ncallbacks_enabled = carepath.core.carepath_evidence\n"
        "interpreter_python = auto_silent\n", encoding="utf-8")

    proc = _run([python, "-m", "ansible.cli.playbook", "-i", str(lab.inventory), "carepath.core.site",
                 "--tags", "time_sync", "--limit", "it-bookworm"], site, env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "carepath.core.time_sync : " in proc.stdout
    for checkout in (ROOT / "roles", ROOT / "plugins", ROOT / "playbooks"):  # nothing came from the checkout
        assert str(checkout) not in proc.stdout + proc.stderr

    bundles = sorted((site / ".carepath" / "evidence").glob("*/bundles/*-site-*"))
    assert len(bundles) == 1, sorted(p.relative_to(site) for p in (site / ".carepath").rglob("*"))
    verify = _run([str(site / "venv" / "bin" / "carepath"), "evidence", "verify", str(bundles[0]),
                   "--key", ".carepath/keys/evidence.pub"], site, env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
