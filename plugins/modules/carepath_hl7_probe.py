#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send one HL7 v2 test message over MLLP and judge the ACK: the health gate of an engine deploy."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_hl7_probe
short_description: Send one HL7 v2 test message over MLLP (optionally TLS) and check its ACK
description:
  - The health gate of an interface engine's blue-green deploy, run on a managed host. Sends one
    test message to O(host):O(port) over MLLP and waits for its ACK; tries again every
    O(interval) seconds until an ACK with a code in O(expect) arrives or O(deadline) seconds have
    passed.
  - The message is a test message by construction, so every engine and sink can leave it out of
    routing and counts - processing ID C(T) (MSH-11), sending application O(sending_application)
    (MSH-3), an C(ADT^A08) with an C(EVN) segment and no patient segment. It holds no patient data.
  - HAProxy's C(tcp-check) for MLLP backends sends the same message (roles/haproxy).
  - Framing and parsing use the python-hl7 library (Debian package C(python3-hl7)) on the host.
version_added: "0.3.0"
author: carepath contributors (@carepath)
requirements:
  - python-hl7 0.4 or later on the managed host (C(python3-hl7))
options:
  host:
    description: The engine's address.
    type: str
    default: 127.0.0.1
  port:
    description: The engine's MLLP port.
    type: int
    required: true
  tls:
    description: Speak MLLP over TLS, verifying the engine's certificate against O(ca_path).
    type: bool
    default: false
  ca_path:
    description: The site CA bundle the engine's certificate must chain to. Required when O(tls) is set.
    type: path
  server_name:
    description: The name the certificate must hold; defaults to O(host).
    type: str
  expect:
    description: ACK codes (MSA-1) that pass. C(AE), C(AR) and anything else fail.
    type: list
    elements: str
    default: [AA, CA]
  deadline:
    description: Seconds to keep trying; at least one try is always made. C(0) tries once.
    type: float
    default: 15
  interval:
    description: Seconds between tries.
    type: float
    default: 0.5
  timeout:
    description: Seconds one try may take, from connecting to the ACK.
    type: float
    default: 5
  sending_application:
    description: MSH-3 of the test message, the name engines and sinks leave out of routing and counts.
    type: str
    default: CAREPATH-PROBE
  receiving_application:
    description: MSH-5 of the test message.
    type: str
    default: CAREPATH
extends_documentation_fragment: [ansible.builtin.action_common_attributes]
attributes:
  check_mode:
    support: full
    details: Sends the test message in check mode too; it changes nothing that engines route or count.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Gate the idle colour before it gets traffic
  carepath.core.carepath_hl7_probe:
    port: 12576
    deadline: 15

- name: Probe the listener over TLS, through the load balancer
  carepath.core.carepath_hl7_probe:
    host: hl7.hospital.example
    port: 2575
    tls: true
    ca_path: /etc/carepath/tls/ca.crt
    deadline: 0
"""

RETURN = r"""
passed:
  description: Whether an ACK with an expected code came back in time.
  returned: always
  type: bool
ack_code:
  description: MSA-1 of the last ACK, empty when none came.
  returned: always
  type: str
  sample: AA
control_id:
  description: MSH-10 of the last test message sent.
  returned: always
  type: str
acked_control_id:
  description: MSA-2 of the last ACK (the control ID it acknowledges), empty when none came.
  returned: always
  type: str
latency_ms:
  description: Milliseconds from sending the last test message to its ACK; null when none came.
  returned: always
  type: float
attempts:
  description: How many test messages were sent.
  returned: always
  type: int
elapsed:
  description: Seconds from the first try to the answer (or to the deadline).
  returned: always
  type: float
answer:
  description: "The last answer, short: C(AA), an error code with its text, or the connection error."
  returned: always
  type: str
"""

import asyncio
import datetime
import secrets
import ssl
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.carepath.core.plugins.module_utils.carepath_deadline import until_deadline

try:
    import hl7
    import hl7.mllp
except ImportError:  # reported by main() with the package to install
    hl7 = None

PROBE_EVENT = "A08"


def control_id():
    """A fresh MSH-10 of at most 20 characters (HL7 v2.5 ST length)."""
    return f"P{int(time.time() * 1000) % 10**12:012d}{secrets.token_hex(3).upper()}"


def probe_message(control, sending_application="CAREPATH-PROBE", receiving_application="CAREPATH"):
    """The test message: processing ID T, a dedicated sending application, no patient segment."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    text = "\r".join([
        f"MSH|^~\\&|{sending_application}|CAREPATH|{receiving_application}|CAREPATH|{stamp}||"
        f"ADT^{PROBE_EVENT}^ADT_A01|{control}|T|2.5.1",
        f"EVN|{PROBE_EVENT}|{stamp}",
    ])
    return hl7.parse(text)


