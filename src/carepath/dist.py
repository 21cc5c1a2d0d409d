# SPDX-License-Identifier: GPL-3.0-or-later
"""What AWX / Ansible Automation Platform installs: the ``carepath.core`` collection and the
``carepath`` wheel its plugins import (``carepath dist``).

The collection's source is ``playbooks/collections/ansible_collections/carepath/core`` (its
``galaxy.yml`` and ``meta/runtime.yml``, with ``roles`` and ``plugins`` linked to the project's
own, so a checkout's playbooks resolve ``carepath.core.*`` next to them). The build stages a
real copy of it (links followed) with the playbooks, the README and the licence (its changelog is docs/changelog.md, linked),
then lets ``ansible-galaxy collection build`` make the tarball, so what is published is what
Galaxy and Automation Hub would build. The wheel comes from ``pip wheel``. Both carry the
version of ``pyproject.toml``; a ``galaxy.yml`` that disagrees stops the build. Beside them goes
an ansible-builder (schema 3) ``execution-environment.yml`` that installs both into an image.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from carepath.errors import CarepathError
from carepath.procs import local_tool, run

COLLECTION_DIR = Path("playbooks/collections/ansible_collections/carepath/core")
NAMESPACE, NAME = "carepath", "core"
#: Lab-only playbooks (lab_*.yml) stay out of the collection: they use the checkout's sources.
LAB_PREFIX = "lab_"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


#: The execution environment's default base: Automation Platform's minimal EE (RHEL 9, Python 3.11,
#: the Python carepath is pinned to). A site builds on the image its Automation Hub mirrors.
EE_BASE_IMAGE = "registry.redhat.io/ansible-automation-platform-25/ee-minimal-rhel9:latest"
EE_DIST_DIR = "/opt/carepath/dist"


@dataclass(frozen=True)
class Dist:
    collection: Path
    wheel: Path
    version: str
    execution_environment: Path


def _project(root: Path) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def project_version(root: Path) -> str:
    return str(_project(root)["version"])


def galaxy(root: Path) -> dict:
    return yaml.safe_load((root / COLLECTION_DIR / "galaxy.yml").read_text(encoding="utf-8"))


def check(root: Path) -> str:
    """The version both artifacts carry; a clear error when galaxy.yml and pyproject.toml disagree."""
    version, meta = project_version(root), galaxy(root)
    if (meta.get("namespace"), meta.get("name")) != (NAMESPACE, NAME):
        raise CarepathError(f"{COLLECTION_DIR}/galaxy.yml names {meta.get('namespace')}.{meta.get('name')}, "
                            f"not {NAMESPACE}.{NAME}")
    if str(meta.get("version")) != version:
        raise CarepathError(f"{COLLECTION_DIR}/galaxy.yml has version {meta.get('version')} but pyproject.toml "
                            f"has {version}: set both to the release's version")
    return version


def pins(root: Path) -> list[str]:
    """The wheel's pinned runtime dependencies, as pyproject.toml lists them."""
    return list(_project(root)["dependencies"])


def execution_environment(root: Path, wheel: Path, collection: Path, base_image: str = EE_BASE_IMAGE) -> dict:
    """An ansible-builder v3 definition: the pinned dependencies, then the wheel and the collection
    from this build, installed offline in the final image (the files sit beside the definition)."""
    requirements = pins(root)
    core = next(r for r in requirements if r.startswith("ansible-core=="))
    runner = next(r for r in requirements if r.startswith("ansible-runner=="))
    return {
        "version": 3,
        "images": {"base_image": {"name": base_image}},
        "dependencies": {
            "python_interpreter": {"package_system": "python3.11", "python_path": "/usr/bin/python3.11"},
            "ansible_core": {"package_pip": core},
            "ansible_runner": {"package_pip": runner},
            # The rest of the wheel's pins (the `ansible` package brings community.general).
            "python": [r for r in requirements if r not in (core, runner)],
        },
        "additional_build_files": [{"src": wheel.name, "dest": "carepath"},
                                   {"src": collection.name, "dest": "carepath"}],
        "additional_build_steps": {
            "prepend_final": [f"COPY _build/carepath {EE_DIST_DIR}"],
            "append_final": [
                f"RUN $PYCMD -m pip install --no-deps --no-index {EE_DIST_DIR}/{wheel.name}",
                f"RUN ansible-galaxy collection install --offline -p /usr/share/ansible/collections "
                f"{EE_DIST_DIR}/{collection.name}",
                "RUN ansible-doc carepath.core.carepath_observe > /dev/null && $PYCMD -c 'import carepath.evidence'",
            ],
        },
    }


def stage(root: Path, dest: Path) -> Path:
    """A plain copy of the collection in ``dest/ansible_collections/carepath/core``, ready to build."""
    source = root / COLLECTION_DIR
    target = dest / "ansible_collections" / NAMESPACE / NAME
    shutil.copytree(source, target, symlinks=False, ignore=IGNORED)  # the links become real folders
    (target / "playbooks").mkdir()
    for playbook in sorted((root / "playbooks").glob("*.yml")):
        if not playbook.name.startswith(LAB_PREFIX):
            shutil.copy2(playbook, target / "playbooks" / playbook.name)
    shutil.copy2(root / "README.md", target / "README.md")
    shutil.copy2(root / "LICENSE", target / "LICENSE")
    return target


def build(root: Path, out: Path, base_image: str = EE_BASE_IMAGE) -> Dist:
    """Build the collection tarball, the wheel and the execution environment's definition into ``out``."""
    version = check(root)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="carepath-dist-") as tmp:
        staged = stage(root, Path(tmp))
        run([local_tool("ansible-galaxy"), "collection", "build", str(staged), "--output-path", str(out), "--force"])
    collection = out / f"{NAMESPACE}-{NAME}-{version}.tar.gz"
    leftover = not (root / "build").exists()  # setuptools builds in the checkout; tidy what it adds
    try:
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(root)],
            what="pip wheel")
    finally:
        if leftover:
            shutil.rmtree(root / "build", ignore_errors=True)
    wheel = out / f"carepath-{version}-py3-none-any.whl"
    for artifact in (collection, wheel):
        if not artifact.is_file():
            raise CarepathError(f"the build did not make {artifact}")
    ee = out / "execution-environment.yml"
    ee.write_text("---\n# Made by `carepath dist`: `ansible-builder build -f execution-environment.yml` here.\n"
                  + yaml.safe_dump(execution_environment(root, wheel, collection, base_image), sort_keys=False),
                  encoding="utf-8")
    return Dist(collection=collection, wheel=wheel, version=version, execution_environment=ee)

