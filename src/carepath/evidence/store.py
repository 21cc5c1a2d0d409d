"""The site's evidence store: where sealed bundles and the site's ledger are kept off the job's machine.

On an AWX / Automation Platform execution node the job's folder is deleted when the job ends, so a
bundle written there is lost with it. With a store configured (the evidence callback's ``store``
option, ``CAREPATH_EVIDENCE_STORE``), each sealed bundle is shipped there whole, then listed in the
store's ledger; the ledger on the store is the site's one chain, appended under the store's lock, so
jobs that finish at once on different nodes still chain one after the other.

Two kinds, with the layout of an evidence directory (``carepath evidence verify`` reads either)::

    /srv/evidence  or  dir:/srv/evidence         a directory (a mounted volume, an NFS share)
    ssh://[user@]host[:port]/srv/evidence         a directory on an evidence host, over SSH

Over SSH the evidence host needs only sshd, ``tar`` and ``python3`` (any Debian host has them): the
bundle goes as a tar stream into a temporary folder that is renamed into place, and the ledger line
is written by a short Python program that holds ``flock`` on the ledger while the entry is signed
here (the signing key never leaves the job's machine). ``ssh`` uses its normal configuration and
agent (AWX's machine credential); more options come from ``store_ssh_args``.

A bundle is listed only once it is in the store whole, so a ledger entry never names a missing
bundle. A bundle the store did not take stays where the run wrote it, with a marker under
``<evidence_dir>/<site>/unshipped/``; the next run on that machine ships it first. When the store took a
bundle but its ledger append failed, the job also leaves a signed marker in the store's
``<site>/unlisted/`` (what it failed to list, signed with the evidence key): the site's next run, from
any machine, lists that bundle (``unlisted``, ``marker_problem``). Only a marker signed by the key makes
a bundle listed late; a bundle the ledger stopped listing (a ledger cut short, a bundle moved) has
none, and stays reported by ``carepath evidence verify``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from carepath.errors import CarepathError
from carepath.evidence import bundle, ledger
from carepath.evidence.bundle import CHECKPOINTS_FILE, ENVELOPE_FILE, LOCK_FILE, NAME_RE, STATEMENT_TYPE
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import sha256_hex
from carepath.evidence.dsse import open_envelope, sign_envelope

#: Files of a bundle folder that are only the run's own working state, never shipped.
_WORKING = (LOCK_FILE, CHECKPOINTS_FILE)
_TIMEOUT = 120.0


class Store(Protocol):
    def describe(self) -> str: ...
    def check(self, site: str) -> None: ...
    def ship(self, site: str, bundle_dir: Path) -> None: ...
    def append(self, site: str, bundle_id: str, envelope: Path, key: Ed25519PrivateKey) -> dict[str, Any]: ...
    def mark_unlisted(self, site: str, bundle_id: str, marker: bytes) -> None: ...
    def unlisted(self, site: str) -> dict[str, tuple[bytes, bytes]]: ...


def parse(spec: str | None, ssh_args: str | None = None) -> Store | None:
    """The store a ``store`` setting names (None for unset or ``none``); a clear error for anything else."""
    spec = (spec or "").strip()
    if spec in ("", "none"):
        return None
    if spec.startswith("ssh://"):
        url = urlsplit(spec)
        try:
            port = url.port
        except ValueError:
            port = -1
        path = unquote(url.path)
        if not url.hostname or url.hostname.startswith("-") or port == -1 or not path.startswith("/") or path == "/":
            raise CarepathError(f"evidence store {spec!r}: an SSH store is ssh://[user@]host[:port]/absolute/path",
                                hint="e.g. ssh://evidence@evidence01.example.org/srv/carepath-evidence")
        return SshStore(host=url.hostname, user=unquote(url.username) if url.username else None, port=port,
                        path=path, ssh_args=tuple(shlex.split(ssh_args or "")))
    path = spec[4:] if spec.startswith("dir:") else spec
    if not path.startswith("/"):
        raise CarepathError(f"evidence store {spec!r} is neither an absolute directory nor ssh://host/path",
                            hint="a relative store would be inside the job's own folder, which an execution "
                                 "node deletes: give the mounted volume's absolute path")
    return DirStore(Path(path))


def _bundle_files(bundle_dir: Path) -> list[Path]:
    if not (bundle_dir / ENVELOPE_FILE).exists():
        raise CarepathError(f"{bundle_dir} is not sealed (no {ENVELOPE_FILE}): only sealed bundles are stored")
    return sorted(p for p in bundle_dir.iterdir() if p.is_file() and p.name not in _WORKING and not p.name.startswith("."))


@dataclass(frozen=True)
class DirStore:
    """A directory on a mounted volume, with the layout of an evidence directory."""

    root: Path

    def describe(self) -> str:
        return str(self.root)

    def check(self, site: str) -> None:
        folder = self.root / site / "bundles"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe."):
                pass
            if (self.root / site / "ledger.jsonl").exists():
                with open(self.root / site / "ledger.jsonl", "ab"):
                    pass
        except OSError as exc:
            raise CarepathError(f"the evidence store {self.root} cannot be written: {exc.strerror or exc}",
                                hint="mount the store's volume into the job, writable by the job's user") from None

    def ship(self, site: str, bundle_dir: Path) -> None:
        bundle_dir = Path(bundle_dir)
        files = _bundle_files(bundle_dir)
        target = self.root / site / "bundles" / bundle_dir.name
        if target.exists():
            _same_envelope(target / ENVELOPE_FILE, bundle_dir / ENVELOPE_FILE, self.describe())
            return
        incoming = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            incoming = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".incoming.{bundle_dir.name}."))
            for path in files:
                shutil.copyfile(path, incoming / path.name)
                _fsync(incoming / path.name)
            incoming.chmod(0o750)
            _fsync(incoming)
            incoming.rename(target)
            _fsync(target.parent)  # the rename on disk before the ledger names the bundle
        except OSError as exc:
            if incoming is not None:
                shutil.rmtree(incoming, ignore_errors=True)
            if target.exists():  # another job shipped the same bundle a moment before
                _same_envelope(target / ENVELOPE_FILE, bundle_dir / ENVELOPE_FILE, self.describe())
                return
            raise CarepathError(f"cannot store {bundle_dir.name} in {self.root}: {exc.strerror or exc}") from None

    def append(self, site: str, bundle_id: str, envelope: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
        try:
            return ledger.append_entry(self.root / site / "ledger.jsonl", bundle_id, envelope, private_key=key)
        except OSError as exc:
            raise CarepathError(f"cannot append {bundle_id} to the ledger in {self.root}: "
                                f"{exc.strerror or exc}") from None

    def mark_unlisted(self, site: str, bundle_id: str, marker: bytes) -> None:
        folder = self.root / site / UNLISTED_DIR
        try:
            folder.mkdir(mode=0o750, parents=True, exist_ok=True)
            bundle.write_atomic(folder / f"{bundle_id}.json", marker, mode=0o640)
        except OSError as exc:
            raise CarepathError(f"cannot mark {bundle_id} unlisted in {self.root}: {exc.strerror or exc}") from None

    def unlisted(self, site: str) -> dict[str, tuple[bytes, bytes]]:
        # The program the evidence host runs for an SSH store, run here: one reading of the markers.
        argv = [sys.executable, "-c", _UNLISTED, *_unlisted_args(str(self.root / site))]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout(), check=False)  # noqa: S603
        except subprocess.TimeoutExpired:
            raise CarepathError(f"reading the store {self.root} did not finish in {timeout():.0f} s") from None
        if proc.returncode != 0:
            detail = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-3:])
            raise CarepathError(f"cannot read the store {self.root}: {detail}")
        return _decode_unlisted(proc.stdout, self.describe())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_envelope(stored: Path, local: Path, where: str) -> None:
    try:
        same = stored.read_bytes() == local.read_bytes()
    except OSError:
        same = False
    if not same:
        raise CarepathError(f"{where} already holds a different bundle named {local.parent.name}",
                            hint="a run id is used once; run `carepath evidence verify` on the store")


# Runs on the evidence host (python3 -c PATH BUNDLE DIGEST SECONDS): lock the ledger; if it lists this very
# bundle already (a retry), print that entry and stop; else print the last line, append the signed entry read
# from stdin if it chains on that line, fsync, say ok. The lock is held while the job's machine signs; an alarm
# ends the program (and frees the lock) if the other side stalls.
_APPEND = r"""
import fcntl, hashlib, json, os, signal, sys
path, bundle, digest, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
signal.alarm(seconds)
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "a+b") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    needle = json.dumps(bundle).encode()
    for line in f:
        if needle in line:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if (isinstance(entry, dict) and entry.get("bundle") == bundle and entry.get("bundle_digest") == digest
                    and type(entry.get("seq")) is int):
                sys.stdout.write(json.dumps({"listed": line.rstrip(b"\n").decode()}) + "\n")
                sys.exit(0)
    end = f.seek(0, 2)
    last = b""
    if end:
        f.seek(max(0, end - 65536))
        tail = f.read()
        if not tail.endswith(b"\n"):
            sys.exit("the ledger's last line is incomplete (no newline): run carepath evidence verify on it")
        last = tail[:-1].rsplit(b"\n", 1)[-1]
    sys.stdout.write(json.dumps({"last": last.decode()}) + "\n")
    sys.stdout.flush()
    line = sys.stdin.buffer.readline()
    if not line.endswith(b"\n"):
        sys.exit("no entry came")
    prev = hashlib.sha256(last).hexdigest() if last else "0" * 64
    if json.loads(line).get("prev") != prev:
        sys.exit("the entry does not chain on the ledger's last line")
    f.write(line)
    f.flush()
    os.fsync(f.fileno())
