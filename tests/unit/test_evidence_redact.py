"""Redaction and the small pure helpers of the evidence recorder."""

from __future__ import annotations

import pytest

from carepath.evidence.recorder import control_ids
from carepath.evidence.redact import MASK, Redactor
from carepath.sitepolicy import inventory_name as site_name


def test_secret_values_are_masked_wherever_they_appear_longest_first() -> None:
    redactor = Redactor()
    redactor.add_secrets(["hunter22", "hunter22-admin", "abc"])  # "abc" is too short to mask safely
    assert redactor.text("a=hunter22-admin b=hunter22 c=abc") == f"a={MASK} b={MASK} c=abc"


def test_secret_looking_environment_variables_only() -> None:
    redactor = Redactor()
    redactor.add_environment({"DB_PASSWORD": "pw-123456", "API_TOKEN": "tok-98765", "HOME": "/home/ops"})
    assert redactor.text("pw-123456 tok-98765 /home/ops") == f"{MASK} {MASK} /home/ops"


def test_a_secret_looking_setting_that_is_a_switch_is_not_a_secret() -> None:
    # carepath's runs set ANSIBLE_HOST_KEY_CHECKING=True: a drift report said "expected [REDACTED]".
    redactor = Redactor()
    redactor.add_environment({"ANSIBLE_HOST_KEY_CHECKING": "True", "SSH_AUTH_FALLBACK": "off", "APP_SECRET_PIN": "482913"})
    assert redactor.text("enabled is False, expected True; pin 482913") == f"enabled is False, expected True; pin {MASK}"


@pytest.mark.parametrize(
    "phi",
    ["SSN 078-05-1120", "MRN: ZX99887766", "DOB: 1960-01-01", "PID|1||4455661^^^HOSP^MR||DOE^JANE||19600101|F"],
)
def test_phi_patterns_are_masked(phi: str) -> None:
    masked = Redactor().text(f"before {phi} after")
    assert MASK in masked and not any(part in masked for part in ("078-05", "ZX998", "1960", "DOE^JANE"))


def test_a_site_specific_mrn_format_can_be_added() -> None:
    redactor = Redactor(extra_patterns={"mrn": r"\bH\d{8}\b"})
    assert redactor.text("chart H12345678") == f"chart {MASK}"


def test_nested_data_is_redacted_keys_included() -> None:
    redactor = Redactor()
    redactor.add_secret("s3cret-value")
    assert redactor.data({"s3cret-value": ["x s3cret-value"], "n": 1}) == {MASK: [f"x {MASK}"], "n": 1}


def test_control_ids_come_from_control_tags_only() -> None:
    assert control_ids(["cp_ssh_05", "cis_5_1_1", "cp_os_10", "cp_ssh_05", "hipaa_164_312_b"]) == ["CP-SSH-05", "CP-OS-10"]


@pytest.mark.parametrize(
    ("inventory", "site"),
    [(["inventories/production"], "production"), (["/x/inventories/lab/hosts.yml"], "lab"), (["web1,db1"], "adhoc"),
     ([], "adhoc")],
)
def test_site_name(inventory: list[str], site: str) -> None:
    assert site_name(inventory) == site


def test_secrets_pass_through_the_fifo_and_a_silent_run_does_not_hang(tmp_path) -> None:
    from carepath.evidence.artifacts import SecretsChannel, send_secrets

    channel = SecretsChannel(tmp_path)
    assert send_secrets(["vault-value-1", "vault-value-2"], environ=channel.env)
    assert channel.close() == ["vault-value-1", "vault-value-2"]
    assert not channel.path.exists()

    silent = SecretsChannel(tmp_path)
    assert silent.close() == []
    assert not send_secrets(["x"], environ={})
