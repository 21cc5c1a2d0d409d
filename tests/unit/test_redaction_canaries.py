"""Redaction at the source: canaries from every secret source never reach the disk.

Each secret source of issue 14 plants its own canary: a whole-file vault (``vars_files`` of a
file encrypted as a whole, which ansible-core 2.19 does not tag), an inline vault value, an
extra var whose name looks secret, connection and become passwords, a secret-looking
environment variable. Tasks print them, transformed (base64, upper and lower case, URL
encoding, hex), fail with messages carrying them, render them in a diff, and loop over items
that are canaries themselves; at -vvv with --diff. Through `carepath run`, every file under the
run's private data dir (ansible-runner's artifacts included) and the evidence dir is searched,
while the run is in progress (right after the canaries were printed: nothing unredacted is
written even for a moment) and at its end, for a run that ends, one stopped with SIGINT and one
killed with SIGKILL; through plain ansible-playbook, the evidence dir.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from carepath import evidence
from tests.conftest import BIN, ROOT, cli_env

CANARIES = {
    "file": "cnry-file-Ab12+Cd@x",  # whole-file vault
    "inline": "cnry-inline-Ef34+Gh@x",  # encrypt_string
    "extra": "cnry-extra-Ij56+Kl@x",  # -e app_db_password=...
    "conn": "cnry-conn-Mn78+Op@x",  # ansible_password in the inventory
    "become": "cnry-become-Qr90+St@x",  # ansible_become_password in the inventory
    "env": "cnry-env-Uv12+Wx@x",  # CAREPATH_CANARY_TOKEN in the environment
}
ITEMS = ["cnry-item-Yz34Qq", "cnry-item-Ab56Rr"]  # loop items: data, not secrets

PLAYBOOK = """---
- name: Canaries
  hosts: all
  gather_facts: false
  vars_files: [secrets-file.yml, secrets-inline.yml, items.yml]
  vars:
    canaries:
      file: "{{ canary_file }}"
      inline: "{{ canary_inline }}"
      extra: "{{ app_db_password }}"
      conn: "{{ ansible_password }}"
      become: "{{ ansible_become_password }}"
      env: "{{ lookup('ansible.builtin.env', 'CAREPATH_CANARY_TOKEN') }}"
  tasks:
    - name: Print every canary and its transformations
      ansible.builtin.debug:
        msg: "{{ item.value }} {{ item.value | b64encode }} {{ item.value | upper }} {{ item.value | lower }}
          {{ item.value | urlencode }}"
      loop: "{{ canaries | dict2items }}"

    - name: Fail naming every canary, transformed
      ansible.builtin.fail:
        msg: "{{ item.value }} b64={{ item.value | b64encode }} up={{ item.value | upper }}
          low={{ item.value | lower }} url={{ item.value | urlencode }}"
      loop: "{{ canaries | dict2items }}"
      ignore_errors: true

    - name: Fail naming the whole-file vault canary
      ansible.builtin.fail:
        msg: "login failed with {{ canary_file | b64encode }} {{ canary_file | upper }}"
      ignore_errors: true

    - name: A module failure whose output holds the canaries in hex
      ansible.builtin.command:
        argv: ["{{ ansible_python_interpreter }}", "-c",
               "import sys; print(' '.join(a.encode().hex() for a in sys.argv[1:])); sys.exit(3)",
               "{{ canaries.file }}", "{{ canaries.inline }}", "{{ canaries.extra }}", "{{ canaries.conn }}",
               "{{ canaries.become }}", "{{ canaries.env }}"]
      changed_when: false
      ignore_errors: true

    - name: Render a file holding the canaries (the diff shows them)
      ansible.builtin.copy:
        content: "{{ canaries | dict2items | map(attribute='value') | join('\\n') }}\\n"
        dest: "{{ out_dir }}/rendered.conf"
        mode: "0600"

    - name: A loop over canary items
      ansible.builtin.assert:
        that: item is string
        quiet: true
      loop: "{{ canary_items }}"

    - name: A loop over canary items that fails on one
      ansible.builtin.assert:
        that: item is not search('Ab56Rr')
        quiet: true
      loop: "{{ canary_items }}"
      ignore_errors: true

    - name: Wait (for the stopped and killed runs)
      ansible.builtin.command: "sleep {{ pause }}"
      changed_when: false
      when: pause | float > 0
