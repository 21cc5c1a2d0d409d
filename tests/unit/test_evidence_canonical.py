"""Canonical JSON: the RFC 8785 vectors, refusal of values with no canonical form, and round trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.evidence.canonical import CanonicalError, canonical_bytes, format_number


def test_keys_sort_by_utf16_code_units_and_no_whitespace() -> None:
    # RFC 8785 section 3.2.3: the sort order of these keys differs between code points and UTF-16 units.
    value = {"\u20ac": "Euro", "\r": "CR", "\ufb33": "Hebrew", "1": "One", "\U0001f600": "Smiley", "\u0080": "Ctl",
             "\u00f6": "Latin"}
    expected = '{"\\r":"CR","1":"One","\u0080":"Ctl","\u00f6":"Latin","\u20ac":"Euro","\U0001f600":"Smiley","\ufb33":"Hebrew"}'
    assert canonical_bytes(value) == expected.encode("utf-8")
    assert canonical_bytes({"b": [1, {"d": None, "c": True}], "a": False}) == b'{"a":false,"b":[1,{"c":true,"d":null}]}'


def test_large_integers_only_when_a_double_holds_them_exactly() -> None:
    assert canonical_bytes([2**53 - 1, 2**53, 10**21]) == b"[9007199254740991,9007199254740992,1e+21]"


def test_strings_use_minimal_escapes() -> None:
    assert canonical_bytes("a\"\\/\b\f\n\r\t\x01\x7f\u2028é") == '"a\\"\\\\/\\b\\f\\n\\r\\t\\u0001\x7f\u2028é"'.encode()


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-1.5, "-1.5"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1e-7, "1e-7"), (0.000001, "0.000001"), (333333333.3333333, "333333333.3333333"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (9007199254740992.0, "9007199254740992"), (1e23, "1e+23"),
    (295147905179352830000.0, "295147905179352830000"), (4.5e-7, "4.5e-7"), (123.456e-5, "0.00123456"),
])
def test_numbers_use_the_ecmascript_form(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {1: "x"}, "\ud800", 2**53 + 1, 10**400, {1, 2}, b"bytes"])
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(CanonicalError):
        canonical_bytes(value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def as_doubles(value: object) -> object:
    if isinstance(value, dict):
        return {k: as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_doubles(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@settings(max_examples=150, deadline=None, derandomize=True)
@given(JSON)
def test_canonical_form_parses_back_and_is_a_fixed_point(value: object) -> None:
    data = canonical_bytes(value)
    parsed = json.loads(data)
    assert canonical_bytes(parsed) == data
    assert as_doubles(parsed) == as_doubles(value)  # the same JSON value: every number is a double


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_form_round_trips_exactly(value: float) -> None:
    assert float(format_number(value)) == value