print("ok")
"""

# Runs on the evidence host (python3 -c FOLDER NAME_PATTERN ENVELOPE_FILE MARKERS CAP SECONDS), and here for a
# directory store: for each marker FOLDER/MARKERS/<run>.json whose bundle FOLDER/ledger.jsonl does not
# list, {run: [marker text, envelope text or "" when the store does not hold the bundle]}; a marker whose
# bundle is listed is removed. The ledger is read only when there is a marker. Files are read only if
# regular (no link followed), markers and envelopes at most CAP bytes, ledger lines CAP bytes at a time;
# an alarm ends the program at the store's deadline.
_UNLISTED = r"""
import json, os, re, signal, stat, sys
folder, name, envelope, markers, cap = sys.argv[1], re.compile(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
signal.alarm(int(sys.argv[6]))
def opened(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError("not a regular file")
    return os.fdopen(fd, "rb")
def read(path):
    try:
        with opened(path) as f:
            data = f.read(cap + 1)
    except OSError:
        return None
    return data.decode("utf-8", "replace") if len(data) <= cap else None
marks = os.path.join(folder, markers)
runs = [n[:-5] for n in sorted(os.listdir(marks)) if n.endswith(".json") and name.fullmatch(n[:-5])] \
    if os.path.isdir(marks) else []
listed = set()
if runs and os.path.lexists(os.path.join(folder, "ledger.jsonl")):
    with opened(os.path.join(folder, "ledger.jsonl")) as f:
        for line in iter(lambda: f.readline(cap), b""):
            try:
                bundle = json.loads(line).get("bundle")
            except (ValueError, AttributeError, RecursionError):
                continue
            if isinstance(bundle, str):
                listed.add(bundle)
found = {}
for run in runs:
    path = os.path.join(marks, run + ".json")
    if run in listed:
        try:
            os.unlink(path)
        except OSError:
            pass
        continue
    marker, sealed = read(path), read(os.path.join(folder, "bundles", run, envelope))
    if marker:
        found[run] = [marker, sealed or ""]
print(json.dumps(found))
"""
#: Where a job leaves its signed markers of bundles stored but not listed, per site in the store.
UNLISTED_DIR = "unlisted"
UNLISTED_PREDICATE = "https://carepath.dev/unlisted-bundle/v1"
_CAP = 65536


def _unlisted_args(folder: str) -> list[str]:
    return [folder, NAME_RE.pattern.strip("^$"), ENVELOPE_FILE, UNLISTED_DIR, str(_CAP), str(max(1, int(timeout())))]


def _decode_unlisted(out: bytes, where: str) -> dict[str, tuple[bytes, bytes]]:
    try:
        found = json.loads(out)
        return {str(run): (str(marker).encode(), str(sealed).encode()) for run, (marker, sealed) in found.items()}
    except (ValueError, AttributeError, TypeError):
        raise CarepathError(f"the store {where} answered the unlisted-bundles query with something else") from None


def _marker_subject(envelope: bytes) -> list[dict[str, Any]]:
    return [{"name": ENVELOPE_FILE, "digest": {"sha256": sha256_hex(envelope)}}]


def unlisted_marker(site: str, bundle_id: str, envelope: bytes, key: Ed25519PrivateKey, reason: str) -> bytes:
    """The signed marker a job leaves in the store for a bundle the store took but its ledger did not list."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": _marker_subject(envelope),
        "predicateType": UNLISTED_PREDICATE,
        "predicate": {"site": site, "run_id": bundle_id, "reason": reason[:300]},
    }
    return canonical_bytes(sign_envelope(canonical_bytes(statement), key)) + b"\n"


def marker_problem(marker: bytes, envelope: bytes | None, site: str, bundle_id: str,
                   public: Ed25519PublicKey) -> str | None:
    """Why ``marker`` does not vouch that ``bundle_id`` (whose envelope is ``envelope``) of ``site`` was stored
    by a job of this key and never listed (None: it does). Without ``envelope`` (the store does not hold the
    bundle) only the signature, site and run are checked."""
    try:
        payload, _, problems = open_envelope(json.loads(marker), [public])
        statement = json.loads(payload) if payload is not None else None
    except (ValueError, RecursionError):
        return "the marker is not JSON"
    if statement is None:
        return problems[0][1] if problems else "the marker's signature does not verify"
    expected: dict[str, Any] = {"_type": STATEMENT_TYPE, "predicateType": UNLISTED_PREDICATE}
    if envelope is not None:
        expected["subject"] = _marker_subject(envelope)
    if not isinstance(statement, dict) or any(statement.get(k) != v for k, v in expected.items()):
        return "the marker is for another bundle or of another kind"
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict) or predicate.get("site") != site or predicate.get("run_id") != bundle_id:
        return "the marker names another site or run"
    return None


