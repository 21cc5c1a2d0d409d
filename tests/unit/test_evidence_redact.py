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


# Synthetic HL7 v2 messages with a canary in a segment other than PID each time: a message quoted
# in an error must leave nothing of itself in the evidence, whatever segment holds the data.
HL7_CANARY = "QXCANARY"
HL7_MESSAGES = [
    "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20261206||ORU^R01|QX1|P|2.5\rPID|1||QX-4455^^^HOSP^MR\r"
    "OBX|1|NM|GLU^Glucose||QXCANARY|mg/dl",
    "MSH|^~\\&|ADT|HOSP|LAB|HOSP|20261206||ADT^A01|QX2|P|2.5\nEVN|A01\nNK1|1|QXCANARY^NEXTOFKIN|SPO",
    "MSH|^~\\&|ADT|HOSP|LAB|HOSP|20261206||ADT^A08|QX3|P|2.5\\rPV1|1|I|WARD^QXCANARY",  # escaped CR, one line
    "\x0bMSH|^~\\&|A|B|C|D|20261206||ADT^A08|QX4|P|2.5\rZPI|1|QXCANARY\x1c\r",  # an MLLP frame
]


@pytest.mark.parametrize("message", HL7_MESSAGES)
def test_whole_hl7_messages_are_masked_whatever_segment_holds_the_data(message: str) -> None:
    masked = Redactor().text(f"destination answered AE for: {message} (retrying)")
    assert HL7_CANARY not in masked and "QX-4455" not in masked and "|" not in masked, masked
    assert masked.startswith("destination answered AE for: ") and MASK in masked


def test_ordinary_text_with_pipes_is_left_alone() -> None:
    text = "filter {{ x | default('a') }} and HL7 probe AA from 127.0.0.1:12575"
    assert Redactor().text(text) == text


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