"""


def forms(canary: str) -> list[str]:
    """The canary and each transformation the tasks apply (hex and case are checked case-insensitively)."""
    raw = canary.encode()
    b64 = base64.b64encode(raw).decode()
    return [canary, b64, b64.rstrip("="), quote(canary), quote_plus(canary), raw.hex()]


def leaks(*roots: Path) -> list[str]:
    found = []
    needles = [(f, f.lower()) for c in CANARIES.values() for f in forms(c)] + [(i, i.lower()) for i in ITEMS]
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():  # FIFOs included: nothing to read from them
                continue
            try:
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:  # a partial event file renamed away meanwhile
                continue
            lower = text.lower()
            for form, folded in needles:
                # base64 is case-sensitive; every other form is searched in any case
                if form in text or (not _is_b64(form) and folded in lower):
                    found.append(f"{form} in {path}")
    return found


def _is_b64(form: str) -> bool:
    return any(form in (base64.b64encode(c.encode()).decode(), base64.b64encode(c.encode()).decode().rstrip("="))
               for c in CANARIES.values())


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("canaries")
    (work / "out").mkdir()
    (work / "vault-pass").write_text("synthetic-test-password\n")
    (work / "secrets-file.yml").write_text(f"---\ncanary_file: \"{CANARIES['file']}\"\n")
    vault = [str(BIN / "ansible-vault"), "--vault-password-file", str(work / "vault-pass")]
    subprocess.run([vault[0], "encrypt", *vault[1:], str(work / "secrets-file.yml")], check=True, capture_output=True,
                   env=cli_env())
    assert (work / "secrets-file.yml").read_text().startswith("$ANSIBLE_VAULT")
    inline = subprocess.run([vault[0], "encrypt_string", *vault[1:], CANARIES["inline"], "--name", "canary_inline"],
                            capture_output=True, text=True, check=True, env=cli_env())
    (work / "secrets-inline.yml").write_text("---\n" + inline.stdout)
    (work / "canaries.yml").write_text(PLAYBOOK)
    # In a vars file, not in the playbook: Ansible quotes the playbook lines around a failed task.
    (work / "items.yml").write_text(f"---\ncanary_items: {json.dumps(ITEMS)}\n")
    (work / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable} "
        f"ansible_password='{CANARIES['conn']}' ansible_become_password='{CANARIES['become']}'\n")
    key = work / "keys" / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    return work


def env(work: Path, name: str) -> dict[str, str]:
    return cli_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), CAREPATH_STATE_DIR=str(work / f"state-{name}"),
                   CAREPATH_EVIDENCE_DIR=str(work / f"evidence-{name}"),
                   CAREPATH_EVIDENCE_KEY=str(work / "keys" / "evidence.key"),
                   CAREPATH_CANARY_TOKEN=CANARIES["env"])


def carepath_argv(work: Path, pause: str = "0") -> list[str]:
    return [str(BIN / "carepath"), "run", str(work / "canaries.yml"), "-i", str(work / "inventory.ini"), "-vvv",
            "--diff", "--vault-password-file", str(work / "vault-pass"),
            "-e", json.dumps({"app_db_password": CANARIES["extra"]}), "-e", f"out_dir={work / 'out'}",
            "-e", f"pause={pause}"]


def test_plain_ansible_playbook_shows_the_canaries_but_keeps_them_out_of_the_evidence(work: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(work / "inventory.ini"), "-vvv", "--diff",
         "--vault-password-file", str(work / "vault-pass"), "-e", json.dumps({"app_db_password": CANARIES["extra"]}),
         "-e", f"out_dir={work / 'out'}", "-e", "pause=0", str(work / "canaries.yml")],
        capture_output=True, text=True, env=env(work, "plain"), cwd=work, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # The canaries were really exposed: -vvv shows every one, and the items, on the console.
    for canary in [*CANARIES.values(), *ITEMS]:
        assert canary in proc.stdout, canary
    assert leaks(work / "evidence-plain") == []
    (events,) = (work / "evidence-plain").rglob("events.jsonl")
    records = [json.loads(line) for line in events.read_text().splitlines()]
    messages = {r["task"]: r["data"].get("msg") for r in records if r["type"] == "task_failed"}
    # A module's message is kept as a classification and its redacted first line only.
    assert messages["A module failure whose output holds the canaries in hex"] == \
        "command returned non-zero: non-zero return code"
    assert messages["Fail naming the whole-file vault canary"] == "login failed with [REDACTED] [REDACTED]"


def test_carepath_run_writes_no_canary_anywhere(work: Path) -> None:
    proc = subprocess.run(carepath_argv(work), capture_output=True, text=True, env=env(work, "run"), cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (private,) = (work / "state-run" / "runs").iterdir()
    artifacts = private / "artifacts" / private.name
    stdout = (artifacts / "stdout").read_text()
    assert "Print every canary" in stdout and "[REDACTED]" in stdout and "(item=[REDACTED])" in stdout
    assert len(list((artifacts / "job_events").glob("*.json"))) > 20
    assert json.loads((artifacts / "command").read_text())["command"][0].endswith("ansible-playbook")
    assert leaks(private, work / "evidence-run") == []


def _wait_for_pause(proc: subprocess.Popen[str], pause: str) -> None:
    deadline = time.monotonic() + 90
    while not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == f"sleep {pause}"]:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run never reached its pause"
        time.sleep(0.1)


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _stop_leftovers(marker: str) -> None:
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit() and marker in _cmdline(proc_dir):
            subprocess.run(["kill", "-9", proc_dir.name], check=False)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_or_killed_run_writes_no_canary_even_while_it_runs(work: Path, signum: int) -> None:
    name = signal.Signals(signum).name.lower()
    pause = f"{40 + signum}.{uuid.uuid4().int % 10000:04d}"  # names this run's sleep in /proc
    proc = subprocess.Popen(carepath_argv(work, pause), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(work, name), cwd=ROOT, start_new_session=True)
    try:
        _wait_for_pause(proc, pause)
        (private,) = (work / f"state-{name}" / "runs").iterdir()
        artifacts = private / "artifacts" / private.name
        # In progress, right after the tasks that printed the canaries: all of it is on disk already.
        assert "Fail naming every canary" in (artifacts / "stdout").read_text()
        assert leaks(private, work / f"evidence-{name}") == []
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        time.sleep(1)  # after SIGKILL, ansible-playbook runs on without carepath
        assert leaks(private, work / f"evidence-{name}") == []
        if signum == signal.SIGINT:
            assert proc.returncode == 130, err[-2000:]
            assert not list(private.rglob("secrets.fifo"))
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop_leftovers(str(work / "canaries.yml"))
        _stop_leftovers(f"sleep {pause}")
    assert leaks(private, work / f"evidence-{name}") == []


def test_an_unusable_signing_key_still_feeds_the_secrets_channel(work: Path) -> None:
    """A key of mode 0640 used to leave the run unsigned and the channel never fed, so more leaked."""
    key = work / "loose" / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    key.chmod(0o640)
    run_env = {**env(work, "loose"), "CAREPATH_EVIDENCE_KEY": str(key)}
    proc = subprocess.run(carepath_argv(work), capture_output=True, text=True, env=run_env, cwd=ROOT, check=False)
    (private,) = (work / "state-loose" / "runs").iterdir()
    assert "Canaries" in (private / "artifacts" / private.name / "stdout").read_text(), proc.stderr[-2000:]
    assert leaks(private, work / "evidence-loose") == []
