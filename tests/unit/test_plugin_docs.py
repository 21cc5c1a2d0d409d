"""Every module and plugin documents itself in YAML that ansible-doc can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted([*ROOT.glob("plugins/modules/*.py"), *ROOT.glob("plugins/callback/*.py")])


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.name)
def test_documentation_blocks_are_valid_yaml(path: Path) -> None:
    blocks = {node.targets[0].id: node.value.value for node in ast.parse(path.read_text()).body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert "DOCUMENTATION" in blocks
    if "modules" in path.parts:
        assert {"EXAMPLES", "RETURN"} <= set(blocks)
    for name, text in blocks.items():
        assert yaml.safe_load(text) is not None, f"{name} is empty"


SOURCES = sorted([*ROOT.glob("plugins/**/*.py"), *ROOT.glob("src/carepath/**/*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_ansible_import_and_no_sys_path_edit(path: Path) -> None:
    """Issue 17: the collection's plugins and the package use ansible-core's public modules only, and find
    the carepath package installed (the wheel), never by editing sys.path."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = []
        assert not any(n.startswith(("ansible._internal", "ansible.module_utils._internal"))
                       for n in names), f"{path.name}:{node.lineno} imports {names}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "path" and isinstance(node.value.value, ast.Name) \
                and node.value.value.id == "sys" and node.attr in ("insert", "append", "extend"):
            raise AssertionError(f"{path.name}:{node.lineno} edits sys.path")
