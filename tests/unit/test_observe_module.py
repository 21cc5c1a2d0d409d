"""carepath_observe's readers that need no host: command lines, journal counts, open ports,
and the HL7 controls' command checks run against files of our own (the paths swapped)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from carepath import checks, controls
from tests.unit.modules import load

observe = load("carepath_observe")


def test_command_lines_keep_quoted_words_together_and_backslashes_as_they_are():
    assert observe._argv("awk '$1 == \"bind\" {print}' /etc/haproxy/haproxy.cfg") == [
        "awk", '$1 == "bind" {print}', "/etc/haproxy/haproxy.cfg"]
    # The catalog's find commands are split as before: no quotes, backslashes kept, ';' a word.
    line = r"find /usr/bin -regex .*/(ld\.bfd|c\+\+) -exec grep -q ^User=hl7- {} ; -print"
    assert observe._argv(line) == line.split()


def test_journal_lines_are_counted_never_returned():
    text = "started\nrouted 3 messages\nbad: MSH|^~\\&|LAB|X\nEVN|A01|2026\nTCP|UDP ok\n"
    assert observe.count_matching(text, r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]{2}\|") == 3
    assert observe.count_matching("", "MSH") == 0


class _Module:
    def __init__(self, rc: int, out: str, err: str = "") -> None:
        self.rc, self.out, self.err, self.argv = rc, out, err, []

    def get_bin_path(self, name, opt_dirs=None):  # noqa: ANN001, ARG002
        return f"/usr/bin/{name}"

    def run_command(self, argv):  # noqa: ANN001
        self.argv.append(argv)
        return self.rc, self.out, self.err


def test_the_journal_of_the_units_is_read_and_an_unreadable_one_is_null():
    module = _Module(0, "MSH|^~\\&|A\nfine\n")
    assert observe._journal(module, ["carepath-hl7-*:MSH[|]"]) == {"carepath-hl7-*:MSH[|]": 1}
    assert module.argv == [["/usr/bin/journalctl", "--no-pager", "-q", "-o", "cat", "-u", "carepath-hl7-*"]]
    assert observe._journal(_Module(1, "", "Permission denied"), ["x:y"]) == {"x:y": None}
    # journalctl's answer when no unit matching the glob ever logged: no line at all.
    no_unit = _Module(1, "", "Failed to add filter for units: No data available")
    assert observe._journal(no_unit, ["carepath-hl7-*:MSH"]) == {"carepath-hl7-*:MSH": 0}


TABLE = """table inet carepath {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		tcp dport 22 accept comment "ssh-from-any"
		tcp dport { 80, 443 } accept comment "web"
		ip saddr 10.89.0.2 tcp dport { 12575, 12576 } accept comment "engine-colours-from-lb"
		tcp dport 8000-8100 accept comment "range"
		udp dport 514 accept comment "syslog"
	}
	chain forward {
		tcp dport 9999 accept
	}
}
"""


def test_ports_open_to_any_source_are_those_of_input_rules_without_saddr():
    assert observe.tcp_open_to_any(TABLE) == ["22", "80", "443", "8000-8100"]


# --- the HL7 controls' command checks, on files of our own ------------------------------------

def _command(control_id: str) -> str:
    (command,) = next(c for c in controls.load() if c.id == control_id).check["command"]
    return command


def _run(command: str, real: str, ours: Path) -> str:
    argv = observe._argv(command.replace(real, str(ours)))
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()  # noqa: S603


def test_the_mllp_tls_check_finds_plain_tcp_binds_only(tmp_path: Path):
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend https\n    bind :443 ssl crt /x.pem\n    bind :80\n"
                      "frontend fe_adt\n    mode tcp\n    option tcplog\n    bind :2575 ssl crt /x.pem\n"
                      "backend be_adt\n    mode tcp\n"
                      "frontend fe_orm\n    mode tcp\n    bind :2576\n", encoding="utf-8")
    assert _run(_command("CP-HL7-03"), "/etc/haproxy/haproxy.cfg", config) == "bind :2576"
    config.write_text(config.read_text().replace("bind :2576", "bind :2576 ssl crt /x.pem"), encoding="utf-8")
    assert _run(_command("CP-HL7-03"), "/etc/haproxy/haproxy.cfg", config) == ""


def test_the_retention_check_finds_engines_keeping_messages_too_long(tmp_path: Path):
    (tmp_path / "adt").mkdir()
    for colour, hours in (("blue", 72.0), ("green", 72.0)):
        (tmp_path / "adt" / f"{colour}.json").write_text(json.dumps({"retention_hours": hours}, indent=4))
    assert _run(_command("CP-HL7-05"), "/etc/carepath/hl7", tmp_path) == ""
    (tmp_path / "adt" / "green.json").write_text(json.dumps({"retention_hours": 9000.0}, indent=4))
    assert _run(_command("CP-HL7-05"), "/etc/carepath/hl7", tmp_path) == f"{tmp_path}/adt/green.json"


def test_the_oie_credentials_check_finds_shipped_or_empty_keystore_passwords(tmp_path: Path):
    conf = tmp_path / "adt" / "blue" / "oie" / "conf"
    conf.mkdir(parents=True)
    (conf / "mirth.properties").write_text("keystore.storepass = S3t-by-the-site\nkeystore.keypass = Another-0ne\n")
    assert _run(_command("CP-HL7-06"), "/var/lib/carepath/hl7", tmp_path) == ""
    for bad in ("keystore.keypass = 81uWxplDtB", "keystore.storepass ="):
        (conf / "mirth.properties").write_text(f"keystore.storepass = S3t-by-the-site\n{bad}\n")
        assert _run(_command("CP-HL7-06"), "/var/lib/carepath/hl7", tmp_path) == str(conf / "mirth.properties")


def test_the_journal_control_counts_hl7_segments():
    (key,) = next(c for c in controls.load() if c.id == "CP-HL7-07").check["journal"]
    units, _, pattern = key.partition(":")
    assert units == "carepath-hl7-*"
    assert observe.count_matching("listening on 12575\nrouted 10 messages to downstream", pattern) == 0
    assert observe.count_matching("error parsing PID|1||123", pattern) == 1
    check = next(c for c in controls.load() if c.id == "CP-HL7-07").check
    assert checks.evaluate_check(check, {"journal": {key: 1}})
