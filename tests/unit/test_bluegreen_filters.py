"""The blue-green naming contract (plugins/filter/carepath_bluegreen.py) and HAProxy's HL7 check message."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import hl7
import pytest
from ansible.errors import AnsibleFilterError

from tests.unit import modules

_PATH = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "carepath_bluegreen.py"
_SPEC = importlib.util.spec_from_file_location("carepath_bluegreen", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
bluegreen = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bluegreen)
probe = modules.load("carepath_hl7_probe")


def test_backend_frontend_and_server_names():
    assert bluegreen.backend("carepath-sample") == "be_carepath-sample"
    assert bluegreen.frontend("adt") == "fe_adt"
    assert bluegreen.server("app1.hospital.example", "green") == "app1.hospital.example_green"
    assert bluegreen.server("app 1/x", "blue") == "app_1_x_blue"


@pytest.mark.parametrize(("call", "args"), [
    ("backend", ("",)), ("backend", (None,)), ("server", ("app1", "purple")), ("server", ("", "blue")),
])
def test_bad_names_are_refused(call, args):
    with pytest.raises(AnsibleFilterError):
        getattr(bluegreen, call)(*args)


def test_haproxys_check_is_one_mllp_frame_of_the_gates_test_message():
    frame = bytes.fromhex(bluegreen.hl7_check_message())
    assert frame[:1] == b"\x0b" and frame[-2:] == b"\x1c\r"
    check = hl7.parse(frame[1:-2].decode("ascii"))
    gate = probe.probe_message("P1")
    for field in (3, 9, 11, 12):  # sending application, type, processing ID, version
        assert str(check.segment("MSH")(field)) == str(gate.segment("MSH")(field)), field
    assert [str(s[0]) for s in check] == [str(s[0]) for s in gate] == ["MSH", "EVN"]
