"""carepath_sysctl: kernel parameters in an order that holds, persisted, and proven to hold.

The real kernel's behaviour (writing ip_forward resets accept_redirects) is proven on the lab's VM
(tests/integration/test_vm.py); here a directory stands in for /proc/sys, with the kernel's own
alias of ip_forward and conf.all.forwarding made a symlink.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit import modules

sysctl = modules.load("carepath_sysctl")


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proc-sys"
    for key, value in {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.accept_redirects": "1",
                       "kernel.kptr_restrict": "0", "net.ipv4.tcp_rmem": "4096\t131072\t6291456"}.items():
        path = root.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    # In Linux, net.ipv4.conf.all.forwarding and net.ipv4.ip_forward are one setting.
    (root / "net/ipv4/conf/all/forwarding").symlink_to(root / "net/ipv4/ip_forward")
    monkeypatch.setattr(sysctl, "PROC_SYS", str(root))
    return root


def test_forwarding_switches_come_first_and_the_rest_keep_their_order() -> None:
    keys = ["net.ipv4.conf.all.accept_redirects", "kernel.kptr_restrict", "net.ipv6.conf.all.forwarding",
            "net.ipv4.ip_forward", "net.ipv4.conf.default.forwarding"]
    assert sysctl.order(keys) == ["net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward",
                                  "net.ipv4.conf.default.forwarding", "net.ipv4.conf.all.accept_redirects",
                                  "kernel.kptr_restrict"]


def test_parameters_are_written_to_the_file_in_order_applied_and_idempotent(proc: Path, tmp_path: Path) -> None:
    conf = tmp_path / "60-carepath.conf"
    wanted = {"net.ipv4.conf.all.accept_redirects": 0, "net.ipv4.ip_forward": 0,
              "net.ipv4.tcp_rmem": "4096 131072 6291456", "net.ipv4.no_such_thing": 1}
    first = modules.run(sysctl, parameters=wanted, path=str(conf), header=["Ansible managed"])
    assert not first["failed"] and first["changed"], first
    assert first["applied"] == ["net.ipv4.ip_forward", "net.ipv4.conf.all.accept_redirects"]
    assert first["unknown"] == ["net.ipv4.no_such_thing"]
    assert conf.read_text().splitlines() == [
        "# Ansible managed", "net.ipv4.ip_forward = 0", "net.ipv4.conf.all.accept_redirects = 0",
        "net.ipv4.tcp_rmem = 4096 131072 6291456", "net.ipv4.no_such_thing = 1"]
    assert (proc / "net/ipv4/conf/all/accept_redirects").read_text() == "0"
    again = modules.run(sysctl, parameters=wanted, path=str(conf), header=["Ansible managed"])
    assert not again["failed"] and not again["changed"] and again["applied"] == [], again


def test_check_mode_reports_the_change_and_writes_nothing(proc: Path, tmp_path: Path) -> None:
    conf = tmp_path / "60-carepath.conf"
    result = modules.run(sysctl, check=True, parameters={"kernel.kptr_restrict": 2}, path=str(conf))
    assert result["changed"] and not conf.exists()
    assert (proc / "kernel/kptr_restrict").read_text() == "0\n"


def test_a_value_that_does_not_hold_fails_with_the_parameter_named(proc: Path, tmp_path: Path) -> None:
    # Two names of one setting asked to differ: whichever is written last wins, the other does not hold.
    result = modules.run(sysctl, parameters={"net.ipv4.ip_forward": 0, "net.ipv4.conf.all.forwarding": 1},
                         path=str(tmp_path / "60.conf"))
    assert result["failed"], result
    # ip_forward (first: it resets others) was set to 0, then its alias to 1, which turned it back on.
    assert "net.ipv4.ip_forward is 1, 0 was set" in result["msg"]


def test_read_only_parameters_are_written_to_the_file_but_not_applied(
        proc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root passes access(W_OK) on any file of a writable filesystem: stand in for a read-only /proc/sys.
    monkeypatch.setattr(sysctl, "writable", lambda key, root=None: not key.startswith("kernel."))
    conf = tmp_path / "60.conf"
    result = modules.run(sysctl, parameters={"kernel.kptr_restrict": 2, "net.ipv4.ip_forward": 0},
                         path=str(conf))
    assert not result["failed"], result
    assert result["read_only"] == ["kernel.kptr_restrict"] and result["applied"] == ["net.ipv4.ip_forward"]
    assert "kernel.kptr_restrict = 2" in conf.read_text()
    assert (proc / "kernel/kptr_restrict").read_text() == "0\n"


def test_names_that_are_not_kernel_parameters_are_refused_before_anything_is_written(
        proc: Path, tmp_path: Path) -> None:
    conf = tmp_path / "60.conf"
    result = modules.run(sysctl, parameters={"../../etc/passwd": 1}, path=str(conf))
    assert result["failed"] and "not kernel parameter names" in result["msg"] and not conf.exists()
