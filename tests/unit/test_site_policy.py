"""The site policy review (issue 14, second pass): each hole is now a refusal with no host touched.

1. another site's approval on a protected site that does not name itself (the name came from the
   first ``-i`` path, or from ``CAREPATH_SITE_POLICY``);
2. policy that Ansible reads but the site policy ignored (a path with a comma, ``all.yml/`` as a
   folder, inline and whole-file vaults, the inventory file itself, ``host_vars``);
3. approval checks looser than documented (validity, subject, ticket id);
4. ``CAREPATH_RUN_ID`` that is not a run id.

Runs are real (`ansible-playbook`, or `carepath run`) against the local-connection inventory of
``test_gate_bypass``, whose host task touches a marker file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from carepath import change, evidence, gate, sitepolicy
from carepath.errors import CarepathError
from carepath.evidence.canonical import canonical_bytes
from carepath.evidence.dsse import sign_envelope
from tests.conftest import BIN, ROOT
from tests.unit.test_gate_bypass import TICKET, approve, env, playbook, run, runs
from tests.unit.test_gate_bypass import site as _site_fixture

site = _site_fixture  # the inventory fixture of test_gate_bypass, under its own name

NAMED = "carepath_site: production\ncarepath_protected: true\ncarepath_change_approver_keys: ['{keys}']\n"
MUST_NAME = "a protected site must name itself: set carepath_site in group_vars/all"
ELSEWHERE = "the site policy is read only from plain, unvaulted files in the inventory's group_vars/all"
SKIPPED = "--skip-tags always would skip the policy gate's tasks"


def named(site: dict[str, Path], where: Path | None = None) -> None:
    """Make the inventory's policy name its site (production), protected, with the approver's key."""
    path = where or site["inventory"] / "group_vars" / "all.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NAMED.format(keys=site["approver"].with_suffix(".pub")))


def play(site: dict[str, Path], inventories: list[str], *args: str, **environ: str) -> tuple[int, str]:
    """`ansible-playbook` with the inventories given (several -i, as an operator may)."""
    sources = [x for inventory in inventories for x in ("-i", inventory)]
    proc = subprocess.run([str(BIN / "ansible-playbook"), *sources, str(site["playbook"]), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env(site, **environ), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def vault_password(site: dict[str, Path]) -> Path:
    path = site["tmp"] / "vault-password"
    if not path.exists():
        path.write_text("correct horse battery staple\n")
        path.chmod(0o600)
    return path


def vault(site: dict[str, Path], text: str, *, name: str | None = None) -> str:
    """A whole-file vault of ``text`` (``name`` None), or an inline ``!vault`` value of ``text`` named ``name``."""
    args = ["encrypt", "--output", "-", "-"] if name is None else ["encrypt_string", "--stdin-name", name]
    proc = subprocess.run([str(BIN / "ansible-vault"), *args, "--vault-password-file", str(vault_password(site))],
                          input=text, capture_output=True, text=True, env=env(site), check=True)
    return proc.stdout


# --- 1. Another site's approval on a protected site ----------------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "empty-dir-first", "host-list-first"])
def test_a_protected_site_that_does_not_name_itself_is_refused(site: dict[str, Path], how: str) -> None:
    # A policy that is protected but names no site: its name used to come from the first -i.
    (site["inventory"] / "group_vars" / "all.yml").write_text(
        f"carepath_protected: true\ncarepath_change_approver_keys: ['{site['approver'].with_suffix('.pub')}']\n")
    if how == "symlink":
        (site["tmp"] / "staging").symlink_to(site["inventory"])
        inventories, other = [str(site["tmp"] / "staging")], "staging"
    elif how == "empty-dir-first":
        (site["tmp"] / "empty" / "staging").mkdir(parents=True)
        inventories, other = [str(site["tmp"] / "empty" / "staging"), str(site["inventory"])], "staging"
    else:
        inventories, other = ["nohost,", str(site["inventory"])], "adhoc"
    rc, out = play(site, inventories, CAREPATH_CHANGE_TICKET=TICKET,
                   CAREPATH_CHANGE_APPROVAL=str(approve(site, site_name=other)))
    assert rc != 0 and MUST_NAME in out, out[-3000:]
    assert not site["marker"].exists()


def test_a_site_that_names_itself_keeps_its_name_whatever_the_first_inventory_is(site: dict[str, Path]) -> None:
    named(site)
    (site["tmp"] / "empty" / "staging").mkdir(parents=True)
    inventories = [str(site["tmp"] / "empty" / "staging"), str(site["inventory"])]
    rc, out = play(site, inventories, CAREPATH_CHANGE_TICKET=TICKET,
                   CAREPATH_CHANGE_APPROVAL=str(approve(site, site_name="staging")))
    assert rc != 0 and "the approval is for site 'staging', not 'production'" in out, out[-3000:]
    assert not site["marker"].exists()
    rc, out = play(site, inventories, CAREPATH_CHANGE_TICKET=TICKET, CAREPATH_CHANGE_APPROVAL=str(approve(site)))
    assert rc == 0 and site["marker"].exists(), out[-3000:]


def test_the_environments_policy_file_is_ignored_when_the_inventory_declares_a_policy(site: dict[str, Path]) -> None:
    named(site)
    other = site["tmp"] / "awx-policy.yml"
    other.write_text(f"carepath_site: staging\ncarepath_protected: true\ncarepath_exception_max_days: 3650\n"
                     f"carepath_change_approver_keys: ['{site['stranger'].with_suffix('.pub')}']\n")
    # Its site, approvers and exception length are all ignored: the stranger's approval for staging is refused...
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site, "stranger", "staging")),
                  CAREPATH_SITE_POLICY=str(other))
    assert rc != 0 and "not signed by an approver of this site" in out, out[-3000:]
    assert not site["marker"].exists()
    (record,) = runs(site)
    policy = record["gate"]["policy"]
    assert policy["site"] == "production" and str(other) not in policy["files"]
    assert any(f"CAREPATH_SITE_POLICY={other} was ignored" in note for note in policy["notes"])
    # ...and so is its exception length: the default (365 days) holds.
    expires = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    entry = {"control": "CP-SSH-12", "reason": "Vendor scanner validation window", "owner": "ops@hospital.example",
             "expires": expires}
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site)), "-e",
                  json.dumps({"carepath_exceptions": [entry], "ssh_hardening_max_auth_tries": 6}),
                  CAREPATH_SITE_POLICY=str(other))
    assert rc != 0 and "the site allows at most 365" in out, out[-3000:]
    assert not site["marker"].exists()


def test_the_environments_policy_file_is_the_policy_of_an_inventory_without_one(tmp_path: Path) -> None:
    (tmp_path / "awx").mkdir()
    (tmp_path / "awx" / "hosts.ini").write_text("web1\n")
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text("carepath_site: production\ncarepath_protected: true\ncarepath_exception_max_days: 30\n")
    policy = sitepolicy.load([str(tmp_path / "awx")], {"CAREPATH_SITE_POLICY": str(policy_file)})
    assert (policy.site, policy.protected, policy.exception_max_days) == ("production", True, 30)
    assert policy.files == (str(policy_file),) and policy.notes == ()
    policy_file.write_text("carepath_protected: true\n")  # a protected policy from the environment names itself too
    with pytest.raises(CarepathError, match=MUST_NAME):
        sitepolicy.load([str(tmp_path / "awx")], {"CAREPATH_SITE_POLICY": str(policy_file)})


AWX_NO_POLICY = "this job was launched by AWX (awx_job_id) but its site policy declares nothing"


@pytest.mark.parametrize("launched_by", ["awx_job_id", "tower_job_id"])
def test_an_awx_job_without_a_site_policy_is_refused(tmp_path: Path, launched_by: str) -> None:
    """AWX's generated inventory has no group_vars: without CAREPATH_SITE_POLICY, a protected site would read
    as unprotected. Outside AWX such an inventory is simply an unprotected site."""
    (tmp_path / "awx").mkdir()
    (tmp_path / "awx" / "hosts.json").write_text("{}")
    sources = [str(tmp_path / "awx")]
    refused = gate.decide(sources, extra_vars={launched_by: 4101, "awx_user_name": "ops"}, operator_key=None, environ={})
    assert any(f"launched by AWX ({launched_by}) but its site policy declares nothing" in p
               for p in refused.problems), refused.problems
    assert not gate.decide(sources, extra_vars={}, operator_key=None, environ={}).problems
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text("carepath_protected: false\n")  # an unprotected site says so, and runs
    assert not gate.decide(sources, extra_vars={launched_by: 4101}, operator_key=None,
                           environ={"CAREPATH_SITE_POLICY": str(policy_file)}).problems


def test_an_awx_job_on_an_inventory_without_policy_touches_no_host(site: dict[str, Path]) -> None:
    (site["inventory"] / "group_vars" / "all.yml").unlink()  # as AWX's generated inventory: no group_vars
    rc, out = play(site, [str(site["inventory"])], "-e", '{"awx_job_id": 4101, "awx_user_name": "ops"}')
    assert rc != 0 and AWX_NO_POLICY in out, out[-3000:]
    assert not site["marker"].exists()


@pytest.mark.parametrize("name", ["my site", "../production", "-production", "", "x" * 65, "prod\n"])
def test_a_site_name_must_be_an_evidence_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(json.dumps({"carepath_site": name}))
    with pytest.raises(CarepathError, match="is not a site name"):
        sitepolicy.load([str(tmp_path)], {})


def test_a_site_name_that_is_no_evidence_name_refuses_the_run(site: dict[str, Path]) -> None:
    named(site)
    path = site["inventory"] / "group_vars" / "all.yml"
    path.write_text(path.read_text().replace("carepath_site: production", "carepath_site: my site"))
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site, site_name="my site")))
    assert rc != 0 and "carepath_site 'my site' is not a site name" in out, out[-3000:]
    assert not site["marker"].exists()


# --- 2. Policy that Ansible reads ---------------------------------------------------------------------


def _comma_path(site: dict[str, Path]) -> list[str]:
    moved = site["tmp"] / "production,east"
    site["inventory"].rename(moved)
    named(site, moved / "group_vars" / "all.yml")
    return [str(moved)]


def _all_yml_folder(site: dict[str, Path]) -> list[str]:
    (site["inventory"] / "group_vars" / "all.yml").unlink()
    named(site, site["inventory"] / "group_vars" / "all.yml" / "policy.yml")
    return [str(site["inventory"])]


def _vaulted_policy(site: dict[str, Path]) -> list[str]:
    (site["inventory"] / "group_vars" / "all.yml").write_text(
        "carepath_site: production\n" + vault(site, "true", name="carepath_protected"))
    return [str(site["inventory"])]


def _whole_file_vault(site: dict[str, Path]) -> list[str]:
    (site["inventory"] / "group_vars" / "all.yml").unlink()
    (site["inventory"] / "group_vars" / "all").mkdir()
    (site["inventory"] / "group_vars" / "all" / "vault.yml").write_text(
        vault(site, "carepath_site: production\ncarepath_protected: true\n"))
    return [str(site["inventory"])]


def _inventory_file(site: dict[str, Path]) -> list[str]:
    (site["inventory"] / "group_vars" / "all.yml").unlink()
    hosts = site["inventory"] / "hosts.ini"
    hosts.write_text(hosts.read_text() + "\n[all:vars]\ncarepath_site=production\ncarepath_protected=true\n")
    return [str(site["inventory"])]


def _host_vars(site: dict[str, Path]) -> list[str]:
    (site["inventory"] / "group_vars" / "all.yml").unlink()
    (site["inventory"] / "host_vars").mkdir()
    (site["inventory"] / "host_vars" / "web1.yml").write_text("carepath_site: production\ncarepath_protected: true\n")
    return [str(site["inventory"])]


@pytest.mark.parametrize("skip", [False, True], ids=["all-tags", "skip-always"])
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_comma_path, "production is a protected inventory: name the approved change ticket"),
        (_all_yml_folder, "production is a protected inventory: name the approved change ticket"),
        (_vaulted_policy, "carepath_protected is vault-encrypted; the site policy must be plain"),
        (_whole_file_vault, f"this host has carepath_protected=true, but the site policy says false: {ELSEWHERE}"),
        (_inventory_file, f"but the site policy says false: {ELSEWHERE}"),
        (_host_vars, f"this host has carepath_protected=true, but the site policy says false: {ELSEWHERE}"),
    ],
    ids=["comma-in-path", "all-yml-folder", "vaulted-policy-value", "whole-file-vault", "inventory-file", "host-vars"],
)
def test_policy_anywhere_ansible_reads_it_is_never_ignored(site: dict[str, Path], make, expected: str,
                                                           skip: bool) -> None:
    inventories = make(site)
    rc, out = play(site, inventories, "--vault-password-file", str(vault_password(site)),
                   *(["--skip-tags", "always"] if skip else []))
    assert rc != 0 and not site["marker"].exists(), out[-3000:]
    assert "The policy gate refuses" in out
    # Skipping the gate's tasks is refused too (a policy that cannot be read is the reason whatever the options).
    assert expected in out or (skip and SKIPPED in out), out[-3000:]


def test_inline_vault_values_in_group_vars_all_are_read(site: dict[str, Path]) -> None:
    # Before, the YAML error "could not determine a constructor for the tag '!vault'" refused every run.
    path = site["inventory"] / "group_vars" / "all.yml"
    path.write_text("carepath_protected: false\n" + vault(site, "s3cret", name="app_db_password"))
    rc, out = play(site, [str(site["inventory"])], "--vault-password-file", str(vault_password(site)))
    assert rc == 0 and site["marker"].exists(), out[-3000:]
    assert sitepolicy.load([str(site["inventory"])], {}).files == (str(path),)


def test_a_policy_variable_set_again_elsewhere_is_refused_by_name(site: dict[str, Path]) -> None:
    named(site)
    (site["inventory"] / "host_vars").mkdir()
    (site["inventory"] / "host_vars" / "web1.yml").write_text("carepath_site: staging\n")
    rc, out = run(site, "--ticket", TICKET, "--approval", str(approve(site)))
    assert rc != 0 and not site["marker"].exists()
    assert f"this host has a value of carepath_site that the site policy does not declare: {ELSEWHERE}" in out, \
        out[-3000:]
    assert "this host's carepath_site comes from elsewhere" in out


def test_the_site_policy_files_are_found_as_ansible_finds_them(tmp_path: Path) -> None:
    inventory = tmp_path / "a,b"
    (inventory / "group_vars" / "all.yml").mkdir(parents=True)
    (inventory / "group_vars" / "all.yml" / "policy.yml").write_text("carepath_exception_max_days: 30\n")
    (inventory / "group_vars" / "all.yml" / ".hidden.yml").write_text("carepath_exception_max_days: 31\n")
    (inventory / "group_vars" / "all.yml" / "policy.yml~").write_text("carepath_exception_max_days: 32\n")
    (inventory / "group_vars" / "all.yml" / "old.d.yml").mkdir()  # a folder with a suffix: not read by Ansible
    (inventory / "group_vars" / "all.yml" / "old.d.yml" / "x.yml").write_text("carepath_exception_max_days: 33\n")
    policy = sitepolicy.load([str(inventory)], {})
    assert policy.exception_max_days == 30
    assert policy.files == (str(inventory / "group_vars" / "all.yml" / "policy.yml"),)
    assert sitepolicy.load(["web1,web2", str(inventory)], {}).exception_max_days == 30
    assert sitepolicy.inventory_name(["web1,web2"]) == "adhoc"


# --- 3. Approvals --------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _statement(ticket: str = TICKET, *, subject: object = None, hours: float = 24,
               statement_type: str = change.STATEMENT_TYPE) -> dict:
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    return {
        "_type": statement_type,
        "subject": [{"name": f"change/{ticket}", "digest": {"sha256": digest}}] if subject is None else subject,
        "predicateType": change.PREDICATE_TYPE,
        "predicate": {"ticket": ticket, "site": "production", "approved_at": NOW.strftime(change.TIME_FORMAT),
                      "expires": (NOW + dt.timedelta(hours=hours)).strftime(change.TIME_FORMAT), "approver": "x"},
    }


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for who in ("operator", "approver"):
        made[who] = tmp_path / f"{who}.key"
        evidence.generate_keypair(made[who], made[who].with_suffix(".pub"))
    return made


def _judged(keys: dict[str, Path], statement: dict, ticket: str = TICKET) -> list[str]:
    envelope = sign_envelope(canonical_bytes(statement), evidence.load_private_key(keys["approver"]))
    problems, _ = change.verify_approval(
        envelope, [evidence.load_public_key(keys["approver"].with_suffix(".pub"))], ticket=ticket, site="production",
        at=NOW + dt.timedelta(hours=1),
        operator_keyid=evidence.keyid(evidence.load_public_key(keys["operator"].with_suffix(".pub"))))
    return problems


def test_an_approval_as_approve_makes_it_passes(keys: dict[str, Path]) -> None:
    assert _judged(keys, _statement()) == []
    assert _judged(keys, _statement(hours=24 * 14)) == []


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (_statement(hours=24 * 14 + 1), "more than the 14 days an approval may last"),
        (_statement(hours=24 * 365), "more than the 14 days an approval may last"),
        (_statement(subject=[]), "is not a statement about change/CHG0012345 alone"),
        (_statement(subject=[{"name": "change/CHG0012345", "digest": {"sha256": "0" * 64}}]),
         "is not a statement about change/CHG0012345 alone"),
        (_statement(subject=[{"name": "change/CHG0099999",
                              "digest": {"sha256": hashlib.sha256(b"CHG0099999").hexdigest()}}]),
         "is not a statement about change/CHG0012345 alone"),
        (_statement(subject=_statement()["subject"] * 2), "is not a statement about change/CHG0012345 alone"),
        (_statement(statement_type="https://example.com/Other"), "is not a change approval"),
        ({**_statement(), "predicate": ["not", "a", "mapping"]}, "does not hold a readable statement"),
    ],
    ids=["15-days", "a-year", "no-subject", "wrong-digest", "other-ticket-subject", "two-subjects", "not-in-toto",
         "predicate-list"],
)
def test_an_approval_looser_than_documented_is_refused(keys: dict[str, Path], statement: dict, expected: str) -> None:
    problems = _judged(keys, statement)
    assert any(expected in p for p in problems), problems


def test_a_ticket_id_is_matched_whole(tmp_path: Path, keys: dict[str, Path]) -> None:
    with pytest.raises(CarepathError, match="is not a ticket id"):
        change.approve(evidence.load_private_key(keys["approver"]), f"{TICKET}\n", "production")
    assert any("is not a change ticket id" in p for p in _judged(keys, _statement(f"{TICKET}\n"), f"{TICKET}\n"))
    policy = sitepolicy.SitePolicy(site="production", protected=True,
                                   approver_keys=(keys["approver"].with_suffix(".pub"),), exception_max_days=365,
                                   files=(), sha256="0" * 64, declared={})
    problems, _ = change.check(policy, f"{TICKET}\n", str(tmp_path / "none.json"), str(keys["operator"]), now=NOW)
    assert problems == ["production is a protected inventory: 'CHG0012345\\n' is not a change ticket id"]


def test_an_unreadable_operator_key_is_the_reason_not_the_two_person_rule(tmp_path: Path,
                                                                          keys: dict[str, Path]) -> None:
    approval = tmp_path / "approval.json"
    approval.write_bytes(canonical_bytes(change.approve(evidence.load_private_key(keys["approver"]), TICKET,
                                                        "production", now=NOW)))
    policy = sitepolicy.SitePolicy(site="production", protected=True,
                                   approver_keys=(keys["approver"].with_suffix(".pub"),), exception_max_days=365,
                                   files=(), sha256="0" * 64, declared={})
    os.chmod(keys["operator"], 0o640)
    problems, summary = change.check(policy, TICKET, str(approval), str(keys["operator"]),
                                     now=NOW + dt.timedelta(hours=1))
    assert summary is None and len(problems) == 1
    assert "cannot read the operator's key" in problems[0] and "two-person" not in problems[0]
    problems, _ = change.check(policy, TICKET, str(approval), None, now=NOW + dt.timedelta(hours=1))
    assert problems == ["production is a protected inventory: the operator has no evidence signing key, so the "
                        "two-person rule cannot be checked"]


# --- 4. CAREPATH_RUN_ID --------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../../x", "a/b", ".hidden", "x" * 129, "run 1", "run\n"])
def test_a_run_id_that_is_no_run_id_is_refused(tmp_path: Path, run_id: str) -> None:
    decision = gate.decide([str(tmp_path)], extra_vars={}, operator_key=None, environ={"CAREPATH_RUN_ID": run_id})
    assert not decision.accepted
    assert any(p.startswith("CAREPATH_RUN_ID=") and "is not a run id" in p for p in decision.problems)
    ok = gate.decide([str(tmp_path)], extra_vars={}, operator_key=None,
                     environ={"CAREPATH_RUN_ID": "20261205T130000Z-site-abc123"})
    assert ok.accepted, ok.problems


def test_a_run_id_outside_the_evidence_store_stops_the_run_before_any_host(site: dict[str, Path]) -> None:
    (site["inventory"] / "group_vars" / "all.yml").write_text("carepath_protected: false\n")
    rc, out = playbook(site, CAREPATH_RUN_ID="../../x")
    assert rc != 0 and "CAREPATH_RUN_ID='../../x' is not a run id" in out, out[-3000:]
    assert not site["marker"].exists()
