"""The path attribute module: entries, defaults and the refusal to follow links."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "carepath_paths", Path(__file__).resolve().parents[2] / "plugins" / "modules" / "carepath_paths.py"
)
paths = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paths)

DEFAULTS = {"state": "file", "owner": "root", "group": "root", "mode": None}


def test_a_plain_path_takes_the_module_options() -> None:
    assert paths.normalise("/etc/passwd", {**DEFAULTS, "mode": "0644"}) == {
        "path": "/etc/passwd", "state": "file", "owner": "root", "group": "root", "mode": "0644"}


def test_a_dict_overrides_the_module_options() -> None:
    entry = paths.normalise({"path": "/etc/shadow", "group": "shadow", "mode": "0640"}, DEFAULTS)
    assert (entry["group"], entry["mode"], entry["owner"]) == ("shadow", "0640", "root")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("etc/passwd", "absolute path"),
        ({"path": "/etc/passwd", "mode": "0644", "recurse": True}, "unknown keys recurse"),
        ({"path": "/etc/passwd"}, "no mode given"),
        ({"path": "/etc/x", "mode": "0644", "state": "link"}, "state must be file or directory"),
    ],
)
def test_bad_entries_are_named(raw: object, message: str) -> None:
    assert message in paths.normalise(raw, DEFAULTS)


def test_links_are_refused_and_missing_paths_read_as_none(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    target.chmod(0o640)
    (tmp_path / "link").symlink_to(target)
    assert paths.current(str(target))[2] == 0o640
    assert paths.current(str(tmp_path / "missing")) is None
    with pytest.raises(ValueError, match="symbolic link"):
        paths.current(str(tmp_path / "link"))


def test_missing_parents_are_traversable_whatever_the_umask(tmp_path: Path) -> None:
    """On a hardened host (umask 027) the parents of a service's folder must still let its user through:
    /srv/carepath made 0750 by one role closed the web app's folder to its user (issue 18's demo)."""
    import json
    import os
    import stat
    import subprocess

    from tests.conftest import BIN, ROOT, cli_env

    if os.geteuid() != 0:
        pytest.fail("the tests run as root (make test): carepath_paths sets owners")
    leaf = tmp_path / "srv" / "carepath" / "hl7" / "adt"
    args = json.dumps({"state": "directory", "paths": [{"path": str(leaf), "mode": "0750"}]})
    proc = subprocess.run(["sh", "-c", f"umask 027; exec {BIN / 'ansible'} localhost -c local -o "
                           f"-m carepath.core.carepath_paths -a '{args}'"],
                          capture_output=True, text=True, cwd=ROOT, env=cli_env(), check=False)
    assert proc.returncode == 0 and "CHANGED" in proc.stdout, proc.stdout + proc.stderr
    for parent in (tmp_path / "srv", tmp_path / "srv" / "carepath", tmp_path / "srv" / "carepath" / "hl7"):
        assert stat.S_IMODE(parent.stat().st_mode) == 0o755, parent
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o750
    # carepath_template's drop-in folders too: /etc/carepath stayed 0750 under the TLS folder (0750) it was made
    # for, and the HL7 engine's user could not read its configuration below it.
    dest = tmp_path / "etc" / "carepath" / "tls" / "ca.crt"
    args = json.dumps({"content": "x\n", "dest": str(dest), "mode": "0644", "directory_mode": "0750"})
    proc = subprocess.run(["sh", "-c", f"umask 027; exec {BIN / 'ansible'} localhost -c local -o "
                           f"-m carepath.core.carepath_template -a '{args}'"],
                          capture_output=True, text=True, cwd=ROOT, env=cli_env(), check=False)
    assert proc.returncode == 0 and "CHANGED" in proc.stdout, proc.stdout + proc.stderr
    assert [stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "etc", dest.parent.parent, dest.parent)] == [
        0o755, 0o755, 0o750]


def test_missing_parents_are_found_outermost_first(tmp_path: Path) -> None:
    from ansible_collections.carepath.core.plugins.module_utils import carepath_dirs

    (tmp_path / "a").mkdir()
    assert carepath_dirs.missing_parents(str(tmp_path / "a" / "b" / "c" / "d")) == [
        str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "c")]
    assert carepath_dirs.missing_parents(str(tmp_path / "a")) == []
