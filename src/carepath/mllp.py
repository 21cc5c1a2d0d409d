"""Test senders for HL7 v2 over MLLP: what `carepath hl7 send`, the tests and bench/hl7 use.

A sender behaves as a hospital system feeding an interface engine: one persistent connection,
one message at a time (its order is the sender's order), each message a unique control ID
(MSH-10 ``<sender>-<sequence>``), and **at-least-once**: a message whose ACK does not come (a
timeout, a connection cut, an ``AE``) is sent again, on a new connection if need be, until an
``AA`` arrives. Every send, resend and ACK is counted, so a test can prove that nothing ACKed was
lost and that duplicates stay bounded.

The messages are synthetic (no patient data): an ``ADT^A08`` with a synthetic ``PID``.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
import time
from dataclasses import dataclass, field

import hl7
import hl7.mllp

ACCEPT = ("AA", "CA")


def message(sender: str, control_id: str, processing: str = "P") -> hl7.Message:
    """A synthetic ADT^A08 from ``sender`` with MSH-10 ``control_id``."""
    return hl7.parse(message_text(sender, control_id, processing))


def message_text(sender: str, control_id: str, processing: str = "P") -> str:
    """The same message as HL7 text (segments joined by carriage returns), without parsing it."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return "\r".join([
        f"MSH|^~\\&|{sender}|CAREPATH-LAB|ENGINE|CAREPATH-LAB|{stamp}||ADT^A08^ADT_A01|{control_id}|{processing}|2.5.1",
        f"EVN|A08|{stamp}",
        f"PID|1||SYN{control_id.rsplit('-', 1)[-1]}^^^CAREPATH-LAB^MR||SYNTHETIC^TEST",
    ]) + "\r"


@dataclass
class Tally:
    """What one sender did. ``acked`` is in ACK order, which is the sender's order."""

    sender: str
    sent: int = 0  # distinct messages sent at least once
    attempts: int = 0  # every send, resends included
    acked: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # "AE", "timeout", "ConnectionResetError", ...
    reconnects: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    unacked: str = ""  # the control ID still waiting for its ACK when the sender stopped

    @property
    def resends(self) -> int:
        return self.attempts - self.sent

    def count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Sender:
    """One sender on one persistent connection (reopened when it breaks)."""

    def __init__(self, name: str, host: str, port: int, *, ack_timeout: float = 5.0, retry_delay: float = 0.2,
                 tls: ssl.SSLContext | None = None, server_name: str | None = None,
                 finish_within: float = 30.0, patience: float | None = None) -> None:
        if not name or any(c in name for c in "|^~\\&-\r\n"):
            raise ValueError(f"sender name {name!r} must be non-empty, without '-' or HL7 delimiters")
        self.name, self.host, self.port = name, host, port
        self.ack_timeout, self.retry_delay = ack_timeout, retry_delay
        self.tls, self.server_name = tls, server_name
        self.finish_within = finish_within
        self.patience = patience  # give a message up after this many seconds of failed tries (None: never)
        self._stop_seen: float | None = None
        self.tally = Tally(name)
        self._conn: tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter] | None = None

    async def _connection(self) -> tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter]:
        if self._conn is None:
            kwargs: dict = {"ssl": self.tls, "server_hostname": self.server_name or self.host} if self.tls else {}
            self._conn = await asyncio.wait_for(
                hl7.mllp.open_hl7_connection(self.host, self.port, encoding="utf-8", **kwargs), self.ack_timeout)
            self.tally.reconnects += 1
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    async def send_one(self, control_id: str, stop: asyncio.Event | None = None) -> bool:
        """Send until ACKed (True). Once ``stop`` is set, the message in flight keeps being sent for
        ``finish_within`` seconds more; then it is given up (False) and named in ``tally.unacked``."""
        block = message_text(self.name, control_id).encode("utf-8")
        self.tally.sent += 1
        first_try = time.monotonic()
        while True:
            self.tally.attempts += 1
            started = time.monotonic()
            try:
                reader, writer = await self._connection()
                writer.writeblock(block)
                await writer.drain()
                while True:  # an ACK for an earlier try of another message is skipped
                    ack = await asyncio.wait_for(reader.readmessage(), self.ack_timeout)
                    msa = ack.segment("MSA")
                    if str(msa(2)) == control_id:
                        break
                code = str(msa(1))
                if code in ACCEPT:
                    self.tally.latencies_ms.append((time.monotonic() - started) * 1000)
                    self.tally.acked.append(control_id)
                    return True
                self.tally.count(code)
            except TimeoutError:
                self.tally.count("timeout")
                self.close()
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, hl7.HL7Exception) as err:
                self.tally.count(type(err).__name__)
                self.close()
            if self.patience is not None and time.monotonic() - first_try > self.patience:
                self.tally.unacked = control_id
                return False
            if stop is not None and stop.is_set():
                self._stop_seen = self._stop_seen or time.monotonic()
                if time.monotonic() - self._stop_seen > self.finish_within:
                    self.tally.unacked = control_id
                    return False
            await asyncio.sleep(self.retry_delay)

    async def run(self, *, count: int | None = None, rate: float | None = None,
                  stop: asyncio.Event | None = None, start: int = 1) -> Tally:
        """Send ``count`` messages (or until ``stop``), at ``rate`` per second (or as fast as ACKs come)."""
        interval = 1 / rate if rate else 0.0
        next_at = time.monotonic()
        seq = start
        try:
            while (count is None or seq < start + count) and not (stop is not None and stop.is_set()):
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at = max(next_at + interval, time.monotonic() - 1)  # no burst after a stall
                if not await self.send_one(f"{self.name}-{seq:08d}", stop):
                    break
                seq += 1
        finally:
            self.close()
        return self.tally


