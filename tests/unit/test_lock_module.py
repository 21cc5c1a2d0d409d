"""The lock module: one run at a time holds the lock; refusals name the holder; break and release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit import modules

lock = modules.load("carepath_lock")

ALICE = {"run_id": "run-1", "operator": "alice", "since": "2024-05-01T10:00:00Z", "detail": "deploy"}


def run(check: bool = False, **args: object) -> dict:
    return modules.run(lock, check, **args)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "locks" / "webapp-scheduling.lock"


def test_acquiring_creates_the_lock_with_the_holder(path: Path) -> None:
    result = run(path=str(path), holder=ALICE)
    assert not result["failed"] and result["acquired"] and not result["changed"]
    assert result["holder"] == ALICE and result["broken"] is None
    assert json.loads(path.read_text()) == ALICE


def test_another_run_is_refused_with_the_holder_named(path: Path) -> None:
    run(path=str(path), holder=ALICE)
    result = run(path=str(path), holder={"run_id": "run-2", "operator": "bob"}, what="deploy of scheduling",
                 hint="-e webapp_break_lock=true")
    assert result["failed"] and result["holder"] == ALICE
    assert result["msg"].startswith("deploy of scheduling refused: run run-1 (operator alice, deploy)")
    assert "since 2024-05-01T10:00:00Z" in result["msg"] and "-e webapp_break_lock=true" in result["msg"]
    assert str(path) in result["msg"]
    assert json.loads(path.read_text()) == ALICE


def test_the_same_run_taking_it_again_changes_nothing(path: Path) -> None:
    run(path=str(path), holder=ALICE)
    result = run(path=str(path), holder={"run_id": "run-1", "operator": "someone else"})
    assert not result["failed"] and result["acquired"] and result["holder"] == ALICE
    assert json.loads(path.read_text()) == ALICE


def test_break_lock_takes_it_over(path: Path) -> None:
    run(path=str(path), holder=ALICE)
    bob = {"run_id": "run-2", "operator": "bob"}
    result = run(path=str(path), holder=bob, break_lock=True)
    assert not result["failed"] and result["acquired"] and result["broken"] == ALICE
    assert json.loads(path.read_text()) == bob


def test_an_unreadable_lock_file_is_a_lock_held_by_someone(path: Path) -> None:
    path.parent.mkdir()
    path.write_text("{not json")
    result = run(path=str(path), holder=ALICE)
    assert result["failed"] and "run (unreadable lock file)" in result["msg"]
    assert path.read_text() == "{not json"


def test_release_removes_only_this_runs_lock(path: Path) -> None:
    run(path=str(path), holder=ALICE)
    other = run(path=str(path), holder={"run_id": "run-2"}, state="released")
    assert not other["failed"] and not other["acquired"] and other["holder"] == ALICE
    assert path.exists()
    mine = run(path=str(path), holder=ALICE, state="released")
    assert not mine["acquired"] and mine["holder"] is None and not path.exists()
    nothing = run(path=str(path), holder=ALICE, state="released")
    assert not nothing["failed"] and nothing["holder"] is None


def test_check_mode_checks_but_takes_and_gives_back_nothing(path: Path) -> None:
    result = run(check=True, path=str(path), holder=ALICE)
    assert result["acquired"] and not path.exists()
    run(path=str(path), holder=ALICE)
    assert run(check=True, path=str(path), holder={"run_id": "run-2"})["failed"]
    run(check=True, path=str(path), holder={"run_id": "run-2"}, break_lock=True)
    run(check=True, path=str(path), holder=ALICE, state="released")
    assert json.loads(path.read_text()) == ALICE


def test_a_holder_needs_a_run_id(path: Path) -> None:
    result = run(path=str(path), holder={"operator": "alice"})
    assert result["failed"] and result["msg"] == "holder.run_id is required"
    assert not path.exists()
