"""Would this sshd configuration lock out the user Ansible is logged in as?

The lock-out guard of the ssh_hardening role calls ``ssh_hardening_lockout_reasons``
with what it observed on the host and the configuration it is about to write. Rules
follow sshd_config(5): DenyUsers, AllowUsers, DenyGroups, AllowGroups, each entry a
pattern (``*``, ``?``) of ``USER`` or ``USER@HOST``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any


def _user_matches(entry: str, user: str, client: str) -> bool:
    name, unused, host = entry.partition("@")
    if not fnmatchcase(user, name):
        return False
    return not host or fnmatchcase(client, host)


def parse_login(text: str) -> dict[str, Any]:
    """Read the output of ``id -un; id -Gn; echo "$SSH_CONNECTION"`` run as the login user."""
    lines = text.splitlines() + ["", "", ""]
    connection = lines[2].split()
    return {
        "user": lines[0].strip(),
        "groups": lines[1].split(),
        "ssh": len(connection) == 4,
        "client": connection[0] if len(connection) == 4 else "",
        "server_address": connection[2] if len(connection) == 4 else "",
        "server_port": int(connection[3]) if len(connection) == 4 else 0,
    }


def lockout_reasons(login: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Every reason the login in ``login`` would be refused under ``config`` (empty: safe).

    ``login``: as returned by :func:`parse_login`, plus ``password`` (bool: Ansible
    authenticates with a password). ``config``: the role's settings without the prefix.
    A login that is not over SSH (a container or local connection) cannot be cut off.
    """
    if not login.get("ssh"):
        return []
    user, groups, client = login["user"], login["groups"], login["client"]
    reasons: list[str] = []
    if user == "root" and not config["permit_root_login"]:
        reasons.append("Ansible logs in as root, and ssh_hardening_permit_root_login is false")
    if login.get("password") and not config["password_authentication"]:
        reasons.append(
            "Ansible logs in with a password, and ssh_hardening_password_authentication is false"
        )
    if any(_user_matches(e, user, client) for e in config["deny_users"]):
        reasons.append(f"user {user!r} matches ssh_hardening_deny_users")
    if config["allow_users"] and not any(_user_matches(e, user, client) for e in config["allow_users"]):
        reasons.append(f"user {user!r} matches no entry of ssh_hardening_allow_users")
    denied = sorted(g for g in groups if any(fnmatchcase(g, p) for p in config["deny_groups"]))
    if denied:
        reasons.append(f"user {user!r} is in group(s) {denied} matched by ssh_hardening_deny_groups")
    if config["allow_groups"] and not any(
        fnmatchcase(g, p) for g in groups for p in config["allow_groups"]
    ):
        reasons.append(
            f"user {user!r} (groups {groups}) is in no group of ssh_hardening_allow_groups"
        )
    if int(config["port"]) != login["server_port"]:
        reasons.append(
            f"Ansible connects to port {login['server_port']}, and ssh_hardening_port is {config['port']}"
            " (point ansible_port at the new port only once sshd listens on both)"
        )
    addresses = config["listen_addresses"]
    if addresses and not {login["server_address"], "0.0.0.0", "::"}.intersection(addresses):  # noqa: S104
        reasons.append(
            f"Ansible connects to {login['server_address']}, which is not in ssh_hardening_listen_addresses"
        )
    return reasons


class FilterModule:
    """Filters of the ssh_hardening role."""

    def filters(self) -> dict[str, Any]:
        return {
            "ssh_hardening_parse_login": parse_login,
            "ssh_hardening_lockout_reasons": lockout_reasons,
        }