# Runs on the evidence host: unpack the tar stream into a temporary folder, write it to disk, rename it into
# place and write the rename to disk, so a ledger entry never names a bundle a crash could lose.
_RECEIVE = r"""set -eu
bundles=$1; name=$2
mkdir -p -m 750 "$bundles"
if [ -e "$bundles/$name" ]; then cat "$bundles/$name/bundle.dsse.json"; exit 3; fi
tmp=$(mktemp -d "$bundles/.incoming.$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -x -f - -C "$tmp"
chmod 750 "$tmp"
sync "$tmp"/* "$tmp"
mv -T "$tmp" "$bundles/$name"
trap - EXIT
sync "$bundles"
"""

# Runs on the evidence host: write stdin to MARKERS/NAME.json through a temporary file renamed into place.
_MARK = r"""set -eu
mkdir -p -m 750 "$1"
tmp=$(mktemp "$1/.$2.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
chmod 640 "$tmp"
sync "$tmp"
mv -f "$tmp" "$1/$2.json"
trap - EXIT
sync "$1"
"""

_CHECK = r"""set -eu
mkdir -p -m 750 "$1/bundles"
probe=$(mktemp "$1/bundles/.probe.XXXXXX")
rm -f "$probe"
if [ -e "$1/ledger.jsonl" ] && [ ! -w "$1/ledger.jsonl" ]; then echo "$1/ledger.jsonl is not writable" >&2; exit 4; fi
command -v python3 >/dev/null || { echo "python3 is not installed on the evidence host" >&2; exit 4; }
command -v tar >/dev/null || { echo "tar is not installed on the evidence host" >&2; exit 4; }
"""


