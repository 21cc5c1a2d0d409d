"""The path AWX / Automation Platform sends a job down to an execution node, run for real:
``ansible-runner transmit | ansible-runner worker --delete | ansible-runner process``.

The controller side prepares a private data directory as AWX does (project, inventory, extra vars
with ``awx_user_name``, the machine credential as ``env/ssh_key``, the evidence key injected as a
file with an environment variable pointing at it); the worker unpacks it into a folder of its own
standing for the execution node and deletes that folder when the job ends. The evidence must then
be in the site's store, one ledger chain for jobs that ran at once, and ``carepath evidence
verify`` must pass there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from carepath import dist, evidence
from carepath.lab.images import ADMIN_USER
from carepath.lab.lab import LabFiles
from tests.conftest import ROOT, carepath
from tests.integration.conftest import STATE, Baseline, Lab

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]

BIN = Path(sys.executable).parent
OPERATOR = "awx.operator.one"  # synthetic
SITE = "awx-lab"


def _job_dir(base: Path, lab: Lab, name: str, node: Path, store: str, store_ssh_args: str = "", **env: str) -> Path:
    """A private data directory as AWX builds it for one job (what `transmit` streams to the node)."""
    job = base / "controller" / name
    (job / "project").mkdir(parents=True)
    (job / "env").mkdir()
    (job / "project" / "site.yml").write_text(
        "- name: carepath baseline\n  ansible.builtin.import_playbook: carepath.core.site\n"
        # The run id as the deploy lock and each host's release history read it (roles/bluegreen).
        "- name: Record the run id\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Write it outside the node's folder\n      ansible.builtin.copy:\n"
        f"        content: \"{{{{ lookup('carepath.core.carepath_run_id', 'site') }}}}\"\n"
        f"        dest: {base}/seen-{name}.runid\n        mode: '0600'\n      tags: [always]\n", encoding="utf-8")
    (job / "project" / "ansible.cfg").write_text(
        "[defaults]\ncallbacks_enabled = carepath.core.carepath_evidence\ninterpreter_python = auto_silent\n",
        encoding="utf-8")
    # The inventory as AWX hands it to a job: generated from its database (no group_vars files), without
    # the lab key, which the machine credential below gives (ssh-agent).
    hosts = yaml.safe_load((lab.inventory / "hosts.yml").read_text(encoding="utf-8"))
    common = hosts["all"]["vars"]
    common.pop("ansible_ssh_private_key_file")
    common["ansible_ssh_common_args"] = common["ansible_ssh_common_args"].replace("-o IdentitiesOnly=yes", "")
    (job / "inventory").mkdir()
    (job / "inventory" / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
    files = LabFiles(state=STATE / lab.name, inventory_dir=lab.inventory)
    (job / "env" / "ssh_key").write_text(files.key.read_text(encoding="utf-8"), encoding="utf-8")
    # The evidence key, as a custom credential type's file injector gives it: a file in the job's
    # folder and an environment variable with its path on the node.
    shutil.copyfile(base / "evidence.key", job / "env" / "evidence_key")
    (job / "env" / "evidence_key").chmod(0o600)
    # The site policy (no group_vars files to read it from): a file injected for every job of the site,
    # so all its jobs share one site name and one ledger.
    (job / "env" / "site_policy.yml").write_text(f"carepath_site: {SITE}\n", encoding="utf-8")
    (job / "env" / "extravars").write_text(
        json.dumps({"awx_user_name": OPERATOR, "awx_job_id": name}), encoding="utf-8")
    (job / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(base / "collections"),  # as the execution environment holds it
        "CAREPATH_EVIDENCE_KEY": str(node / "env" / "evidence_key"),
        "CAREPATH_SITE_POLICY": str(node / "env" / "site_policy.yml"),
        "CAREPATH_EVIDENCE_STORE": store,
        "CAREPATH_EVIDENCE_STORE_SSH_ARGS": store_ssh_args,
        "CAREPATH_EVIDENCE_WITNESS": "none",  # an execution environment has no syslog; the store is off-node
        "PATH": f"{BIN}:{os.environ['PATH']}",
        **env,
    }), encoding="utf-8")
    return job


def _send(job: Path, node: Path, limit: str) -> dict:
    """transmit | worker | process, as AWX over Receptor; returns the job's final status and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAREPATH_", "ANSIBLE_"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    runner = str(BIN / "ansible-runner")
    pipeline = (f"{runner} transmit {job} -p site.yml --limit {limit},localhost --cmdline '--tags time_sync'"
                f" | {runner} worker --private-data-dir {node} --delete"
                f" | {runner} process {job}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, env=env,
                          timeout=900, check=False)
    return {"rc": proc.returncode, "out": proc.stdout[-6000:] + proc.stderr[-3000:], "node_left": node.exists(),
            "said": " ".join((proc.stdout + proc.stderr).split())}  # all of it, Ansible's folded warnings unfolded


def _verify(store: Path, site: str, key_pub: Path) -> subprocess.CompletedProcess[str]:
    return carepath("evidence", "verify", str(store / site / "ledger.jsonl"), "--key", str(key_pub))


