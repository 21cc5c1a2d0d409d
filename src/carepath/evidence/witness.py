"""The ledger's witness: each entry's digest, and each run's opening, also recorded off the controller.

A signed ledger stops anyone without the evidence key from rewriting history. Whoever holds the key
could still re-sign a rewritten ledger (drop a run, change one); the witness catches that: as the ledger
grows, one line per entry (and one per opened run) goes to a place the controller's users cannot edit,
by default the controller's syslog, which carepath's own ``log_forwarding`` role sends over TLS to the
site's log collector. ``carepath evidence verify LEDGER --witness FILE`` then compares the ledger with
what the collector received: an entry missing, changed or cut off the end fails verification.

Line format (syslog tag ``carepath-ledger``; nothing in it is secret or PHI)::

    carepath-ledger: site=<site> seq=<n> entry=<sha256 of the ledger line> bundle=<run id>
    carepath-ledger: site=<site> opened=<run id>

Targets: ``syslog`` (default; the local syslog socket), ``file:PATH`` (append, for tests and sites that
collect a file), ``none``.
"""

from __future__ import annotations

import re
import syslog
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from carepath.errors import CarepathError
from carepath.evidence.chain import sha256_hex, split_lines
from carepath.evidence.report import Finding

TAG = "carepath-ledger"
#: The environment variable that names the witness (the callback's ``witness`` option).
WITNESS_ENV = "CAREPATH_EVIDENCE_WITNESS"
SYSLOG_SOCKET = "/dev/log"
# The syslog tag must stand as a word of its own (a line's start, or after the syslog header's host),
# and the message must end the line: "notcarepath-ledger: ..." or a quoted fragment is not a witness line.
_PREFIX = rf"(?m)(?:^|\s){TAG}(?:\[\d+\])?: site=(?P<site>[A-Za-z0-9._-]+) "
_ENTRY = re.compile(_PREFIX + r"seq=(?P<seq>\d+) entry=(?P<entry>[0-9a-f]{64}) bundle=(?P<bundle>[A-Za-z0-9._-]+)\s*$")
_OPENED = re.compile(_PREFIX + r"opened=(?P<run>[A-Za-z0-9._-]+)\s*$")


def entry_line(site: str, seq: int, entry_digest: str, bundle: str) -> str:
    return f"site={site} seq={seq} entry={entry_digest} bundle={bundle}"


def opened_line(site: str, run_id: str) -> str:
    return f"site={site} opened={run_id}"


def send(target: str, message: str) -> None:
    """Record one witness line at ``target``; raises CarepathError when it cannot (the caller says so)."""
    if target in ("", "none"):
        return
    if target == "syslog":
        if not Path(SYSLOG_SOCKET).exists():  # glibc would drop the line without a word
            raise CarepathError(f"this controller has no syslog socket ({SYSLOG_SOCKET})",
                                hint="run a syslog daemon that forwards to the site's collector, or set "
                                "CAREPATH_EVIDENCE_WITNESS=file:PATH (or none)")
        syslog.openlog(TAG, 0, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_NOTICE, message)
        syslog.closelog()
        return
    if target.startswith("file:"):
        path = Path(target[5:])
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"{TAG}: {message}\n")
        except OSError as exc:
            raise CarepathError(f"cannot write the ledger witness {path}: {exc.strerror}") from None
        return
    raise CarepathError(f"unknown ledger witness {target!r}", hint="use syslog, file:PATH or none")


@dataclass
class Witnessed:
    """What the witness files hold for one site."""

    entries: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> (entry digest, bundle)
    opened: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def read(paths: Iterable[Path], site: str) -> Witnessed:
    """The witness lines about ``site`` in any text files (syslog files of the collector, say)."""
    found = Witnessed()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CarepathError(f"cannot read the witness {path}: {exc.strerror}") from None
        for match in _ENTRY.finditer(text):
            if match["site"] != site:
                continue
            seq, value = int(match["seq"]), (match["entry"], match["bundle"])
            if seq in found.entries and found.entries[seq] != value:
                found.conflicts.append(f"seq {seq} was witnessed twice with different entries")
            found.entries.setdefault(seq, value)
        found.opened += [m["run"] for m in _OPENED.finditer(text) if m["site"] == site and m["run"] not in found.opened]
    return found


def check(ledger: bytes, witnessed: Witnessed, bundles: Iterable[str], ledger_name: str = "ledger.jsonl") -> list[Finding]:
    """Findings where the ledger disagrees with its witness."""
    lines, _ = split_lines(ledger)
    digests = [sha256_hex(line) for line in lines]
    findings = [Finding(ledger_name, "witness.conflict", c) for c in witnessed.conflicts]
    for seq, (digest, bundle) in sorted(witnessed.entries.items()):
        if seq >= len(lines):
            findings.append(Finding(ledger_name, "witness.missing", f"entry seq {seq} (bundle {bundle}) was witnessed but "
                                    f"the ledger ends after {len(lines)} entries: it was cut short", seq + 1, seq))
        elif digests[seq] != digest:
            findings.append(Finding(ledger_name, "witness.rewritten", f"entry seq {seq} differs from the witnessed one "
                                    f"(bundle {bundle}): the ledger was rewritten", seq + 1, seq))
    for seq in range(len(lines)):
        if seq not in witnessed.entries:
            findings.append(Finding(ledger_name, "witness.unwitnessed", f"entry seq {seq} was never witnessed: its run "
                                    "did not reach the witness, or the entry was added later", seq + 1, seq))
    present = set(bundles)
    for run_id in witnessed.opened:
        if run_id not in present:
            findings.append(Finding(ledger_name, "witness.run_missing", f"run {run_id} was witnessed opening, but its "
                                    "bundle is neither listed nor present: its evidence was removed"))
    return findings