def client_context(ca_path, server_name):
    context = ssl.create_default_context(cafile=ca_path)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context, server_name


async def _exchange(host, port, message, timeout, tls_context, server_name):
    kwargs = {}
    if tls_context is not None:
        kwargs = {"ssl": tls_context, "server_hostname": server_name or host}
    reader, writer = await asyncio.wait_for(hl7.mllp.open_hl7_connection(host, port, **kwargs), timeout)
    try:
        sent = time.monotonic()
        writer.writemessage(message)
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), max(0.0, timeout - (time.monotonic() - sent)))
        return ack, (time.monotonic() - sent) * 1000
    finally:
        writer.close()


def try_once(host, port, timeout, expect, tls_context=None, server_name=None,
             sending_application="CAREPATH-PROBE", receiving_application="CAREPATH"):
    """One test message; a result dict as RETURN describes (without attempts/elapsed)."""
    control = control_id()
    result = {"passed": False, "ack_code": "", "control_id": control, "acked_control_id": "",
              "latency_ms": None, "answer": ""}
    message = probe_message(control, sending_application, receiving_application)
    try:
        ack, latency = asyncio.run(_exchange(host, port, message, timeout, tls_context, server_name))
    except TimeoutError:
        result["answer"] = f"no ACK within {timeout:g} s"
        return result
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as err:
        result["answer"] = f"{type(err).__name__}: {err}"[:200]
        return result
    try:
        msa = ack.segment("MSA")
        code, acked = str(msa(1)), str(msa(2))
    except (KeyError, IndexError):
        result["answer"] = "the answer has no MSA segment"
        return result
    result.update(ack_code=code, acked_control_id=acked, latency_ms=round(latency, 2))
    if acked != control:
        result["answer"] = f"{code} for {acked!r}, not for the test message {control!r}"
        return result
    text = ""
    try:
        err = ack.segment("ERR")
        text = str(err)[:120]
    except KeyError:
        text = str(msa(3)) if len(msa) > 3 else ""
    result["answer"] = f"{code}: {text}" if text else code
    result["passed"] = code in expect
    return result


def probe(host, port, deadline, interval, timeout, expect, **kwargs):
    def attempt():
        result = try_once(host, port, timeout, expect, **kwargs)
        return result["passed"], result

    return until_deadline(attempt, deadline, interval)


def main():
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "required": True},
            "tls": {"type": "bool", "default": False},
            "ca_path": {"type": "path"},
            "server_name": {"type": "str"},
            "expect": {"type": "list", "elements": "str", "default": ["AA", "CA"]},
            "deadline": {"type": "float", "default": 15},
            "interval": {"type": "float", "default": 0.5},
            "timeout": {"type": "float", "default": 5},
            "sending_application": {"type": "str", "default": "CAREPATH-PROBE"},
            "receiving_application": {"type": "str", "default": "CAREPATH"},
        },
        required_if=[("tls", True, ["ca_path"])],
        supports_check_mode=True,
    )
    if hl7 is None:
        module.fail_json(msg=missing_required_lib("hl7 (Debian package python3-hl7)"))
    p = module.params
    if not 0 < p["port"] < 65536:
        module.fail_json(msg=f"port {p['port']} is not a TCP port (1-65535)")
    if p["deadline"] < 0 or p["interval"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="deadline must be 0 or more, interval and timeout more than 0")
    for name in ("sending_application", "receiving_application"):
        if not p[name] or any(c in p[name] for c in "|^~\\&\r\n"):
            module.fail_json(msg=f"{name} {p[name]!r} must be non-empty and hold no HL7 delimiter")
    tls_context = None
    if p["tls"]:
        try:
            tls_context, unused = client_context(p["ca_path"], p["server_name"])
        except (OSError, ssl.SSLError) as err:
            module.fail_json(msg=f"cannot use the CA bundle {p['ca_path']}: {err}")
    expect = [code.upper() for code in p["expect"]]
    result = probe(p["host"], p["port"], p["deadline"], p["interval"], p["timeout"], expect,
                   tls_context=tls_context, server_name=p["server_name"],
                   sending_application=p["sending_application"],
                   receiving_application=p["receiving_application"])
    if not result["passed"]:
        module.fail_json(msg=f"{p['host']}:{p['port']} gave no {'/'.join(expect)} ACK within {p['deadline']:g} s "
                             f"({result['attempts']} tries): {result['answer']}", changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
