"""Every role documents each variable once: defaults, argument spec and README agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_spec_matches_defaults(role: Path):
    defaults = _load(role / "defaults" / "main.yml")
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults/main.yml and meta/argument_specs.yml list different variables"
    for name, spec in options.items():
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("default") == defaults[name], f"{name}: spec default differs from defaults/main.yml"
        if spec.get("type") == "list":
            assert "elements" in spec, f"{name}: a list needs 'elements'"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_carry_the_role_prefix_and_an_enabled_switch(role: Path):
    defaults = _load(role / "defaults" / "main.yml")
    assert f"{role.name}_enabled" in defaults
    assert [n for n in defaults if not n.startswith(f"{role.name}_")] == []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_documents_every_variable(role: Path):
    readme = (role / "README.md").read_text(encoding="utf-8")
    missing = [name for name in _load(role / "defaults" / "main.yml") if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_role_has_a_molecule_scenario(role: Path):
    scenario = role.parents[1] / "molecule" / role.name
    assert (scenario / "molecule.yml").is_file()
    assert (scenario / "converge.yml").is_file()
    assert list((scenario / "tests").glob("test_*.py"))


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_converge_sets_only_variables_the_role_reads(role: Path):
    defaults = _load(role / "defaults" / "main.yml")
    plays = _load(role.parents[1] / "molecule" / role.name / "converge.yml")
    set_vars = {name for play in plays for name in (play.get("vars") or {})}
    assert sorted(set_vars - set(defaults)) == []
