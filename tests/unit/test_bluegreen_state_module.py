"""The blue-green state module: events applied to state.json, history.jsonl, and the rollback target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit import modules

bluegreen_state = modules.load("carepath_bluegreen_state")


def run(check: bool = False, **args: object) -> dict:
    return modules.run(bluegreen_state, check, **args)


def event(directory: Path, action: str, version: str, colour: str | None = None, check: bool = False, **extra: str) -> dict:
    return run(check=check, dir=str(directory),
               event={"action": action, "version": version, "colour": colour, "run_id": "run-1", **extra})


def history(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "history.jsonl").read_text().splitlines()]


def test_reading_an_app_never_deployed(tmp_path: Path) -> None:
    result = run(dir=str(tmp_path / "scheduling"))
    assert not result["failed"] and not result["changed"] and "carepath_release" not in result
    assert result["state"] == {"active": None, "colours": {}, "activations": [], "bad": {}}
    assert result["rollback_target"] == {"version": None, "bad": False, "colour": None}
    assert not (tmp_path / "scheduling").exists()


def test_events_are_applied_written_and_appended_to_the_history(tmp_path: Path) -> None:
    app = tmp_path / "scheduling"
    first = event(app, "installed", "1.0", "blue")
    assert first["changed"] and first["carepath_release"]["app"] == "scheduling"
    assert first["carepath_release"]["action"] == "installed" and first["carepath_release"]["at"]
    event(app, "activated", "1.0", "blue")
    installed = event(app, "installed", "2.0", "green")["state"]
    assert installed["colours"]["green"]["version"] == "2.0" and installed["colours"]["green"]["installed_at"]
    assert (installed["active"], installed["activations"]) == ("blue", ["1.0"])  # installed is not live
    result = event(app, "activated", "2.0", "green")
    state = json.loads((app / "state.json").read_text())
    assert state == result["state"]
    assert state["active"] == "green" and state["activations"] == ["1.0", "2.0"]
    assert {c: info["version"] for c, info in state["colours"].items()} == {"blue": "1.0", "green": "2.0"}
    assert [(h["action"], h["version"], h.get("colour")) for h in history(app)] == [
        ("installed", "1.0", "blue"), ("activated", "1.0", "blue"),
        ("installed", "2.0", "green"), ("activated", "2.0", "green")]
    assert result["rollback_target"] == {"version": "1.0", "bad": False, "colour": "blue", "reason": None}
    assert run(dir=str(app))["state"] == state  # reading gives back what was written


def test_rollback_target_walks_back_and_rolled_back_releases_are_dropped(tmp_path: Path) -> None:
    app = tmp_path / "app"
    for version, colour in (("1.0", "blue"), ("2.0", "green"), ("3.0", "blue")):
        event(app, "installed", version, colour)
        event(app, "activated", version, colour)
    result = run(dir=str(app))
    assert result["state"]["activations"] == ["1.0", "2.0", "3.0"]
    assert result["rollback_target"]["version"] == "2.0" and result["rollback_target"]["colour"] == "green"
    result = event(app, "rolled_back", "2.0", "green", from_version="3.0")
    assert result["state"]["active"] == "green" and result["state"]["activations"] == ["1.0", "2.0"]
    # 1.0 was replaced in blue by 3.0: the target is known, but no colour runs it any more.
    assert result["rollback_target"] == {"version": "1.0", "bad": False, "colour": None, "reason": None}


def test_a_release_activated_again_moves_to_the_end_once(tmp_path: Path) -> None:
    app = tmp_path / "app"
    event(app, "activated", "1.0", "blue")
    event(app, "activated", "2.0", "green")
    result = event(app, "activated", "1.0", "blue")
    assert result["state"]["activations"] == ["2.0", "1.0"]
    assert result["rollback_target"]["version"] == "2.0" and result["rollback_target"]["colour"] == "green"


@pytest.mark.parametrize("action", ["gate_failed", "smoke_failed"])
def test_failed_releases_are_marked_bad_until_they_go_live(tmp_path: Path, action: str) -> None:
    app = tmp_path / "app"
    event(app, "activated", "1.0", "blue")
    event(app, "activated", "2.0", "green")
    result = event(app, action, "1.0", reason="healthz 503")
    assert result["state"]["bad"]["1.0"]["reason"] == "healthz 503"
    assert result["state"]["bad"]["1.0"]["run_id"] == "run-1"
    assert result["rollback_target"]["bad"] and result["rollback_target"]["reason"] == "healthz 503"
    no_reason = event(app, action, "3.0")
    assert no_reason["state"]["bad"]["3.0"]["reason"] == action
    result = event(app, "activated", "1.0", "blue")
    assert "1.0" not in result["state"]["bad"] and "3.0" in result["state"]["bad"]


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path: Path) -> None:
    app = tmp_path / "app"
    event(app, "activated", "1.0", "blue")
    before = (app / "state.json").read_text()
    result = event(app, "activated", "2.0", "green", check=True)
    assert result["changed"] and result["state"]["active"] == "green"
    assert (app / "state.json").read_text() == before and len(history(app)) == 1


@pytest.mark.parametrize(
    ("bad_event", "message"),
    [
        ({"action": "deleted", "version": "1.0"}, "event.action must be one of installed, activated"),
        ({"action": "activated", "version": "1.0", "colour": "red"}, "event.colour must be blue or green, not 'red'"),
        ({"action": "activated", "colour": "blue"}, "event.version is required"),
    ],
)
def test_invalid_events_are_refused_and_nothing_is_written(tmp_path: Path, bad_event: dict, message: str) -> None:
    result = run(dir=str(tmp_path / "app"), event=bad_event)
    assert result["failed"] and message in result["msg"]
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("action", ["installed", "activated", "rolled_back"])
def test_an_event_that_moves_a_colour_must_name_it(tmp_path: Path, action: str) -> None:
    assert not event(tmp_path, "installed", "1.0", "blue")["failed"]
    result = event(tmp_path, action, "2.0")
    assert result["failed"] and "event.colour must be blue or green" in result["msg"]
    # Nothing was recorded: the history holds the first event only.
    assert [h["version"] for h in history(tmp_path)] == ["1.0"]


def test_a_cutover_keeps_its_kind_and_counts_and_drained_is_history_only(tmp_path: Path) -> None:
    engine = tmp_path / "adt"
    event(engine, "installed", "1.0", "blue")
    switched = run(dir=str(engine), kind="hl7_engine",
                   event={"action": "activated", "version": "1.0", "colour": "blue", "run_id": "r", "sessions_cut": 3})
    assert switched["carepath_release"]["kind"] == "hl7_engine" and switched["carepath_release"]["sessions_cut"] == 3
    before = json.loads((engine / "state.json").read_text())
    drained = run(dir=str(engine), kind="hl7_engine",
                  event={"action": "drained", "version": "1.0", "colour": "green", "queued_at_switch": 7,
                         "drained_seconds": 0.4})
    assert drained["changed"] and json.loads((engine / "state.json").read_text()) == before
    assert history(engine)[-1]["queued_at_switch"] == 7 and history(engine)[-1]["kind"] == "hl7_engine"


def test_event_values_must_be_scalars(tmp_path: Path) -> None:
    result = run(dir=str(tmp_path / "adt"), event={"action": "drained", "version": "1.0", "stats": {"a": 1}})
    assert result["failed"] and "stats" in result["msg"] and not (tmp_path / "adt").exists()
