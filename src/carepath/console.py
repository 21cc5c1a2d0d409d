"""What `carepath run` prints: Ansible's progress, coloured only on a terminal.

ansible-playbook runs on a pseudo-terminal under ansible-runner and colours its output; carepath
takes the colour out of every event before redacting it (an escape code inside a secret would hide
it from the redactor), so the artifacts and the evidence hold plain text. On a terminal the plain,
redacted text is coloured again, by the event's outcome, the way Ansible colours it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TextIO

GREEN, YELLOW, RED, BRIGHT_RED, CYAN, PURPLE = "0;32", "0;33", "0;31", "1;31", "0;36", "1;35"
RESET = "\x1b[0m"
_BY_EVENT = {
    "runner_on_failed": RED, "runner_item_on_failed": RED, "runner_on_async_failed": RED,
    "runner_on_unreachable": BRIGHT_RED,
    "runner_on_skipped": CYAN, "runner_item_on_skipped": CYAN,
}
_OK_EVENTS = frozenset({"runner_on_ok", "runner_item_on_ok", "runner_on_async_ok"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE


def colour_wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, never with NO_COLOR (https://no-color.org) or ANSIBLE_NOCOLOR,
    and always with ANSIBLE_FORCE_COLOR (as Ansible itself decides)."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or _truthy(env.get("ANSIBLE_NOCOLOR")):
        return False
    if _truthy(env.get("ANSIBLE_FORCE_COLOR")):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _paint(text: str, code: str) -> str:
    return "\n".join(f"\x1b[{code}m{line}{RESET}" if line.strip() else line for line in text.split("\n"))


def _recap_line(line: str) -> str:
    """A PLAY RECAP line coloured by the host's worst outcome."""
    counts = dict(part.split("=", 1) for part in line.split() if "=" in part and part.split("=", 1)[1].isdigit())
    if not counts:
        return line
    if int(counts.get("failed", 0)) or int(counts.get("unreachable", 0)):
        return _paint(line, RED)
    return _paint(line, YELLOW if int(counts.get("changed", 0)) else GREEN)


def colour(event: Mapping[str, Any], text: str) -> str:
    """``text`` (an event's plain stdout) coloured by the event's outcome."""
    kind = str(event.get("event", ""))
    data = event.get("event_data") if isinstance(event.get("event_data"), Mapping) else {}
    res = data.get("res") if isinstance(data.get("res"), Mapping) else {}
    if kind in _BY_EVENT:
        return _paint(text, _BY_EVENT[kind])
    if kind in _OK_EVENTS:
        return _paint(text, YELLOW if res.get("changed") else GREEN)
    if kind == "playbook_on_stats":
        return "\n".join(_recap_line(line) for line in text.split("\n"))
    lines = [(_paint(line, PURPLE) if line.lstrip().startswith(("[WARNING]", "[DEPRECATION WARNING]"))
              else _paint(line, RED) if line.lstrip().startswith(("[ERROR]", "ERROR!")) else line)
             for line in text.split("\n")]
    return "\n".join(lines)


class Console:
    """Prints each event's (redacted) text as it arrives; quiet prints nothing."""

    def __init__(self, stream: TextIO, *, quiet: bool = False, environ: Mapping[str, str] | None = None) -> None:
        self._stream = stream
        self._quiet = quiet
        self._colour = colour_wanted(stream, environ)

    def event(self, event: Mapping[str, Any]) -> None:
        text = event.get("stdout")
        if self._quiet or not isinstance(text, str) or not text:
            return
        self._stream.write((colour(event, text) if self._colour else text) + "\n")
        self._stream.flush()
