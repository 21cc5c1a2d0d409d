"""The reference HL7 engine as real processes on real MLLP connections: store before ACK, routing
with retries and order, test messages, drain on SIGTERM, retention, owner-only store, no bodies in logs."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest

from carepath import mllp
from tests.unit.hl7engines import Engine


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.close()


def start(engines: list[Engine], engine: Engine) -> Engine:
    engines.append(engine)
    return engine.start()


def sink(tmp_path: Path, engines: list[Engine], name: str = "sink") -> tuple[Engine, Path]:
    """A downstream system: an engine that files every message it ACKs, in the order received."""
    folder = tmp_path / f"{name}-files"
    return start(engines, Engine(tmp_path, name, destinations=[{"name": "files", "type": "file",
                                                                 "path": str(folder)}])), folder


def received(folder: Path) -> list[str]:
    """Control IDs in the order the sink stored them (its file names are its store's sequence)."""
    return [hl7.parse(p.read_text()).segment("MSH")(10)[0] for p in sorted(folder.glob("*.hl7"))]


def first_seen_in_order(ids: list[str]) -> bool:
    """Per sender, the first arrival of each message follows the sender's order."""
    last: dict[str, int] = {}
    for control in dict.fromkeys(ids):
        sender, seq = control.rsplit("-", 1)
        if int(seq) <= last.get(sender, 0):
            return False
        last[sender] = int(seq)
    return True


def test_every_acked_message_survives_a_kill_9_and_reaches_the_sink_in_order(tmp_path, engines):
    downstream, folder = sink(tmp_path, engines)
    engine = start(engines, Engine(tmp_path, destinations=[
        {"name": "lis", "type": "mllp", "host": "127.0.0.1", "port": downstream.port}]))

    def kill_and_restart() -> None:
        time.sleep(1.0)
        engine.kill()  # SIGKILL mid-flight: no drain, no flush
        time.sleep(0.5)
        engine.start()

    chaos = threading.Thread(target=kill_and_restart)
    chaos.start()
    tallies = asyncio.run(mllp.send_many("127.0.0.1", engine.port, 4, duration=3.0, ack_timeout=1.0,
                                         retry_delay=0.05))
    chaos.join()
    acked = [c for t in tallies for c in t.acked]
    assert len(acked) > 100 and all(not t.unacked for t in tallies), [(t.sent, t.unacked) for t in tallies]
    assert sum(t.sent for t in tallies) == len(acked)  # every message sent was ACKed in the end
    assert sum(t.errors.get("ConnectionResetError", 0) + t.errors.get("IncompleteReadError", 0)
               + t.errors.get("ConnectionRefusedError", 0) + t.errors.get("timeout", 0) for t in tallies) > 0

    engine.wait(lambda s: s["queued"] == 0)
    downstream.wait(lambda s: s["queued"] == 0)
    arrived = received(folder)
    assert set(acked) <= set(arrived), sorted(set(acked) - set(arrived))[:10]
    # Duplicates: messages stored but not yet ACKed when the engine died (each is resent: a resend),
    # and at most the one message on its way downstream, ACKed there but not yet marked delivered.
    duplicates = len(arrived) - len(set(arrived))
    assert duplicates <= sum(t.resends for t in tallies) + 1, (duplicates, [t.resends for t in tallies])
    assert first_seen_in_order(arrived)


def test_a_destination_that_is_down_gets_everything_in_order_once_it_is_back(tmp_path, engines):
    downstream = Engine(tmp_path, "sink", destinations=[
        {"name": "files", "type": "file", "path": str(tmp_path / "sink-files")}])
    engine = start(engines, Engine(tmp_path, destinations=[
        {"name": "lis", "type": "mllp", "host": "127.0.0.1", "port": downstream.port}]))
    tallies = asyncio.run(mllp.send_many("127.0.0.1", engine.port, 2, count=40))
    status = engine.wait(lambda s: s["destinations"]["lis"]["last_error"] != "")
    assert status["queued"] == 80 and status["acked"] == 80 and "Connect" in status["last_error"]
    start(engines, downstream)
    engine.wait(lambda s: s["queued"] == 0)
    # The sink ACKs what it stored, then routes it to its files: the last one can still be on its way.
    downstream.wait(lambda s: s["queued"] == 0)
    arrived = received(tmp_path / "sink-files")
    assert sorted(arrived) == sorted(c for t in tallies for c in t.acked) and first_seen_in_order(arrived)


def test_a_test_message_is_stored_and_acked_but_never_routed_or_counted(tmp_path, engines):
    files = tmp_path / "routed"
    engine = start(engines, Engine(tmp_path, destinations=[{"name": "files", "type": "file", "path": str(files)}]))

    async def probe() -> str:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", engine.port, encoding="utf-8")
        msg = mllp.message("CAREPATH-PROBE", "PROBE-1", processing="T")
        writer.writemessage(msg)
        ack = await reader.readmessage()
        writer.close()
        return str(ack.segment("MSA")(1))

    assert asyncio.run(probe()) == "AA"
    status = engine.status()
    assert (status["probes"], status["probes_acked"], status["acked"], status["stored"]) == (1, 1, 0, 0)
    assert status["destinations"]["files"] == {"pending": 0, "delivered": 0, "rejected": 0, "last_error": ""}
    assert not files.exists() or not list(files.iterdir())


def test_sigterm_closes_the_listener_and_routes_what_is_queued_before_exiting(tmp_path, engines):
    downstream, folder = sink(tmp_path, engines)
    hold = tmp_path / "hold"
    hold.touch()  # deliveries held, so that the queue is still full when SIGTERM comes
    engine = start(engines, Engine(tmp_path, hold_file=str(hold), destinations=[
        {"name": "lis", "type": "mllp", "host": "127.0.0.1", "port": downstream.port}]))
    tallies = asyncio.run(mllp.send_many("127.0.0.1", engine.port, 2, count=25))
    assert engine.status()["queued"] == 50
    assert engine.proc is not None
    engine.proc.terminate()
    status = engine.wait(lambda s: s["state"] == "draining")
    assert status["queued"] == 50
    with pytest.raises(OSError):  # the listener is closed while draining
        asyncio.run(mllp.Sender("LATE", "127.0.0.1", engine.port, ack_timeout=1)._connection())
    hold.unlink()
    assert engine.proc.wait(15) == 0
    downstream.wait(lambda s: s["stored"] == 50)
    assert sorted(received(folder)) == sorted(c for t in tallies for c in t.acked)
    assert "0 still queued" in engine.log.read_text()


def test_the_store_is_owner_only_and_routed_messages_are_purged_after_retention(tmp_path, engines):
    files = tmp_path / "routed"
    engine = start(engines, Engine(tmp_path, retention_hours=0, purge_interval=0.2,
                                   destinations=[{"name": "files", "type": "file", "path": str(files)}]))
    asyncio.run(mllp.send_many("127.0.0.1", engine.port, 1, count=20))
    engine.wait(lambda s: s["stored"] == 0 and s["queued"] == 0)  # routed, then purged
    store = Path(engine.config["store"])
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in store.parent.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.glob("*.hl7"))
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_a_queued_message_is_not_purged_however_old(tmp_path, engines):
    engine = start(engines, Engine(tmp_path, retention_hours=0, purge_interval=0.2, destinations=[
        {"name": "lis", "type": "mllp", "host": "127.0.0.1", "port": 1}]))
    asyncio.run(mllp.send_many("127.0.0.1", engine.port, 1, count=5))
    time.sleep(0.6)
    assert engine.status()["stored"] == 5 and engine.status()["queued"] == 5


