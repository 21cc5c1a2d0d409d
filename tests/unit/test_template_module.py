"""carepath_template keeps the directory it writes into root's, with directory_mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit import modules

template = modules.load("carepath_template")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to root needs root (CI runs as root)")


def test_an_existing_directory_gets_its_mode_back_even_when_the_file_is_unchanged(tmp_path: Path):
    tls = tmp_path / "tls"
    tls.mkdir(mode=0o755)
    (tls / "ca.crt").write_text("CA\n")
    os.chmod(tls / "ca.crt", 0o644)
    entry = {"content": "CA\n", "dest": str(tls / "ca.crt"), "mode": "0644", "directory_mode": "0750"}
    result = modules.run(template, files=[entry])
    assert not result["failed"] and result["changed"]
    assert stat.S_IMODE(tls.stat().st_mode) == 0o750
    assert modules.run(template, files=[entry])["changed"] is False


def test_without_directory_mode_the_directory_is_left_alone(tmp_path: Path):
    (tmp_path / "f").write_text("x\n")
    os.chmod(tmp_path / "f", 0o644)
    os.chmod(tmp_path, 0o755)
    result = modules.run(template, dest=str(tmp_path / "f"), content="x\n", mode="0644")
    assert result["changed"] is False and stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_a_missing_directory_is_created_with_directory_mode(tmp_path: Path):
    dest = tmp_path / "new.d" / "60-carepath.conf"
    result = modules.run(template, dest=str(dest), content="x\n", mode="0644", directory_mode="0700")
    assert not result["failed"] and result["changed"]
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700 and dest.read_text() == "x\n"


def test_a_relative_dest_in_files_is_refused_before_anything_is_written(tmp_path: Path):
    result = modules.run(template, files=[{"content": "x\n", "dest": "etc/motd", "mode": "0644"}])
    assert result["failed"] and "absolute dest" in result["msg"]
