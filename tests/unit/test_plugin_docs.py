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
