"""Run a carepath playbook through ansible-runner, one fresh private data dir per run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carepath.console import Console
from carepath.errors import CarepathError
from carepath.evidence.artifacts import (
    RedactedCommand,
    RedactedStdout,
    SecretsChannel,
    redact_runner_artifacts,
    scrub_event,
)
from carepath.evidence.redact import Redactor
from carepath.evidence.witness import WITNESS_ENV
from carepath.procs import local_tool
from carepath.project import EVIDENCE_DIR_ENV, EVIDENCE_KEY_ENV, Project
from carepath.runid import RUN_ID_ENV, new_run_id


@dataclass(frozen=True)
class RunRequest:
    playbook: str
    inventory: Path | None = None
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    extra_vars: tuple[str, ...] = field(default_factory=tuple)
    verbosity: int = 0
    quiet: bool = False
    vault_password_file: Path | None = None
    ticket: str | None = None
    approval: Path | None = None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    rc: int
    artifact_dir: Path
    stats: dict[str, dict[str, int]]

    @property
    def changed(self) -> int:
        return sum(self.stats.get("changed", {}).values())


def resolve_playbook(project: Project, name: str) -> Path:
    """``site``, ``site.yml`` or a path: the playbook to run, or a clear error listing the choices."""
    candidates = [project.playbooks / name, project.playbooks / f"{name}.yml", Path(name)]
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix in (".yml", ".yaml"):
            return candidate.resolve()
    available = sorted(p.stem for p in project.playbooks.glob("*.yml"))
    raise CarepathError(
        f"unknown playbook {name!r}",
        hint=f"choose one of: {', '.join(available)} (from {project.playbooks})",
    )


def _ansible_env(project: Project) -> dict[str, str]:
    return {
        "ANSIBLE_CONFIG": str(project.ansible_cfg),
        # One answer for where evidence and its key are (project.py), whatever the state folder is.
        EVIDENCE_KEY_ENV: str(project.evidence_key),
        EVIDENCE_DIR_ENV: str(project.evidence_dir),
        # ansible-runner turns host key checking off unless told otherwise.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def resolve_inventory(project: Project, inventory: Path | None) -> Path:
    """The inventory to use; the lab's by default, with a clear error when the lab is not up."""
    if inventory is None:
        lab = project.lab_inventory / "hosts.yml"
        if not lab.exists():
            raise CarepathError(
                f"the lab is not up: there is no lab inventory ({lab})",
                hint="run `carepath lab up` first, or pass -i INVENTORY for your own hosts",
            )
        return project.lab_inventory
    if not inventory.exists():
        raise CarepathError(f"inventory {inventory} does not exist")
    return inventory.resolve()


def validate_inventory(project: Project, inventory: Path, limit: str | None) -> list[str]:
    """Parse the inventory the way Ansible will, before any host is contacted; return its hosts.

    A ``--limit`` is refused unless Ansible would use every part of it: Ansible drops what it
    cannot split, ignores a part that matches nothing (only a warning) and reads ``~`` alone as
    "every host", so a typo could widen the run to the whole site.
    """
    if limit is not None:
        problems = limit_problems(limit)
        if problems:
            raise CarepathError(
                f"--limit {limit!r} is not a host pattern Ansible can use whole: " + "; ".join(problems),
                hint="Ansible would ignore the bad part and could run on more hosts than meant; patterns are "
                     "names, globs (web*), ~regex, group[N] or group[N:M], joined with ',' and prefixed & or !",
            )
    env = {**os.environ, **_ansible_env(project), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
           # A --limit part matching no host or group is an error, not a warning Ansible then ignores.
           "ANSIBLE_HOST_PATTERN_MISMATCH": "error"}
    argv = [local_tool("ansible-inventory"), "-i", str(inventory), "--list"]
    if limit:
        argv += ["--limit", limit]
    # No stdin: ansible-inventory refuses a non-blocking one (as a CI runner or a job control
    # shell may hand over), and it has nothing to read.
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=project.root, check=False,  # noqa: S603
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[-600:]
        unmatched = _UNMATCHED.search(detail)
        if limit and unmatched:
            raise CarepathError(
                f"inventory {inventory} has no hosts matching --limit {limit!r}: the part {unmatched.group(1)!r} "
                "matches no host or group", hint="fix or remove that part; Ansible would ignore it and run on the rest")
        raise CarepathError(f"inventory {inventory} is not valid: {detail}")
    hosts = sorted(_hosts_in(json.loads(proc.stdout)))
    if not hosts:
        where = f" matching --limit {limit!r}" if limit else ""
        raise CarepathError(f"inventory {inventory} has no hosts{where}")
    return hosts


