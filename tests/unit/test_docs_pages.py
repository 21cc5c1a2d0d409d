"""The README and docs/ say only what exists: every command, option, make target, bench script,
playbook and link they show is checked here against the code (issue 18)."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from carepath.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "plugins" / "README.md"]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def commands(page: Path, program: str) -> list[str]:
    """The command lines of ``program`` a page shows: in code blocks (with their continuations) and inline."""
    text = page.read_text(encoding="utf-8")
    found: list[str] = []
    for block in _FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"^\s*(?:\$|#|sudo)\s+", "", line.strip())
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                if part.startswith(program + " "):
                    found.append(part)
    prose = _FENCE.sub("", text)
    found += [code for code in _INLINE.findall(prose) if code.startswith(program + " ")]
    return found


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: the plain words will do
        return line.split()


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    path = ["carepath"]
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
    return parser, path


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_carepath_command_and_option_shown_exists(page: Path) -> None:
    parser = build_parser()
    playbooks = {p.stem for p in (ROOT / "playbooks").glob("*.yml")}
    problems = []
    for line in commands(page, "carepath"):
        words = _words(line)[1:]
        if not words or words[0].startswith("-"):
            continue
        sub, path = _subcommand(parser, words)
        if len(path) == 1:
            problems.append(f"{line}: there is no command `carepath {words[0]}`")
            continue
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions) and len(words) == len(path) - 1:
            continue  # a command group named on its own (`carepath evidence`)
        known = _options(sub)
        for word in words[len(path) - 1:]:
            if word.startswith("--") and word.split("=")[0] not in known:
                problems.append(f"{line}: `{' '.join(path)}` has no option {word.split('=')[0]}")
        if path[1:] == ["run"] and len(words) > 1 and re.fullmatch(r"[a-z_0-9]+", words[1]) \
                and words[1] not in playbooks:
            problems.append(f"{line}: there is no playbook playbooks/{words[1]}.yml")
    assert not problems, "\n".join(problems)


def test_the_pages_show_commands_at_all() -> None:
    """The checks above would pass on pages that show nothing: they show the commands of each job."""
    shown = {" ".join(_words(line)[:3]) for page in PAGES for line in commands(page, "carepath")}
    for expected in ("carepath run site", "carepath evidence verify", "carepath evidence report", "carepath lab up",
                     "carepath drift", "carepath change approve"):
        assert any(s.startswith(expected) for s in shown), expected


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_and_bench_script_shown_exists(page: Path) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    problems = []
    for line in commands(page, "make"):
        target = _words(line)[1:2]
        if target and not target[0].startswith("-") and "=" not in target[0] and target[0] not in targets:
            problems.append(f"{line}: no make target {target[0]}")
    for line in commands(page, "bench/hardening") + [c for c in _INLINE.findall(page.read_text()) if c.startswith("bench/")]:
        script = ROOT / _words(line)[0]
        if not script.exists():
            problems.append(f"{line}: no script {script.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_between_pages_resolves(page: Path) -> None:
    problems = []
    for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            problems.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_bench_scripts_take_the_options_the_benchmarks_page_shows() -> None:
    page = ROOT / "docs" / "benchmarks.md"
    shown = [line for block in _FENCE.findall(page.read_text()) for line in block.splitlines()
             if line.startswith("bench/")]
    assert shown, "docs/benchmarks.md shows no bench command"
    for line in shown:
        words = line.split()
        helped = subprocess.run([str(ROOT / words[0]), "--help"], capture_output=True, text=True, timeout=120,
                                check=False, cwd=ROOT)
        assert helped.returncode == 0, (line, helped.stderr[-500:])
        for option in re.findall(r"--[a-z][a-z-]*", line):
            assert option in helped.stdout, f"{words[0]} --help does not list {option}"
