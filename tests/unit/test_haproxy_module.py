"""The HAProxy module against a fake runtime API on a real unix socket (one command per connection)."""

from __future__ import annotations

import re
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit import modules

haproxy = modules.load("carepath_haproxy")

BACKEND = "be_app"
# The columns the module reads, among others it does not, in HAProxy's order; rows end with a comma as HAProxy's do.
COLUMNS = ["pxname", "svname", "qcur", "scur", "stot", "econ", "eresp", "status", "weight", "chkdown", "lastchg"]
_SET_STATE = re.compile(r"set server (\S+)/(\S+) state (ready|drain|maint)$")
_SET_HEALTH = re.compile(r"set server (\S+)/(\S+) health (up|down)$")
_SET_WEIGHT = re.compile(r"set weight (\S+)/(\S+) (\d+)(%?)$")
_SHUTDOWN = re.compile(r"shutdown sessions server (\S+)/(\S+)$")


class FakeHAProxy(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Server rows keyed by (backend, server); status comes from the admin state and the health."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.rows: dict[tuple[str, str], dict] = {}
        self.commands: list[str] = []
        self.on_show_stat: Callable[[FakeHAProxy], None] | None = None
        self.lock = threading.Lock()
        super().__init__(path, _Handler)

    def add(self, backend: str, server: str, admin: str = "ready", health: str = "UP", **counters: int) -> None:
        self.rows[(backend, server)] = {"admin": admin, "health": health, "weight": 100, "scur": 0, "stot": 0,
                                        "econ": 0, "eresp": 0, "chkdown": 0, **counters}

    def status(self, backend: str, server: str) -> str:
        row = self.rows[(backend, server)]
        return {"maint": "MAINT", "drain": "DRAIN"}.get(row["admin"], row["health"])

    def answer(self, command: str) -> str:
        with self.lock:
            self.commands.append(command)
            if command == "show stat":
                if self.on_show_stat:
                    self.on_show_stat(self)
                return self.show_stat()
            if command == "show servers state":
                return "1\n# be_id be_name srv_id srv_name\n" + "".join(
                    f"3 {b} 1 {s} {self.status(b, s)} {r['weight']}\n" for (b, s), r in self.rows.items())
            match = _SHUTDOWN.match(command)
            if match:  # HAProxy answers nothing; the sessions end
                row = self.rows.get((match[1], match[2]))
                if row is None:
                    return "No such server.\n\n"
                row["scur"] = 0
                return "\n"
            for pattern, key in ((_SET_STATE, "admin"), (_SET_HEALTH, "health"), (_SET_WEIGHT, "weight")):
                match = pattern.match(command)
                if match:
                    row = self.rows.get((match[1], match[2]))
                    if row is None:
                        return "No such server.\n\n"
                    if key == "weight":
                        row["weight"] = int(match[3])  # N% of an initial weight of 100 is N
                    else:
                        row[key] = match[3].upper() if key == "health" else match[3]
                    return "\n"
            return "Unknown command. Please enter one of the following commands only :\n  help\n\n"

    def show_stat(self) -> str:
        lines = ["# " + ",".join(COLUMNS) + ","]
        backends = sorted({b for b, _s in self.rows})
        lines.append(",".join(["fe_main", "FRONTEND", "", "3", "120", "", "", "OPEN", "", "", ""]) + ",")
        for backend in backends:
            for (b, s), row in self.rows.items():
                if b == backend:
                    values = [b, s, "0", row["scur"], row["stot"], row["econ"], row["eresp"], self.status(b, s),
                              row["weight"], row["chkdown"], "5"]
                    lines.append(",".join(str(v) for v in values) + ",")
            lines.append(",".join([backend, "BACKEND", "0", "3", "120", "0", "0", "UP", "200", "0", "5"]) + ",")
        return "\n".join(lines) + "\n\n"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        command = self.rfile.readline().decode().strip()
        self.wfile.write(self.server.answer(command).encode())


@pytest.fixture
def fake() -> Iterator[FakeHAProxy]:
    # A short directory: a unix socket's path is limited to 107 bytes, and pytest's tmp_path can be long.
    with tempfile.TemporaryDirectory(prefix="cp-hap-") as directory:
        server = FakeHAProxy(str(Path(directory) / "admin.sock"))
        server.add(BACKEND, "app1_blue", stot=40)
        server.add(BACKEND, "app1_green", admin="maint")
        server.add("be_other", "app1_green", stot=7)  # same server name, another backend
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(check: bool = False, **args: object) -> dict:
    return modules.run(haproxy, check, **args)


def hap(fake: FakeHAProxy, tmp_path: Path, check: bool = False, **args: object) -> dict:
    return run(check=check, socket=fake.server_address, backend=BACKEND, state_file=str(tmp_path / "lib" / "state"),
               **args)


def switch(fake: FakeHAProxy, tmp_path: Path, check: bool = False, **args: object) -> dict:
    return hap(fake, tmp_path, check, **{"action": "switch", "server": "app1_green", "from_server": "app1_blue",
                                         "smoke_seconds": 0.3, "drain_timeout": 2, **args})


def sets(fake: FakeHAProxy) -> list[str]:
    return [c for c in fake.commands if c.startswith("set ")]


def test_status_reads_only_the_backends_servers(fake: FakeHAProxy, tmp_path: Path) -> None:
    result = hap(fake, tmp_path, action="status")
    assert not result["failed"] and not result["changed"]
    assert result["servers"] == {
        "app1_blue": {"status": "UP", "weight": 100, "sessions": 0, "total": 40},
        "app1_green": {"status": "MAINT", "weight": 100, "sessions": 0, "total": 0},
    }
    assert sets(fake) == [] and not (tmp_path / "lib").exists()


def test_maint_puts_the_server_in_maintenance_and_saves_the_state(fake: FakeHAProxy, tmp_path: Path) -> None:
    result = hap(fake, tmp_path, action="maint", server="app1_blue")
    assert not result["failed"] and result["changed"]
    assert fake.status(BACKEND, "app1_blue") == "MAINT" and result["servers"]["app1_blue"]["status"] == "MAINT"
    assert fake.status("be_other", "app1_green") == "UP"
    assert f"3 {BACKEND} 1 app1_blue MAINT 100" in (tmp_path / "lib" / "state").read_text()
    again = hap(fake, tmp_path, action="maint", server="app1_blue")
    assert not again["changed"] and sets(fake) == [f"set server {BACKEND}/app1_blue state maint"]


@pytest.mark.parametrize("traffic", [True, False])
def test_switch_moves_the_traffic_and_drains_the_old_server(fake: FakeHAProxy, tmp_path: Path, traffic: bool) -> None:
    def serve(haproxy: FakeHAProxy) -> None:  # the ready new server takes requests
        if traffic and haproxy.rows[(BACKEND, "app1_green")]["admin"] == "ready":
            haproxy.rows[(BACKEND, "app1_green")]["stot"] += 1
    fake.on_show_stat = serve
    # Its checks have not passed yet (rise 2): the caller's health gate did, the module forces it up.
    fake.rows[(BACKEND, "app1_green")].update(weight=1, health="DOWN")
    result = switch(fake, tmp_path)
    assert not result["failed"] and result["changed"], result.get("msg")
    assert result["smoke"] == {"result": "passed", "seconds": 0.3}
    green, blue = fake.rows[(BACKEND, "app1_green")], fake.rows[(BACKEND, "app1_blue")]
    assert (fake.status(BACKEND, "app1_green"), green["weight"]) == ("UP", 100)
    assert (fake.status(BACKEND, "app1_blue"), blue["weight"]) == ("MAINT", 100)
    assert result["servers"]["app1_green"]["status"] == "UP" and result["servers"]["app1_blue"]["status"] == "MAINT"
    if traffic:
        assert 0 < result["switch_seconds"] < 5
    else:
        assert result["switch_seconds"] is None
    commands = sets(fake)
    # The old server kept weight 1 during the watch, then drained before maintenance.
    assert commands.index(f"set weight {BACKEND}/app1_blue 1") < commands.index(f"set server {BACKEND}/app1_blue state drain")
    assert commands.index(f"set server {BACKEND}/app1_blue state drain") < commands.index(
        f"set server {BACKEND}/app1_blue state maint")
    assert "app1_green MAINT" not in (tmp_path / "lib" / "state").read_text()
    assert "app1_blue MAINT" in (tmp_path / "lib" / "state").read_text()
    again = switch(fake, tmp_path)
    assert not again["failed"] and not again["changed"] and sets(fake) == commands  # already switched


def test_a_switch_interrupted_while_draining_is_finished(fake: FakeHAProxy, tmp_path: Path) -> None:
    fake.rows[(BACKEND, "app1_green")]["admin"] = "ready"
    fake.rows[(BACKEND, "app1_blue")]["admin"] = "drain"
    result = switch(fake, tmp_path)
    assert not result["failed"] and result["changed"]
    assert (fake.status(BACKEND, "app1_green"), fake.status(BACKEND, "app1_blue")) == ("UP", "MAINT")


def test_the_drain_waits_for_the_old_servers_sessions(fake: FakeHAProxy, tmp_path: Path) -> None:
    fake.rows[(BACKEND, "app1_blue")]["scur"] = 3
    drained_at: list[int] = []

    def sessions_end(haproxy: FakeHAProxy) -> None:
        row = haproxy.rows[(BACKEND, "app1_blue")]
        if row["admin"] == "drain" and row["scur"]:
            row["scur"] -= 1
            if not row["scur"]:
                drained_at.append(len(haproxy.commands))
    fake.on_show_stat = sessions_end
    result = switch(fake, tmp_path)
    assert not result["failed"] and drained_at
    maint = fake.commands.index(f"set server {BACKEND}/app1_blue state maint")
    assert maint >= drained_at[0]  # not before the last session ended


@pytest.mark.parametrize(("breakage", "reason"), [
    ({"health": "DOWN"}, "app1_green went DOWN in HAProxy"),
    ({"econ": 2}, "app1_green had connection or response errors after the switch"),
])
def test_a_failed_post_switch_check_moves_the_traffic_back(
        fake: FakeHAProxy, tmp_path: Path, breakage: dict, reason: str) -> None:
    reads: list[int] = []

    def break_new_server(haproxy: FakeHAProxy) -> None:  # a few reads into the watch, the new server fails
        if haproxy.rows[(BACKEND, "app1_green")]["admin"] == "ready":
            reads.append(1)
            if len(reads) == 3:
                haproxy.rows[(BACKEND, "app1_green")].update(breakage)
    fake.on_show_stat = break_new_server
    result = switch(fake, tmp_path, smoke_seconds=5)
    assert result["failed"] and result["msg"].startswith("post-switch check failed: ")
    assert reason in result["msg"] and result["msg"].endswith("traffic moved back to app1_blue")
    assert result["smoke"]["result"] == "failed" and reason in result["smoke"]["reason"]
    blue = fake.rows[(BACKEND, "app1_blue")]
    assert (blue["admin"], blue["weight"], fake.status(BACKEND, "app1_green")) == ("ready", 100, "MAINT")
    assert result["servers"]["app1_green"]["status"] == "MAINT" and result["servers"]["app1_blue"]["status"] == "UP"
    assert f"set server {BACKEND}/app1_blue state drain" not in fake.commands
    assert f"{BACKEND} 1 app1_green MAINT" in (tmp_path / "lib" / "state").read_text()


@pytest.mark.parametrize("args", [{"server": "app1_purple"}, {"from_server": "app1_purple"}])
def test_an_unknown_server_is_a_clear_failure(fake: FakeHAProxy, tmp_path: Path, args: dict) -> None:
    result = switch(fake, tmp_path, **args)
    assert result["failed"]
    assert result["msg"] == (f"HAProxy has no server 'app1_purple' in backend '{BACKEND}' "
                             "(it has: app1_blue, app1_green)")
    assert sets(fake) == []


def test_a_server_cannot_be_switched_to_itself(fake: FakeHAProxy, tmp_path: Path) -> None:
    result = switch(fake, tmp_path, from_server="app1_green")
    assert result["failed"] and "both the server to switch to and the one to switch from" in result["msg"]
    assert sets(fake) == []


def test_check_mode_changes_nothing(fake: FakeHAProxy, tmp_path: Path) -> None:
    assert switch(fake, tmp_path, check=True)["changed"]
    assert hap(fake, tmp_path, check=True, action="maint", server="app1_blue")["changed"]
    assert sets(fake) == [] and "show stat" in fake.commands
    assert fake.status(BACKEND, "app1_blue") == "UP" and not (tmp_path / "lib").exists()


def test_a_missing_socket_fails_except_in_check_mode(tmp_path: Path) -> None:
    args = {"socket": str(tmp_path / "no.sock"), "backend": BACKEND, "server": "app1_green",
            "state_file": str(tmp_path / "state")}
    checked = run(check=True, **args)
    assert not checked["failed"] and checked["changed"] and checked["servers"] == {}
    assert "HAProxy is not running" in checked["msg"]
    assert not run(check=True, **{**args, "action": "status"})["changed"]
    real = run(**args)
    assert real["failed"] and f"cannot reach HAProxy's runtime API at {tmp_path / 'no.sock'}" in real["msg"]


def test_a_socket_nobody_listens_on_fails_even_in_check_mode() -> None:
    with tempfile.TemporaryDirectory(prefix="cp-hap-") as directory, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        path = str(Path(directory) / "admin.sock")
        stale.bind(path)  # the file is there, HAProxy is not (never listened)
        result = run(check=True, socket=path, backend=BACKEND, action="status", state_file=str(Path(directory) / "s"))
    assert result["failed"] and f"cannot reach HAProxy's runtime API at {path}" in result["msg"]


def test_a_command_haproxy_refuses_mid_switch_puts_the_traffic_back(fake: FakeHAProxy, tmp_path: Path) -> None:
    answer = fake.answer

    def refuse_the_old_servers_weight(command: str) -> str:
        if command == f"set weight {BACKEND}/app1_blue 1":
            fake.commands.append(command)
            return "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n\n"
        return answer(command)

    fake.answer = refuse_the_old_servers_weight
    result = switch(fake, tmp_path)
    assert result["failed"] and "interrupted: HAProxy refused" in result["msg"]
    assert result["msg"].endswith("traffic moved back to app1_blue")
    blue = fake.rows[(BACKEND, "app1_blue")]
    assert (blue["admin"], blue["weight"], fake.status(BACKEND, "app1_green")) == ("ready", 100, "MAINT")


def test_a_failure_after_the_passed_check_keeps_the_new_server(fake: FakeHAProxy, tmp_path: Path) -> None:
    answer = fake.answer

    def refuse_the_drain(command: str) -> str:
        if command == f"set server {BACKEND}/app1_blue state drain":
            fake.commands.append(command)
            return "Server is not in the expected state.\n\n"
        return answer(command)

    fake.answer = refuse_the_drain
    result = switch(fake, tmp_path)
    assert result["failed"] and result["smoke"]["result"] == "passed"
    assert result["msg"].startswith(f"app1_green serves {BACKEND} and passed its check, but retiring app1_blue failed")
    # Not moved back: the new colour is good and keeps serving.
    assert fake.status(BACKEND, "app1_green") == "UP" and fake.rows[(BACKEND, "app1_green")]["weight"] == 100
    assert "moved back" not in result["msg"]


def test_a_server_removed_by_a_reload_mid_switch_is_a_clear_failure(fake: FakeHAProxy, tmp_path: Path) -> None:
    def reload_without_the_new_server(haproxy: FakeHAProxy) -> None:
        if haproxy.rows.get((BACKEND, "app1_green"), {}).get("admin") == "ready":
            del haproxy.rows[(BACKEND, "app1_green")]
    fake.on_show_stat = reload_without_the_new_server
    result = switch(fake, tmp_path)
    assert result["failed"] and "interrupted: HAProxy no longer lists server 'app1_green'" in result["msg"]
    assert fake.rows[(BACKEND, "app1_blue")]["admin"] == "ready"
    assert fake.rows[(BACKEND, "app1_blue")]["weight"] == 100


def test_cut_sessions_moves_long_lived_sessions_at_the_switch(fake: FakeHAProxy, tmp_path: Path) -> None:
    # MLLP: the old colour holds 4 persistent sessions that would never end by themselves.
    fake.rows[(BACKEND, "app1_blue")]["scur"] = 4
    result = switch(fake, tmp_path, cut_sessions=True, drain_timeout=30)
    assert not result["failed"] and result["sessions_cut"] == 4, result
    commands = fake.commands
    drain = commands.index(f"set server {BACKEND}/app1_blue state drain")
    shutdown = commands.index(f"shutdown sessions server {BACKEND}/app1_blue")
    ready = commands.index(f"set server {BACKEND}/app1_green state ready")
    assert ready < drain < shutdown  # the new colour takes connections before the old ones are cut
    assert f"set weight {BACKEND}/app1_blue 1" not in commands  # no share of new connections for the old
    assert (fake.status(BACKEND, "app1_green"), fake.status(BACKEND, "app1_blue")) == ("UP", "MAINT")


def test_cut_sessions_does_not_wait_out_the_drain_timeout(fake: FakeHAProxy, tmp_path: Path) -> None:
    def reconnecting_client(haproxy: FakeHAProxy) -> None:  # a session that is never idle
        if haproxy.rows[(BACKEND, "app1_blue")]["admin"] == "drain":
            haproxy.rows[(BACKEND, "app1_blue")]["scur"] = 1
    fake.on_show_stat = reconnecting_client
    started = time.monotonic()
    result = switch(fake, tmp_path, cut_sessions=True, drain_timeout=30, smoke_seconds=0.2)
    assert not result["failed"] and time.monotonic() - started < 10
    assert fake.commands.count(f"shutdown sessions server {BACKEND}/app1_blue") == 2
    assert fake.status(BACKEND, "app1_blue") == "MAINT"


def test_cut_sessions_cuts_the_new_colours_sessions_when_the_traffic_moves_back(
        fake: FakeHAProxy, tmp_path: Path) -> None:
    def fail_under_load(haproxy: FakeHAProxy) -> None:
        green = haproxy.rows[(BACKEND, "app1_green")]
        if green["admin"] == "ready":
            green.update(scur=3, health="DOWN")
    fake.on_show_stat = fail_under_load
    result = switch(fake, tmp_path, cut_sessions=True)
    assert result["failed"] and "traffic moved back to app1_blue" in result["msg"]
    assert f"shutdown sessions server {BACKEND}/app1_green" in fake.commands
    assert fake.rows[(BACKEND, "app1_green")]["scur"] == 0 and fake.status(BACKEND, "app1_blue") == "UP"
