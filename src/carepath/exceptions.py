"""Control exceptions: the only way to switch a control off, and always visibly.

An exception is an inventory entry (host or group variable ``carepath_exceptions``)::

    carepath_exceptions:
      - control: CP-SSH-05
        reason: Legacy lab analyser can only log in with a password (vendor ticket 4711)
        owner: jane.doe@hospital.example
        expires: 2027-03-31
        ticket: CHG-1234        # optional

An excepted control is not enforced where its role honours the exception, is reported
as ``excepted`` by every audit and drift report, and stops being valid the day after it
expires: an expired or malformed exception is an error before any host is touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

REQUIRED = ("control", "reason", "owner", "expires")
OPTIONAL = ("ticket",)
_MIN_REASON = 10


def parse_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


#: The longest an exception may run unless the site sets ``carepath_exception_max_days``.
DEFAULT_MAX_DAYS = 365


def problems(entries: Any, known_ids: Iterable[str], today: dt.date | None = None, *,
             max_days: int = DEFAULT_MAX_DAYS) -> list[str]:
    """Everything wrong with a host's ``carepath_exceptions`` (empty when all are valid).

    ``max_days`` bounds how far ahead an exception may expire: an expiry in 9999 is a control
    switched off for good, which must be a decision the site reviews, not a date typed once.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    known = set(known_ids)
    if entries in (None, ""):
        return []
    if not isinstance(entries, list):
        return ["carepath_exceptions must be a list of entries with control, reason, owner and expires"]
    found: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"carepath_exceptions[{index}]"
        if not isinstance(entry, Mapping):
            found.append(f"{where}: expected a mapping with {', '.join(REQUIRED)}")
            continue
        where = f"{where} ({entry.get('control', '?')})"
        missing = [k for k in REQUIRED if not str(entry.get(k) or "").strip()]
        if missing:
            found.append(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            found.append(f"{where}: unknown key(s) {unknown}")
        control = entry.get("control")
        if control and control not in known:
            found.append(f"{where}: {control!r} is not a control in the catalog")
        if control in seen:
            found.append(f"{where}: {control} is excepted twice")
        seen.add(str(control))
        reason = str(entry.get("reason") or "").strip()
        if reason and len(reason) < _MIN_REASON:
            found.append(f"{where}: the reason must say why (at least {_MIN_REASON} characters)")
        if entry.get("expires") not in (None, ""):
            expires = parse_date(entry["expires"])
            if expires is None:
                found.append(f"{where}: expires {entry['expires']!r} is not a date (YYYY-MM-DD)")
            elif expires < today:
                found.append(f"{where}: expired on {expires.isoformat()}; renew it with its owner or remove it")
            elif (expires - today).days > max_days:
                found.append(f"{where}: expires {expires.isoformat()} is more than {max_days} days ahead; the site "
                             f"allows at most {max_days} (carepath_exception_max_days); choose an earlier date "
                             f"and renew it when it comes")
    return found


def find(entries: Any, control: str) -> Mapping[str, Any] | None:
    """The exception entry for ``control``, if there is one."""
    if not isinstance(entries, list):
        return None
    return next((e for e in entries if isinstance(e, Mapping) and e.get("control") == control), None)
