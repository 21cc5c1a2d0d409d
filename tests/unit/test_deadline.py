"""plugins/module_utils/carepath_deadline: tries until done or the wall-clock deadline, never past it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "carepath_deadline", Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "carepath_deadline.py")
assert spec is not None and spec.loader is not None
deadline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deadline)


class FakeTime:
    def __init__(self, per_try: float) -> None:
        self.now, self.per_try, self.sleeps = 0.0, per_try, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_stops_at_the_first_success() -> None:
    fake = FakeTime(0.1)
    answers = iter([False, False, True])

    def attempt():
        fake.now += fake.per_try
        return next(answers), {"answer": "x"}

    result = deadline.until_deadline(attempt, 10, 0.5, clock=fake.clock, sleep=fake.sleep)
    assert result == {"answer": "x", "attempts": 3, "elapsed": 1.3} and fake.sleeps == [0.5, 0.5]


def test_gives_up_before_a_try_that_could_not_end_in_time_and_always_tries_once() -> None:
    fake = FakeTime(1.0)

    def attempt():
        fake.now += fake.per_try
        return False, {}

    result = deadline.until_deadline(attempt, 5, 1.0, clock=fake.clock, sleep=fake.sleep)
    assert result["attempts"] == 3 and result["elapsed"] <= 5
    assert deadline.until_deadline(attempt, 0, 1.0, clock=fake.clock, sleep=fake.sleep)["attempts"] == 1
