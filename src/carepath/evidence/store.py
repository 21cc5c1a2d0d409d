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
``<evidence_dir>/<site>/unshipped/``; the next run on that machine ships it first. A bundle the store
took but whose ledger entry was lost (the store failed between the two, on a node deleted since) is
found by the next run of the site from any machine (``unlisted``), which lists it once it has checked
that the site's key signed it.
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carepath.errors import CarepathError
from carepath.evidence import ledger
from carepath.evidence.bundle import CHECKPOINTS_FILE, ENVELOPE_FILE, LOCK_FILE, NAME_RE
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.chain import sha256_hex

#: Files of a bundle folder that are only the run's own working state, never shipped.
_WORKING = (LOCK_FILE, CHECKPOINTS_FILE)
_TIMEOUT = 120.0


class Store(Protocol):
    def describe(self) -> str: ...
    def check(self, site: str) -> None: ...
    def ship(self, site: str, bundle_dir: Path) -> None: ...
    def append(self, site: str, bundle_id: str, envelope: Path, key: Ed25519PrivateKey) -> dict[str, Any]: ...
    def unlisted(self, site: str) -> dict[str, bytes]: ...


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

    def unlisted(self, site: str) -> dict[str, bytes]:
        # The same program the evidence host runs for an SSH store: one reading of "unlisted".
        argv = [sys.executable, "-c", _UNLISTED, str(self.root / site), NAME_RE.pattern, ENVELOPE_FILE]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout(), check=False)  # noqa: S603
        if proc.returncode != 0:
            raise CarepathError(f"cannot read the store {self.root}: {proc.stderr.decode(errors='replace').strip()}")
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
            except ValueError:
                continue
            if entry.get("bundle") == bundle and entry.get("bundle_digest") == digest:
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

# Runs on the evidence host (python3 -c FOLDER NAME_PATTERN ENVELOPE_FILE), and here for a directory store: the sealed
# bundles in FOLDER/bundles that FOLDER/ledger.jsonl does not list, as {name: envelope text}. Only folders
# named like a run: in-flight copies (.incoming.*) are not bundles yet.
_UNLISTED = r"""
import json, os, re, sys
folder, name, envelope = sys.argv[1], re.compile(sys.argv[2]), sys.argv[3]
listed = set()
try:
    with open(os.path.join(folder, "ledger.jsonl"), "rb") as f:
        for line in f:
            try:
                listed.add(json.loads(line).get("bundle"))
            except (ValueError, AttributeError):
                continue
except FileNotFoundError:
    pass
bundles = os.path.join(folder, "bundles")
found = {}
for run in sorted(os.listdir(bundles)) if os.path.isdir(bundles) else []:
    if run in listed or not name.match(run):
        continue
    try:
        with open(os.path.join(bundles, run, envelope), "rb") as f:
            found[run] = f.read().decode("utf-8", "replace")
    except OSError:
        continue
print(json.dumps(found))
"""


def _decode_unlisted(out: bytes, where: str) -> dict[str, bytes]:
    try:
        found = json.loads(out)
        return {str(name): str(text).encode() for name, text in found.items()}
    except (ValueError, AttributeError):
        raise CarepathError(f"the store {where} answered the unlisted-bundles query with something else") from None


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
                answer = json.loads(proc.stdout.readline() or b"{}")
                line = b""
                if "listed" in answer:  # a retry: the store listed this bundle already
                    entry = json.loads(answer["listed"])
                elif "last" in answer:  # the ledger's last line, read under the store's lock
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

    def unlisted(self, site: str) -> dict[str, bytes]:
        proc = self._run(self._argv("python3", "-c", _UNLISTED, f"{self.path}/{site}", NAME_RE.pattern,
                                      ENVELOPE_FILE), None,
                         "reading the store")
        if proc.returncode != 0:
            raise self._fail("reading the store's bundles", proc)
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
