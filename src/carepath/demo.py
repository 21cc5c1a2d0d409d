"""`carepath demo` (``make demo``): carepath's three jobs on the built-in lab, one step at a time.

Each step is announced in one line and ends with its result; the demo ends with one summary
screen (what ran, the key numbers, where the report is, what to try next). Every step runs the
same `carepath` commands a user would, each one's output kept in ``<state dir>/demo/<step>.log``.

A second demo reuses what is there: the lab's hosts, the releases, and the hardening when the
hosts are the same containers a successful demo hardened (a re-run of `carepath run site` is
the user's to make). The web app and the HL7 engine are each deployed under load and rolled back,
so each demo starts and ends with release 1.0.0 live.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from carepath import sitepolicy
from carepath.errors import CarepathError
from carepath.lab.lab import INVENTORY_FILE, WEBAPP_HOSTS_GROUP, LabFiles, ssh_argv
from carepath.lab.topology import Topology
from carepath.project import Project

_RUN = re.compile(r"carepath: run (\S+) (\w+) \(rc=(\d+), changed=(\d+)\)")
_BUNDLE = re.compile(r"carepath: evidence (\S+)")
#: The drift the demo plants by hand, and the control that reports it.
PLANTED = ("chmod 0644 /etc/ssh/sshd_config", "CP-SSH-01", "cp_ssh_01")
WEB_RELEASES = ("1.0.0", "2.0.0")
ENGINE_RELEASES = ("1.0.0", "2.0.0")
#: Where the lab's downstream system keeps each message it ACKed (playbooks/lab_hl7_sink.yml).
SINK_RECEIVED = "/var/lib/carepath/hl7-sink/received"


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    result: str = ""
    ok: bool = True


@dataclass
class Demo:
    project: Project
    topology: Topology
    files: LabFiles
    out: TextIO = sys.stdout
    steps: list[Step] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.project.state_dir / "demo"

    @property
    def state_file(self) -> Path:
        """What a demo did on this lab (hardening run and its hosts, live releases): one lab's, gone with `lab down`."""
        return self.files.state / "demo.json"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def remember(self, *, afresh: bool = False, **values: Any) -> None:
        """Add ``values`` to what this lab's demos did (``afresh``: instead of it)."""
        state = values if afresh else {**self.state(), **values}
        self.state_file.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    # --- running things -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def carepath(self, step: str, *args: str, ok_codes: Sequence[int] = (0,)) -> subprocess.CompletedProcess[str]:
        """Run `carepath ARGS` as a user would, its output appended to the step's log; a heartbeat while it runs."""
        log = self.folder / f"{step}.log"
        argv = [str(Path(sys.executable).parent / "carepath"), *args]
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"$ carepath {' '.join(args)}\n")
            handle.flush()
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # noqa: S603
                                    cwd=self.project.root)
            output: list[str] = []

            def copy() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    output.append(line)
                    handle.write(line)

            reader = threading.Thread(target=copy, daemon=True)
            reader.start()
            while reader.is_alive():
                reader.join(30)
                if reader.is_alive():
                    self.say(f"    ... still running: carepath {' '.join(args[:2])} "
                             f"({time.monotonic() - started:.0f} s; {log})")
            proc.wait()
        text = "".join(output)
        if proc.returncode not in ok_codes:
            raise CarepathError(f"`carepath {' '.join(args)}` failed (exit {proc.returncode}); its output is in {log}",
                                hint="the last lines: " + " | ".join(text.strip().splitlines()[-3:]))
        return subprocess.CompletedProcess(argv, proc.returncode, text, "")

    def step(self, name: str, announce: str, action: Callable[[], str]) -> None:
        self.say(f"==> {announce}")
        started = time.monotonic()
        step = Step(name)
        self.steps.append(step)
        try:
            step.result = action()
        except CarepathError:
            step.ok, step.result = False, "failed"
            raise
        finally:
            step.seconds = time.monotonic() - started
        self.say(f"    {step.result} ({step.seconds:.0f} s)")

    # --- the lab -------------------------------------------------------------------------------

    topology_file: Path | None = None

    def lab_args(self) -> list[str]:
        """`carepath lab up`'s options for this demo's lab."""
        args = ["--inventory", str(self.files.inventory_dir)]
        return args + (["--topology", str(self.topology_file)] if self.topology_file else [])

    def inv(self) -> list[str]:
        return ["-i", str(self.files.inventory_dir)]

    def inventory(self) -> dict[str, Any]:
        return yaml.safe_load((self.files.inventory_dir / INVENTORY_FILE).read_text(encoding="utf-8"))["all"]

    def address(self, host: str) -> str:
        return str(self.inventory()["hosts"][host]["ansible_host"])

    def group(self, name: str) -> list[str]:
        return list(((self.inventory().get("children") or {}).get(name) or {}).get("hosts") or {})

    def ssh(self, host: str, command: str) -> str:
        proc = subprocess.run(ssh_argv(self.files, self.address(host), command), capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            raise CarepathError(f"on {host}, `{command}` failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def containers(self) -> dict[str, str]:
        """Each lab host's container id: the same ids mean the same hosts a demo hardened before."""
        ids = {}
        for host in self.topology.containers:
            proc = subprocess.run(["podman", "inspect", "--format", "{{.Id}}", self.topology.container(host)],
                                  capture_output=True, text=True, check=False)
            ids[host.name] = proc.stdout.strip()
        return ids

    # --- the steps ------------------------------------------------------------------------------

    def lab_up(self) -> str:
        self.carepath("lab", "lab", "up", *self.lab_args())
        hosts = self.inventory()["hosts"]
        return f"{len(hosts)} hosts up: {', '.join(sorted(hosts))}"

    def harden(self) -> str:
        before = self.state()
        if before.get("hardened_run") and before.get("containers") == self.containers():
            self.numbers["harden_run"] = before["hardened_run"]
            return (f"already hardened by run {before['hardened_run']} (the same hosts): reused; "
                    "`carepath run site` converges them again")
        proc = self.carepath("harden", "run", "site", *self.inv())
        run_id, status, _, changed = _summary(proc.stdout)
        # Hosts a demo did not harden start afresh: no release of an earlier demo is live on them.
        self.remember(afresh=True, hardened_run=run_id, containers=self.containers())
        self.numbers["harden_run"] = run_id
        return f"run {run_id} {status}: {changed} changes on {len(self.inventory()['hosts'])} hosts"

    def drift(self) -> str:
        host = sorted(self.inventory()["hosts"])[0]
        command, control, tag = PLANTED
        self.ssh(host, f"sudo {command}")
        found = self.carepath("drift", "drift", *self.inv(), "--limit", host, "--tags", "ssh_hardening", ok_codes=(1,))
        detail = next((line.split(None, 3)[-1] for line in found.stdout.splitlines()
                       if line.split()[:3] == [host, control, "drifted"]), None)
        if detail is None:
            raise CarepathError(f"`carepath drift` did not report {control} drifted on {host} after `{command}`",
                                hint=f"its output is in {self.folder / 'drift.log'}")
        self.carepath("drift", "run", "site", *self.inv(), "--limit", host, "--tags", tag)
        self.carepath("drift", "drift", *self.inv(), "--limit", host, "--tags", tag)  # exit 0: compliant again
        return f"{control} drifted on {host} ({detail}), repaired by `carepath run site --tags {tag}`, compliant again"

    def evidence(self) -> str:
        site = self.project.evidence_dir / sitepolicy.load([str(self.files.inventory_dir)]).site
        public = self.project.evidence_key.with_suffix(".pub")
        verified = self.carepath("evidence", "evidence", "verify", str(site / "ledger.jsonl"), "--key", str(public))
        bundle = site / "bundles" / str(self.numbers["harden_run"])
        report = self.carepath("evidence", "evidence", "report", str(bundle), "--key", str(public), "--pdf")
        paths = dict(line.split(": ", 1) for line in report.stdout.splitlines() if re.match(r"^(html|pdf|csv|json): ", line))
        summary = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))["summary"]
        checks = sum(summary.values())
        self.numbers.update(controls_compliant=summary["compliant"], controls_checked=checks,
                            report=paths["html"], pdf=paths.get("pdf", ""),
                            verify=f"carepath evidence verify {site / 'ledger.jsonl'} --key {public}")
        runs = len((site / "ledger.jsonl").read_text(encoding="utf-8").splitlines())
        self.numbers["ledger_runs"] = runs
        return (f"the site's ledger of {runs} runs and their bundles verified offline (exit {verified.returncode}); "
                f"report of {bundle.name}: {summary['compliant']} of {checks} host x control checks compliant")

    def releases(self, kind: str, versions: Sequence[str]) -> dict[str, tuple[Path, str]]:
        from carepath import engines, webapp

        build = webapp.build_sample if kind == "webapp" else engines.build_sample
        folder = self.folder / "releases" / kind
        built = {}
        for version in versions:
            found = sorted(folder.glob(f"*-{version}.tar.gz"))
            digest_file = found[0].with_name(found[0].name + ".sha256") if found else None
            if found and digest_file is not None and digest_file.exists():
                built[version] = (found[0], digest_file.read_text(encoding="utf-8").split()[0])
            else:
                built[version] = build(version, folder)
        return built

    def deploy_args(self, kind: str, release: tuple[Path, str], version: str) -> list[str]:
        prefix = "webapp" if kind == "webapp" else "hl7_engine"
        return ["-e", f"{prefix}_version={version}", "-e", f"{prefix}_artifact_src={release[0]}",
                "-e", f"{prefix}_artifact_sha256={release[1]}"]

    def webapp(self) -> str:
        from carepath import loadgen

        built = self.releases("webapp", WEB_RELEASES)
        first, second = WEB_RELEASES
        if self.state().get("webapp_live") != first:
            self.carepath("webapp", "run", "deploy_webapp", *self.inv(), *self.deploy_args("webapp", built[first], first))
            self.remember(webapp_live=first)
        lb = self.group("webapp_lb")[0]
        with loadgen.Load(f"https://{self.address(lb)}/", connections=4, threads=1, delay_ms=5) as load:
            self.carepath("webapp", "run", "deploy_webapp", *self.inv(), *self.deploy_args("webapp", built[second], second))
            load.wait_for_version(second, timeout=60)
            self.carepath("webapp", "run", "rollback_webapp", *self.inv())
            load.wait_for_version(first, timeout=60)
            time.sleep(1)
        result = load.result
        assert result is not None
        self.numbers.update(requests=result.requests, failed=result.failed)
        hosts = len(self.group(WEBAPP_HOSTS_GROUP))
        return (f"{second} deployed blue-green on {hosts} app host(s) behind {lb}, then rolled back to {first}, "
                f"under load: {result.requests} requests, {result.failed} failed")

    def hl7(self) -> str:
        from carepath import mllp

        built = self.releases("hl7", ENGINE_RELEASES)
        first, second = ENGINE_RELEASES
        if self.state().get("engine_live") != first:
            self.carepath("hl7", "run", "lab_hl7_sink", *self.inv())
            self.carepath("hl7", "run", "deploy_hl7_engine", *self.inv(), *self.deploy_args("hl7", built[first], first))
            self.remember(engine_live=first)
        lb, sink = self.group("hl7_lb")[0], self.group("hl7_sinks")[0]
        # Message ids are <sender>-<n>: a prefix of this demo's own, so an earlier demo's are never counted.
        prefix = f"DEMO{int(time.time()) % 1_000_000:06d}S"
        import ssl

        tls = ssl.create_default_context(cafile=str(self.files.tls / "ca.crt"))
        with mllp.Traffic(self.address(lb), 2575, senders=2, rate=40, prefix=prefix, ack_timeout=5, tls=tls,
                          server_name=lb) as traffic:
            time.sleep(2)
            self.carepath("hl7", "run", "deploy_hl7_engine", *self.inv(), *self.deploy_args("hl7", built[second], second))
            self.carepath("hl7", "run", "rollback_hl7_engine", *self.inv())
            time.sleep(2)
        summary = mllp.summarize(traffic.tallies)
        acked = {c for t in traffic.tallies for c in t.acked}
        deadline = time.monotonic() + 60
        missing = acked
        while time.monotonic() < deadline:
            missing = acked - set(self._received(sink))
            if not missing:
                break
            time.sleep(2)
        self.numbers.update(messages_sent=summary["sent"], messages_acked=summary["acked"], messages_lost=len(missing))
        if missing or not acked:
            raise CarepathError(f"{len(missing)} of {len(acked)} ACKed messages did not reach the downstream system "
                                f"{sink} within 60 s (e.g. {sorted(missing)[:3]})",
                                hint=f"the deploy and rollback output is in {self.folder / 'hl7.log'}")
        return (f"engine {second} cut over on {', '.join(self.group('hl7_engines'))} behind {lb}, then rolled back to "
                f"{first}, under MLLP load: {summary['sent']} messages sent, {summary['acked']} ACKed, 0 lost "
                f"(every ACKed message reached the downstream system {sink})")

    def _received(self, sink: str) -> list[str]:
        names = self.ssh(sink, f"sudo ls {SINK_RECEIVED}").split()
        return [re.sub(r"^\d+-", "", name).removesuffix(".hl7") for name in names]

    # --- the whole demo -------------------------------------------------------------------------

    def run(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.say("carepath demo: the three jobs on the built-in lab (each step's output: "
                 f"{self.folder}/<step>.log)")
        self.step("lab", "Start the lab (podman containers, Debian 12 and 13)", self.lab_up)
        self.step("harden", "Harden every host to the baseline (carepath run site)", self.harden)
        self.step("drift", "Change sshd_config's mode by hand, find it with carepath drift, repair it", self.drift)
        self.step("evidence", "Verify the evidence offline and write the auditor's report", self.evidence)
        self.step("webapp", "Deploy a web app release blue-green under load, then roll it back", self.webapp)
        self.step("hl7", "Cut an HL7 engine over under MLLP load, then roll it back", self.hl7)
        self.summary(time.monotonic() - started)
        return 0 if all(s.ok for s in self.steps) else 1

    def summary(self, seconds: float) -> None:
        n = self.numbers
        rule = "-" * 78
        lines = [rule, "carepath demo: summary", rule]
        lines += [f"  {s.name:<9} {'ok' if s.ok else 'FAILED':<6} {s.seconds:>5.0f} s  {s.result}" for s in self.steps]
        lines += [rule,
                  f"  controls      {n.get('controls_compliant', '?')} of {n.get('controls_checked', '?')} host x control "
                  "checks compliant in the hardening run's evidence",
                  f"  web requests  {n.get('requests', '?')} served, {n.get('failed', '?')} failed during deploy and rollback",
                  f"  HL7 messages  {n.get('messages_sent', '?')} sent, {n.get('messages_acked', '?')} ACKed, "
                  f"{n.get('messages_lost', '?')} lost during cutover and rollback",
                  f"  report        {n.get('report', '?')}",
                  f"  report (PDF)  {n.get('pdf', '?')}",
                  rule, "  try next:",
                  "    carepath drift                       # every control of every host, in check mode",
                  "    carepath run site --check --diff     # what a converge would change, and how",
                  f"    {n.get('verify', 'carepath evidence verify LEDGER --key evidence.pub')}",
                  "    carepath run rollback_webapp         # the web app back to the release before, in seconds",
                  "    carepath lab down                    # remove the lab",
                  rule, f"  the demo took {int(seconds // 60)} min {seconds % 60:.0f} s", rule]
        self.say("\n".join(lines))


def _summary(output: str) -> tuple[str, str, int, int]:
    match = _RUN.search(output)
    if not match:
        raise CarepathError("carepath run printed no summary line")
    return match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
