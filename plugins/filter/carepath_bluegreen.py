# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The blue-green naming contract between HAProxy's configuration and the deploys that switch it.

roles/haproxy renders one backend per service and two servers (blue, green) per host; roles/webapp
and the HL7 engine deploys switch those servers through the runtime API. Both name them through
these filters, so the names cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

COLOURS = ("blue", "green")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def backend(service: Any) -> str:
    """HAProxy's backend of a web app or an engine: ``be_<name>``."""
    if not isinstance(service, str) or not service:
        raise AnsibleFilterError(f"carepath_bg_backend needs the service's name, got {service!r}")
    return f"be_{service}"


def frontend(service: Any) -> str:
    """HAProxy's frontend of a TCP service: ``fe_<name>``."""
    return "fe_" + backend(service)[3:]


def hl7_check_message(unused: Any = None) -> str:
    """HAProxy's health check for an HL7 engine, as hex for ``tcp-check send-binary``: one MLLP
    frame holding the deploy gate's test message (carepath_hl7_probe's: processing ID ``T``,
    sending application ``CAREPATH-PROBE``, no patient segment), so the engine stores it and
    answers ``AA`` but never routes or counts it."""
    message = "\r".join([
        "MSH|^~\\&|CAREPATH-PROBE|CAREPATH|CAREPATH|CAREPATH|20260101000000||ADT^A08^ADT_A01|HAPROXY-CHECK|T|2.5.1",
        "EVN|A08|20260101000000",
    ])
    return (b"\x0b" + message.encode("ascii") + b"\x1c\r").hex()


def server(host: Any, colour: Any) -> str:
    """HAProxy's server of one colour on one host: ``<host>_<colour>``, unsafe characters as ``_``."""
    if colour not in COLOURS:
        raise AnsibleFilterError(f"carepath_bg_server: colour must be blue or green, got {colour!r}")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError(f"carepath_bg_server needs an inventory host name, got {host!r}")
    return f"{_UNSAFE.sub('_', host)}_{colour}"


class FilterModule:
    """carepath blue-green naming filters."""

    def filters(self) -> dict[str, Any]:
        return {"carepath_bg_backend": backend, "carepath_bg_frontend": frontend, "carepath_bg_server": server,
                "carepath_hl7_check_message": hl7_check_message}
