"""The bypasses of the outside review (issue 14): each one is now a refusal with no host touched, or a verify failure.

Every run here is real (`carepath run` through ansible-runner, or plain `ansible-playbook`) against a
local-connection inventory whose host task touches a marker file: an accepted run shows itself by the marker.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carepath import change, evidence
from carepath.evidence.canonical import canonical_bytes
from tests.conftest import BIN, ROOT, carepath, cli_env

TICKET = "CHG0012345"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A protected inventory `production` (policy in group_vars/all.yml), keys, and a playbook that touches a marker."""
    made: dict[str, Path] = {}
    for who in ("operator", "approver", "stranger"):
        made[who] = tmp_path / "keys" / f"{who}.key"
        evidence.generate_keypair(made[who], made[who].with_suffix(".pub"))
    inventory = tmp_path / "production"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.ini").write_text(f"web1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    # A relative key path: relative to the file that declares it.
    (inventory / "group_vars" / "all.yml").write_text(
        "carepath_site: production\ncarepath_protected: true\n"
        "carepath_change_approver_keys: ['../../keys/approver.pub']\n")
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
      ansible.builtin.file:
        path: {marker}
        state: touch
        mode: "0600"
      tags: [work]
""")
    made.update(inventory=inventory, marker=marker, playbook=playbook, evidence=tmp_path / "evidence", tmp=tmp_path)
    return made


def approve(site: dict[str, Path], signer: str = "approver", site_name: str = "production", ticket: str = TICKET) -> Path:
    out = site["tmp"] / f"approval-{signer}-{site_name}-{ticket}.json"
    envelope = change.approve(evidence.load_private_key(site[signer]), ticket, site_name, hours=2,
                              now=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5))
    out.write_bytes(canonical_bytes(envelope))
    return out


def env(site: dict[str, Path], **extra: str) -> dict[str, str]:
    return cli_env(CAREPATH_STATE_DIR=str(site["tmp"] / "state"), CAREPATH_EVIDENCE_DIR=str(site["evidence"]),
                   CAREPATH_EVIDENCE_KEY=str(site["operator"]), **extra)


def run(site: dict[str, Path], *args: str, **environ: str) -> tuple[int, str]:
    proc = carepath("run", str(site["playbook"]), "-i", str(site["inventory"]), *args, env=env(site, **environ))
    return proc.returncode, proc.stdout + proc.stderr


def playbook(site: dict[str, Path], *args: str, **environ: str) -> tuple[int, str]:
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(site["inventory"]), str(site["playbook"]), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env(site, **environ), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def codes(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [f["code"] for f in json.loads(proc.stdout)["findings"]]


def runs(site: dict[str, Path], name: str = "production") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((site["evidence"] / name / "bundles").glob("*/run.json"))]


@pytest.mark.parametrize("launcher", [run, playbook], ids=["carepath-run", "ansible-playbook"])
@pytest.mark.parametrize("tags", [["--skip-tags", "always"], ["--tags", "work"], ["--skip-tags", "carepath_policy_gate"]],
                         ids=["skip-always", "only-work", "skip-gate-tag"])
def test_skipping_the_gates_tasks_stops_the_run_before_any_host(site: dict[str, Path], launcher, tags: list[str]) -> None:
    rc, out = launcher(site, *tags)
    assert rc != 0
    assert "The policy gate refuses the run; no host has been touched" in out
    assert "name the approved change ticket" in out
    assert not site["marker"].exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('{"carepath_protected": false}', "carepath_protected cannot be given as an extra variable"),
        ("carepath_protected=", "carepath_protected cannot be given as an extra variable"),
        ('{"carepath_change_approver_keys": ["STRANGER"]}', "carepath_change_approver_keys cannot be given"),
        ("carepath_site=elsewhere", "carepath_site cannot be given as an extra variable"),
    ],
    ids=["protected-false", "protected-empty", "other-approver-keys", "other-site"],
)
def test_protection_cannot_be_switched_off_from_the_command_line(site: dict[str, Path], extra: str, expected: str) -> None:
    signer, site_name = ("stranger", "production") if "STRANGER" in extra else ("approver", "elsewhere") \
        if "elsewhere" in extra else ("approver", "production")
    extra = extra.replace("STRANGER", str(site["stranger"].with_suffix(".pub")))
    # Even with an approval that the changed variable would have made valid.
    rc, out = run(site, "-e", extra, "--ticket", TICKET, "--approval", str(approve(site, signer, site_name)))
    assert rc != 0 and expected in out, out[-2000:]
    assert not site["marker"].exists()
    (record,) = runs(site)
    assert record["status"] == "refused" and record["gate"]["decision"] == "refused"


def test_another_sites_approval_is_refused_whatever_the_environment_says(site: dict[str, Path]) -> None:
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site, site_name="elsewhere")),
                  CAREPATH_SITE="elsewhere")
    assert rc != 0 and "the approval is for site 'elsewhere', not 'production'" in out
    assert not site["marker"].exists()
    assert [r["site"] for r in runs(site)] == ["production"]  # the ledger is the site policy's, not CAREPATH_SITE's


def test_a_host_vars_override_of_the_policy_is_refused(site: dict[str, Path]) -> None:
    (site["inventory"] / "host_vars").mkdir()
    (site["inventory"] / "host_vars" / "web1.yml").write_text("carepath_protected: false\n")
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site)))
    assert rc != 0 and "this host has carepath_protected=false, but the site policy says true" in out, out[-2000:]
    assert not site["marker"].exists()


def test_an_approved_run_records_the_gate_the_launch_options_and_the_ticket_given_as_extra_var(
        site: dict[str, Path]) -> None:
    approval = approve(site)
    rc, out = run(site, "-e", f"carepath_change_ticket={TICKET}", "-e", f"carepath_change_approval={approval}",
                  "-e", "app_password_hint=Canary-9f3e1d", "--limit", "web1", "--tags", "always,work")
    assert rc == 0, out[-3000:]
    assert site["marker"].exists()
    (record,) = runs(site)
    assert record["status"] == "successful"
    assert record["change"]["ticket"] == TICKET
    assert record["change"]["approval"]["envelope"] == json.loads(approval.read_text())
    assert record["gate"]["decision"] == "accepted" and record["gate"]["policy"]["protected"] is True
    launch = record["launch"]
    assert launch["tags"] == ["always", "work"] and launch["skip_tags"] == [] and launch["limit"] == "web1"
    assert launch["extra_var_names"] == ["app_password_hint", "carepath_change_approval", "carepath_change_ticket"]
    assert "Canary-9f3e1d" not in json.dumps(record)  # names only, never values


def test_a_signing_key_others_can_read_stops_the_run_before_any_host(site: dict[str, Path]) -> None:
    os.chmod(site["operator"], 0o640)
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site)))
    assert rc != 0 and "the evidence signing key cannot be used" in out and "chmod 600" in out
    assert not site["marker"].exists()


def test_a_refused_run_keeps_the_ledger_verifiable(site: dict[str, Path]) -> None:
    rc, _ = run(site, "--ticket", TICKET, "--approval", str(approve(site, signer="stranger")))
    assert rc != 0 and not site["marker"].exists()
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site)))
    assert rc == 0, out[-2000:]
    keys = [str(site["operator"].with_suffix(".pub"))]
    ledger = site["evidence"] / "production"
    proc = carepath("evidence", "verify", str(ledger / "ledger.jsonl"), "--bundles", str(ledger / "bundles"),
                    "--key", keys[0], "--approver-key", str(site["approver"].with_suffix(".pub")))
    assert proc.returncode == 0, proc.stdout
    assert [r["status"] for r in runs(site)] == ["refused", "successful"]


def test_verify_fails_a_run_that_went_on_after_the_gate_refused_it(site: dict[str, Path]) -> None:
    # Someone edits the playbook on the controller: no gate play, no gate lookup. The evidence still
    # records the gate's decision (refused), and the host work that followed it.
    site["playbook"].write_text(f"""---