#: Ansible's message for a --limit part that matches nothing (an error with HOST_PATTERN_MISMATCH=error).
_UNMATCHED = re.compile(r"Could not match supplied host pattern, ignoring: (\S+)")

#: ansible.inventory.manager.PATTERN_WITH_SUBSCRIPT (ansible-core 2.19): ``pattern[N]``, ``[N:M]``, ``[N:]``, ``[N-M]``.
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")

#: ansible.inventory.manager.split_host_pattern's fallback: the runs of text it keeps from a pattern without commas.
_PATTERN_TOKEN = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def limit_problems(limit: str) -> list[str]:
    """What Ansible (ansible-core 2.19) would drop, ignore or fail on in ``limit``, each part named.

    Mirrors ``InventoryManager.subset`` and ``split_host_pattern``: parts are split on commas, or
    (without commas, when the whole is not one address) taken as runs of text between ':' and
    whitespace, silently dropping what does not fit, such as an unclosed '['.
    """
    parts, dropped = _split_limit(limit)
    kept = ", ".join(repr(p) for p in parts) or "nothing"
    problems = [f"{text!r} is not part of any pattern (an unbalanced bracket?); Ansible would drop it and keep {kept}"
                for text in dropped]
    if not parts:
        problems.append("it names no host pattern")
    for part in parts:
        problem = _pattern_problem(part)
        if problem:
            problems.append(f"{part!r}: {problem}")
    return problems


def _split_limit(limit: str) -> tuple[list[str], list[str]]:
    """The parts Ansible makes of ``limit``, and the text it would silently drop."""
    from ansible.parsing.utils.addresses import parse_address  # late: only a --limit needs it

    if "," in limit:
        return [p.strip() for p in limit.split(",") if p.strip()], []
    try:
        parse_address(limit, allow_ranges=True)
    except Exception:  # noqa: BLE001 - Ansible's own test: any failure means "not one address"
        parts = [p.strip() for p in _PATTERN_TOKEN.findall(limit) if p.strip()]
        dropped = [t for t in re.split(r"[\s:]+", _PATTERN_TOKEN.sub(" ", limit)) if t]
        return parts, dropped
    return [limit.strip()] if limit.strip() else [], []


def _pattern_problem(part: str) -> str | None:
    """Why Ansible would ignore or fail on one limit part (None: it is used as written)."""
    if part.startswith("@"):
        return None  # a file of patterns: ansible-inventory reads it and reports what is wrong
    body = part[1:] if part[0] in "&!" else part
    if not body:
        return f"{part[0]!r} needs a pattern after it"
    if body[0] == "~":
        if not body[1:]:
            return "'~' needs a regular expression after it; alone it matches every host"
        try:
            re.compile(body[1:])
        except re.error as exc:
            return f"the regular expression {body[1:]!r} is not valid ({exc})"
        return None
    match = _SUBSCRIPT.match(body)
    if match:
        start, end = match.group(3), match.group(5)
        if start and end and int(end) < int(start):
            return f"the range [{start}{match.group(4)}{end}] ends before it starts"
        body = match.group(1)
    elif body.endswith("]") and ":" in body[body.rfind("["):]:
        return "not a valid range: use [N], [N:M] or [N:] with whole numbers from 0"
    return _bracket_problem(body)


def _bracket_problem(glob: str) -> str | None:
    """Unbalanced or nested brackets in a glob: Ansible would take them literally and match nothing."""
    inside = False
    for char in glob:
        if char == "[":
            if inside:
                return "a '[' inside brackets; brackets do not nest"
            inside = True
        elif char == "]":
            if not inside:
                return "a ']' without its '['"
            inside = False
    return "a '[' without its ']'" if inside else None


