"""Inputs checked before any host (issue 14): a --limit Ansible cannot use whole, and extra variables the roles' specs refuse.

The runs are real (`carepath run` through ansible-runner, or plain `ansible-playbook` with the repository's
ansible.cfg) against a local-connection inventory whose host task touches a marker file: a run that went on
shows itself by the marker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from carepath import evidence, runner, specs
from carepath.errors import CarepathError
from carepath.project import Project
from tests.conftest import BIN, ROOT, carepath, cli_env


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """An unprotected inventory of one local host, an evidence key, and a playbook whose host task touches a marker."""
    key = tmp_path / "keys" / "operator.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    inventory = tmp_path / "lab"
    inventory.mkdir()
    (inventory / "hosts.ini").write_text(
        f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"[db]\ndb1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    marker = tmp_path / "touched"
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(f"""---
- name: Policy gate
  ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'policy_gate.yml'}
- name: Touch the host
  hosts: "{{{{ lookup('carepath.core.carepath_gate', 'all') }}}}"
  gather_facts: false
  tasks:
    - name: Reach the host
      ansible.builtin.lineinfile:
        path: {marker}
        line: "{{{{ inventory_hostname }}}}"
        create: true
        mode: "0600"
      throttle: 1
""")
    return {"key": key, "inventory": inventory, "marker": marker, "playbook": playbook, "tmp": tmp_path}


def _env(site: dict[str, Path]) -> dict[str, str]:
    return cli_env(CAREPATH_STATE_DIR=str(site["tmp"] / "state"), CAREPATH_EVIDENCE_DIR=str(site["tmp"] / "evidence"),
                   CAREPATH_EVIDENCE_KEY=str(site["key"]))


def run(site: dict[str, Path], *args: str) -> tuple[int, str]:
    proc = carepath("run", str(site["playbook"]), "-i", str(site["inventory"]), *args, env=_env(site))
    return proc.returncode, proc.stdout + proc.stderr


def playbook(site: dict[str, Path], *args: str) -> tuple[int, str]:
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(site["inventory"]), str(site["playbook"]), *args],
                          capture_output=True, text=True, cwd=ROOT, env=_env(site), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def touched(site: dict[str, Path]) -> list[str]:
    return sorted(site["marker"].read_text().split()) if site["marker"].exists() else []


# --- --limit ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("~[unclosed", ["'[' is not part of any pattern (an unbalanced bracket?); Ansible would drop it and keep "
                        "'~', 'unclosed'",
                        "'~': '~' needs a regular expression after it; alone it matches every host"]),
        ("web1,~db(", ["'~db(': the regular expression 'db(' is not valid (missing ), unterminated subpattern at "
                       "position 2)"]),
        ("web1,db[0", ["'db[0': a '[' without its ']'"]),
        ("web1,db]", ["'db]': a ']' without its '['"]),
        ("db[0:x]", ["'db[0:x]': not a valid range: use [N], [N:M] or [N:] with whole numbers from 0"]),
        ("web1,db[:1]", ["'db[:1]': not a valid range: use [N], [N:M] or [N:] with whole numbers from 0"]),
        ("db[3:1]", ["'db[3:1]': the range [3:1] ends before it starts"]),
        ("web1,!", ["'!': '!' needs a pattern after it"]),
        ("web1,~", ["'~': '~' needs a regular expression after it; alone it matches every host"]),
        (" , ", ["it names no host pattern"]),
    ],
)
def test_limit_parts_ansible_would_drop_or_fail_on_are_named(limit: str, expected: list[str]) -> None:
    assert runner.limit_problems(limit) == expected


@pytest.mark.parametrize("limit", ["web1", "web*", "all:!db", "db,&web*", "~web\\d", "db[0]", "db[0:1]", "db[0:]",
                                   "web[1-3]", "g[a-c]", "::1", "@limit.txt"])
def test_limits_ansible_uses_whole_pass(limit: str) -> None:
    assert runner.limit_problems(limit) == []


def test_a_limit_part_matching_nothing_is_refused_not_ignored(site: dict[str, Path]) -> None:
    # Ansible would drop '!db1x' with a warning and run on db1 too: a typo widening the run.
    project = Project.discover()
    with pytest.raises(CarepathError, match=r"has no hosts matching --limit 'all,!db1x': the part '!?db1x' matches "
                                            r"no host or group"):
        runner.validate_inventory(project, site["inventory"], "all,!db1x")
    assert runner.validate_inventory(project, site["inventory"], "all,!db1") == ["web1"]


def test_carepath_run_refuses_a_malformed_limit_before_anything_runs(site: dict[str, Path]) -> None:
    rc, out = run(site, "--limit", "~[unclosed")
    assert rc == 2, out
    assert "carepath: error: --limit '~[unclosed' is not a host pattern Ansible can use whole: " in out
    assert "'[' is not part of any pattern" in out and "'~': '~' needs a regular expression after it" in out
    assert "Traceback" not in out
    assert touched(site) == []
    assert not (site["tmp"] / "evidence").exists()  # not even the gate ran


def test_carepath_drift_refuses_a_malformed_limit(site: dict[str, Path]) -> None:
    proc = carepath("drift", "--playbook", str(site["playbook"]), "-i", str(site["inventory"]), "--limit", "db[0:x]",
                    env=_env(site))
    assert proc.returncode == 2, proc.stderr
    assert "carepath: error: --limit 'db[0:x]' is not a host pattern Ansible can use whole: 'db[0:x]': not a valid " \
           "range" in proc.stderr
    assert touched(site) == []


# --- extra variables against the roles' argument specs -----------------------------------------------------------------

BAD_EXTRA_VARS = [
    (["-e", "firewall_allow_ping=maybe"],
     "-e firewall_allow_ping: argument 'firewall_allow_ping' is of type str and we were unable to convert to bool: "
     "The value 'maybe' is not a valid boolean."),
    (["-e", '{"time_sync_servers": 5}'],
     "-e time_sync_servers: expected a list of str, got int 5; the role would receive it as given."),
    (["-e", "ssh_hardening_typo_var=1"],
     "-e ssh_hardening_typo_var: unknown: no role option of that name (roles/ssh_hardening); did you mean "),
    (["-e", "log_forwarding_tls_driver=schannel"],
     "-e log_forwarding_tls_driver: value of log_forwarding_tls_driver must be one of: gtls, ossl, got: schannel"),
]


def _message(out: str) -> str:
    """Ansible's output with its YAML line folding and quote doubling undone."""
    return " ".join(out.replace("''", "'").split())


