"""The evidence callback under a real ansible-playbook run: canaries never reach the bundle.

Runs on the controller alone (connection local), with the project's ansible.cfg, a vault
password and a secret environment variable, at -vvv, in diff mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carepath import evidence
from carepath.evidence.chain import walk_chain
from tests.conftest import BIN, ROOT, carepath, cli_env

VAULTED = "canary-vault-Zq81xP"
TOKEN = "canary-env-Hw72kd"
PHI = ["078-05-1120", "DOE^CANARY", "MRN-4455661", "ZX99887766", "19600101", "H20261202"]
MRN_PATTERN = r"\bH\d{8}\b"  # the site's own format, from configuration


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("evidence")
    shutil.copy(ROOT / "tests" / "data" / "evidence" / "canaries.yml", work / "canaries.yml")
    (work / "vault-pass").write_text("synthetic-test-password\n")
    vault = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(work / "vault-pass"),
         VAULTED, "--name", "canary_vaulted"], capture_output=True, text=True, check=True, env=cli_env())
    (work / "canary-vault.yml").write_text("---\n" + vault.stdout)
    key = work / "keys" / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    env = cli_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), CAREPATH_EVIDENCE_DIR=str(work / "evidence"),
                  CAREPATH_EVIDENCE_KEY=str(key), CAREPATH_SITE="canary", CAREPATH_CANARY_TOKEN=TOKEN,
                  CAREPATH_CHANGE_TICKET="CHG0012345", CAREPATH_MRN_PATTERN=MRN_PATTERN)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv", "--diff",
         "--vault-password-file", str(work / "vault-pass"), "-e", f"out_dir={work}",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", "awx_user_name=synthetic-operator",
         str(work / "canaries.yml")],
        capture_output=True, text=True, env=env, cwd=work, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (bundle,) = (work / "evidence" / "canary" / "bundles").iterdir()
    return {"work": work, "bundle": bundle, "key": key.with_suffix(".pub"), "stdout": Path(work / "stdout"),
            "ledger": work / "evidence" / "canary" / "ledger.jsonl", "console": proc.stdout}


def test_the_canaries_were_really_exposed_to_the_run(run: dict[str, Path]) -> None:
    # Otherwise the next test would pass for the wrong reason: -vvv shows them on the console.
    assert VAULTED in run["console"] and "078-05-1120" in run["console"] and "H20261202" in run["console"]


def test_no_canary_reaches_any_evidence_file(run: dict[str, Path]) -> None:
    for path in (run["work"] / "evidence").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for canary in [VAULTED, TOKEN, *PHI]:
                assert canary not in text, f"{canary} leaked into {path}"


def test_the_bundle_records_each_task_and_verifies_offline(run: dict[str, Path]) -> None:
    key = evidence.load_public_key(run["key"])
    assert evidence.verify_bundle(run["bundle"], [key]).ok
    assert evidence.verify_ledger(run["ledger"], run["bundle"].parent, [key]).ok
    events = [json.loads(line) for line in (run["bundle"] / "events.jsonl").read_text().splitlines()]
    assert walk_chain((run["bundle"] / "events.jsonl").read_bytes(), "events.jsonl").findings == []
    tasks = {e.get("task"): e for e in events if e["type"].startswith("task_")}
    assert tasks["A control-tagged task"]["control_ids"] == ["CP-SSH-05"]
    assert tasks["A no_log task that fails with the secret in its message"]["data"]["msg"] == "(hidden by no_log)"
    assert "[REDACTED]" in tasks["A task that fails naming the vaulted value"]["data"]["msg"]
    assert "diff_sha256" in tasks["A template whose diff holds the vaulted value"]["data"]
    assert tasks["A loop with a label whose items hold secrets, one failing"]["data"]["items"] == 2
    run_record = json.loads((run["bundle"] / "run.json").read_text())
    assert run_record["change"]["ticket"] == "CHG0012345"
    assert run_record["status"] == "successful" and run_record["stats"]["localhost"]["ignored"] == 6
    assert run_record["events"]["count"] == len(events)
    assert run_record["operator"]["user"] and run_record["operator"]["awx_user_name"] == "synthetic-operator"


def test_a_changed_byte_is_caught(run: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / run["bundle"].name
    shutil.copytree(run["bundle"], copy)
    events = copy / "events.jsonl"
    events.write_bytes(events.read_bytes().replace(b'"task_ok"', b'"task_OK"', 1))
    report = evidence.verify_bundle(copy, [evidence.load_public_key(run["key"])])
    assert not report.ok and "events.jsonl" in str(report.first)


def test_inputs_never_persist_for_later_runs(run: dict[str, Path]) -> None:
    assert not any(p.name == "env" for p in run["work"].rglob("*") if p.is_dir())
    assert os.environ.get("CAREPATH_CANARY_TOKEN") is None


def test_carepath_run_redacts_the_runner_artifacts_too(run: dict[str, Path]) -> None:
    """Through `carepath run` (ansible-runner): stdout, job_events and command are redacted as well."""
    work = run["work"]
    inventory = work / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    state = work / "state"
    proc = carepath("run", str(work / "canaries.yml"), "-i", str(inventory), "-vvv", "--diff",
                    "--vault-password-file", str(work / "vault-pass"), "-e", f"out_dir={work}",
                    env=cli_env(CAREPATH_STATE_DIR=str(state), CAREPATH_EVIDENCE_DIR=str(work / "evidence-run"),
                                CAREPATH_EVIDENCE_KEY=str(run["key"].with_suffix(".key")),
                                CAREPATH_CANARY_TOKEN=TOKEN, CAREPATH_MRN_PATTERN=MRN_PATTERN))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (private,) = (state / "runs").iterdir()
    artifacts = next((private / "artifacts").iterdir())
    assert (artifacts / "job_events").is_dir() and (artifacts / "stdout").stat().st_size > 0
    assert not (private / "env").exists() and not list(private.glob("secrets.fifo"))
    for root in (private, work / "evidence-run"):
        for path in root.rglob("*"):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                for canary in [VAULTED, TOKEN, *PHI]:
                    assert canary not in text, f"{canary} leaked into {path}"
    (bundle,) = (work / "evidence-run").rglob("run.json")
    assert json.loads(bundle.read_text())["run_id"] == private.name
