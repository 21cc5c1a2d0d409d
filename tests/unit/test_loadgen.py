"""Which release may answer when: unexpected_versions over deploy windows (no wrk needed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from carepath.loadgen import Answer, Result, Window, unexpected_versions

DEPLOY = Window(start=10.0, end=20.0, versions=frozenset({"1.0", "2.0"}), after="2.0")
ROLLBACK = Window(start=30.0, end=40.0, versions=frozenset({"2.0", "1.0"}), after="1.0")


def _wrong(answers: list[tuple[float, str]], windows: Sequence[Window] = (DEPLOY, ROLLBACK)) -> list[tuple[float, str]]:
    found = unexpected_versions([Answer(at, 200, version) for at, version in answers], "1.0", windows)
    return [(a.at, a.version) for a in found]


def test_without_windows_only_the_first_release_may_answer() -> None:
    assert _wrong([(1.0, "1.0"), (99.0, "1.0"), (50.0, "2.0")], windows=[]) == [(50.0, "2.0")]


def test_answers_from_the_live_release_are_expected() -> None:
    answers = [(5.0, "1.0"), (10.0, "1.0"), (10.0, "2.0"), (15.0, "2.0"), (20.0, "1.0"),
               (25.0, "2.0"), (35.0, "2.0"), (45.0, "1.0")]
    assert _wrong(answers) == []


@pytest.mark.parametrize(
    ("at", "version", "why"),
    [
        (9.99, "2.0", "before the deploy only the first release is live"),
        (20.01, "1.0", "after the deploy only its 'after' release is live"),
        (29.0, "1.0", "between windows the previous window's release is live"),
        (15.0, "3.0", "inside a window only its versions may answer"),
        (40.5, "2.0", "after the rollback only the release rolled back to is live"),
    ],
)
def test_an_answer_from_a_release_not_live_then_is_reported(at: float, version: str, why: str) -> None:
    assert _wrong([(at, version)]) == [(at, version)], why


def test_every_wrong_answer_is_reported_in_order_with_its_details() -> None:
    answers = [Answer(1.0, 200, "2.0"), Answer(12.0, 200, "2.0"), Answer(25.0, 503, "1.0")]
    assert unexpected_versions(answers, "1.0", [DEPLOY]) == [answers[0], answers[2]]


def test_a_window_is_immutable_and_a_result_counts_every_kind_of_failure() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEPLOY.after = "3.0"  # type: ignore[misc]
    result = Result(answers=[], requests=100, errors={"connect": 1, "read": 0, "write": 2, "status": 3, "timeout": 4},
                    output="")
    assert result.failed == 10
