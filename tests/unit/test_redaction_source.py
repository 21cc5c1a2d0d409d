"""The parts of redaction at the source, without Ansible: variants, names, messages, FIFOs, events."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, quote_plus

import pytest

from carepath.evidence.artifacts import (
    RedactedCommand,
    SecretsChannel,
    redact_runner_partials,
    scrub_event,
    send_secrets,
)
from carepath.evidence.redact import MASK, Redactor, named_secrets
from carepath.runner import RunRequest, request_secrets

SECRET = "s3cr/et+Val@ue"


@pytest.mark.parametrize(
    "form",
    [SECRET, SECRET.upper(), SECRET.lower(), SECRET.capitalize(), quote(SECRET), quote(SECRET, safe=""),
     quote_plus(SECRET), SECRET.encode().hex(), SECRET.encode().hex().upper(),
     base64.b64encode(SECRET.encode()).decode(), base64.b64encode(SECRET.encode()).decode().rstrip("="),
     base64.urlsafe_b64encode(SECRET.encode()).decode(), json.dumps(SECRET + '"')[1:-1]],
)
def test_a_secret_is_masked_in_each_form_one_filter_away(form: str) -> None:
    redactor = Redactor()
    redactor.add_secrets([SECRET, SECRET + '"'])
    assert redactor.text(f"before {form} after") == f"before {MASK} after"


def test_base64_is_matched_exactly_not_in_any_case() -> None:
    redactor = Redactor()
    redactor.add_secret(SECRET)
    other = base64.b64encode(SECRET.encode()).decode().swapcase()
    assert redactor.text(other) == other


def test_secret_names_from_extra_vars_and_connection_passwords() -> None:
    variables = {"db_password": "pw-1234", "api": {"token": "tok-5678"}, "ansible_become_pass": "bec-9012",
                 "ssh_host_key_path": "/etc/ssh/key", "motd": "hello world", "ansible_password": True}
    assert sorted(named_secrets(variables)) == ["/etc/ssh/key", "bec-9012", "pw-1234", "tok-5678"]
    # Inventory and play variables: connection and become passwords only (``*key*`` names are mostly paths).
    assert named_secrets(variables, connection_only=True) == ["bec-9012"]


def test_request_secrets_before_the_run_starts(tmp_path: Path) -> None:
    password = tmp_path / "vault-pass"
    password.write_text("vault-pw-3456\n")
    request = RunRequest(playbook="site", vault_password_file=password, extra_vars=(
        "app_db_password=pw-1234 other=x", '{"svc": {"secret": "sec-5678"}}', "api_token=tok-9012", "plain=hello"))
    assert sorted(request_secrets(request)) == ["pw-1234", "sec-5678", "tok-9012", "vault-pw-3456"]


@pytest.mark.parametrize(
    ("action", "result", "expected"),
    [
        ("ansible.builtin.fail", {"msg": "login as admin with pw-1234 refused\nsecond line"},
         f"login as admin with {MASK} refused\nsecond line"),
        ("ansible.builtin.command", {"rc": 2, "msg": "non-zero return code", "stdout": "pw-1234"},
         "command returned non-zero: non-zero return code"),
        ("ansible.builtin.slurp", {"msg": "file content: SSN 078-05-1120\nrow 2: DOE^JANE"},
         f"file content: SSN {MASK}"),
        ("ansible.builtin.uri", {"module_stderr": "Traceback ... pw-1234", "msg": "MODULE FAILURE\nSee stdout"},
         "module failure: MODULE FAILURE"),
        ("ansible.builtin.copy", {"msg": ""}, "task failed"),
    ],
)
def test_failed_task_messages_keep_a_form_that_cannot_carry_more(action: str, result: dict, expected: str) -> None:
    redactor = Redactor()
    redactor.add_secret("pw-1234")
    assert redactor.failure_message(action, result) == expected


def test_the_channel_takes_several_messages_and_drain_applies_them_at_once(tmp_path: Path) -> None:
    redactor = Redactor()
    channel = SecretsChannel(tmp_path, redactor)
    assert send_secrets(["first-secret"], environ=channel.env, patterns={"site_mrn": r"\bH\d{8}\b"})
    assert send_secrets(["first-secret", "second-secret"], environ=channel.env)
    channel.drain()  # what the event handler does before each event
    assert redactor.text("first-secret second-secret H12345678") == f"{MASK} {MASK} {MASK}"
    assert channel.close() == ["first-secret", "second-secret"]
    assert channel.patterns == {"site_mrn": r"\bH\d{8}\b"} and not channel.path.exists()


def test_a_large_message_does_not_block_the_sender(tmp_path: Path) -> None:
    channel = SecretsChannel(tmp_path)
    values = [f"secret-{i:06d}-{'x' * 40}" for i in range(3000)]  # ~150 KB: more than a pipe holds
    sent = threading.Thread(target=send_secrets, args=(values, channel.env))
    sent.start()
    sent.join(timeout=10)
    assert not sent.is_alive()
    assert channel.close() == sorted(values)


def _redactor() -> Redactor:
    redactor = Redactor()
    redactor.add_secret("pw-1234")
    return redactor


def test_an_event_is_scrubbed_items_masked_and_plain_text() -> None:
    event = {
        "event": "runner_item_on_ok", "uuid": "u1",
        "stdout": "\x1b[0;32mok: [web1] => (item={'user': 'alice', 'pw': 'pw-1234'}) => \x1b[0m\n"
                  "    changed: false\n    item:\n        pw: pw-1234\n        user: alice\n    msg: done",
        "event_data": {"host": "web1", "res": {"item": {"user": "alice"}, "_ansible_item_label": "alice",
                                               "msg": "used pw-1234",
                                               "results": [{"item": "bob", "changed": True, "stdout": "ok"}]}},
    }
    assert scrub_event(event, _redactor()) is event
    assert event["stdout"] == f"ok: [web1] => (item={MASK}) => \n    changed: false\n    item: {MASK}\n    msg: done"
    res = event["event_data"]["res"]
    assert res["item"] == MASK and res["_ansible_item_label"] == MASK and res["msg"] == f"used {MASK}"
    assert res["results"] == [{"item": MASK, "changed": True, "stdout": "ok"}]
    assert "alice" not in json.dumps(event) and "bob" not in json.dumps(event)


def test_ansible_runners_partial_event_files_are_scrubbed_before_they_are_written() -> None:
    written = {}
    cache = SimpleNamespace(set=lambda key, value: written.update({key: json.dumps(value)}))
    display = SimpleNamespace(event_context=SimpleNamespace(cache=cache))
    redactor = _redactor()
    assert redact_runner_partials(redactor, {"ansible.plugins.callback.awx_display": display})
    assert redact_runner_partials(redactor, {"ansible.plugins.callback.awx_display": display})  # wrapped once
    redactor.add_secret("learned-later")
    cache.set(":1:ev-u1", {"event": "runner_on_failed", "event_data": {"res": {"msg": "pw-1234 learned-later"}}})
    assert "pw-1234" not in written[":1:ev-u1"] and "learned-later" not in written[":1:ev-u1"]
    assert not redact_runner_partials(redactor, {"carepath": object()})  # plain ansible-playbook: nothing to do


def test_the_command_artifact_never_holds_what_ansible_runner_wrote(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts" / "run1"
    command = RedactedCommand(artifacts, _redactor())
    assert command.path.is_fifo()
    with open(command.path, "w", encoding="utf-8") as handle:  # as ansible-runner does
        json.dump({"command": ["ansible-playbook", "-e", "db_password=pw-1234"], "cwd": "/x",
                   "env": {"PATH": "/usr/bin", "DB_TOKEN": "tok-5678", "CAREPATH_RUN_ID": "run1"}}, handle)
    command.close()
    record = json.loads(command.path.read_text())
    assert record["command"] == ["ansible-playbook", "-e", f"db_password={MASK}"]
    assert record["env"] == {"PATH": "/usr/bin", "DB_TOKEN": MASK, "CAREPATH_RUN_ID": "run1"}
    assert oct(os.stat(command.path).st_mode & 0o777) == "0o600"


def test_a_command_fifo_nobody_wrote_is_removed(tmp_path: Path) -> None:
    command = RedactedCommand(tmp_path / "a", _redactor())
    command.close()
    assert not command.path.exists()