def _hosts_in(data: dict[str, dict[str, list[str]]]) -> set[str]:
    """Every host named in ``ansible-inventory --list`` output (``--limit`` already applied)."""
    return {host for name, group in data.items() if name != "_meta" for host in group.get("hosts", [])}


def cmdline(request: RunRequest) -> list[str]:
    args: list[str] = []
    if request.check:
        args.append("--check")
    if request.diff:
        args.append("--diff")
    if request.tags:
        args += ["--tags", request.tags]
    if request.skip_tags:
        args += ["--skip-tags", request.skip_tags]
    for extra in request.extra_vars:
        args += ["--extra-vars", extra]
    if request.vault_password_file:
        args += ["--vault-password-file", str(request.vault_password_file)]
    return args


class RunStopped(CarepathError):
    """``carepath run`` was stopped by a signal; ansible-playbook and what it started are stopped too."""

    def __init__(self, run_id: str, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"run {run_id} stopped by {name}; ansible-playbook and its children are stopped")
        self.exit_code = 128 + signum


def request_secrets(request: RunRequest) -> list[str]:
    """The secrets ``carepath run`` knows before ansible-playbook starts: from the command line.

    Values of extra vars whose names look secret (``*password*``, ``*token*``, ``*secret*``,
    ``*key*``...) or are connection and become passwords, and the vault password when it is a
    plain file (a script's output is not read here).
    """
    from carepath.evidence.redact import named_secrets

    found: list[str] = []
    for extra in request.extra_vars:
        found += named_secrets(_parse_extra_vars(extra))
    path = request.vault_password_file
    if path and path.is_file() and not os.access(path, os.X_OK):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            found.append(path.read_text(encoding="utf-8").strip())
    return found


def _parse_extra_vars(extra: str) -> dict[str, Any]:
    """An ``-e`` value as Ansible reads it: ``@file``, YAML/JSON, or ``key=value`` pairs."""
    import yaml

    text = extra.strip()
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return {}
    elif not text.startswith(("{", "[", "---")):
        from ansible.parsing.splitter import parse_kv

        try:
            return dict(parse_kv(text))
        except Exception:  # noqa: BLE001 - Ansible refuses it too; nothing to learn from it here
            return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def run(project: Project, request: RunRequest) -> RunResult:
    """Run ``request`` through ansible-runner; print Ansible's usual progress; keep the artifacts.

    Nothing unredacted is written to disk (see :mod:`carepath.evidence.artifacts`). SIGINT and
    SIGTERM stop ansible-playbook and everything it started (:class:`ProcessStopper`), the
    artifacts are finished as at a normal end, and :class:`RunStopped` says so.
    """
    playbook = resolve_playbook(project, request.playbook)
    inventory = resolve_inventory(project, request.inventory)
    validate_inventory(project, inventory, request.limit)
    run_id = new_run_id(playbook)
    private_data_dir = project.runs_dir / run_id
    private_data_dir.mkdir(parents=True, mode=0o700)
    shown = playbook.relative_to(project.root) if playbook.is_relative_to(project.root) else playbook
    print(f"carepath: run {run_id}: {shown} on {inventory}", file=sys.stderr, flush=True)
    mrn = os.environ.get("CAREPATH_MRN_PATTERN")
    redactor = Redactor(extra_patterns={"site_mrn": mrn} if mrn else None)
    redactor.add_environment()
    redactor.add_secrets(request_secrets(request))
    artifact_dir = private_data_dir / "artifacts" / run_id
    channel = SecretsChannel(private_data_dir, redactor)
    command = RedactedCommand(artifact_dir, redactor)
    stdout = RedactedStdout(artifact_dir / "stdout")
    console = Console(sys.stdout, quiet=request.quiet)

    def on_event(event: dict[str, Any]) -> bool:
        channel.drain()  # the callback sends a play's secrets before the play's first event
        scrub_event(event, redactor)
        stdout.write(event)
        console.event(event)  # plain on a pipe or a file, coloured on a terminal
        return True

    stopper = ProcessStopper()
    with stopper.handling_signals():
        try:
            result = _run_runner(project, request, playbook, inventory, run_id, private_data_dir, channel.env,
                                 event_handler=on_event, cancel_callback=stopper.poll)
        finally:
            stopper.finish()
            command.close()
            stdout.close()
            channel.close()
        redact_runner_artifacts(artifact_dir, redactor)  # a last pass, with every secret sent at the end
    if stopper.signum is not None:
        raise RunStopped(run_id, stopper.signum)
    stats = result.stats or {}
    return RunResult(
        run_id=run_id,
        status=str(result.status),
        rc=int(result.rc if result.rc is not None else 1),
        artifact_dir=Path(result.config.artifact_dir),
        stats={k: v for k, v in stats.items() if isinstance(v, dict)},
    )


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int