@pytest.fixture(scope="module")
def awx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site's evidence key, and the collection built and installed as an execution environment holds it."""
    base = tmp_path_factory.mktemp("awx")
    evidence.generate_keypair(base / "evidence.key", base / "evidence.pub")
    built = dist.build(ROOT, base / "dist")
    galaxy = subprocess.run([sys.executable, "-m", "ansible.cli.galaxy", "collection", "install", "--offline",
                             "-p", str(base / "collections"), str(built.collection)],
                            capture_output=True, text=True, check=False, timeout=600, cwd=base,  # not the checkout's
                            env={k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")})  # ansible.cfg
    assert galaxy.returncode == 0 and "carepath.core:" in galaxy.stdout, galaxy.stdout + galaxy.stderr
    assert (base / "collections" / "ansible_collections" / "carepath" / "core" / "playbooks" / "site.yml").exists()
    return base


def _stored_runs(store: Path, site: str) -> dict[str, dict]:
    """The runs in the store; nothing else is there (no half-shipped copy, no probe left behind)."""
    folders = sorted((store / site / "bundles").iterdir())
    assert not [p.name for p in folders if p.name.startswith(".")]
    return {p.name: json.loads((p / "run.json").read_text(encoding="utf-8")) for p in folders}


def test_two_jobs_at_once_on_ephemeral_nodes_leave_one_verified_chain_in_a_mounted_store(lab: Lab, awx: Path):
    Baseline.changed(lab)  # a job of its own inventory and variables runs on the lab
    site = SITE
    store = awx / "mounted-store"  # a volume mounted into every execution node
    jobs = []
    for name, host in (("4101", "it-bookworm"), ("4102", "it-trixie")):
        node = awx / "node" / name
        jobs.append((_job_dir(awx, lab, name, node, str(store)), node, host))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: _send(*j), jobs))

    for result in results:
        assert result["rc"] == 0, result["out"]
        assert not result["node_left"], "the worker left the execution node's folder behind"
        assert "stored " in result["out"] and str(store) in result["out"]
    runs = _stored_runs(store, site)
    assert len(runs) == 2, sorted(runs)
    for run in runs.values():
        assert run["status"] == "successful"
        assert run["gate"]["decision"] == "accepted"
        assert run["operator"]["awx_user_name"] == OPERATOR
        assert run["store"] == str(store)
    assert sorted(r["operator"]["awx_job_id"] for r in runs.values()) == ["4101", "4102"]
    # One run id through the worker: what the lock and history would carry is the bundle's.
    assert {(awx / f"seen-{r['operator']['awx_job_id']}.runid").read_text() for r in runs.values()} == set(runs)
    entries = [json.loads(line) for line in (store / site / "ledger.jsonl").read_bytes().splitlines()]
    assert [e["seq"] for e in entries] == [0, 1] and {e["bundle"] for e in entries} == set(runs)
    verify = _verify(store, site, awx / "evidence.pub")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_job_ships_its_evidence_to_an_evidence_host_over_ssh(lab: Lab, awx: Path):
    Baseline.changed(lab)  # a job of its own inventory and variables runs on the lab
    site = SITE
    files = LabFiles(state=STATE / lab.name, inventory_dir=lab.inventory)
    address = lab.hosts["it-trixie"]
    remote = f"/home/{ADMIN_USER}/carepath-evidence"
    lab.ssh("it-trixie", f"rm -rf {remote}")
    store = f"ssh://{ADMIN_USER}@{address}:{lab.port('it-trixie')}{remote}"
    # The store's key and host key, injected for the job as files (a custom credential type).
    ssh_args = f"-i {files.key} -o IdentitiesOnly=yes -o UserKnownHostsFile={files.known_hosts}"
    node = awx / "node" / "4201"
    job = _job_dir(awx, lab, "4201", node, store, ssh_args)
    result = _send(job, node, "it-bookworm")
    assert result["rc"] == 0, result["out"]
    assert not result["node_left"]
    assert f"stored {store}/{site}/bundles/" in result["out"]
    # A job whose ledger append fails after the store took its bundle (something holds the ledger's lock
    # past the job's deadline): it leaves a signed marker in the store, its node is deleted, and the
    # site's next job, from another node, lists the bundle.
    to_store = ["ssh", "-i", str(files.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={files.known_hosts}", "-p", str(lab.port("it-trixie")), f"{ADMIN_USER}@{address}"]
    holder = subprocess.Popen(  # holds the lock until its stdin closes
        [*to_store, f"flock {remote}/{site}/ledger.jsonl -c 'echo held; read unused'"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        node = awx / "node" / "4202"
        result = _send(_job_dir(awx, lab, "4202", node, store, ssh_args, CAREPATH_EVIDENCE_STORE_TIMEOUT="10"),
                       node, "it-bookworm")
    finally:
        holder.communicate("", timeout=30)
    assert result["rc"] == 0, result["out"]
    assert "NOT listed in the store's ledger yet: marked there" in result["said"], result["out"]
    assert not result["node_left"]
    node = awx / "node" / "4203"
    result = _send(_job_dir(awx, lab, "4203", node, store, ssh_args), node, "it-bookworm")
    assert result["rc"] == 0, result["out"]
    assert "was in the store but not in its ledger" in result["said"], result["out"]

    # The auditor's copy of the store, fetched as it is, verifies offline.
    fetched = awx / "fetched"
    fetched.mkdir()
    tar = subprocess.run([*to_store, f"tar -C {remote} -cf - ."], capture_output=True, check=True)
    subprocess.run(["tar", "-C", str(fetched), "-xf", "-"], input=tar.stdout, check=True)
    runs = _stored_runs(fetched, site)
    assert sorted(r["operator"]["awx_job_id"] for r in runs.values()) == ["4201", "4202", "4203"]
    for run in runs.values():
        assert run["operator"]["awx_user_name"] == OPERATOR and run["store"] == store
    entries = [json.loads(line) for line in (fetched / site / "ledger.jsonl").read_bytes().splitlines()]
    assert [runs[e["bundle"]]["operator"]["awx_job_id"] for e in entries] == ["4201", "4202", "4203"]
    verify = _verify(fetched, site, awx / "evidence.pub")
    assert verify.returncode == 0, verify.stdout + verify.stderr
