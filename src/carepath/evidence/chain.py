"""Hash-chained JSONL: each line is canonical JSON with ``seq`` (0-based, consecutive) and ``prev``.

``prev`` is the SHA-256 hex digest of the previous line's bytes (the canonical JSON, without its newline);
the first line's ``prev`` is :data:`GENESIS`. Deleting, inserting, reordering or altering any line breaks the
chain at that line, and the digest of the last line (the *head*) together with the line count pins the end,
so truncation shows once the head and count are signed. Events and the ledger use the same chain.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from carepath.errors import CarepathError
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.report import Finding

GENESIS = "0" * 64
MAX_LINE_FINDINGS = 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ChainWalk:
    """The result of reading a chained file: how many lines, the head digest, and what was wrong where."""

    count: int
    head: str
    findings: list[Finding] = field(default_factory=list)


def split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The file's lines (without newlines) and whether the last one was terminated."""
    if not data:
        return [], True
    lines = data.split(b"\n")
    terminated = lines[-1] == b""
    if terminated:
        lines.pop()
    return lines, terminated


def _prev_of(line: bytes) -> Any:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record.get("prev") if type(record) is dict else None


def walk_chain(
    data: bytes,
    file: str,
    required: frozenset[str] = frozenset({"seq", "prev"}),
    *,
    signed_count: int | None = None,
    signed_head: str | None = None,
    on_record: Callable[[int, dict[str, Any]], None] | None = None,
) -> ChainWalk:
    """Check every line of a chained file and say which line is the first bad one.

    Works on the raw line bytes (never re-serialises): one SHA-256 and one ``json.loads`` per line. When a
    line's ``prev`` does not match the digest of the line before, the blame goes to the line that changed: if
    the current line is itself intact (the next line, or the signed head, still vouches for its digest), the
    previous line was altered. ``on_record(line_number, record)`` sees each parsed record (e.g. the ledger
    checks its bundles there). Malformed input never raises: it becomes findings.
    """
    lines, terminated = split_lines(data)
    n = len(lines)
    digests = [hashlib.sha256(line).hexdigest() for line in lines]
    problems: dict[int, tuple[int, list[tuple[str, str]]]] = {}  # line number -> (seq, [(code, message)])

    def add(lineno: int, seq: int, code: str, message: str) -> None:
        problems.setdefault(lineno, (seq, []))[1].append((code, message))

    if not terminated:
        add(n, n - 1, "chain.unterminated", "the last line has no newline: the file was cut off in the middle of a write")
    loads = json.loads
    expected = 0
    for i, line in enumerate(lines):
        lineno = i + 1
        try:
            record = loads(line)
        except (ValueError, RecursionError) as exc:
            add(lineno, expected, "chain.json", f"not valid JSON ({str(exc)[:80]})")
            expected += 1
            continue
        if type(record) is not dict:
            add(lineno, expected, "chain.json", f"a record must be a JSON object, found {type(record).__name__}")
            expected += 1
            continue
        if not required <= record.keys():
            add(lineno, expected, "chain.fields", f"missing required field(s): {', '.join(sorted(required - record.keys()))}")
        seq, prev = record.get("seq"), record.get("prev")
        if type(seq) is not int:
            add(lineno, expected, "chain.seq", f"seq must be an integer, found {seq!r}")
            expected += 1
        elif seq != expected:
            if seq > expected:
                gone = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
                add(lineno, expected, "chain.seq", f"found seq {seq} where seq {expected} belongs: {gone} deleted or moved")
            else:
                add(lineno, expected, "chain.seq", f"found seq {seq} again where seq {expected} belongs: duplicated or reordered")
            expected = seq + 1
        else:
            expected += 1
        want = digests[i - 1] if i else GENESIS
        if prev != want and (lineno - 1) not in problems:
            if lineno in problems:  # seq already wrong here: the line itself is out of place
                add(lineno, lineno - 1, "chain.prev", "prev does not match the digest of the line before")
            elif i and _intact(i, lines, digests, signed_head, signed_count):
                add(lineno - 1, lineno - 2, "chain.altered",
                    f"content changed: its digest no longer matches the prev recorded in line {lineno}")
            else:
                what = "the genesis value" if not i else "the digest of the line before"
                add(lineno, lineno - 1, "chain.prev", f"prev does not match {what}: this line was altered or inserted")
        if on_record is not None:
            on_record(lineno, record)
    head = digests[-1] if n else GENESIS
    if signed_count is not None and signed_head is not None:
        if n < signed_count:
            missing = f"seq {n}" if signed_count == n + 1 else f"seq {n}..{signed_count - 1}"
            add(n + 1, n, "chain.truncated",
                f"the file ends after {n} record(s) but the signature covers {signed_count}: {missing} removed (truncated)")
        elif n > signed_count:
            add(signed_count + 1, signed_count, "chain.extended",
                f"{n - signed_count} record(s) after the {signed_count} that were signed: appended after signing")
        elif head != signed_head and n not in problems and (n - 1) not in problems:
            add(n, n - 1, "chain.head", "the last record's digest does not match the signed chain head: it was altered")
    findings = [
        Finding(file, code, message, lineno, seq)
        for lineno, (seq, items) in sorted(problems.items())
        for code, message in items
    ]
    if len(findings) > MAX_LINE_FINDINGS:
        rest = len(findings) - MAX_LINE_FINDINGS
        findings = [*findings[:MAX_LINE_FINDINGS], Finding(file, "chain.more", f"{rest} more problem(s) not listed")]
    return ChainWalk(n, head, findings)


def _intact(i: int, lines: list[bytes], digests: list[str], signed_head: str | None, signed_count: int | None) -> bool:
    """Whether line ``i`` (0-based) is still vouched for by the next line or by the signed head."""
    if i + 1 < len(lines):
        return _prev_of(lines[i + 1]) == digests[i]
    return signed_head is not None and signed_count == len(lines) and digests[i] == signed_head


class EventWriter:
    """Append records to a chained JSONL file, keeping the head digest and count for the signature.

    ``durable=True`` flushes and fsyncs after every line, so a crash loses at most the line being written
    (and the verifier then reports the cut-off line); ``flush=True`` only hands each line to the kernel,
    which survives the process being killed (not a power cut) at a fraction of the cost; otherwise
    lines are buffered until :meth:`close`.
    Reopening an existing file continues its chain after checking it.
    """

    def __init__(self, path: Path, *, durable: bool = False, flush: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self.flush = flush or durable
        self._count, self._head = 0, GENESIS
        if self.path.exists() and self.path.stat().st_size:
            walk = walk_chain(self.path.read_bytes(), self.path.name)
            if walk.findings:
                raise CarepathError(f"{self.path}: cannot continue a broken chain: {walk.findings[0]}",
                                    hint="verify the bundle; start a new events file for a new run")
            self._count, self._head = walk.count, walk.head
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    @property
    def count(self) -> int:
        """How many records the file holds."""
        return self._count

    @property
    def head(self) -> str:
        """SHA-256 hex of the last line written (GENESIS while empty)."""
        return self._head

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write one record with its ``seq`` and ``prev`` added; returns the record as written."""
        if self._file is None:
            raise CarepathError(f"{self.path}: the event writer is closed")
        if "seq" in record or "prev" in record:
            raise CarepathError("a record must not carry its own seq or prev: the writer assigns them")
        full = {**record, "seq": self._count, "prev": self._head}
        line = canonical_bytes(full)
        self._file.write(line + b"\n")
        if self.flush:
            self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._head = hashlib.sha256(line).hexdigest()
        self._count += 1
        return full

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
