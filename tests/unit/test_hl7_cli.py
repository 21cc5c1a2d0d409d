"""`carepath hl7 sample` and `carepath hl7 send`, as an operator runs them, against a real engine."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carepath import mllp
from tests.conftest import carepath
from tests.unit.hl7engines import Engine, free_port


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    started = Engine(tmp_path, destinations=[{"name": "files", "type": "file", "path": str(tmp_path / "out")}])
    yield started.start()
    started.close()


def _manifest(path: Path) -> dict:
    with tarfile.open(path) as tar:
        member = tar.extractfile("carepath-release.json")
        assert member is not None
        return json.loads(member.read())


def test_sample_builds_a_reproducible_release_and_broken_ones(tmp_path: Path) -> None:
    first = carepath("hl7", "sample", "--version", "2.0.0", "--out", str(tmp_path / "a"))
    again = carepath("hl7", "sample", "--version", "2.0.0", "--out", str(tmp_path / "b"))
    assert first.returncode == 0 and again.returncode == 0, first.stderr
    assert first.stdout.split("sha256: ")[1] == again.stdout.split("sha256: ")[1]
    path = tmp_path / "a" / "carepath-hl7-engine-2.0.0.tar.gz"
    assert _manifest(path) == {"app": "carepath-hl7-engine", "version": "2.0.0", "behaviour": "ok"}
    assert (tmp_path / "a" / "carepath-hl7-engine-2.0.0.tar.gz.sha256").read_text().startswith(
        first.stdout.split("sha256: ")[1].strip())
    for fault in ("noack", "ae"):
        broken = carepath("hl7", "sample", "--version", f"3.0.0-{fault}", "--broken", fault, "--out", str(tmp_path))
        assert broken.returncode == 0, broken.stderr
        assert _manifest(tmp_path / f"carepath-hl7-engine-3.0.0-{fault}.tar.gz")["behaviour"] == fault


def test_sample_refuses_a_bad_version_or_fault(tmp_path: Path) -> None:
    bad = carepath("hl7", "sample", "--version", "../2", "--out", str(tmp_path))
    assert bad.returncode == 2 and "is not valid" in bad.stderr and "Traceback" not in bad.stderr
    fault = carepath("hl7", "sample", "--version", "2.0.0", "--broken", "slow", "--out", str(tmp_path))
    assert fault.returncode == 2 and "invalid choice" in fault.stderr


def test_send_counts_every_ack(engine: Engine) -> None:
    proc = carepath("hl7", "send", "127.0.0.1", "--port", str(engine.port), "--senders", "3", "--count", "7")
    assert proc.returncode == 0, proc.stderr
    assert "3 sender(s): 21 sent, 21 ACKed, 0 resent, 0 given up" in proc.stdout, proc.stdout
    assert engine.wait(lambda s: s["acked"] == 21 and s["queued"] == 0)["stored"] == 21


def test_send_gives_up_on_an_engine_that_is_not_there_and_says_so() -> None:
    started = time.monotonic()
    proc = carepath("hl7", "send", "127.0.0.1", "--port", str(free_port()), "--ack-timeout", "0.5",
                    "--give-up-after", "1")
    assert proc.returncode == 1 and time.monotonic() - started < 15
    assert "0 ACKed" in proc.stdout and "1 given up" in proc.stdout and "ConnectionRefusedError" in proc.stdout


def test_send_refuses_bad_options_before_sending() -> None:
    for args in (["--port", "0"], ["--senders", "0"], ["--prefix", "A-B"], ["--ca", "/nonexistent/ca.crt"]):
        proc = carepath("hl7", "send", "127.0.0.1", *args)
        assert proc.returncode == 2 and proc.stderr.startswith("carepath: error: ") and "Traceback" not in proc.stderr


def test_percentiles_and_summary() -> None:
    tally = mllp.Tally("S", sent=3, attempts=4, acked=["S-1", "S-2", "S-3"], latencies_ms=[1.0, 2.0, 10.0])
    summary = mllp.summarize([tally])
    assert (summary["acked"], summary["resends"], summary["p50_ms"], summary["p99_ms"]) == (3, 1, 2.0, 10.0)
    assert mllp.percentile([], 0.5) is None


def test_background_traffic_sends_at_its_rate_until_stopped_and_finishes_each_message(engine: Engine) -> None:
    with mllp.Traffic("127.0.0.1", engine.port, senders=2, rate=100, prefix="BG") as traffic:
        time.sleep(1.5)
        during = traffic.acked()
    summary = mllp.summarize(traffic.tallies)
    assert 60 <= during <= 220, during  # 100/s for 1.5 s, give or take start-up
    assert summary["unacked"] == 0 and summary["sent"] == summary["acked"] >= during
    assert {t.sender for t in traffic.tallies} == {"BG01", "BG02"}
    assert engine.wait(lambda s: s["acked"] == summary["acked"] and s["queued"] == 0)