def _processes() -> dict[int, _Proc]:
    """Every process on the machine, from /proc (Linux): parent, process group, session, start time."""
    found: dict[int, _Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after "pid (comm)": state ppid pgrp session ... starttime is field 22 of the whole line
        proc = _Proc(int(entry.name), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
        found[proc.pid] = proc
    return found


class ProcessStopper:
    """Stops ansible-playbook and every process it started when carepath gets SIGINT or SIGTERM.

    ansible-runner starts ansible-playbook in a session of its own (pexpect), so a Ctrl-C at the
    terminal never reaches it, and ansible-playbook's workers each start a session of their own
    too (``setsid``), so its process group is not all of it. The process tree under
    ansible-playbook is read from /proc as it runs (ansible-runner's ``cancel_callback``, called on
    output and each second without; read twice a second at most), with the process groups and
    sessions of its members: an orphan keeps them when its parent is gone.
    On a signal: SIGINT to ansible-playbook's process group (Ansible stops and its callbacks
    finish: the evidence bundle is sealed as aborted), SIGTERM to every process of the tree, its
    groups and sessions after :attr:`GRACE_INT` seconds, SIGKILL after :attr:`GRACE_TERM` more;
    what ansible-playbook leaves behind when it exits is stopped the same way.
    """

    GRACE_INT = 5.0
    GRACE_TERM = 3.0
    SCAN_INTERVAL = 0.5

    def __init__(self) -> None:
        self.signum: int | None = None
        self._since = 0.0
        self._last_scan = -1.0
        self._root: _Proc | None = None
        self._known: dict[int, _Proc] = {}
        self._sent: set[int] = set()

    @contextlib.contextmanager
    def handling_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        if self.signum is None:
            self.signum, self._since = signum, time.monotonic()
        else:  # asked twice: no more grace
            self._since = min(self._since, time.monotonic() - self.GRACE_INT - self.GRACE_TERM)
        self.poll()

    def _track(self, force: bool = False) -> dict[int, _Proc] | None:
        """Read the process tree (at most twice a second unless ``force``); None when not read."""
        now = time.monotonic()
        if not force and now - self._last_scan < self.SCAN_INTERVAL:
            return None
        self._last_scan = now
        procs = _processes()
        if self._root is None:
            # ansible-runner's child: the child of carepath leading a session of its own
            me = os.getpid()
            self._root = next((p for p in procs.values() if p.ppid == me and p.sid == p.pid), None)
        if self._root is not None:
            children: dict[int, list[int]] = {}
            for proc in procs.values():
                children.setdefault(proc.ppid, []).append(proc.pid)
            stack = [self._root.pid]
            while stack:
                pid = stack.pop()
                if pid in procs and (pid not in self._known or self._known[pid].start == procs[pid].start):
                    self._known[pid] = procs[pid]
                    stack += children.get(pid, [])
        return procs

    def _members(self, procs: dict[int, _Proc]) -> list[_Proc]:
        """The live processes of the tree, and of its process groups and sessions; never carepath's own."""
        own = _Proc(os.getpid(), 0, os.getpgrp(), os.getsid(0), 0)
        groups = {p.pgid for p in self._known.values()} - {own.pgid}
        sessions = {p.sid for p in self._known.values()} - {own.sid}
        return [p for p in procs.values()
                if p.pid != own.pid and p.pgid != own.pgid and p.sid != own.sid
                and ((p.pid in self._known and self._known[p.pid].start == p.start)
                     or p.pgid in groups or p.sid in sessions)]

    def _kill(self, members: list[_Proc], signum: int) -> None:
        for proc in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signum)

    def poll(self) -> bool:
        """ansible-runner's cancel callback: follow the tree, escalate when stopping; never cancels itself."""
        procs = self._track(force=self.signum is not None)
        if procs is None or self.signum is None or self._root is None:
            return False
        waited = time.monotonic() - self._since
        if signal.SIGINT not in self._sent:
            self._sent.add(signal.SIGINT)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._root.pgid, signal.SIGINT)
        elif waited > self.GRACE_INT + self.GRACE_TERM:
            self._sent.add(signal.SIGKILL)
            self._kill(self._members(procs), signal.SIGKILL)
        elif waited > self.GRACE_INT and signal.SIGTERM not in self._sent:
            self._sent.add(signal.SIGTERM)
            self._kill(self._members(procs), signal.SIGTERM)
        return False

    def finish(self, wait: float = 2.0) -> None:
        """After ansible-playbook exited: stop what it left running (only when carepath was stopped)."""
        if self.signum is None:
            return
        members = self._members(self._track(force=True) or {})
        if members:
            self._kill(members, signal.SIGTERM)
            deadline = time.monotonic() + wait
            while members and time.monotonic() < deadline:
                time.sleep(0.1)
                members = self._members(_processes())
            self._kill(members, signal.SIGKILL)


