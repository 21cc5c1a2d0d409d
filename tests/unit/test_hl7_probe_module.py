"""carepath_hl7_probe: the engine deploy's health gate, against real reference engines over MLLP (and TLS)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from carepath.lab import tls
from tests.unit import modules
from tests.unit.hl7engines import Engine, free_port

probe = modules.load("carepath_hl7_probe")


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.close()


def test_a_working_engine_passes_with_its_ack(tmp_path, engines):
    engine = Engine(tmp_path, destinations=[{"name": "files", "type": "file", "path": str(tmp_path / "out")}])
    engines.append(engine.start())
    result = modules.run(probe, port=engine.port, deadline=5)
    assert not result["failed"] and result["passed"] and result["ack_code"] == "AA", result
    assert result["acked_control_id"] == result["control_id"] and 0 < result["latency_ms"] < 5000
    assert result["attempts"] == 1 and result["changed"] is False
    status = engine.status()
    assert status["probes_acked"] == 1 and status["acked"] == 0  # a test message, not traffic


def test_the_test_message_says_it_is_one_and_holds_no_patient_segment():
    msg = probe.probe_message(probe.control_id())
    msh = msg.segment("MSH")
    assert str(msh(11)) == "T" and str(msh(3)) == "CAREPATH-PROBE" and len(str(msh(10))) <= 20
    with pytest.raises(KeyError):
        msg.segment("PID")
    assert probe.control_id() != probe.control_id()


def test_an_engine_that_never_acks_is_refused_when_the_deadline_passes(tmp_path, engines):
    engine = Engine(tmp_path, behaviour="noack")
    engines.append(engine.start())
    started = time.monotonic()
    result = modules.run(probe, port=engine.port, deadline=1.5, timeout=0.5, interval=0.1)
    took = time.monotonic() - started
    assert result["failed"] and "no ACK within 0.5 s" in result["msg"] and result["ack_code"] == ""
    assert 1.0 <= took < 5 and result["attempts"] >= 2, (took, result)


def test_an_engine_that_answers_ae_is_refused_with_the_code(tmp_path, engines):
    engine = Engine(tmp_path, behaviour="ae")
    engines.append(engine.start())
    result = modules.run(probe, port=engine.port, deadline=0)
    assert result["failed"] and result["ack_code"] == "AE" and "AE" in result["msg"], result
    assert result["attempts"] == 1


def test_expect_decides_which_codes_pass(tmp_path, engines):
    engine = Engine(tmp_path, behaviour="ae")
    engines.append(engine.start())
    assert not modules.run(probe, port=engine.port, deadline=0, expect=["AA", "AE"])["failed"]


def test_nothing_listening_is_refused_with_the_reason():
    result = modules.run(probe, port=free_port(), deadline=0)
    assert result["failed"] and "refused" in result["answer"].lower(), result


def test_over_tls_the_certificate_is_checked_against_the_site_ca(tmp_path, engines):
    ca = tls.ensure_ca(tmp_path / "pki", "probe")
    cert, key = tls.ensure_host(tmp_path / "pki", "engine1", ["localhost"])
    engine = Engine(tmp_path)
    engine.config["listen"]["tls"] = {"cert": str(cert), "key": str(key)}
    engines.append(engine.start())
    ok = modules.run(probe, port=engine.port, tls=True, ca_path=str(ca), server_name="engine1", deadline=0)
    assert not ok["failed"] and ok["ack_code"] == "AA", ok
    other_ca = tls.ensure_ca(tmp_path / "other", "other")
    refused = modules.run(probe, port=engine.port, tls=True, ca_path=str(other_ca), server_name="engine1",
                          deadline=0)
    assert refused["failed"] and "certificate verify failed" in refused["answer"], refused
    wrong_name = modules.run(probe, port=engine.port, tls=True, ca_path=str(ca), server_name="elsewhere",
                             deadline=0)
    assert wrong_name["failed"] and "elsewhere" in wrong_name["answer"], wrong_name
    plain = modules.run(probe, port=engine.port, deadline=0, timeout=1)
    assert plain["failed"]


@pytest.mark.parametrize(("args", "message"), [
    ({"port": 0}, "not a TCP port"),
    ({"port": 2575, "tls": True}, "ca_path"),
    ({"port": 2575, "deadline": -1}, "deadline must be 0 or more"),
    ({"port": 2575, "sending_application": "A|B"}, "HL7 delimiter"),
])
def test_bad_arguments_fail_before_anything_is_sent(args, message):
    result = modules.run(probe, **args)
    assert result["failed"] and message in result["msg"], result


def test_check_mode_probes_too(tmp_path, engines):
    engine = Engine(tmp_path)
    engines.append(engine.start())
    result = modules.run(probe, check=True, port=engine.port, deadline=0)
    assert not result["failed"] and result["ack_code"] == "AA" and not result["changed"]