async def send_many(host: str, port: int, senders: int, *, count: int | None = None, rate: float | None = None,
                    duration: float | None = None, prefix: str = "CPSEND", **options) -> list[Tally]:
    """``senders`` concurrent senders; ``rate`` is the total per second, shared between them."""
    stop = asyncio.Event()
    workers = [Sender(f"{prefix}{i + 1:02d}", host, port, **options) for i in range(senders)]
    per = rate / senders if rate else None
    tasks = [asyncio.ensure_future(w.run(count=count, rate=per, stop=stop)) for w in workers]
    if duration is not None:
        await asyncio.sleep(duration)
        stop.set()
    return list(await asyncio.gather(*tasks))


class Traffic:
    """``senders`` at-least-once senders in a background thread, sending until the ``with`` ends.

    For a test or a benchmark that changes an estate while traffic flows::

        with Traffic("lb1", 2575, senders=4, rate=200) as traffic:
            ...                      # deploy, roll back, kill an engine
        summarize(traffic.tallies)  # every sender finished its message in flight
    """

    def __init__(self, host: str, port: int, *, senders: int = 4, rate: float | None = 200.0,
                 prefix: str = "CPLOAD", **options) -> None:
        self.workers = [Sender(f"{prefix}{i + 1:02d}", host, port, **options) for i in range(senders)]
        self.per_sender = rate / senders if rate else None
        self.tallies: list[Tally] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="mllp-traffic", daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        runs = (w.run(rate=self.per_sender, stop=self._stop) for w in self.workers)
        self.tallies = list(await asyncio.gather(*runs))

    def acked(self) -> int:
        """Messages ACKed so far (read while the senders run)."""
        return sum(len(w.tally.acked) for w in self.workers)

    def __enter__(self) -> Traffic:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the senders did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        # Each sender finishes the message in flight (at most finish_within seconds).
        self._thread.join(max(w.finish_within for w in self.workers) + 30)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``values``, nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summarize(tallies: list[Tally]) -> dict:
    """Totals over senders: sent, acked, resends, unacked, errors by kind, ACK latency p50/p99 (ms)."""
    latencies = [ms for t in tallies for ms in t.latencies_ms]
    errors: dict[str, int] = {}
    for t in tallies:
        for kind, n in t.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "senders": len(tallies), "sent": sum(t.sent for t in tallies), "acked": sum(len(t.acked) for t in tallies),
        "resends": sum(t.resends for t in tallies), "unacked": sum(1 for t in tallies if t.unacked),
        "errors": dict(sorted(errors.items())), "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


def format_summary(summary: dict) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"
    errors = ", ".join(f"{kind} {n}" for kind, n in summary["errors"].items()) or "none"
    return (f"{summary['senders']} sender(s): {summary['sent']} sent, {summary['acked']} ACKed, "
            f"{summary['resends']} resent, {summary['unacked']} given up\n"
            f"ACK latency p50 {ms(summary['p50_ms'])}, p99 {ms(summary['p99_ms'])}; errors: {errors}")
