"""The KEY VALUE editor behind login.defs: one pass, in place, no duplicates left."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "carepath_keyvalue", Path(__file__).resolve().parents[2] / "plugins" / "modules" / "carepath_keyvalue.py"
)
keyvalue = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(keyvalue)

LOGIN_DEFS = """# Password aging controls:
#PASS_MAX_DAYS\t99999
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS   0
UMASK\t\t022
ENCRYPT_METHOD SHA512
UMASK 002
"""


def test_keys_are_replaced_in_place_and_comments_kept() -> None:
    text, keys = keyvalue.apply(LOGIN_DEFS, {"PASS_MAX_DAYS": 365, "UMASK": "027"})
    lines = text.splitlines()
    assert lines[:3] == ["# Password aging controls:", "#PASS_MAX_DAYS\t99999", "PASS_MAX_DAYS\t365"]
    assert lines[4] == "UMASK\t027"
    assert keys == ["PASS_MAX_DAYS", "UMASK"]


def test_a_later_duplicate_is_removed_so_the_value_is_never_ambiguous() -> None:
    text, _ = keyvalue.apply(LOGIN_DEFS, {"UMASK": "027"})
    assert [line for line in text.splitlines() if line.startswith("UMASK")] == ["UMASK\t027"]


def test_missing_keys_are_appended_and_right_values_left_untouched() -> None:
    text, keys = keyvalue.apply("PASS_MIN_DAYS   1", {"PASS_MIN_DAYS": 1, "SHA_CRYPT_MIN_ROUNDS": 65536})
    assert text == "PASS_MIN_DAYS   1\nSHA_CRYPT_MIN_ROUNDS\t65536\n"
    assert keys == ["SHA_CRYPT_MIN_ROUNDS"]


def test_applying_twice_changes_nothing() -> None:
    settings = {"PASS_MAX_DAYS": 365, "UMASK": "027", "SHA_CRYPT_MAX_ROUNDS": 65536}
    once, _ = keyvalue.apply(LOGIN_DEFS, settings)
    twice, keys = keyvalue.apply(once, settings)
    assert twice == once and keys == []
