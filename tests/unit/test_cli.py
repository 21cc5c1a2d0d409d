"""The `carepath` command's errors: clear messages and exit codes, never a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import BIN, carepath, cli_env


def _assert_clean_error(proc, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert text in proc.stderr


def test_unknown_playbook():
    proc = carepath("run", "no_such_playbook")
    _assert_clean_error(proc, "carepath: error: unknown playbook 'no_such_playbook'")
    assert "choose one of: " in proc.stderr and "site" in proc.stderr.split("choose one of: ")[1]


def test_lab_not_up(tmp_path: Path):
    (tmp_path / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text("---\n", encoding="utf-8")
    proc = carepath("run", "site", env=cli_env(CAREPATH_PROJECT_DIR=str(tmp_path)))
    _assert_clean_error(proc, "the lab is not up")


def test_topology_with_duplicate_host(tmp_path: Path):
    topo = tmp_path / "t.yml"
    topo.write_text(yaml.safe_dump({"hosts": [{"name": "app1"}, {"name": "app1"}]}), encoding="utf-8")
    proc = carepath("lab", "up", "--topology", str(topo))
    _assert_clean_error(proc, f"{topo}: host 'app1': duplicate host name")


def test_topology_with_unknown_release(tmp_path: Path):
    topo = tmp_path / "t.yml"
    topo.write_text(yaml.safe_dump({"hosts": [{"name": "app1", "release": "jessie"}]}), encoding="utf-8")
    proc = carepath("lab", "status", "--topology", str(topo))
    _assert_clean_error(proc, "unknown Debian release 'jessie'")


def test_podman_missing(tmp_path: Path):
    # Only the virtualenv on PATH: no podman there.
    proc = carepath("lab", "status", env=cli_env(PATH=str(BIN)))
    _assert_clean_error(proc, "podman is not installed or not on PATH")
    assert "apt-get install" in proc.stderr


def test_usage_errors_come_from_argparse():
    proc = carepath("lab", "sideways")
    assert proc.returncode == 2
    assert "invalid choice: 'sideways'" in proc.stderr


def _leaves(parser, prefix: str = "carepath") -> list[str]:
    import argparse

    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _leaves(sub, f"{prefix} {name}") or [f"{prefix} {name}"]
    return found


def test_help_lists_every_command_and_each_one_has_help():
    """Issue 18: `carepath --help` names every command a user can run, and each of them answers --help."""
    from carepath.cli import build_parser

    leaves = _leaves(build_parser())
    assert len(leaves) >= 17 and "carepath evidence report" in leaves and "carepath lab up" in leaves
    shown = carepath("--help")
    assert shown.returncode == 0
    listed = [line.strip().split("  ")[0] for line in shown.stdout.splitlines() if line.startswith("  carepath ")]
    assert listed == leaves, shown.stdout
    for command in listed:
        proc = carepath(*command.split()[1:], "--help")
        assert proc.returncode == 0 and proc.stdout.startswith("usage: " + command), (command, proc.stdout[:200])