def test_the_engine_log_never_holds_a_message_body(tmp_path, engines):
    downstream, _ = sink(tmp_path, engines)
    engine = start(engines, Engine(tmp_path, destinations=[
        {"name": "lis", "type": "mllp", "host": "127.0.0.1", "port": downstream.port},
        {"name": "dead", "type": "mllp", "host": "127.0.0.1", "port": 1}]))
    asyncio.run(mllp.send_many("127.0.0.1", engine.port, 2, count=10))
    engine.wait(lambda s: s["destinations"]["lis"]["pending"] == 0 and s["destinations"]["dead"]["last_error"])
    engine.kill()
    for log in (engine.log, downstream.log):
        text = log.read_text()
        assert text and "SYNTHETIC" not in text and "PID|" not in text and "SYN0000" not in text, text


def test_a_release_that_never_acks_or_answers_ae_stores_nothing(tmp_path, engines):
    for behaviour, expected in (("noack", "timeout"), ("ae", "AE")):
        engine = start(engines, Engine(tmp_path, f"broken-{behaviour}", behaviour=behaviour))
        sender = mllp.Sender("CPT", "127.0.0.1", engine.port, ack_timeout=0.5, retry_delay=0.05, finish_within=0)
        stop = asyncio.Event()
        stop.set()
        assert asyncio.run(sender.send_one("CPT-00000001", stop)) is False
        assert sender.tally.errors.get(expected, 0) >= 1 and not sender.tally.acked
        assert engine.status()["stored"] == 0 and engine.status()["behaviour"] == behaviour
