#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read, in one module run, the host state that carepath's controls are checked against."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_observe
short_description: Observe the host state carepath controls are checked against
description:
  - Reads, in a single module run, the effective sshd configuration, kernel parameters,
    file ownership and modes, package and service state, and the output of read-only
    commands, so that each control of a role can then be checked on the controller
    without another round trip.
  - Never changes anything.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  sshd:
    description: Read the effective sshd configuration with C(sshd -T).
    type: bool
    default: false
  sysctl:
    description: Kernel parameters to read from C(/proc/sys) (dotted names).
    type: list
    elements: str
    default: []
  files:
    description: Paths whose existence, owner, group, mode and size to read.
    type: list
    elements: str
    default: []
  packages:
    description: Packages whose installed state to read.
    type: list
    elements: str
    default: []
  services:
    description: systemd units whose enabled and active state to read.
    type: list
    elements: str
    default: []
  commands:
    description:
      - Read-only commands whose output to read, keyed by the command line. The line is split on
        spaces, except inside single or double quotes (which are removed, as a shell would, so an
        C(awk) program can be one argument); a backslash is kept as it is. Never run through a shell.
    type: list
    elements: str
    default: []
  conf:
    description:
      - Settings to read from key-value configuration files, as C(PATH:KEY) (the first colon ends
        the path, so a key may hold colons, as apt's do). Lines look like
        C(KEY VALUE), C(KEY=VALUE) or C(KEY = VALUE); C(#) starts a comment. A key set more
        than once reads as all its values joined by newlines, so a duplicate never hides.
      - A missing file or key reads as null.
    type: list
    elements: str
    default: []
  nft:
    description:
      - Read carepath's nftables table (C(inet carepath)) - whether it exists, the policies of
        its input and forward chains, and whether it still matches what the firewall role last loaded
        (saved in C(/var/lib/carepath/nftables.state)).
      - C(tcp_open_to_any) lists the TCP ports and port ranges (C(LOW-HIGH)) its input chain
        accepts from every source address (a rule without C(saddr)).
    type: bool
    default: false
  journal:
    description:
      - Journal lines to count, as C(UNITS:REGEX) - the systemd units whose journal to read (a
        C(journalctl -u) pattern, globs allowed; the first colon ends it) and a Python regular
        expression. Only the number of matching lines is returned, never their text (the lines
        counted may hold what must not leave the host, such as message bodies).
      - A journal that cannot be read counts as null; units that never logged count 0.
    type: list
    elements: str
    default: []
  audit_rules:
    description:
      - What to read of the Linux audit rules, by key.
      - C(rules) - the rule lines of C(/etc/audit/rules.d/*.rules), in the order augenrules reads
        them, comments and blank lines left out, spaces normalised (a list).
      - C(privileged) - set-uid and set-gid files on local filesystems that allow them (C(find
        -xdev -perm /6000) on C(/) and every mounted local filesystem without nosuid or noexec).
      - C(privileged_unaudited) - those of them without an execution rule (C(-F path=P -F perm=x)).
      - C(enabled) - the kernel's audit state from C(auditctl -s) (C(0), C(1), or C(2) when
        locked); null where the kernel cannot be asked (a container).
      - C(matches_loaded) - whether the rules in effect (C(auditctl -l)) are those saved in
        C(/var/lib/carepath/auditd.loaded) when the auditd role last loaded them.
      - C(pending) - whether C(augenrules --check) finds rules in C(rules.d) that are not yet
        in C(/etc/audit/audit.rules), the file loaded at boot; null without augenrules.
    type: list
    elements: str
    choices: [rules, privileged, privileged_unaudited, enabled, matches_loaded, pending]
    default: []
extends_documentation_fragment: [ansible.builtin.action_common_attributes]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Observe what the ssh_hardening controls are checked against
  carepath.core.carepath_observe:
    sshd: true
    files: [/etc/ssh/sshd_config]
  register: observed
"""

RETURN = r"""
observed:
  description:
    - The observed state, by source.
    - C(sysctl_read_only) lists the kernel parameters asked for that cannot be written on this host
      (C(/proc/sys) read-only, as in an unprivileged container), a fact of the host, per parameter.
  returned: always
  type: dict
  sample:
    sshd: {passwordauthentication: "no", ciphers: "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"}
    sysctl: {net.ipv4.ip_forward: "0"}
    file: {/etc/ssh/sshd_config: {exists: true, owner: root, group: root, mode: "0600", size: 2271}}
    package: {telnet: {installed: false}}
    service: {ssh: {enabled: true, active: true}}
    command: {"auditctl -l": {rc: 0, stdout: "-w /etc/passwd -p wa -k identity"}}
    conf: {"/etc/login.defs:PASS_MAX_DAYS": "365"}
    nft: {table: true, input_policy: drop, forward_policy: drop, matches_loaded: true, tcp_open_to_any: ["22"]}
    journal: {"carepath-hl7-*:MSH[|]": 0}
    audit_rules: {rules: ["-w /etc/passwd -p wa -k identity"], privileged_unaudited: [], enabled: "1"}
    sysctl_read_only: []
"""

import glob
import grp
import os
import pwd
import re
import shlex
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carepath.core.plugins.module_utils.carepath_audit_rules import active_rules, executed_paths, natural_key


def _sshd(module):
    sshd = module.get_bin_path("sshd", opt_dirs=["/usr/sbin"])
    if sshd is None:
        return {}
    rc, out, err = module.run_command([sshd, "-T"])
    if rc != 0:
        module.fail_json(msg=f"sshd -T failed: {err.strip()}")
    values = {}
    for line in out.splitlines():
        key, unused, value = line.partition(" ")
        values[key] = f"{values[key]},{value}" if key in values else value
    return values


def _sysctl(keys):
    values = {}
    for key in keys:
        try:
            with open("/proc/sys/" + key.replace(".", "/"), encoding="utf-8") as handle:
                values[key] = " ".join(handle.read().split())
        except OSError:
            values[key] = None
    return values


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def _files(paths):
    values = {}
    for path in paths:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            values[path] = {"exists": False}
            continue
        values[path] = {
            "exists": True,
            "owner": _name(pwd.getpwuid, info.st_uid),
            "group": _name(grp.getgrgid, info.st_gid),
            "mode": f"{stat.S_IMODE(info.st_mode):04o}",
            "size": info.st_size,
        }
    return values


def _packages(module, names):
    if not names:
        return {}
    dpkg = module.get_bin_path("dpkg-query")
    values = {}
    for name in names:
        if dpkg:
            rc, out, unused = module.run_command([dpkg, "-W", "-f=${db:Status-Abbrev}", name])
            values[name] = {"installed": rc == 0 and out.startswith("ii")}
        else:
            rc, unused_out, unused_err = module.run_command(["rpm", "-q", name])
            values[name] = {"installed": rc == 0}
    return values


def _services(module, names):
    values = {}
    systemctl = module.get_bin_path("systemctl")
    for name in names:
        if systemctl is None:
            values[name] = {"enabled": False, "active": False}
            continue
        unused_rc, enabled, unused_err = module.run_command([systemctl, "is-enabled", name])
        unused_rc, active, unused_err = module.run_command([systemctl, "is-active", name])
        values[name] = {"enabled": enabled.strip() in ("enabled", "static", "alias"), "active": active.strip() == "active"}
    return values


def _argv(command):
    """The words of a command line: split on spaces, quotes grouping words, backslashes kept."""
    lexer = shlex.shlex(command, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)


def _commands(module, commands):
    values = {}
    for command in commands:
        rc, out, err = module.run_command(_argv(command))
        values[command] = {"rc": rc, "stdout": out.strip(), "stderr": err.strip()}
    return values


def _conf(paths_keys):
    wanted = {}
    for item in paths_keys:
        path, unused, key = item.partition(":")  # a key may hold colons (APT::Periodic::...), a path does not
        wanted.setdefault(path, []).append((item, key))
    values = {}
    for path, items in wanted.items():
        settings = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    line = line.split("#", 1)[0].strip()
                    if not line:
                        continue
                    key, sep, value = line.partition("=")
                    if not sep or len(key.split()) > 1:
                        words = line.split(None, 1)
                        key, value = words[0], words[1] if len(words) > 1 else ""
                    key, value = key.strip(), value.strip()
                    settings[key] = f"{settings[key]}\n{value}" if key in settings else value
        except OSError:
            pass
        for item, key in items:
            values[item] = settings.get(key)
    return values


def _journal(module, units_patterns):
    values = {}
    journalctl = module.get_bin_path("journalctl") if units_patterns else None
    for item in units_patterns:
        units, unused, pattern = item.partition(":")
        if journalctl is None:
            values[item] = None
            continue
        rc, out, err = module.run_command([journalctl, "--no-pager", "-q", "-o", "cat", "-u", units])
        if rc != 0 and "No data available" in err:
            # A glob no unit in the journal matches ("Failed to add filter for units"): no line.
            values[item] = 0
        else:
            values[item] = count_matching(out, pattern) if rc == 0 else None
    return values


def count_matching(text, pattern):
    """How many lines of ``text`` hold a match of ``pattern`` (the lines themselves are dropped)."""
    regex = re.compile(pattern)
    return sum(1 for line in text.splitlines() if regex.search(line))


NFT_STATE = "/var/lib/carepath/nftables.state"
_DPORT = re.compile(r"\btcp dport (\{[^}]*\}|\S+)")


def tcp_open_to_any(table_text):
    """TCP ports (and LOW-HIGH ranges) the input chain accepts from any source address."""
    ports = []
    chain = None
    for line in table_text.splitlines():
        words = line.split()
        if words[:1] == ["chain"] and len(words) > 1:
            chain = words[1]
            continue
        if chain != "input" or "accept" not in words or "saddr" in words:
            continue
        match = _DPORT.search(line)
        if match:
            for port in match.group(1).strip("{}").split(","):
                port = port.strip()
                if port and port not in ports:
                    ports.append(port)
    return ports


def _nft(module):
    absent = {"table": False, "input_policy": None, "forward_policy": None, "matches_loaded": False,
              "tcp_open_to_any": None}
    nft = module.get_bin_path("nft", opt_dirs=["/usr/sbin"])
    if nft is None:
        return absent
    rc, out, unused = module.run_command([nft, "list", "table", "inet", "carepath"])
    if rc != 0:
        return absent
    policies = {}
    chain = None
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["chain"] and len(words) > 1:
            chain = words[1]
        elif chain and "policy" in words and chain not in policies:
            policies[chain] = words[words.index("policy") + 1].rstrip(";")
    try:
        with open(NFT_STATE, encoding="utf-8") as handle:
            saved = handle.read()
    except OSError:
        saved = None
    return {
        "table": True,
        "input_policy": policies.get("input"),
        "forward_policy": policies.get("forward"),
        "matches_loaded": saved is not None and saved.strip() == out.strip(),
        "tcp_open_to_any": tcp_open_to_any(out),
    }


AUDIT_RULES_DIR = "/etc/audit/rules.d"
AUDIT_STATE = "/var/lib/carepath/auditd.loaded"


def _audit_rule_lines(rules_dir=AUDIT_RULES_DIR):
    lines = []
    for path in sorted(glob.glob(os.path.join(rules_dir, "*.rules")), key=lambda p: natural_key(os.path.basename(p))):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines += [rule for unused, rule in active_rules(handle.read())]
        except OSError:
            continue
    return lines


def _suid_mounts(mounts_text, filesystems_text):
    """Mount points to search for set-uid files: / and local filesystems where set-uid works."""
    virtual = {line.split()[-1] for line in filesystems_text.splitlines() if line.startswith("nodev")}
    found = []
    for line in mounts_text.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), words[1])
        options = words[3].split(",")
        local = point == "/" or words[2] not in virtual
        if local and "nosuid" not in options and "noexec" not in options and point not in found:
            found.append(point)
    return found or ["/"]


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _privileged(module):
    points = _suid_mounts(_read_text("/proc/self/mounts"), _read_text("/proc/filesystems"))
    unused_rc, out, unused_err = module.run_command(["find", *points, "-xdev", "-type", "f", "-perm", "/6000"])
    return sorted(set(out.split("\n")) - {""})


def _audit_status(module):
    """(enabled, listing) from auditctl, each None where the kernel cannot be asked."""
    auditctl = module.get_bin_path("auditctl", opt_dirs=["/usr/sbin", "/sbin"])
    if auditctl is None:
        return None, None
    rc, out, unused = module.run_command([auditctl, "-s"])
    enabled = None
    if rc == 0:
        enabled = next((line.split()[1] for line in out.splitlines() if line.startswith("enabled ")), None)
    rc, out, unused = module.run_command([auditctl, "-l"])
    return enabled, (out.strip() if rc == 0 else None)


def _audit_rules(module, keys):
    if not keys:
        return {}
    values = {}
    rules = _audit_rule_lines()
    if "rules" in keys:
        values["rules"] = rules
    if "privileged" in keys or "privileged_unaudited" in keys:
        privileged = _privileged(module)
        if "privileged" in keys:
            values["privileged"] = privileged
        if "privileged_unaudited" in keys:
            executed = executed_paths(rules)
            values["privileged_unaudited"] = [p for p in privileged if p not in executed]
    if "enabled" in keys or "matches_loaded" in keys:
        enabled, listing = _audit_status(module)
        saved = _read_text(AUDIT_STATE)
        values["enabled"] = enabled
        values["matches_loaded"] = listing is not None and bool(saved) and saved.strip() == listing
    if "pending" in keys:
        augenrules = module.get_bin_path("augenrules", opt_dirs=["/usr/sbin", "/sbin"])
        values["pending"] = None
        if augenrules is not None:
            rc, out, unused = module.run_command([augenrules, "--check"])
            values["pending"] = rc == 0 and "changed" in out
    return values


def main():
    module = AnsibleModule(
        argument_spec={
            "sshd": {"type": "bool", "default": False},
            "sysctl": {"type": "list", "elements": "str", "default": []},
            "files": {"type": "list", "elements": "str", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "services": {"type": "list", "elements": "str", "default": []},
            "commands": {"type": "list", "elements": "str", "default": []},
            "conf": {"type": "list", "elements": "str", "default": []},
            "nft": {"type": "bool", "default": False},
            "journal": {"type": "list", "elements": "str", "default": []},
            "audit_rules": {
                "type": "list", "elements": "str", "default": [],
                "choices": ["rules", "privileged", "privileged_unaudited", "enabled", "matches_loaded", "pending"],
            },
        },
        supports_check_mode=True,
    )
    params = module.params
    observed = {
        "sshd": _sshd(module) if params["sshd"] else {},
        "sysctl": _sysctl(params["sysctl"]),
        "file": _files(params["files"]),
        "package": _packages(module, params["packages"]),
        "service": _services(module, params["services"]),
        "command": _commands(module, params["commands"]),
        "conf": _conf(params["conf"]),
        "nft": _nft(module) if params["nft"] else {},
        "journal": _journal(module, params["journal"]),
        "audit_rules": _audit_rules(module, set(params["audit_rules"])),
    }
    # Whether a kernel parameter can be written is a fact of this host, per parameter.
    # A parameter this kernel lacks is read-only too where /proc/sys itself is (it cannot be set
    # here either); on a writable /proc/sys it is checked, and reported as not set.
    observed["sysctl_read_only"] = sorted(
        key for key, value in observed["sysctl"].items()
        if not os.access("/proc/sys/" + key.replace(".", "/") if value is not None else "/proc/sys", os.W_OK))
    module.exit_json(changed=False, observed=observed)


if __name__ == "__main__":
    main()
