"""Record one run as an evidence bundle, event by event, then seal it and list it in the ledger.

The callback plugin (``plugins/callback/carepath_evidence.py``) only translates Ansible's
callbacks into calls on :class:`Recorder`; everything that decides what evidence holds is
here, where it is tested without Ansible.

Layout under the evidence directory (``.carepath/evidence`` by default)::

    <site>/ledger.jsonl                         one chained entry per sealed bundle
    <site>/bundles/<run id>/events.jsonl        one chained record per task result
    <site>/bundles/<run id>/run.json            the run: who, what, where, under which change
    <site>/bundles/<run id>/bundle.dsse.json    ed25519 signature over both files

Each event line is flushed as it is written: a run killed with SIGKILL leaves every event
recorded so far, and a bundle without ``run.json``, which ``verify`` reports as incomplete.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carepath import __version__
from carepath.errors import CarepathError
from carepath.evidence import bundle, ledger, witness
from carepath.evidence.canonical import canonical_bytes, plain
from carepath.evidence.chain import EventWriter, walk_chain
from carepath.evidence.dsse import load_private_key
from carepath.evidence.redact import POLICY_VERSION, Redactor
from carepath.evidence.store import Store, unlisted_marker
from carepath.evidence.store import marker_problem as store_marker_problem
from carepath.gate import Decision, requested_change
from carepath.runid import new_run_id

CONTROL_TAG = re.compile(r"^cp_([a-z][a-z0-9]*)_(\d+)$")
STATUSES = ("ok", "changed", "failed", "skipped", "unreachable")
#: Fields of a release event (carepath_bluegreen_state's ``carepath_release``) kept in evidence:
#: which service, release, colour and run, and for a cutover of long-lived sessions (HL7 engines)
#: the sessions cut and the old colour's queue at the switch and how long it took to drain.
RELEASE_FIELDS = ("app", "kind", "action", "version", "colour", "from_version", "run_id", "at", "gate_passed_at",
                  "switch_seconds", "sessions_cut", "acked_at_switch", "queued_at_switch", "drained_seconds",
                  "reason")


def utc(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts if ts is not None else time.time()))


def control_ids(tags: Iterable[str]) -> list[str]:
    """``cp_ssh_05`` tags to ``CP-SSH-05`` ids, in order, without repeats."""
    found: list[str] = []
    for tag in tags:
        match = CONTROL_TAG.match(str(tag))
        if match:
            ident = f"CP-{match.group(1).upper()}-{match.group(2)}"
            if ident not in found:
                found.append(ident)
    return found


def file_digest(path: str | os.PathLike[str]) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def tree_digest(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 over the sorted (relative path, file digest) pairs of a file or directory."""
    root = Path(path)
    if root.is_file():
        return file_digest(root)
    if not root.is_dir():
        return None
    pairs = sorted((str(p.relative_to(root)), file_digest(p)) for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(canonical_bytes(pairs)).hexdigest()


def collections(search_path: Iterable[str] | None = None) -> dict[str, Any]:
    """The Ansible collections installed on the controller: name -> version, and one digest of them all."""
    found: dict[str, str] = {}
    for base in search_path if search_path is not None else sys.path:
        for manifest in sorted(Path(base).glob("ansible_collections/*/*/MANIFEST.json")):
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]
            except (OSError, ValueError, KeyError):
                continue
            found.setdefault(f"{info['namespace']}.{info['name']}", str(info.get("version")))
    return {"count": len(found), "sha256": hashlib.sha256(canonical_bytes(found)).hexdigest(), "versions": found}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(directory: Path) -> dict[str, Any]:
    """The project's commit and whether its tree differs from it (null outside git)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,  # noqa: S607
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def change_record(ticket: str | None, approval_path: str | None) -> dict[str, Any]:
    """The change ticket and, embedded whole, the signed approval the run was started with.

    The policy gate has verified the approval against the site's approver keys before any host
    was touched; embedding it lets ``verify`` check it again offline, years later.
    """
    record: dict[str, Any] = {"ticket": ticket or None, "approval": None}
    if approval_path:
        try:
            data = Path(approval_path).read_bytes()
            record["approval"] = {"sha256": hashlib.sha256(data).hexdigest(), "envelope": json.loads(data)}
        except (OSError, ValueError) as exc:
            record["approval"] = {"error": f"cannot read {approval_path}: {exc}"}
    return record


def operator(environ: Mapping[str, str]) -> dict[str, Any]:
    """Who ran it: the OS user, the user behind sudo, and the AWX launcher where there is one."""
    identity: dict[str, Any] = {"user": getpass.getuser(), "host": platform.node()}
    if environ.get("SUDO_USER"):
        identity["sudo_user"] = environ["SUDO_USER"]
    for name in ("AWX_JOB_LAUNCHED_BY", "TOWER_USER_NAME", "CAREPATH_OPERATOR"):
        if environ.get(name):
            identity[name.lower()] = environ[name]
    if environ.get("SSH_CONNECTION"):
        identity["ssh_from"] = environ["SSH_CONNECTION"].split()[0]
    # With `ExposeAuthInfo yes` on the controller's sshd: how the operator logged in, including the
    # SSH certificate (public material only: key type, key and certificate).
    auth = environ.get("SSH_USER_AUTH")
    if auth:
        with contextlib.suppress(OSError):
            identity["ssh_auth"] = Path(auth).read_text(encoding="utf-8").strip().splitlines()[:8]
    return identity


@dataclass
class Recorder:
    """One run's bundle, from the first event to the ledger entry."""

    evidence_dir: Path
    site: str
    playbook: str
    run_id: str = ""
    signing_key: Path | None = None
    redactor: Redactor = field(default_factory=Redactor)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: where the ledger's witness lines go (carepath.evidence.witness): syslog, file:PATH or none
    witness: str = "none"
    #: the site's evidence store (carepath.evidence.store): sealed bundles are shipped there and listed
    #: in its ledger; None keeps them, and the ledger, under ``evidence_dir``
    store: Store | None = None

    def __post_init__(self) -> None:
        self.warnings: list[str] = []
        requested = self.run_id
        self.run_id = self.run_id if self.run_id and bundle.NAME_RE.match(self.run_id) else new_run_id(Path(self.playbook))
        if requested and requested != self.run_id:  # never a path: a run id names a folder in the store
            self.warnings.append(f"run id {requested!r} is not a plain name; this run is {self.run_id}")
        self.bundle_dir = Path(self.evidence_dir) / self.site / "bundles" / self.run_id
        self.ledger_path = Path(self.evidence_dir) / self.site / "ledger.jsonl"
        #: bundles sealed here that the store has not taken yet: one empty file per run id
        self.unshipped_dir = Path(self.evidence_dir) / self.site / "unshipped"
        self.shipped: list[str] = []
        #: bundles the store held but its ledger did not list, listed by this run
        self.relisted: list[str] = []
        #: this run's bundle (and earlier ones) the store did not list, marked there for the site's next run
        self.marked: list[str] = []
        self.started = utc()
        self.stats: dict[str, dict[str, int]] = {}
        self.counts = dict.fromkeys(STATUSES, 0)
        self._writer: EventWriter | None = None
        self.run: dict[str, Any] = {}
        self.aborted: list[str] = []
        self.unbound: list[str] = []
        self.key_problem: str | None = None
        self._key: Ed25519PrivateKey | None = None
        self._opening: str | None = None
        self._finished = False
        self._checkpoints: BinaryIO | None = None
        self._lock: BinaryIO | None = None

    # --- during the run ---------------------------------------------------------------------------

    def start(self, *, check_mode: bool, limit: str | None, tags: list[str], inventory: list[str],
              extra: Mapping[str, Any] | None = None, decision: Decision | None = None,
              launch: Mapping[str, Any] | None = None) -> None:
        """Open the bundle: the run, the gate's decision and the launch options, signed before any task runs."""
        if self.signing_key and Path(self.signing_key).exists():
            try:
                self._key = load_private_key(Path(self.signing_key))
            except CarepathError as exc:  # the policy gate refuses the run; the evidence says why it is unsigned
                self.key_problem = str(exc).replace("\n  hint:", ";")
        self.aborted = self.seal_aborted()
        self.shipped = self.ship_pending()
        # A refused run touches nothing; whatever made the gate refuse (an unreachable store) would only stall it.
        self.relisted = self.list_stored() if decision is None or decision.accepted else []
        if self.bundle_dir.exists():  # a run id given twice (CAREPATH_RUN_ID): never write into another run
            taken, self.run_id = self.run_id, f"{self.run_id}-{secrets.token_hex(3)}"
            self.bundle_dir = self.bundle_dir.parent / self.run_id
            self.warnings.append(f"run id {taken} was taken by an earlier run; this run is {self.run_id}")
        self.bundle_dir.mkdir(parents=True, exist_ok=False, mode=0o750)
        # Held while this process lives (and released by the kernel however it ends): a live run is
        # never sealed as aborted by another run of the site.
        # A POSIX record lock: Ansible's forked workers do not inherit it, so a killed ansible-playbook
        # whose workers linger (each in a session of its own) does not keep its bundle "running".
        self._lock = open(self.bundle_dir / bundle.LOCK_FILE, "wb")  # noqa: SIM115 - held until the process ends
        fcntl.lockf(self._lock, fcntl.LOCK_EX)
        self._writer = EventWriter(self.bundle_dir / bundle.EVENTS_FILE, flush=True)
        project = Path(self.playbook).resolve().parent.parent
        self.run = {
            "run_id": self.run_id,
            "site": self.site,
            "playbook": self.playbook,
            "started": self.started,
            "check_mode": check_mode,
            "limit": limit or "",
            "tags": list(tags),
            "operator": operator(self.environ),
            "change": change_record(*requested_change({}, self.environ)),
            "source": {
                **git_state(project),
                "playbook_sha256": file_digest(self.playbook),
                "inventory_sha256": {str(p): tree_digest(p) for p in inventory},
            },
            "controller": {"carepath": __version__, "python": platform.python_version(),
                           "ansible_core": _version("ansible-core"), "ansible_runner": _version("ansible-runner"),
                           "collections": collections(), **dict(extra or {})},
            "redaction": POLICY_VERSION,
            "witness": self.witness.split(":", 1)[0],
            **({"store": self.store.describe()} if self.store is not None else {}),
        }
        self._append({"type": "run_start", "data": {"check_mode": check_mode, "limit": limit or "",
                                                   "tags": list(tags), "playbook": self.playbook}})
        if decision is not None:
            self.record_gate(decision, launch or {})
        if self._key is not None:
            # Bound from the start: only what this run began can ever be sealed in its name; from here
            # on every event is vouched for by a signed checkpoint as it is written.
            self._opening = bundle.seal_opening(self.bundle_dir, self.run, self._writer.count, self._writer.head,
                                                self._key)
            self._checkpoints = open(self.bundle_dir / bundle.CHECKPOINTS_FILE, "ab")  # noqa: SIM115
            self._witness(witness.opened_line(self.site, self.run_id))

    def task_result(self, status: str, *, host: str, task: str, action: str, tags: Iterable[str],
                    result: Mapping[str, Any], role: str | None = None, duration: float | None = None) -> None:
        """One task's result on one host, reduced to what evidence may hold."""
        tags = list(tags)
        self.counts[status] = self.counts.get(status, 0) + 1
        no_log = bool(result.get("_ansible_no_log"))
        data: dict[str, Any] = {"status": status, "action": action}
        if role:
            data["role"] = role
        if duration is not None:
            data["duration_s"] = round(duration, 3)
        if "diff" in result and not no_log:
            # The diff itself can hold rendered secrets or data: only its digest is kept.
            data["diff_sha256"] = hashlib.sha256(canonical_bytes(plain(result["diff"]))).hexdigest()
        if status in ("failed", "unreachable"):
            # The playbook's own words (fail, assert) redacted; a module's message only classified
            # with its redacted first line: it may quote what the module read on the host.
            data["msg"] = "(hidden by no_log)" if no_log else self.redactor.failure_message(action, result)
        reports = result.get("carepath_controls")
        if isinstance(reports, list) and not no_log:
            # What each check found (redacted, at most 10 lines of 300 characters): the drift report
            # and the auditor's report read them from here.
            data["controls"] = [{"id": str(r.get("id")), "status": str(r.get("status")),
                                 **({"problems": [self.redactor.text(str(p))[:300] for p in r["problems"][:10]]}
                                    if isinstance(r.get("problems"), list) and r["problems"] else {}),
                                 **({"exception": self.redactor.data(r["exception"])} if r.get("exception") else {})}
                                for r in reports if isinstance(r, Mapping)]
        release = result.get("carepath_release")
        if isinstance(release, Mapping) and not no_log:
            # What a deploy or rollback did (roles/bluegreen): which service, release, colour and run.
            data["release"] = {k: self.redactor.text(str(release[k]))[:300]
                               for k in RELEASE_FIELDS if release.get(k) is not None}
        if isinstance(result.get("results"), list):
            data["items"] = len(result["results"])
        record = {"type": f"task_{status}", "host": host, "task": self.redactor.text(task),
                  "changed": bool(result.get("changed")), "control_ids": control_ids(tags), "data": data}
        self._append(record)

    def record_gate(self, decision: Decision, launch: Mapping[str, Any]) -> None:
        """The policy gate's decision and the launch options, recorded before any task result."""
        record = decision.to_record()
        record["problems"] = [self.redactor.text(p) for p in record["problems"]]
        self.run.update(gate=record, launch=dict(launch), change=change_record(decision.ticket, decision.approval_path))
        self._append({"type": "run_gate", "data": {"decision": record["decision"], "site": decision.site,
                                                  "protected": bool(decision.policy and decision.policy.protected),
                                                  "problems": record["problems"], "launch": dict(launch)}})

    def refused(self, reason: str) -> None:
        self._append({"type": "run_refused", "data": {"msg": self.redactor.text(reason)}})

    # --- at the end ----------------------------------------------------------------------------------

    def finish(self, status: str, stats: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """Write run.json, sign the bundle, append it to the ledger; returns what was done."""
        if self._writer is None:
            raise RuntimeError("finish() before start()")
        self._finished = True
        self._append({"type": "run_end", "data": {"status": status}})
        head, count = self._writer.head, self._writer.count
        self._writer.close()
        if self._checkpoints is not None:  # the bundle's own signature covers every event from here
            self._checkpoints.close()
            self._checkpoints = None
            (self.bundle_dir / bundle.CHECKPOINTS_FILE).unlink(missing_ok=True)
        self.run.update(finished=utc(), status=status, stats={h: dict(s) for h, s in stats.items()},
                        events={"count": count, "chain_head": head, "by_status": dict(self.counts)})
        if self._opening:
            self.run["opening"] = {"sha256": self._opening}
        bundle.write_run(self.bundle_dir, self.run)
        outcome: dict[str, Any] = {"bundle": str(self.bundle_dir), "signed": False, "ledger": None}
        if self._key is not None:
            envelope = bundle.seal_bundle(self.bundle_dir, self._key, chain_head=head, event_count=count)
            outcome.update(signed=True, ledger=self._list(self.run_id, envelope))
            outcome["marked"] = self.run_id in self.marked
            if self.store is not None and outcome["ledger"] is not None:
                outcome["stored"] = f"{self.store.describe()}/{self.site}/bundles/{self.run_id}"
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            (self.bundle_dir / bundle.LOCK_FILE).unlink(missing_ok=True)
        return outcome

    @property
    def finished(self) -> bool:
        return self._finished

    def _list(self, run_id: str, envelope: Path) -> str | None:
        """Append a sealed bundle to the site's signed ledger (the store's, shipping it there first), and tell
        the witness. Returns where the ledger is; None when the store did not take it (said in ``warnings``;
        the bundle stays here, marked unshipped, for the next run to ship)."""
        assert self._key is not None
        if self.store is None:
            entry = ledger.append_entry(self.ledger_path, run_id, envelope, private_key=self._key)
            where = str(self.ledger_path)
        else:
            try:
                self.store.ship(self.site, envelope.parent)
                entry = self.store.append(self.site, run_id, envelope, self._key)
            except Exception as exc:  # noqa: BLE001 - whatever the store did, the bundle stays here, marked
                self.unshipped_dir.mkdir(parents=True, exist_ok=True)
                (self.unshipped_dir / run_id).touch()
                reason = str(exc).replace("\n  hint:", ";") or type(exc).__name__
                # Marked in the store whether or not the bundle got there (a ship cut off after its rename
                # did store it): the next run lists it if it is there, and says so if it is not.
                if self._mark_unlisted(run_id, envelope, reason):
                    self.marked.append(run_id)
                    self.warnings.append(f"the evidence store did not list {run_id} ({reason}); a marker in the "
                                         "store has the site's next run with this key list it, and the next run "
                                         f"from here ships it again from {envelope.parent}")
                else:
                    self.warnings.append(f"the evidence store did not take {run_id} ({reason}); it stays in "
                                         f"{envelope.parent} and the next run from here ships it")
                return None
            (self.unshipped_dir / run_id).unlink(missing_ok=True)
            where = f"{self.store.describe()}/{self.site}/ledger.jsonl"
        self._witness_entry(entry, run_id)
        return where

    def _mark_unlisted(self, run_id: str, envelope: Path, reason: str) -> bool:
        """Leave the store a signed marker of a bundle it holds unlisted, for the site's next run to list."""
        assert self.store is not None and self._key is not None
        try:
            marker = unlisted_marker(self.site, run_id, envelope.read_bytes(), self._key, reason)
            self.store.mark_unlisted(self.site, run_id, marker)
        except Exception:  # noqa: BLE001 - the caller says the bundle stays here instead
            return False
        return True

    def _witness_entry(self, entry: Mapping[str, Any], run_id: str) -> None:
        digest = hashlib.sha256(canonical_bytes(entry)).hexdigest()
        self._witness(witness.entry_line(self.site, entry["seq"], digest, run_id))

    def list_stored(self) -> list[str]:
        """List the bundles a job of this key stored but could not list, as its signed marker in the store says.

        That is a job whose ledger append failed after the store took its bundle, on an execution node
        deleted since: nothing else would ever list it. Only such a marker makes a bundle listed late: a
        bundle the ledger stopped listing (cut short, edited) has none and stays reported by ``verify``.
        Two runs listing the same bundle list it once (appends are idempotent). Whatever goes wrong here
        is a warning: it never keeps this run from recording its own evidence.
        """
        if self.store is None or self._key is None:
            return []
        listed: list[str] = []
        try:
            found = self.store.unlisted(self.site)
        except Exception as exc:  # noqa: BLE001 - never at the cost of this run's own evidence
            self.warnings.append(f"could not read the evidence store's markers of unlisted bundles: {exc}"
                                 .replace("\n  hint:", ";"))
            return listed
        for run_id, (marker, envelope) in sorted(found.items()):
            try:
                problem = store_marker_problem(marker, envelope or None, self.site, run_id, self._key.public_key())
                if problem:
                    self.warnings.append(f"the evidence store's marker for {run_id} was not acted on: {problem}")
                    continue
                if not envelope:
                    self.warnings.append(f"the evidence store has a marker of this key for {run_id} but not its "
                                         "bundle: its evidence never reached the store or was removed (remove "
                                         f"{self.site}/unlisted/{run_id}.json there once accounted for)")
                    continue
                with tempfile.TemporaryDirectory() as scratch:
                    path = Path(scratch) / bundle.ENVELOPE_FILE
                    path.write_bytes(envelope)
                    entry = self.store.append(self.site, run_id, path, self._key)
                self._witness_entry(entry, run_id)
                listed.append(run_id)
            except Exception as exc:  # noqa: BLE001 - one bad marker never stops the others, nor this run
                self.warnings.append(f"could not list {run_id}, which the evidence store marks unlisted: {exc}"
                                     .replace("\n  hint:", ";"))
        return listed

    def ship_pending(self) -> list[str]:
        """Ship and list the bundles sealed here that the store did not take when their run ended."""
        if self.store is None or self._key is None or not self.unshipped_dir.is_dir():
            return []
        shipped = []
        for marker in sorted(self.unshipped_dir.iterdir()):
            envelope = self.bundle_dir.parent / marker.name / bundle.ENVELOPE_FILE
            if not envelope.exists():
                marker.unlink(missing_ok=True)
                continue
            if self._list(marker.name, envelope) is not None:
                shipped.append(marker.name)
        return shipped

    def _witness(self, line: str) -> None:
        try:
            witness.send(self.witness, line)
        except CarepathError as exc:
            warning = f"the ledger witness ({self.witness}) did not take the entry: {exc}".replace("\n  hint:", ";")
            if warning not in self.warnings:
                self.warnings.append(warning)

    def seal_aborted(self) -> list[str]:
        """Sign and list the site's earlier bundles that were never sealed (killed runs) as aborted.

        Only a bundle this key opened is sealed, and only as far as a signature vouches for its events:
        its signed opening must be intact, its events must begin with the ones the opening signed, and
        what follows the last signed checkpoint (a line the kill cut off, or lines rewritten since) is
        cut off, its size, line count and digest recorded in the signed run.json. Anything else (a
        bundle written by hand, events grafted onto another run's opening) is left unsigned and listed
        in ``unbound``, for ``verify`` to report. A bundle whose run is still going (its lock is held)
        is left alone.
        """
        bundles = self.bundle_dir.parent
        if self._key is None or not bundles.is_dir():
            return []
        sealed = []
        public = self._key.public_key()
        for directory in sorted(p for p in bundles.iterdir() if p.is_dir()):
            if (directory / bundle.ENVELOPE_FILE).exists() or directory == self.bundle_dir or _running(directory):
                continue
            opening, signed, problems = bundle.read_opening(directory, [public])
            if opening is None or signed is None or signed.get("site") != self.site:
                why = problems[0] if problems else f"it was opened for site {signed and signed.get('site')!r}"
                self.unbound.append(f"{directory.name}: {why}")
                continue
            events_path, checkpoints_path = directory / bundle.EVENTS_FILE, directory / bundle.CHECKPOINTS_FILE
            data = events_path.read_bytes() if events_path.exists() else b""
            marks = checkpoints_path.read_bytes() if checkpoints_path.exists() else b""
            count, size = bundle.vouched_prefix(directory.name, data, marks, signed, public)
            if count < int(signed["event_count"]):
                self.unbound.append(f"{directory.name}: its events do not begin with the ones signed when it opened")
                continue
            cut, data = data[size:], data[:size]
            if cut:
                bundle.write_atomic(events_path, data)
            walk = walk_chain(data, bundle.EVENTS_FILE)
            last = json.loads(data.splitlines()[-1])
            bundle.write_run(directory, {
                **opening, "status": "aborted", "finished": last["time"],
                "events": {"count": walk.count, "chain_head": walk.head},
                "opening": {"sha256": hashlib.sha256((directory / bundle.OPENING_FILE).read_bytes()).hexdigest()},
                "aborted": {"sealed_by": self.run_id, "trimmed_bytes": len(cut),
                            "trimmed_lines": cut.count(b"\n") + (0 if not cut or cut.endswith(b"\n") else 1),
                            "trimmed_sha256": hashlib.sha256(cut).hexdigest() if cut else None,
                            "note": "the run was stopped before it ended; these are the events it recorded "
                                    "that a signature vouched for"},
            })
            try:
                envelope = bundle.seal_bundle(directory, self._key)
            except CarepathError as exc:
                self.unbound.append(f"{directory.name}: {exc}")
                continue
            checkpoints_path.unlink(missing_ok=True)
            (directory / bundle.LOCK_FILE).unlink(missing_ok=True)
            self._list(directory.name, envelope)
            sealed.append(directory.name)
        return sealed

    def abort(self, status: str = "canceled") -> dict[str, Any] | None:
        """Seal the run as stopped (Ctrl-C, SIGTERM, an error that ended ansible-playbook) with what it recorded."""
        if self._writer is None or self._finished:
            return None
        return self.finish(status, {})

    def _append(self, record: Mapping[str, Any]) -> None:
        assert self._writer is not None
        self._writer.append({"time": utc(), **record})
        if self._checkpoints is not None and self._key is not None:
            self._checkpoints.write(bundle.checkpoint_line(self.run_id, self._writer.count, self._writer.head, self._key))
            self._checkpoints.flush()


def _running(directory: Path) -> bool:
    """Whether a live run holds the bundle's lock (the kernel drops it when that process ends, even by SIGKILL)."""
    try:
        with open(directory / bundle.LOCK_FILE, "r+b") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # EAGAIN or EACCES: another process holds it
                return True
            fcntl.lockf(handle, fcntl.LOCK_UN)
    except FileNotFoundError:
        return False
    return False