@pytest.mark.parametrize("launcher", [run, playbook], ids=["carepath-run", "ansible-playbook"])
@pytest.mark.parametrize(("extra", "expected"), BAD_EXTRA_VARS, ids=["bool", "list", "unknown", "choices"])
def test_the_gate_refuses_extra_vars_the_roles_specs_refuse(site: dict[str, Path], launcher, extra: list[str],
                                                            expected: str) -> None:
    rc, out = launcher(site, *extra)
    assert rc != 0
    message = _message(out)
    assert "The policy gate refuses the extra variables; no host has been touched: " in message
    assert expected in message, message[-3000:]
    assert touched(site) == []


@pytest.mark.parametrize("launcher", [run, playbook], ids=["carepath-run", "ansible-playbook"])
def test_valid_extra_vars_pass_the_gate_and_the_run_goes_on(site: dict[str, Path], launcher) -> None:
    # Strings Ansible's validator converts ("false" for a bool, "2222" for an int), a real list, names
    # without a role prefix: all pass, as with validate_argument_spec on the host.
    rc, out = launcher(site, "-e", "auditd_disk_full_action=halt", "-e", "ssh_hardening_sftp_enabled=false",
                       "-e", '{"time_sync_servers": ["ntp1.example.org"]}', "-e", "some_playbook_input=x",
                       "--limit", "web1")
    assert rc == 0, _message(out)[-3000:]
    assert touched(site) == ["web1"]


def test_the_unknown_name_suggests_the_closest_options() -> None:
    found = specs.problems({"ssh_hardening_max_auth_trys": "3"}, specs.load_specs(ROOT / "roles"))
    assert found == ["-e ssh_hardening_max_auth_trys: unknown: no role option of that name (roles/ssh_hardening); "
                     "did you mean ssh_hardening_max_auth_tries or ssh_hardening_macs or ssh_hardening_kex_algorithms?"]


def test_names_without_a_role_prefix_are_left_alone() -> None:
    assert specs.problems({"carepath_change_ticket": 5, "app_password_hint": [1], "firewall": "x"},
                          specs.load_specs(ROOT / "roles")) == []


def test_extra_vars_from_a_file_and_templates_are_judged_as_the_role_receives_them(site: dict[str, Path]) -> None:
    extra = site["tmp"] / "extra.yml"
    extra.write_text('ssh_hardening_max_sessions: "{{ 2 + 2 }}"\nfirewall_allow_ping: nah\n')
    rc, out = playbook(site, "-e", f"@{extra}", "-e", "ssh_hardening_port={{ 2000 + 22 }}")
    message = _message(out)
    assert rc != 0
    assert "The policy gate refuses the extra variables; no host has been touched: -e firewall_allow_ping: argument " \
           "'firewall_allow_ping' is of type str and we were unable to convert to bool: The value 'nah' is not a " \
           "valid boolean." in message
    assert "-e ssh_hardening_max_sessions" not in message and "-e ssh_hardening_port" not in message
    assert touched(site) == []