- name: Touch the host
  hosts: all
  gather_facts: false
  tasks:
    - name: Reach the host
      ansible.builtin.file: {{path: {site['marker']}, state: touch, mode: "0600"}}
""")
    rc, _ = run(site)
    assert site["marker"].exists()  # carepath cannot stop an edited playbook...
    (bundle,) = (site["evidence"] / "production" / "bundles").iterdir()
    proc = carepath("evidence", "verify", str(bundle), "--key", str(site["operator"].with_suffix(".pub")), "--json")
    assert proc.returncode == 1  # ...but verify fails it
    assert codes(proc) == ["policy.bypass"] and "tasks ran on web1" in proc.stdout


def test_verify_with_the_sites_approver_keys_fails_a_run_without_an_approval(site: dict[str, Path]) -> None:
    # The same inventory copied without its policy: the run is not gated, and is filed under the copy's
    # name. Verifying it as a bundle of the protected site fails it.
    copy = site["tmp"] / "production-copy"
    (copy).mkdir()
    (copy / "hosts.ini").write_text((site["inventory"] / "hosts.ini").read_text())
    proc = carepath("run", str(site["playbook"]), "-i", str(copy), env=env(site))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (bundle,) = (site["evidence"] / "production-copy" / "bundles").iterdir()
    keys = ["--key", str(site["operator"].with_suffix(".pub"))]
    assert carepath("evidence", "verify", str(bundle), *keys).returncode == 0
    proc = carepath("evidence", "verify", str(bundle), *keys, "--approver-key", str(site["approver"].with_suffix(".pub")),
                    "--json")
    assert proc.returncode == 1
    assert codes(proc) == ["policy.unprotected", "policy.approval"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--skip-tags", "always", "-e", "firewall_allow_ping=maybe"],
         ["--skip-tags always would skip the policy gate's tasks",
          "-e firewall_allow_ping: argument 'firewall_allow_ping' is of type str"]),
        (["--skip-tags", "tagged"], ["--skip-tags tagged would skip the policy gate's tasks"]),
        (["--start-at-task", "Reach the host"], ["--start-at-task would skip the policy gate's tasks"]),
    ],
    ids=["skip-always-bad-extra-var", "skip-tagged", "start-at-task"],
)
def test_launch_options_that_would_skip_the_gates_other_checks_are_refused_on_any_site(
        site: dict[str, Path], args: list[str], expected: list[str]) -> None:
    (site["inventory"] / "group_vars" / "all.yml").write_text("carepath_protected: false\n")  # not a change-control case
    rc, out = playbook(site, *args)
    assert rc != 0 and not site["marker"].exists()
    for part in expected:
        assert part in out, out[-3000:]


def test_the_site_policy_sets_the_longest_an_exception_may_run(site: dict[str, Path]) -> None:
    (site["inventory"] / "group_vars" / "all.yml").write_text("carepath_exception_max_days: 30\n")
    expires = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    entry = {"control": "CP-SSH-12", "reason": "Vendor scanner validation window", "owner": "ops@hospital.example",
             "expires": expires}
    rc, out = playbook(site, "-e", json.dumps({"carepath_exceptions": [entry], "ssh_hardening_max_auth_tries": 6}))
    assert rc != 0 and not site["marker"].exists()
    assert f"expires {expires} is more than 30 days ahead; the site allows at most 30" in out, out[-2000:]


def test_host_work_is_judged_by_its_action_not_by_a_gate_tag_the_playbook_gives_it(site: dict[str, Path]) -> None:
    site["playbook"].write_text(f"""---
- name: Touch the host
  hosts: all
  gather_facts: false
  tasks:
    - name: Policy gate | Looks like the gate
      ansible.builtin.file: {{path: {site['marker']}, state: touch, mode: "0600"}}
      tags: [always, carepath_policy_gate]
""")
    run(site)
    assert site["marker"].exists()
    (bundle,) = (site["evidence"] / "production" / "bundles").iterdir()
    proc = carepath("evidence", "verify", str(bundle), "--key", str(site["operator"].with_suffix(".pub")), "--json")
    assert proc.returncode == 1 and codes(proc) == ["policy.bypass"]
