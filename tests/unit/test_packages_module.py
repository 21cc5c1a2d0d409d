"""The package module's planning: dpkg states in, one apt-get transaction out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "carepath_packages", Path(__file__).resolve().parents[2] / "plugins" / "modules" / "carepath_packages.py"
)
packages = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(packages)

DPKG = "chrony\tii \nntp\trc \nsystemd-timesyncd\tii \nufw\tun \nnftables\tiU \nlibpam-modules:amd64\tii \n"


def test_parse_status_reads_every_line_and_drops_the_architecture() -> None:
    assert packages.parse_status(DPKG) == {
        "chrony": "ii", "ntp": "rc", "systemd-timesyncd": "ii", "ufw": "un", "nftables": "iU", "libpam-modules": "ii",
    }


@pytest.mark.parametrize(
    ("present", "absent", "purge", "expected"),
    [
        (["chrony"], ["ufw", "openntpd"], True, ([], [])),  # all as asked: nothing to run
        (["chrony", "aide"], [], True, (["aide"], [])),  # unknown to dpkg: install
        (["nftables"], [], True, (["nftables"], [])),  # unpacked, not configured: install again
        ([], ["systemd-timesyncd"], True, ([], ["systemd-timesyncd"])),
        ([], ["ntp"], True, ([], ["ntp"])),  # configuration left behind: purge it
        ([], ["ntp"], False, ([], [])),  # ... unless purging is off
        ([], ["nftables"], False, ([], ["nftables"])),  # half-installed still holds files
    ],
)
def test_plan(present: list[str], absent: list[str], purge: bool, expected: tuple[list[str], list[str]]) -> None:
    assert packages.plan(present, absent, packages.parse_status(DPKG), purge) == expected


def test_one_transaction_installs_and_removes_and_never_asks() -> None:
    argv = packages.apt_arguments(["chrony"], ["ntp"], True, False, ["path-exclude=/usr/share/x/*"])
    assert argv[:2] == ["apt-get", "install"]
    assert "--purge" in argv and "--no-install-recommends" in argv and "--no-remove" not in argv
    assert argv[-2:] == ["chrony", "ntp-"]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert options == ["Dpkg::Options::=--force-confdef", "Dpkg::Options::=--force-confold",
                       "Dpkg::Options::=--path-exclude=/usr/share/x/*"]


def test_an_install_alone_may_not_remove_anything_as_a_side_effect() -> None:
    argv = packages.apt_arguments(["aide"], [], True, None, [])
    assert "--no-remove" in argv and "--purge" not in argv
    assert not any("recommends" in a for a in argv)


def _runs(results: list[tuple[int, str, str]]):
    """A command runner answering with ``results`` in turn, and the command lines it was given."""
    given: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        given.append(argv)
        return results[len(given) - 1]

    return run, given


def test_a_download_that_failed_is_tried_again_after_a_pause_and_only_downloads() -> None:
    unreachable = (100, "", "E: Failed to fetch http://deb.debian.org/... Temporary failure resolving 'deb.debian.org'")
    run, given = _runs([unreachable, (0, "done", "")])
    slept: list[float] = []
    assert packages.fetch(run, ["apt-get", "install", "chrony"], delays=(5, 15), sleep=slept.append) == (0, "done", "")
    assert given == [["apt-get", "install", "chrony", "--download-only"]] * 2
    assert slept == [5]


def test_a_download_that_keeps_failing_gives_up_after_every_pause_with_the_last_answer() -> None:
    run, given = _runs([(100, "", "E: first"), (100, "", "E: second"), (100, "", "E: third")])
    slept: list[float] = []
    assert packages.fetch(run, ["apt-get", "install", "chrony"], delays=(5, 15), sleep=slept.append) == (100, "", "E: third")
    assert len(given) == 3 and slept == [5, 15]
