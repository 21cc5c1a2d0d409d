"""carepath_service: one systemctl show, then only the verbs that differ, in systemctl's order."""

from __future__ import annotations

from unittest import mock

import pytest
from ansible.module_utils import basic

from tests.unit import modules

service = modules.load("carepath_service")

SHOW = {
    "ssh": "Id=ssh.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n",
    "fail2ban": "Id=fail2ban.service\nLoadState=loaded\nUnitFileState=disabled\nActiveState=inactive\n",
    "dailyaidecheck.timer": "Id=dailyaidecheck.timer\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n",
    "gone.timer": "Id=gone.timer\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n",
    "chkrootkit.timer": "Id=chkrootkit.timer\nLoadState=masked\nUnitFileState=masked\nActiveState=inactive\n",
    # Masked while it ran, by carepath before issue 15: the host is degraded until it is reset.
    "failed.timer": "Id=failed.timer\nLoadState=masked\nUnitFileState=masked\nActiveState=failed\n",
}


def test_show_output_is_split_per_unit_in_order():
    text = SHOW["ssh"] + "\n" + SHOW["fail2ban"]
    blocks = service.parse_show(text, 2)
    assert [b["Id"] for b in blocks] == ["ssh.service", "fail2ban.service"]
    with pytest.raises(ValueError, match="described 2 units, 3 were asked for"):
        service.parse_show(text, 3)


@pytest.mark.parametrize(
    ("want", "unit", "actions"),
    [
        ({"enabled": True, "state": "started"}, "ssh", []),
        ({"enabled": True, "state": "started"}, "fail2ban", ["enable", "start"]),
        # Stopped before it is masked: a timer masked while running fails and degrades the host.
        ({"enabled": False, "state": "stopped", "masked": True}, "dailyaidecheck.timer", ["stop", "disable", "mask"]),
        ({"enabled": False, "state": "stopped", "masked": True}, "failed.timer", ["reset-failed"]),
        ({"enabled": False, "state": "stopped", "masked": True}, "chkrootkit.timer", []),
        ({"masked": False, "enabled": True, "state": "started"}, "chkrootkit.timer", ["unmask", "enable", "start"]),
        ({"enabled": True}, "fail2ban", ["enable"]),
        ({"state": "stopped"}, "ssh", ["stop"]),
    ],
)
def test_plan(want: dict, unit: str, actions: list[str]):
    (status,) = service.parse_show(SHOW[unit], 1)
    assert service.plan(want, status) == actions


def test_static_and_generated_units_count_as_enabled():
    for state in ("static", "generated", "indirect", "alias"):
        assert service.plan({"enabled": True}, {"LoadState": "loaded", "UnitFileState": state}) == []


def _run(check: bool = False, **args: object) -> tuple[dict, list[list[str]]]:
    calls: list[list[str]] = []

    def run_command(_module, argv, **_kw):
        calls.append(argv[1:])
        if argv[1] == "show":
            return 0, "\n".join(SHOW[name] for name in argv[4:]), ""
        return 0, "", ""

    with mock.patch.object(basic.AnsibleModule, "get_bin_path", return_value="/bin/systemctl"), \
            mock.patch.object(basic.AnsibleModule, "run_command", run_command):
        result = modules.run(service, check=check, **args)
    return result, calls


def test_one_read_for_every_unit_and_only_the_verbs_needed():
    result, calls = _run(units=[{"name": "dailyaidecheck.timer", "state": "stopped", "enabled": False, "masked": True},
                                {"name": "ssh", "enabled": True, "state": "started"}])
    assert not result["failed"] and result["changed"]
    assert calls == [["show", "--property=Id,LoadState,UnitFileState,ActiveState", "--", "dailyaidecheck.timer", "ssh"],
                     ["stop", "--", "dailyaidecheck.timer"], ["disable", "--", "dailyaidecheck.timer"],
                     ["mask", "--", "dailyaidecheck.timer"]]


def test_nothing_to_do_is_unchanged_and_runs_nothing_but_the_read():
    result, calls = _run(name="ssh", enabled=True, state="started")
    assert result["changed"] is False and len(calls) == 1


def test_check_mode_reports_without_acting_and_daemon_reload_waits_for_a_real_run():
    result, calls = _run(check=True, name="fail2ban", enabled=True, state="started", daemon_reload=True)
    assert result["changed"] is True
    assert result["units"][0]["actions"] == ["enable", "start"]
    assert [c[0] for c in calls] == ["show"]


def test_a_unit_systemd_does_not_know_is_an_error_unless_it_is_only_masked():
    result, _ = _run(name="gone.timer", enabled=True, state="started")
    assert result["failed"] and "systemd has no unit gone.timer" in result["msg"]
    result, calls = _run(name="gone.timer", masked=True, enabled=False, state="stopped")
    assert not result["failed"] and calls[-1] == ["mask", "--", "gone.timer"]


def test_a_unit_entry_with_an_unknown_key_is_refused():
    result, _ = _run(units=[{"name": "ssh", "enable": True}])
    assert result["failed"] and "takes only name, enabled, state, masked" in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "chkrootkit.timer", "enabled": True},
         "chkrootkit.timer is masked, so it cannot be enabled; someone may have masked it on purpose"),
        ({"name": "chkrootkit.timer", "state": "started"}, "cannot be started; someone"),
        ({"name": "fail2ban", "masked": True, "enabled": True, "state": "started"},
         "fail2ban cannot be masked and enabled and started at once"),
    ],
)
def test_a_masked_unit_is_not_enabled_or_started_unless_unmasking_is_asked(args: dict, message: str):
    result, calls = _run(**args)
    assert result["failed"] and message in result["msg"]
    assert [c[0] for c in calls] == ["show"]


def test_every_unit_is_checked_before_any_is_changed():
    result, calls = _run(units=[{"name": "fail2ban", "enabled": True, "state": "started"},
                                {"name": "gone.timer", "enabled": True}])
    assert result["failed"] and result["msg"] == "systemd has no unit gone.timer"
    assert [c[0] for c in calls] == ["show"]


def test_in_check_mode_a_masked_unit_is_drift_to_report_not_an_error():
    with mock.patch.object(basic.AnsibleModule, "warn") as warn:
        result, calls = _run(check=True, name="chkrootkit.timer", enabled=True, state="started")
    assert not result["failed"] and result["changed"]
    assert result["units"][0]["actions"] == ["start"]
    (message,), _ = warn.call_args
    assert message.startswith("chkrootkit.timer is masked, so it cannot be enabled or started")
    assert [c[0] for c in calls] == ["show"]