@dataclass(frozen=True)
class SshStore:
    """A directory on an evidence host, reached with ``ssh``."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None
    ssh_args: tuple[str, ...] = ()

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"ssh://{who}{self.host}{f':{self.port}' if self.port else ''}{self.path}"

    def _argv(self, *remote: str, script: str | None = None) -> list[str]:
        """ssh to the store running ``remote`` (quoted), or the shell ``script`` with ``remote`` as its arguments."""
        command = " ".join(shlex.quote(a) for a in remote)
        if script is not None:
            command = f"sh -c {shlex.quote(script)} sh {command}"
        return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=10",
                "-o", "ServerAliveCountMax=3",
                *(["-p", str(self.port)] if self.port else []), *self.ssh_args,
                *(["-l", self.user] if self.user else []), self.host, "--", command]

    def _run(self, argv: Sequence[str], data: bytes | None, what: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(list(argv), input=data, capture_output=True, timeout=timeout(), check=False)  # noqa: S603
        except FileNotFoundError:
            raise CarepathError("ssh is not installed: the evidence store is reached over SSH",
                                hint="install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise CarepathError(f"{what} on {self.describe()} did not finish in {timeout():.0f} s") from None

    def _fail(self, what: str, proc: subprocess.CompletedProcess[bytes]) -> CarepathError:
        detail = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-3:]) or f"exit {proc.returncode}"
        return CarepathError(f"{what} on the evidence store {self.describe()} failed: {detail}",
                             hint="check the store's address, the job's SSH key or agent, and the host key "
                                  "(store_ssh_args / CAREPATH_EVIDENCE_STORE_SSH_ARGS)")

    def check(self, site: str) -> None:
        proc = self._run(self._argv(f"{self.path}/{site}", script=_CHECK), None, "the store check")
        if proc.returncode != 0:
            raise self._fail("writing a probe", proc)

    def ship(self, site: str, bundle_dir: Path) -> None:
        bundle_dir = Path(bundle_dir)
        stream = io.BytesIO()
        with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in _bundle_files(bundle_dir):
                info = tar.gettarinfo(str(path), arcname=path.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        proc = self._run(self._argv(f"{self.path}/{site}/bundles", bundle_dir.name, script=_RECEIVE), stream.getvalue(),
                         "shipping the bundle")
        if proc.returncode == 3:  # already there: the same bundle (a retry) is fine, another is not
            if proc.stdout != (bundle_dir / ENVELOPE_FILE).read_bytes():
                raise CarepathError(f"{self.describe()} already holds a different bundle named {bundle_dir.name}",
                                    hint="a run id is used once; run `carepath evidence verify` on the store")
            return
        if proc.returncode != 0:
            raise self._fail(f"storing {bundle_dir.name}", proc)

    def append(self, site: str, bundle_id: str, envelope: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
        if not NAME_RE.match(bundle_id):
            raise CarepathError(f"bundle id {bundle_id!r} is not a plain name (letters, digits, . _ -)")
        digest = sha256_hex(Path(envelope).read_bytes())
        seconds = max(1, int(timeout()))
        argv = self._argv("python3", "-c", _APPEND, f"{self.path}/{site}/ledger.jsonl", bundle_id, digest,
                          str(seconds))
        # stderr to a file: ssh's own messages (-v in store_ssh_args) can never fill a pipe and stall the lock.
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                        stderr=errors)
            except FileNotFoundError:
                raise CarepathError("ssh is not installed: the evidence store is reached over SSH",
                                    hint="install openssh-client") from None
            assert proc.stdin is not None and proc.stdout is not None
            # The whole exchange has one deadline: a stalled store or network never holds the job (nor, on
            # the evidence host, whose program has the same alarm, the other jobs waiting for the lock).
            timer = threading.Timer(seconds + 5, proc.kill)
            timer.start()
            entry: dict[str, Any] | None = None
            try:
                try:
                    answer = json.loads(proc.stdout.readline() or b"{}")
                    if not isinstance(answer, dict):
                        raise ValueError("not an object")
                    line = b""
                    if "listed" in answer:  # a retry: the store listed this bundle already
                        entry = json.loads(answer["listed"])
                        if not isinstance(entry, dict) or type(entry.get("seq")) is not int:
                            raise ValueError("the entry it lists has no seq")
                except (ValueError, TypeError, RecursionError) as exc:
                    raise CarepathError(f"the evidence store {self.describe()} answered the ledger append with "
                                        f"something else ({exc}): does the login shell print anything?") from None
                if "last" in answer and entry is None:  # the ledger's last line, read under the store's lock
                    entry = ledger.next_entry(answer["last"].encode(), bundle_id, digest, private_key=key,
                                              where=self.describe())
                    line = canonical_bytes(entry) + b"\n"
                # The remote side prints nothing more until it has the entry: nothing is left in stdout's buffer.
                out, _ = proc.communicate(line)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            errors.seek(0)
            err = errors.read()
        if proc.returncode == -9:
            raise CarepathError(f"appending {bundle_id} to the ledger on {self.describe()} did not finish in "
                                f"{seconds} s", hint="the store, or another job holding its ledger's lock, stalled")
        if proc.returncode != 0 or entry is None or ("last" in answer and out.strip() != b"ok"):
            raise self._fail(f"appending {bundle_id} to the ledger",
                             subprocess.CompletedProcess(argv, proc.returncode or 1, out, err))
        return entry

    def mark_unlisted(self, site: str, bundle_id: str, marker: bytes) -> None:
        if not NAME_RE.match(bundle_id):
            raise CarepathError(f"bundle id {bundle_id!r} is not a plain name (letters, digits, . _ -)")
        proc = self._run(self._argv(f"{self.path}/{site}/{UNLISTED_DIR}", bundle_id, script=_MARK), marker,
                         "marking a bundle unlisted")
        if proc.returncode != 0:
            raise self._fail(f"marking {bundle_id} unlisted", proc)

    def unlisted(self, site: str) -> dict[str, tuple[bytes, bytes]]:
        proc = self._run(self._argv("python3", "-c", _UNLISTED, *_unlisted_args(f"{self.path}/{site}")), None,
                         "reading the store")
        if proc.returncode != 0:
            raise self._fail("reading the store's markers", proc)
        return _decode_unlisted(proc.stdout, self.describe())


def timeout() -> float:
    """How long one exchange with a store may take (``CAREPATH_EVIDENCE_STORE_TIMEOUT``, 120 s by default)."""
    try:
        return max(1.0, float(os.environ.get("CAREPATH_EVIDENCE_STORE_TIMEOUT", _TIMEOUT)))
    except ValueError:
        return _TIMEOUT


@functools.cache
def problem(spec: str | None, ssh_args: str | None, site: str) -> str | None:
    """Why runs of ``site`` could not store their evidence (None: they can, or no store is set).

    Asked once per process (the policy gate asks it for every play, the callback before any): the
    gate refuses a run whose evidence would be lost before any host is touched.
    """
    try:
        store = parse(spec, ssh_args)
        if store is not None:
            store.check(site)
    except CarepathError as exc:
        return "the evidence store cannot take this run's evidence: " + str(exc).replace("\n  hint:", ";")
    return None
