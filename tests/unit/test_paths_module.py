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