def _configured_witness(project: Project) -> bool:
    """Whether the project's ansible.cfg names a witness (``[carepath_evidence] witness``)."""
    import configparser

    config = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        config.read(project.ansible_cfg, encoding="utf-8")
    except configparser.Error:
        return False
    return bool(config.get("carepath_evidence", "witness", fallback="").strip())


def _lab_witness(project: Project, inventory: Path) -> dict[str, str]:
    """The ledger witness of a run against a lab `carepath lab up` made: a file in the lab's folder.

    The witness is by default the controller's syslog, forwarded to the site's collector; a machine
    running the lab often has no syslog daemon, and the lab is not a site. A witness set in the
    environment (``CAREPATH_EVIDENCE_WITNESS``) or in ansible.cfg is kept.
    """
    from carepath.lab import topology
    from carepath.lab.lab import INVENTORY_FILE, inventory_owner

    if WITNESS_ENV in os.environ or _configured_witness(project):
        return {}
    lab = inventory_owner(inventory / INVENTORY_FILE if inventory.is_dir() else inventory)
    if not lab or not topology.is_name(lab):
        return {}
    project.lab_state(lab).mkdir(parents=True, exist_ok=True, mode=0o700)
    return {WITNESS_ENV: f"file:{project.lab_state(lab) / 'ledger-witness.log'}"}


def _change_env(request: RunRequest) -> dict[str, str]:
    env = {}
    if request.ticket:
        env["CAREPATH_CHANGE_TICKET"] = request.ticket
    if request.approval:
        env["CAREPATH_CHANGE_APPROVAL"] = str(request.approval)
    return env


def _run_runner(project: Project, request: RunRequest, playbook: Path, inventory: Path, run_id: str,
                private_data_dir: Path, extra_env: dict[str, str], *,
                event_handler: Callable[[dict[str, Any]], bool] | None = None,
                cancel_callback: Callable[[], bool] | None = None) -> Any:
    import ansible_runner  # imported late: it is slow to import and not needed for errors

    return ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(project.root),
        playbook=str(playbook),
        inventory=str(inventory),
        ident=run_id,
        cmdline=shlex.join(cmdline(request)),
        limit=request.limit,
        verbosity=request.verbosity or None,
        # The evidence bundle takes the runner's id, so bundle and artifacts name each other.
        envvars={**_ansible_env(project), **_lab_witness(project, inventory), RUN_ID_ENV: run_id,
                 **_change_env(request), **extra_env},
        # Inputs are never written to env/ (they could hold secrets and would leak into
        # later runs); facts are not cached between runs (see ansible.cfg).
        suppress_env_files=True,
        fact_cache_type="",
        # carepath prints the events itself (Console), after redaction; ansible-runner prints nothing.
        quiet=True,
        # Every event goes through event_handler (redaction) before it is written; ansible-runner's
        # own stdout file would be written raw, so carepath writes it from the redacted events.
        event_handler=event_handler,
        # Called each second at most while ansible-playbook runs: follows its processes, stops them.
        cancel_callback=cancel_callback if cancel_callback is not None else (lambda: False),
        settings={"suppress_output_file": True, "pexpect_timeout": 1},
    )
