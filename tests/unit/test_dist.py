"""The collection build (src/carepath/dist.py): versions in step, what the tarball holds."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from carepath import dist
from carepath.errors import CarepathError
from carepath.procs import run

ROOT = Path(__file__).resolve().parents[2]


def test_the_collection_and_the_package_carry_one_version_and_the_pinned_ansible_core():
    assert dist.check(ROOT) == dist.project_version(ROOT)
    runtime = yaml.safe_load((ROOT / dist.COLLECTION_DIR / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    core = next(p.split("==")[1] for p in pins if p.startswith("ansible-core=="))
    major_minor = ".".join(core.split(".")[:2])
    assert runtime["requires_ansible"] == f">={major_minor}.0,<2.{int(major_minor.split('.')[1]) + 1}"


def test_a_galaxy_yml_with_another_version_stops_the_build(tmp_path: Path):
    root = tmp_path / "project"
    (root / dist.COLLECTION_DIR).mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    meta = dist.galaxy(ROOT) | {"version": "9.9.9"}
    (root / dist.COLLECTION_DIR / "galaxy.yml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    with pytest.raises(CarepathError, match=r"galaxy.yml has version 9.9.9 but pyproject.toml has"):
        dist.build(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_staged_collection_holds_real_roles_and_plugins_and_no_lab_playbook(tmp_path: Path):
    staged = dist.stage(ROOT, tmp_path)
    for folder in ("roles/bluegreen/tasks", "plugins/modules", "plugins/filter", "plugins/callback"):
        assert (staged / folder).is_dir() and not (staged / folder).is_symlink(), folder
    assert not (staged / "roles").is_symlink() and not (staged / "plugins").is_symlink()
    playbooks = {p.name for p in (staged / "playbooks").glob("*.yml")}
    assert {"site.yml", "deploy_hl7_engine.yml", "rollback_webapp.yml"} <= playbooks
    assert not {p for p in playbooks if p.startswith("lab_")}
    assert not list(staged.rglob("__pycache__"))
    assert (staged / "CHANGELOG.md").read_text(encoding="utf-8").startswith("# Changelog")


def test_ansible_galaxy_builds_a_collection_with_every_module_role_and_playbook(tmp_path: Path):
    staged = dist.stage(ROOT, tmp_path / "stage")
    galaxy_cli = str(Path(sys.executable).parent / "ansible-galaxy")
    run([galaxy_cli, "collection", "build", str(staged), "--output-path", str(tmp_path)])
    with tarfile.open(tmp_path / f"carepath-core-{dist.project_version(ROOT)}.tar.gz") as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["version"] == dist.project_version(ROOT)
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]
    modules = {p.name for p in (ROOT / "plugins" / "modules").glob("carepath_*.py")}
    assert {f"plugins/modules/{m}" for m in modules} <= names
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    assert {f"roles/{r}/meta/argument_specs.yml" for r in roles} <= names
    assert "playbooks/site.yml" in names and "LICENSE" in names


def test_ansible_builder_makes_a_build_context_that_installs_the_pins_the_wheel_and_the_collection(tmp_path: Path):
    version = dist.project_version(ROOT)
    wheel, collection = tmp_path / f"carepath-{version}-py3-none-any.whl", tmp_path / f"carepath-core-{version}.tar.gz"
    wheel.write_bytes(b"wheel")
    collection.write_bytes(b"collection")
    (tmp_path / "execution-environment.yml").write_text(
        yaml.safe_dump(dist.execution_environment(ROOT, wheel, collection, "example.org/ee-base:1")), encoding="utf-8")
    builder = str(Path(sys.executable).parent / "ansible-builder")
    run([builder, "create", "-f", str(tmp_path / "execution-environment.yml"), "-c", str(tmp_path / "context")])
    context = tmp_path / "context"
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    assert "ARG EE_BASE_IMAGE=\"example.org/ee-base:1\"" in containerfile
    assert f"pip install --no-deps --no-index {dist.EE_DIST_DIR}/{wheel.name}" in containerfile
    assert f"ansible-galaxy collection install --offline -p /usr/share/ansible/collections {dist.EE_DIST_DIR}/{collection.name}" \
        in containerfile
    assert (context / "_build" / "carepath" / wheel.name).read_bytes() == b"wheel"
    assert (context / "_build" / "carepath" / collection.name).read_bytes() == b"collection"
    requirements = (context / "_build" / "requirements.txt").read_text(encoding="utf-8").split()
    pinned = [r for r in dist.pins(ROOT) if not r.startswith(("ansible-core==", "ansible-runner=="))]
    assert pinned and set(pinned) <= set(requirements)
    core_and_runner = " ".join(r for r in dist.pins(ROOT) if r.startswith(("ansible-core==", "ansible-runner==")))
    assert f'ARG ANSIBLE_INSTALL_REFS="{core_and_runner}"' in containerfile
