"""An exception may not run for ever: its expiry is at most a maximum number of days ahead (default 365)."""

from __future__ import annotations

import datetime as dt

from carepath import controls, exceptions, policy

TODAY = dt.date(2026, 12, 5)
CATALOG = controls.load()
IDS = [c.id for c in CATALOG]
ENTRY = {"control": "CP-SSH-05", "reason": "Legacy analyser logs in with a password", "owner": "ops@x"}


def test_an_expiry_in_9999_is_refused_with_the_maximum_named() -> None:
    found = exceptions.problems([ENTRY | {"expires": "9999-01-01"}], IDS, TODAY)
    assert found == [
        "carepath_exceptions[0] (CP-SSH-05): expires 9999-01-01 is more than 365 days ahead; the site allows at most "
        "365 (carepath_exception_max_days); choose an earlier date and renew it when it comes"
    ]


def test_the_default_maximum_is_one_year_to_the_day() -> None:
    last_day = (TODAY + dt.timedelta(days=365)).isoformat()
    one_more = (TODAY + dt.timedelta(days=366)).isoformat()
    assert exceptions.problems([ENTRY | {"expires": last_day}], IDS, TODAY) == []
    (found,) = exceptions.problems([ENTRY | {"expires": one_more}], IDS, TODAY)
    assert f"expires {one_more} is more than 365 days ahead" in found


def test_a_site_maximum_is_honoured() -> None:
    in_60_days = (TODAY + dt.timedelta(days=60)).isoformat()
    assert exceptions.problems([ENTRY | {"expires": in_60_days}], IDS, TODAY, max_days=60) == []
    (found,) = exceptions.problems([ENTRY | {"expires": in_60_days}], IDS, TODAY, max_days=30)
    assert f"expires {in_60_days} is more than 30 days ahead; the site allows at most 30" in found


def test_the_policy_gate_refuses_a_far_expiry_and_does_not_permit_the_switch_off() -> None:
    hostvars = {"ssh_hardening_password_authentication": True,
                "carepath_exceptions": [ENTRY | {"expires": "9999-01-01"}]}
    found = policy.host_problems(hostvars, CATALOG, TODAY)
    assert len(found) == 2
    assert "expires 9999-01-01 is more than 365 days ahead" in found[0]
    assert "ssh_hardening_password_authentication=True switches off CP-SSH-05" in found[1]
