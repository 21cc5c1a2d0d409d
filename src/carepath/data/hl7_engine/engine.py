"""carepath's reference HL7 v2 interface engine: MLLP in, durable store, routed out.

A small engine that a small site could run, and the one the lab deploys blue-green:

- **Store before ACK.** Every message received over MLLP is written to a SQLite store (WAL,
  ``synchronous=FULL``: the commit is on disk) before its ``AA`` is sent. Messages arriving
  while a commit is under way are committed together (group commit), so throughput grows with
  the number of connections instead of collapsing to one fsync per message.
- **Routing** to each configured destination (MLLP, or files in a folder) in the order received,
  with retries and exponential back-off; a destination that rejects a message (``AR``/``CR``)
  has it set aside (counted, never retried), any other failure is retried.
- **Test messages** (processing ID ``T`` from the probe's sending application) go through the
  store, so the gate proves the store works, and are never routed or counted as traffic.
- **Graceful drain** on SIGTERM: the listener closes, each connection finishes the message it is
  on, deliveries go on until the queues are empty (or ``drain_timeout``), then the engine exits.
- **Status** on a local HTTP port: ``/healthz`` and ``/status`` (queue depths, counts, last error).
- **Retention**: routed messages older than ``retention_hours`` are purged; the store and its
  folder are the service user's only (the store holds PHI).
- **Logs never hold message bodies**: counts, control IDs, destinations and errors only.

Built on python-hl7 (Debian ``python3-hl7``) for MLLP framing, parsing and ACKs.
Run: ``python3 engine.py --config /etc/carepath/hl7/<engine>/<colour>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp

HERE = Path(__file__).resolve().parent
LOG = logging.getLogger("carepath-hl7")
PENDING, DELIVERED, REJECTED = 0, 1, 2
PROBE_APPLICATION = "CAREPATH-PROBE"


def release_manifest() -> dict[str, Any]:
    try:
        return json.loads((HERE / "carepath-release.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": "dev"}


class Store:
    """The durable queue. Every method runs on the store's one thread (see Engine.db)."""

    def __init__(self, path: Path, destinations: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.destinations = destinations
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY, control_id TEXT NOT NULL, sender TEXT NOT NULL,
                received REAL NOT NULL, probe INTEGER NOT NULL, body BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS deliveries (
                destination TEXT NOT NULL, message_id INTEGER NOT NULL, state INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, done REAL,
                PRIMARY KEY (destination, message_id));
            CREATE INDEX IF NOT EXISTS pending ON deliveries (destination, state, message_id);
        """)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)

    def add(self, batch: list[tuple[str, str, bool, bytes]]) -> None:
        """Commit ``(control_id, sender, probe, body)`` messages and their deliveries in one transaction."""
        now = time.time()
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for control, sender, probe, body in batch:
                cur.execute("INSERT INTO messages (control_id, sender, received, probe, body) VALUES (?,?,?,?,?)",
                            (control, sender, now, int(probe), body))
                if not probe:
                    cur.executemany("INSERT INTO deliveries (destination, message_id, state) VALUES (?,?,0)",
                                    [(dest, cur.lastrowid) for dest in self.destinations])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def pending(self, destination: str, limit: int = 200) -> list[tuple[int, str, bytes]]:
        return self.db.execute(
            "SELECT m.id, m.control_id, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.destination = ? AND d.state = 0 ORDER BY d.message_id LIMIT ?", (destination, limit),
        ).fetchall()

    def mark(self, destination: str, ids: list[int], state: int) -> None:
        """Record deliveries. Not fsynced (WAL, synchronous=NORMAL): a crash of the engine loses
        nothing, the machine losing power may forget the last marks - those messages are then sent
        again (at-least-once), never lost. The next store commit fsyncs them anyway."""
        now = time.time()
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("UPDATE deliveries SET state = ?, done = ?, attempts = attempts + 1 "
                                    "WHERE destination = ? AND message_id = ?",
                                    [(state, now, destination, i) for i in ids])
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def counts(self) -> dict[str, Any]:
        received, probes = self.db.execute(
            "SELECT COALESCE(SUM(probe = 0), 0), COALESCE(SUM(probe), 0) FROM messages").fetchone()
        per = {dest: {"pending": 0, "delivered": 0, "rejected": 0} for dest in self.destinations}
        names = {PENDING: "pending", DELIVERED: "delivered", REJECTED: "rejected"}
        for dest, state, n in self.db.execute(
                "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"):
            if dest in per:
                per[dest][names[state]] = n
        return {"stored": received, "probes": probes, "destinations": per}

    def purge(self, older_than: float) -> int:
        """Remove messages received before ``older_than`` that no destination still waits for."""
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "DELETE FROM messages WHERE received < ? AND id NOT IN "
                "(SELECT message_id FROM deliveries WHERE state = 0)", (older_than,))
            self.db.execute("DELETE FROM deliveries WHERE message_id NOT IN (SELECT id FROM messages)")
        return cur.rowcount


class Engine:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.manifest = release_manifest()
        self.behaviour = str(self.manifest.get("behaviour", "ok"))  # ok | noack | ae (broken samples)
        self.destinations = {d["name"]: d for d in config.get("destinations", [])}
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.store: Store | None = None
        self.queue: asyncio.Queue[tuple[str, str, bool, bytes, asyncio.Future[None]]] | None = None
        self.wake: dict[str, asyncio.Event] = {}
        self.stopping = asyncio.Event()
        self.connections = 0
        self.acked = 0
        self.probes_acked = 0
        self.last_error = ""
        self.dest_errors: dict[str, str] = {}
        self.started = time.time()

    async def call(self, fn, *args):  # noqa: ANN001, ANN201 - runs a Store method on its thread
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    # -- receiving ---------------------------------------------------------------------------
    async def committer(self) -> None:
        """Group commit: everything queued while the previous commit ran goes in the next one."""
        assert self.queue is not None and self.store is not None
        wait = float(self.config.get("group_commit_ms", 0)) / 1000
        while True:
            batch = [await self.queue.get()]
            if wait:
                await asyncio.sleep(wait)
            while not self.queue.empty() and len(batch) < 1000:
                batch.append(self.queue.get_nowait())
            try:
                await self.call(self.store.add, [item[:4] for item in batch])
            except Exception as err:  # noqa: BLE001 - the senders get AE and resend
                self.last_error = f"store: {err}"
                LOG.error("could not store %d messages: %s", len(batch), err)
                for item in batch:
                    item[4].set_exception(err)
                continue
            for item in batch:
                if not item[4].done():
                    item[4].set_result(None)
            if any(not item[2] for item in batch):
                for event in self.wake.values():
                    event.set()

    async def handle(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                read = asyncio.ensure_future(reader.readblock())
                done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    break  # draining: the message being read was not ACKed; the sender resends it
                try:
                    block = read.result()
                    # Stored as received, byte for byte; parsed by python-hl7 for its header.
                    message = hl7.parse(block.decode(reader.encoding, reader.encoding_errors))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except (ValueError, hl7.mllp.InvalidBlockError, hl7.HL7Exception) as err:
                    LOG.warning("unreadable block from %s closed the connection: %s", peer, type(err).__name__)
                    break
                if not await self.answer(message, block, writer):
                    break
        finally:
            stop.cancel()
            self.connections -= 1
            writer.close()

    async def answer(self, message: hl7.Message, body: bytes, writer: hl7.mllp.HL7StreamWriter) -> bool:
        """Store and ACK one message; False when the connection should close."""
        try:
            msh = message.segment("MSH")
            control, sender, processing = str(msh(10)), str(msh(3)), str(msh(11))
        except (KeyError, IndexError):
            LOG.warning("a block without an MSH segment closed its connection")
            return False
        probe = processing == "T" and sender == PROBE_APPLICATION
        if self.behaviour == "noack":
            return True
        if self.behaviour == "ae":
            writer.writemessage(message.create_ack("AE", application="CAREPATH"))
            await writer.drain()
            return True
        assert self.queue is not None
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((control, sender, probe, body, stored))
        try:
            await stored
            code = "AA"
        except Exception:  # noqa: BLE001 - not stored: AE, the sender resends
            code = "AE"
        writer.writemessage(message.create_ack(code, application="CAREPATH"))
        await writer.drain()
        if code == "AA":
            if probe:
                self.probes_acked += 1
            else:
                self.acked += 1
        return True

    # -- routing -----------------------------------------------------------------------------
    def held(self) -> bool:
        hold = self.config.get("hold_file")
        return bool(hold) and Path(hold).exists()

    async def deliver_loop(self, name: str) -> None:
        assert self.store is not None
        dest = self.destinations[name]
        retry = self.config.get("retry", {})
        initial, ceiling = float(retry.get("initial", 0.5)), float(retry.get("max", 30))
        backoff = initial
        sender = Sender(dest) if dest.get("type", "mllp") == "mllp" else None
        while True:
            self.wake[name].clear()
            if self.held():
                await asyncio.sleep(0.1)
                continue
            batch = await self.call(self.store.pending, name)
            if not batch:
                if self.stopping.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake[name].wait(), 1.0)
                continue
            try:
                if sender is not None:
                    # Each message is marked once its ACK is in (Sender.send): a crash resends one at most.
                    async def marked(message_id: int, state: int, control: str) -> None:
                        if state == REJECTED:
                            LOG.warning("%s rejected %s (set aside, not retried)", name, control)
                        await self.call(self.store.mark, name, [message_id], state)
                    await sender.send(batch, marked)
                else:
                    done = await self.call(write_files, Path(dest["path"]), batch)
                    await self.call(self.store.mark, name, done, DELIVERED)
            except Exception as err:  # noqa: BLE001 - any failure to deliver is retried
                self.dest_errors[name] = self.last_error = f"{name}: {str(err)[:200] or type(err).__name__}"
                LOG.warning("delivery to %s failed, retrying in %.1f s: %s", name, backoff, self.dest_errors[name])
                if sender is not None:
                    await sender.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, ceiling)
                continue
            backoff = initial

    # -- status ------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        assert self.store is not None
        counts = await self.call(self.store.counts)
        for name, entry in counts["destinations"].items():
            entry["last_error"] = self.dest_errors.get(name, "")
        queued = sum(entry["pending"] for entry in counts["destinations"].values())
        return {
            "engine": self.config.get("name", ""), "colour": self.config.get("colour", ""),
            "version": str(self.manifest.get("version", "")), "behaviour": self.behaviour,
            "state": "draining" if self.stopping.is_set() else "running", "held": self.held(),
            "connections": self.connections, "acked": self.acked, "probes_acked": self.probes_acked,
            "queued": queued, "last_error": self.last_error, "uptime": round(time.time() - self.started, 1),
            **counts,
        }

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            if path in ("/status", "/healthz"):
                body, code = await self.status(), "200 OK"
                if path == "/healthz":
                    body = {key: body[key] for key in ("engine", "colour", "version", "state")}
            else:
                body, code = {"error": "not found"}, "404 Not Found"
            data = (json.dumps(body, sort_keys=True) + "\n").encode()
            writer.write(f"HTTP/1.0 {code}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\n\r\n".encode() + data)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    # -- life cycle --------------------------------------------------------------------------
    async def retention(self) -> None:
        assert self.store is not None
        hours = float(self.config.get("retention_hours", 72))
        while True:
            purged = await self.call(self.store.purge, time.time() - hours * 3600)
            if purged:
                LOG.info("retention: purged %d routed messages older than %g h", purged, hours)
            await asyncio.sleep(float(self.config.get("purge_interval", 300)))

    async def run(self) -> None:
        os.umask(0o077)
        loop = asyncio.get_running_loop()
        self.store = await self.call(Store, Path(self.config["store"]), list(self.destinations))
        self.queue = asyncio.Queue()
        self.wake = {name: asyncio.Event() for name in self.destinations}
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        listen = self.config["listen"]
        tls = server_context(listen["tls"]) if listen.get("tls") else None
        server = await hl7.mllp.start_hl7_server(self.handle, listen.get("host", "0.0.0.0"), int(listen["port"]),
                                                 ssl=tls, encoding="utf-8")
        status_cfg = self.config.get("status", {"host": "127.0.0.1", "port": int(listen["port"]) + 5})
        status = await asyncio.start_server(self.http, status_cfg.get("host", "127.0.0.1"), int(status_cfg["port"]))
        tasks = [asyncio.ensure_future(self.committer()), asyncio.ensure_future(self.retention())]
        deliveries = [asyncio.ensure_future(self.deliver_loop(name)) for name in self.destinations]
        LOG.info("%s %s (%s) listening on %s, %d destinations, behaviour %s", self.config.get("name"),
                 self.manifest.get("version"), self.config.get("colour"), listen["port"], len(deliveries),
                 self.behaviour)
        await self.stopping.wait()
        LOG.info("draining: the listener is closed; routing what is queued")
        server.close()
        # Each connection finishes the message it is on (stored and ACKed), then closes.
        deadline = time.monotonic() + 10
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drain = float(self.config.get("drain_timeout", 60))
        if deliveries:
            _, late = await asyncio.wait(deliveries, timeout=drain)
            if late:
                LOG.warning("drain timeout (%g s): %d destinations still queued; they resume at the next start",
                            drain, len(late))
        for task in [*tasks, *deliveries]:
            task.cancel()
        status.close()
        counts = await self.call(self.store.counts)
        LOG.info("stopped: %d messages ACKed this run, %d still queued", self.acked,
                 sum(e["pending"] for e in counts["destinations"].values()))


class DeliveryError(Exception):
    pass


class Sender:
    """One persistent MLLP connection to a destination; each message waits for its ACK."""

    def __init__(self, dest: dict[str, Any]) -> None:
        self.dest = dest
        self.conn: tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter] | None = None

    async def connect(self) -> tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter]:
        if self.conn is None:
            kwargs: dict[str, Any] = {}
            if self.dest.get("tls"):
                context = ssl.create_default_context(cafile=self.dest["tls"]["ca"])
                kwargs = {"ssl": context, "server_hostname": self.dest["host"]}
            self.conn = await asyncio.wait_for(hl7.mllp.open_hl7_connection(
                self.dest["host"], int(self.dest["port"]), encoding="utf-8", **kwargs), 10)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None

    async def send(self, batch: list[tuple[int, str, bytes]], marked) -> None:  # noqa: ANN001
        """Send in order, each after the previous one's ACK; ``marked(id, state, control)`` records each.

        A message's mark is written while the next message is on the wire, and it is written
        before the one after that is sent: one ACKed message at most is not yet marked, so a
        crash resends one message at most, and the store's commits do not slow the route down.
        """
        timeout = float(self.dest.get("ack_timeout", 10))
        marking: asyncio.Future[None] | None = None
        try:
            reader, writer = await self.connect()
            for message_id, control, body in batch:
                writer.writeblock(body)
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), timeout)
                msa = ack.segment("MSA")
                code, acked = str(msa(1)), str(msa(2))
                if acked != control:
                    raise DeliveryError(f"ACK for {acked!r}, expected {control!r}")
                if code in ("AA", "CA"):
                    state = DELIVERED
                elif code in ("AR", "CR"):
                    state = REJECTED
                else:
                    raise DeliveryError(f"{code} for {control}")
                if marking is not None:
                    await marking
                marking = asyncio.ensure_future(marked(message_id, state, control))
        except DeliveryError:
            raise
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, KeyError) as err:
            raise DeliveryError(f"{type(err).__name__}: {err}") from err
        finally:
            if marking is not None:
                await marking  # what was ACKed is recorded, even when the next send failed


def write_files(folder: Path, batch: list[tuple[int, str, bytes]]) -> list[int]:
    """Each message as ``<id>-<control id>.hl7``, fsynced and renamed into place (owner-only)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = []
    for message_id, control, body in batch:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in control)[:40]
        final = folder / f"{message_id:012d}-{safe}.hl7"
        temp = final.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        done.append(message_id)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return done


def server_context(tls: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls["cert"], tls["key"])
    if tls.get("client_ca"):
        context.load_verify_locations(tls["client_ca"])
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_config(path: Path) -> dict[str, Any]:
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("listen", "store"):
        if key not in config:
            raise SystemExit(f"{path}: '{key}' is missing")
    names = [d.get("name") for d in config.get("destinations", [])]
    if len(set(names)) != len(names) or not all(names):
        raise SystemExit(f"{path}: every destination needs a name of its own")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    asyncio.run(Engine(load_config(args.config)).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
