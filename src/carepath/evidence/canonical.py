"""Canonical JSON (RFC 8785 style): one byte string per value, so digests and signatures are reproducible.

Rules: object keys sorted by UTF-16 code units, no whitespace, UTF-8, minimal string escaping, numbers in
the ECMAScript shortest form (``1.0`` -> ``1``, ``1e21`` -> ``1e+21``). NaN, Infinity, lone surrogates,
non-string keys and integers that do not survive the trip through an IEEE double are refused, because a verifier in another
language could not reproduce the same bytes for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from json.encoder import encode_basestring  # C-accelerated; its escaping is exactly the RFC 8785 one
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    """A value that has no canonical JSON form (NaN, Infinity, a lone surrogate, a non-string key...)."""


def canonical_bytes(value: Any) -> bytes:
    """The canonical JSON encoding of ``value`` as UTF-8 bytes (no trailing newline)."""
    parts: list[str] = []
    _encode(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"string contains a lone surrogate at position {exc.start}") from None


def plain(value: Any) -> Any:
    """Ansible's tagged strings and containers as plain JSON values (for hashing and comparing)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return str(value)


def format_number(value: float) -> str:
    """ECMAScript Number::toString for a finite float (the number form RFC 8785 prescribes)."""
    if not math.isfinite(value):
        raise CanonicalError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:  # exact, and what the general form gives
        return str(int(value))
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")  # repr is the shortest round-trip digit string
    int_part, _, frac = mantissa.partition(".")
    digits = int_part + frac
    point = len(int_part) + int(exp or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        body = digits[0] + (f".{digits[1:]}" if k > 1 else "") + f"e{'+' if n - 1 > 0 else '-'}{abs(n - 1)}"
    return sign + body


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            out.append(str(int(value)))
        else:  # beyond 2**53 an integer is fine only if it is the canonical text of the double it reads as
            try:
                double = float(value)
            except OverflowError:
                raise CanonicalError(f"integer {value} is too large for a JSON number (IEEE double)") from None
            text = format_number(double)
            if double != value and text != str(value):
                raise CanonicalError(f"integer {value} cannot be carried exactly by a JSON number (IEEE double)")
            out.append(text)
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(encode_basestring(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"{type(value).__name__} is not a JSON type")
