"""Observable behaviour of log_forwarding: messages really reach the collector over TLS, the
collector refuses plain TCP and clients without an accepted certificate, and nothing waiting
for a collector that is down is lost, not even across a restart of the sender."""

from __future__ import annotations

import contextlib
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import testinfra

COLLECTOR = "log_forwarding-collector"
COLLECTOR_NAME = "collector.hospital.example"
REMOTE = "/var/log/carepath/remote"
TLS = "/etc/carepath/tls/log_forwarding"
FORWARD = "/etc/rsyslog.d/60-carepath-forward.conf"
LISTENER = "/etc/rsyslog.d/60-carepath-collector.conf"
QUEUE = "/var/spool/rsyslog/carepath-forward"
REFUSED = "/root/carepath-test"  # certificates the collector must refuse (prepare.yml)

T = TypeVar("T")


@pytest.fixture(scope="module")
def collector():
    return testinfra.get_host(f"podman://{COLLECTOR}")


def _is_collector(host) -> bool:
    return host.backend.name == COLLECTOR


@pytest.fixture
def client(host):
    """The host under test, when it is one of the two clients."""
    if _is_collector(host):
        pytest.skip("a client-side test")
    return host


def _wait_for(check: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _token(label: str) -> str:
    """A unique, synthetic marker (no patient data ever goes into a test message)."""
    return f"cp-{label}-{uuid.uuid4().hex[:12]}"


def _stored(collector, token: str) -> list[str]:
    """The collector's files holding ``token``."""
    return collector.run(f"grep -rlF -- {token} {REMOTE}").stdout.split()


def _log(host, token: str) -> None:
    host.check_output(f"logger -t carepath-test {token}")


def _settings(text: str) -> dict[str, str]:
    """key="value" lines of an rsyslog file, quotes removed."""
    pairs = (line.strip().partition("=") for line in text.splitlines() if not line.lstrip().startswith("#"))
    return {key: value.strip('"') for key, sep, value in pairs if sep}


def _send_with_openssl(host, token: str, identity: str | None) -> None:
    """One RFC 5424 line sent to the collector with openssl as the TLS client."""
    cert = f"-cert {identity}.crt -key {identity}.key" if identity else ""
    line = shlex.quote(f"<13>1 - intruder carepath-test - - - {token}\n")
    host.run(
        f"printf {line} | timeout 10 openssl s_client -connect {COLLECTOR_NAME}:6514 "
        f"-CAfile {TLS}/ca.crt {cert} -quiet"
    )


# --- every host ----------------------------------------------------------------------------


def test_rsyslog_and_the_tls_driver_of_the_release_are_installed_and_running(host):
    assert host.package("rsyslog").is_installed
    trixie = host.system_info.codename == "trixie"
    assert host.package("rsyslog-openssl" if trixie else "rsyslog-gnutls").is_installed
    assert host.service("rsyslog").is_enabled
    assert host.service("rsyslog").is_running


def test_rsyslog_accepts_its_whole_configuration(host):
    assert host.run("rsyslogd -N1").rc == 0


def test_the_check_refuses_a_drop_in_that_clashes_with_the_rest(host):
    # A plain TCP input is valid alone, but loads imtcp a second time next to the collector's listener.
    host.check_output(
        "printf 'module(load=\"imtcp\")\\ninput(type=\"imtcp\" port=\"10514\")\\n' > /tmp/cp-candidate.conf"
    )
    checked = host.run("carepath-rsyslog-check /tmp/cp-candidate.conf /etc/rsyslog.d/70-other.conf")
    if _is_collector(host):
        assert checked.rc != 0
        assert "imtcp" in checked.stderr + checked.stdout
    else:
        assert checked.rc == 0
    assert not host.file("/etc/rsyslog.d/70-other.conf").exists


def test_journald_passes_every_message_to_rsyslog(host):
    merged = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    values = [line for line in merged.splitlines() if line.startswith("ForwardToSyslog=")]
    assert values[-1] == "ForwardToSyslog=yes"


def test_log_files_are_created_for_root_and_adm_only(host):
    settings = host.check_output("grep -E '^\\$File(Owner|Group|CreateMode)' /etc/rsyslog.conf").splitlines()
    assert settings == ["$FileOwner root", "$FileGroup adm", "$FileCreateMode 0640"]
    syslog = host.file("/var/log/syslog")
    assert syslog.user == "root" and syslog.group == "adm" and syslog.mode == 0o640


def test_the_tls_key_is_private_and_the_certificate_names_this_host(host):
    assert host.file(TLS).mode == 0o750
    key = host.file(f"{TLS}/host.key")
    assert key.user == "root" and key.mode == 0o600
    assert host.file(f"{TLS}/host.crt").mode == 0o644
    names = host.check_output(f"openssl x509 -in {TLS}/host.crt -noout -ext subjectAltName")
    assert f"DNS:{host.check_output('hostname')}.hospital.example" in names
    assert host.run(f"openssl verify -CAfile {TLS}/ca.crt {TLS}/host.crt").rc == 0


def test_forwarding_uses_tls_checks_the_collector_name_and_queues_on_disk(host):
    settings = _settings(host.file(FORWARD).content_string)
    trixie = host.system_info.codename == "trixie"
    assert settings["target"] == COLLECTOR_NAME
    assert settings["StreamDriver"] == ("ossl" if trixie else "gtls")
    assert settings["StreamDriverMode"] == "1"
    assert settings["StreamDriverAuthMode"] == "x509/name"
    assert settings["StreamDriverPermittedPeers"] == COLLECTOR_NAME
    assert settings["queue.type"] == "LinkedList"
    assert settings["queue.saveOnShutdown"] == "on"
    assert settings["queue.maxDiskSpace"] == "256m"
    assert settings["action.resumeRetryCount"] == "-1"
    assert settings["action.resumeInterval"] == "2"


def test_only_the_collector_listens_and_only_on_the_tls_port(host):
    listening = host.check_output("ss -Hltnu").splitlines()
    ports = {line.split()[4].rsplit(":", 1)[1] for line in listening}
    assert "514" not in ports
    if _is_collector(host):
        assert "6514" in ports
        settings = _settings(host.file(LISTENER).content_string)
        assert settings["StreamDriver.Mode"] == "1"
        assert settings["StreamDriver.AuthMode"] == "x509/name"
        assert settings["PermittedPeer"] == '["*.hospital.example"]'
    else:
        assert "6514" not in ports
        assert not host.file(LISTENER).exists


def test_a_logged_message_reaches_the_collector_in_the_file_of_its_sender(host, collector):
    # logger writes to journald, which passes it to rsyslog, which forwards it over TLS.
    name = host.check_output("hostname")
    token = _token(name)
    _log(host, token)
    files = _wait_for(lambda: _stored(collector, token))
    assert len(files) == 1
    sender, day = files[0].removeprefix(f"{REMOTE}/").split("/")
    assert sender.split(".")[0] == name
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.log", day)
    assert f"carepath-test {token}" in collector.check_output(f"grep -hF -- {token} {files[0]}")
    stored = collector.file(files[0])
    assert stored.user == "root" and stored.group == "adm" and stored.mode == 0o640
    assert collector.file(f"{REMOTE}/{sender}").mode == 0o750
    if not _is_collector(host):
        # Received messages are kept apart: not in the collector's own logs.
        assert collector.run(f"grep -rlF -- {token} /var/log/syslog /var/log/user.log").stdout == ""


def test_the_collector_shows_its_ca_signed_certificate_in_the_handshake(host):
    handshake = host.check_output(
        f"openssl s_client -connect {COLLECTOR_NAME}:6514 -CAfile {TLS}/ca.crt "
        f"-cert {TLS}/host.crt -key {TLS}/host.key -verify_return_error "
        f"-verify_hostname {COLLECTOR_NAME} -brief </dev/null 2>&1"
    )
    assert re.search(r"Protocol version: TLSv1\.[23]", handshake)
    assert re.search(r"Peer certificate: .*CN ?= ?collector\.hospital\.example", handshake)
    assert "Verification: OK" in handshake


# --- from the clients: what the collector refuses -------------------------------------------


def test_the_collector_port_takes_no_plain_tcp(client, collector):
    plain = _token("plain")
    probe = (
        "import socket\n"
        f"s = socket.create_connection(({COLLECTOR_NAME!r}, 6514), 5)\n"
        f"s.sendall(b'<13>1 - intruder carepath-test - - - {plain}\\n')\n"
        "s.settimeout(5)\n"
        "try:\n    s.recv(100)\nexcept OSError:\n    pass\n"
    )
    client.run(f"python3 -c {shlex.quote(probe)}")
    # A message sent after it arrives: had the plain one been taken, it would be stored by now.
    marker = _token("after-plain")
    _log(client, marker)
    assert _wait_for(lambda: _stored(collector, marker))
    assert _stored(collector, plain) == []


def test_openssl_with_this_hosts_certificate_is_accepted(client, collector):
    # The same way of sending as the refused cases below, with an accepted certificate.
    token = _token("accepted")
    _send_with_openssl(client, token, f"{TLS}/host")
    assert _wait_for(lambda: _stored(collector, token))


@pytest.mark.parametrize(
    "identity",
    [None, f"{REFUSED}/rogue", f"{REFUSED}/outsider"],
    ids=["no-certificate", "self-signed", "ca-signed-but-not-hospital-example"],
)
def test_a_client_without_an_accepted_certificate_is_refused(client, collector, identity):
    token = _token("refused")
    _send_with_openssl(client, token, identity)
    marker = _token("after-refused")
    _log(client, marker)
    assert _wait_for(lambda: _stored(collector, marker))
    assert _stored(collector, token) == []


# --- from the clients: the collector goes down ----------------------------------------------


@contextlib.contextmanager
def _collector_down(collector) -> Iterator[None]:
    # syslog.socket would start rsyslog again at the next local message: stop both.
    collector.check_output("systemctl stop syslog.socket rsyslog.service")
    try:
        yield
    finally:
        collector.check_output("systemctl start rsyslog.service")


def _forwarder_suspended(client, since: str) -> bool:
    journal = client.check_output(f"journalctl -u rsyslog --since @{since} --no-pager")
    return "'carepath-forward' suspended" in journal


def test_a_message_logged_while_the_collector_is_down_arrives_when_it_is_back(client, collector):
    since = client.check_output("date +%s")
    with _collector_down(collector):
        token = _token("during-outage")
        _log(client, token)
        assert _wait_for(lambda: _forwarder_suspended(client, since))
        assert _stored(collector, token) == []
    assert _wait_for(lambda: _stored(collector, token), timeout=120)


def test_queued_messages_are_kept_on_disk_across_a_restart_of_the_sender(client, collector):
    since = client.check_output("date +%s")
    with _collector_down(collector):
        # The first message finds the collector gone (see the README for what happens to it).
        _log(client, _token("detector"))
        assert _wait_for(lambda: _forwarder_suspended(client, since))
        token = _token("queued")
        _log(client, token)
        # Once rsyslog wrote it locally, it is also in the forwarding queue.
        assert _wait_for(lambda: client.run(f"grep -qF -- {token} /var/log/syslog").rc == 0)
        client.check_output("systemctl restart rsyslog")
        on_disk = _wait_for(lambda: client.run(f"grep -alF -- {token} {QUEUE}.0*").stdout.split())
        assert on_disk, "the queued message was not saved to the disk queue"
        assert client.file(f"{QUEUE}.qi").exists
        assert client.file(on_disk[0]).mode == 0o600
    assert _wait_for(lambda: _stored(collector, token), timeout=120)
