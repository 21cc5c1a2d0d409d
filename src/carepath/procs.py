"""Running external commands with errors a user can act on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from carepath.errors import CarepathError


def require(tool: str, *, install_hint: str) -> str:
    """Return the path of ``tool`` or fail with how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise CarepathError(f"{tool} is not installed or not on PATH", hint=install_hint)
    return path


def local_tool(tool: str) -> str:
    """A tool installed beside this Python (the project's virtualenv), else its name for PATH."""
    local = Path(sys.executable).parent / tool
    return str(local) if local.exists() else tool


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    check: bool = True,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, capture its output, and raise CarepathError if it fails."""
    try:
        proc = subprocess.run(  # noqa: S603 - argv lists only, never a shell
            list(argv), input=input_text, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise CarepathError(f"{argv[0]} is not installed or not on PATH") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise CarepathError(
            f"{what or ' '.join(argv[:3])} failed (exit {proc.returncode}): " + " | ".join(detail)
        )
    return proc


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    what: str | None = None,
    input_text: str | None = None,
) -> None:
    """Run ``argv`` and hand each line of its combined output to ``on_line`` as it comes.

    ``input_text`` (small: a script) is written to its standard input first.
    """
    tail: list[str] = []
    with subprocess.Popen(  # noqa: S603 - argv lists only, never a shell
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        if input_text is not None and proc.stdin is not None:
            proc.stdin.write(input_text)
            proc.stdin.close()
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-5:]
            on_line(line)
        rc = proc.wait()
    if rc != 0:
        raise CarepathError(
            f"{what or ' '.join(argv[:3])} failed (exit {rc}): " + " | ".join(tail)
        )
