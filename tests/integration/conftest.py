"""A lab of real systemd hosts over SSH, shared by the integration tests of one session."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from carepath.lab.lab import LabFiles, ssh_argv
from tests.conftest import ROOT, carepath

STATE = ROOT / ".carepath" / "lab"


@dataclass(frozen=True)
class Lab:
    name: str
    topology: Path
    inventory: Path

    @property
    def hosts(self) -> dict[str, str]:
        """Inventory name -> address, from the inventory `lab up` wrote."""
        return {name: hv["ansible_host"] for name, hv in self._inventory_hosts().items()}

    def _inventory_hosts(self) -> dict[str, dict]:
        data = yaml.safe_load((self.inventory / "hosts.yml").read_text(encoding="utf-8"))
        return dict(data["all"]["hosts"])

    @property
    def ca(self) -> Path:
        """The lab's CA certificate: load balancers serve HTTPS and MLLP over TLS with certificates it signed."""
        return LabFiles(state=STATE / self.name, inventory_dir=self.inventory).tls / "ca.crt"

    def tls(self) -> ssl.SSLContext:
        """A client TLS context trusting only the lab's CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def port(self, host: str) -> int:
        return int(self._inventory_hosts()[host].get("ansible_port", 22))

    def ssh(
        self, host: str, command: str, *, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Log in to ``host`` over real SSH with the lab's key, as Ansible does."""
        files = LabFiles(state=STATE / self.name, inventory_dir=self.inventory)
        argv = ssh_argv(files, self.hosts[host], command, port=self.port(host))
        # sshd closes its listening socket for a moment while it re-executes on reload:
        # a connection refused then is retried, anything else is the answer.
        for _ in range(20):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
            if not (proc.returncode == 255 and "Connection refused" in proc.stderr):
                break
            time.sleep(0.5)
        if check:
            proc.check_returncode()
        return proc

    def assert_healthy(self, *hosts: str, when: str = "") -> None:
        """systemd on each host (all by default) is `running` with no failed unit, as monitoring asks."""
        for host in hosts or tuple(self.hosts):
            # --wait returns once start-up is over; a host still booting (no sshd yet) is waited for.
            deadline = time.monotonic() + 120
            while True:
                proc = self.ssh(host, "timeout 120 systemctl is-system-running --wait", check=False)
                if proc.returncode != 255 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            state = proc.stdout.strip()
            failed = self.ssh(host, "systemctl --failed --plain --no-legend", check=False).stdout.strip()
            assert (state, failed) == ("running", ""), f"{host} is {state!r} {when}; failed units: {failed}"

    def args(self) -> list[str]:
        return ["--topology", str(self.topology), "--inventory", str(self.inventory)]

    def run(self, playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """`carepath run PLAYBOOK` against this lab's inventory."""
        return carepath("run", playbook, "-i", str(self.inventory), *extra)


_SUMMARY = re.compile(r"carepath: run (\S+) (\w+) \(rc=(\d+), changed=(\d+)\)")


def run_site(lab: Lab, *extra: str) -> tuple[int, int, str, str]:
    """rc, changed, run id, and the output of `carepath run site` on the lab (stdout, then stderr)."""
    proc = carepath("run", "site", "-i", str(lab.inventory), *extra)
    match = _SUMMARY.search(proc.stderr)
    assert match, proc.stderr[-2000:]
    rc, changed = int(match.group(3)), int(match.group(4))
    if not extra and rc == 0:
        Baseline.holds(lab)  # a plain run that succeeded leaves the lab holding the baseline
    elif changed:
        Baseline.changed(lab)  # options (tags, limits, extra vars) or a failure: the lab may differ
    return proc.returncode, changed, match.group(1), proc.stdout + proc.stderr


class Baseline:
    """Which labs hold the baseline as a plain `carepath run site` last left them, untouched since.

    Many tests start from a hardened lab. A full converge of the lab costs a minute or two, so
    it is made only when the lab may differ from the baseline. A plain `run_site` that succeeds
    sets a lab's mark; a run with options (tags, limits, extra vars) or that failed, when Ansible
    counted a change, clears it (a refused run that changed nothing leaves it), and so do a change
    made by hand or by another launcher (:meth:`changed`) and a failed test (its changes may not
    have been undone). Ansible does not count a failed task's changes: a test whose run fails
    checks the hosts itself (digests, tables) that nothing changed. One class per worker process:
    each lab's tests are one xdist group, so one worker holds its mark.
    """

    _converged: set[str] = set()

    @classmethod
    def ensure(cls, lab: Lab) -> None:
        """The lab holds the baseline: converged now unless it is known to hold it already."""
        if lab.name not in cls._converged:
            rc, _, _, out = run_site(lab)
            assert rc == 0, out[-3000:]

    @classmethod
    def holds(cls, lab: Lab) -> None:
        cls._converged.add(lab.name)

    @classmethod
    def changed(cls, lab: Lab) -> None:
        cls._converged.discard(lab.name)

    @classmethod
    def forget_all(cls) -> None:
        cls._converged.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ARG001
    report = yield
    if report.failed:  # whatever a failed test changed may still be there
        Baseline.forget_all()
    return report


def evidence_events(proc: subprocess.CompletedProcess[str] | str) -> list[dict]:
    """The events of the evidence bundle of a `carepath run` (its path is printed), from the run or its output."""
    output = proc if isinstance(proc, str) else proc.stdout + proc.stderr
    match = re.search(r"carepath: evidence (\S+)", output)
    assert match, "carepath run printed no evidence bundle"
    return [json.loads(line) for line in (ROOT / match.group(1) / "events.jsonl").read_text().splitlines()]


def evidence_releases(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    """The release events in the evidence bundle of a `carepath run`, with their host."""
    return [{"host": e["host"], **e["data"]["release"]} for e in evidence_events(proc) if "release" in e.get("data", {})]


def evidence_controls(proc: subprocess.CompletedProcess[str] | str) -> dict[tuple[str, str], str]:
    """(host, control id) -> status, as the audits of a `carepath run` recorded them in its evidence."""
    return {(e["host"], c["id"]): c["status"] for e in evidence_events(proc) for c in e.get("data", {}).get("controls", [])}


def make_lab(tmp: Path, name: str, hosts: list[dict]) -> Lab:
    topology = tmp / f"{name}.yml"
    topology.write_text(yaml.safe_dump({"lab": name, "hosts": hosts}), encoding="utf-8")
    return Lab(name=name, topology=topology, inventory=tmp / "inventory")


def podman_json(*args: str) -> list[dict]:
    out = subprocess.run(["podman", *args, "--format", "json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Debian 12 and 13 hosts, started fresh for this session and removed after it."""
    the_lab = make_lab(
        tmp_path_factory.mktemp("lab"), "cpit",
        [{"name": "it-bookworm", "release": "bookworm", "groups": ["servers", "log_collectors"]},
         {"name": "it-trixie", "release": "trixie", "groups": ["servers"]}],
    )
    carepath("lab", "down", *the_lab.args())  # a crashed earlier session may have left it
    proc = carepath("lab", "up", *the_lab.args())
    assert proc.returncode == 0, proc.stderr
    yield the_lab
    carepath("lab", "down", *the_lab.args())


@pytest.fixture(scope="session")
def weblab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A load balancer and two app hosts (Debian 12 and 13) for the blue-green web app tests, and the
    HL7 tests' engine load balancer (the same HAProxy), engine host (it-app1) and downstream system
    (it-app2): one lab for both deliveries, as a site would run them."""
    the_lab = make_lab(
        tmp_path_factory.mktemp("weblab"), "cpwebit",
        [{"name": "it-lb", "release": "bookworm", "groups": ["webapp_lb", "hl7_lb"]},
         {"name": "it-app1", "release": "bookworm", "groups": ["webapp_hosts", "hl7_engines"]},
         {"name": "it-app2", "release": "trixie", "groups": ["webapp_hosts", "hl7_sinks"]}],
    )
    carepath("lab", "down", *the_lab.args())
    proc = carepath("lab", "up", *the_lab.args())
    assert proc.returncode == 0, proc.stderr
    yield the_lab
    carepath("lab", "down", *the_lab.args())
