"""Evaluate a control's check (or switch) against observed values.

A check is ``{source: {key: {operator: expected, ...}}}``; for a switch the source
level is left out (``{variable: {operator: expected}}``). Evaluation is a pure function:
it returns the list of problems found, empty when the control holds.

Operators:
  equals, in            the value is (one of) the expected
  first_word_in         the value's first word is one of the expected (``exec /path`` is ``exec``)
  min, max              the value, as an integer, is within bounds
  subset_of             every element of the value (a list, or a comma-separated string) is allowed
  none_of               no element of the value is one of the expected; an element written as a
                        range of numbers (``8000-8100``) holds every number in it
  contains              the value (text) contains each expected string; a list value (e.g. the
                        audit rules) must hold each expected string as one of its elements
  owner, group          a file's owner / group
  mode_max              a file's permission bits are no wider than the expected octal mode
  min_size              a file holds at least this many bytes
  exists, installed     a file exists / a package is installed (true or false)
  enabled, active       a service is enabled / running (true or false)

A command whose exit status is not 0 is a problem whatever its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPERATORS = frozenset(
    {"equals", "in", "first_word_in", "min", "max", "subset_of", "none_of", "contains", "owner", "group", "mode_max", "min_size",
     "exists", "installed", "enabled", "active"}
)
SOURCES = frozenset(
    {"sshd", "sysctl", "file", "package", "service", "command", "conf", "nft", "audit_rules", "journal"}
)


def _elements(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _covers(element: str, wanted: str) -> bool:
    """Whether a value's element is ``wanted``, or a LOW-HIGH range of numbers holding it."""
    if element == wanted:
        return True
    low, sep, high = element.partition("-")
    number = _as_int(wanted)
    if not sep or number is None or _as_int(low) is None or _as_int(high) is None:
        return False
    return int(low) <= number <= int(high)


def _compare(subject: str, op: str, expected: Any, actual: Any) -> str | None:
    """One operator on one value: None when it holds, else a sentence saying why not."""
    if op in ("exists", "installed", "enabled", "active"):
        return None if bool(actual) == bool(expected) else f"{subject} {op} is {bool(actual)}, expected {bool(expected)}"
    if actual is None:
        return f"{subject} is not set"
    if op == "equals":
        same = actual == expected if isinstance(expected, bool) else str(actual) == str(expected)
        return None if same else f"{subject} is {actual!r}, expected {expected!r}"
    if op == "in":
        return None if str(actual) in [str(e) for e in expected] else f"{subject} is {actual!r}, expected one of {expected}"
    if op == "first_word_in":
        word = (str(actual).split() or [""])[0]
        return None if word in [str(e) for e in expected] else f"{subject} is {actual!r}, expected one of {expected}"
    if op in ("min", "max", "min_size"):
        number = _as_int(actual)
        if number is None:
            return f"{subject} is {actual!r}, not a number"
        too_low = op in ("min", "min_size") and number < int(expected)
        too_high = op == "max" and number > int(expected)
        return f"{subject} is {number}, {'below the minimum' if too_low else 'above the maximum'} {expected}" if (
            too_low or too_high
        ) else None
    if op == "subset_of":
        extra = [e for e in _elements(actual) if e not in expected]
        return f"{subject} includes {extra}, which are not approved" if extra else None
    if op == "none_of":
        forbidden = [e for e in _elements(expected) if any(_covers(element, e) for element in _elements(actual))]
        return f"{subject} includes {forbidden}, which must not be there" if forbidden else None
    if op == "contains":
        if isinstance(actual, (list, tuple)):  # whole elements, so a rule is never matched by a longer one
            missing = [e for e in _elements(expected) if e not in [str(a) for a in actual]]
            return f"{subject} lacks {missing}" if missing else None
        missing = [e for e in _elements(expected) if e not in str(actual)]
        return f"{subject} lacks {missing}" if missing else None
    if op == "mode_max":
        wider = int(str(actual), 8) & ~int(str(expected), 8)
        return f"{subject} mode is {actual}, wider than {expected}" if wider else None
    if op in ("owner", "group"):
        return None if str(actual) == str(expected) else f"{subject} {op} is {actual!r}, expected {expected!r}"
    raise ValueError(f"unknown operator {op!r}")


def evaluate(conditions: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any], label: str) -> list[str]:
    """Problems with ``values`` under ``conditions`` ({key: {operator: expected}})."""
    problems: list[str] = []
    for key, ops in conditions.items():
        value = values.get(key)
        if isinstance(value, Mapping) and value.get("rc") not in (None, 0):
            # A command that failed did not read the host: its (empty) output proves nothing.
            detail = str(value.get("stderr") or "").strip().splitlines()
            problems.append(f"{label} {key} failed (exit {value['rc']})" + (f": {detail[-1]}" if detail else ""))
            continue
        for op, expected in ops.items():
            if isinstance(value, Mapping) and "stdout" in value and op not in _PROPERTY:
                value = value["stdout"]  # a command: its output is what text operators read
            if isinstance(value, Mapping) and op in _PROPERTY:  # a file, package or service
                if value.get("exists") is False and op != "exists":
                    problems.append(f"{label} {key} does not exist")
                    break
                actual = value.get(_PROPERTY[op])
            else:
                actual = value
            problem = _compare(f"{label} {key}", op, expected, actual)
            if problem:
                problems.append(problem)
    return problems


# Operators that read one property of an observed file, package or service.
_PROPERTY = {
    "mode_max": "mode", "min_size": "size", "owner": "owner", "group": "group", "exists": "exists",
    "installed": "installed", "enabled": "enabled", "active": "active",
}


def evaluate_check(check: Mapping[str, Mapping[str, Mapping[str, Any]]], observed: Mapping[str, Any]) -> list[str]:
    """Problems with the observed host state under a control's ``check``."""
    problems: list[str] = []
    for source, conditions in check.items():
        problems += evaluate(conditions, observed.get(source) or {}, source)
    return problems


def validate_spec(spec: Any, *, nested: bool, where: str) -> list[str]:
    """Problems with the shape of a check (nested: with sources) or a switch."""
    problems: list[str] = []
    if not isinstance(spec, Mapping):
        return [f"{where}: expected a mapping"]
    groups = spec.items() if nested else [("", spec)]
    for source, conditions in groups:
        if nested and source not in SOURCES:
            problems.append(f"{where}: unknown source {source!r}; known: {sorted(SOURCES)}")
        if not isinstance(conditions, Mapping):
            problems.append(f"{where}: {source or 'switch'} must map keys to operators")
            continue
        for key, ops in conditions.items():
            if not isinstance(ops, Mapping) or not ops:
                problems.append(f"{where}: {key} must map operators to expected values")
                continue
            problems += [f"{where}: {key}: unknown operator {op!r}" for op in ops if op not in OPERATORS]
    return problems
