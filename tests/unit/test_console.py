"""carepath.console: when carepath run colours its output, and how."""

from __future__ import annotations

import io

import pytest

from carepath import console


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "env", "wanted"), [
    (_Tty(), {"TERM": "xterm"}, True),
    (io.StringIO(), {"TERM": "xterm"}, False),          # a pipe or a file
    (_Tty(), {"TERM": "xterm", "NO_COLOR": "1"}, False),
    (_Tty(), {"TERM": "xterm", "ANSIBLE_NOCOLOR": "true"}, False),
    (_Tty(), {"TERM": "dumb"}, False),
    (io.StringIO(), {"ANSIBLE_FORCE_COLOR": "1"}, True),
    (_Tty(), {"TERM": "xterm", "NO_COLOR": ""}, True),   # NO_COLOR counts only when not empty
])
def test_colour_only_on_a_terminal_and_never_with_no_color(stream, env: dict, wanted: bool) -> None:
    assert console.colour_wanted(stream, env) is wanted


def test_events_are_coloured_by_outcome_and_the_recap_by_each_hosts_worst() -> None:
    changed = {"event": "runner_on_ok", "event_data": {"res": {"changed": True}}}
    assert console.colour(changed, "changed: [web1]") == "\x1b[0;33mchanged: [web1]\x1b[0m"
    assert console.colour({"event": "runner_on_failed"}, "fatal: [web1]").startswith("\x1b[0;31m")
    recap = console.colour({"event": "playbook_on_stats"},
                           "PLAY RECAP\nweb1 : ok=2 changed=0 failed=0\nweb2 : ok=1 changed=0 failed=1")
    lines = recap.split("\n")
    assert lines[0] == "PLAY RECAP" and lines[1].startswith("\x1b[0;32m") and lines[2].startswith("\x1b[0;31m")


def test_quiet_prints_nothing_and_a_pipe_gets_the_plain_text() -> None:
    out = io.StringIO()
    console.Console(out, quiet=True, environ={}).event({"event": "runner_on_ok", "stdout": "ok: [web1]"})
    assert out.getvalue() == ""
    console.Console(out, environ={}).event({"event": "runner_on_ok", "stdout": "ok: [web1]"})
    assert out.getvalue() == "ok: [web1]\n"
