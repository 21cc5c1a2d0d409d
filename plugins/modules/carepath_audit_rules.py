#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install a Linux audit rules file only after every rule in it has been checked."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_audit_rules
short_description: Check audit rules line by line, then install them atomically
description:
  - Checks every rule of an auditctl(8) rules file without the kernel - options and their
    arguments, lists and actions, field names, operators and values, permission letters,
    users and groups, and syscall names against the host's own tables (C(ausyscall ARCH --dump))
    - and writes the file only when every rule passes. C(auditctl) has no dry run, and where
    the kernel's audit interface is missing (an unprivileged container) it cannot be asked.
  - A file that does not pass is not written; the task fails and names each bad line and why.
  - Without I(content), checks the file at I(path) as it is and changes nothing.
  - Loading the rules into the kernel (C(augenrules --load)) is left to the caller.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  path:
    description: The rules file, e.g. C(/etc/audit/rules.d/50-carepath.rules).
    type: path
    required: true
    aliases: [dest]
  content:
    description:
      - The rules to install. When left out, the file at I(path) is only checked.
      - A final newline is added when missing.
    type: str
  check_syscalls:
    description:
      - Check syscall names with C(ausyscall), which the auditd package installs.
    type: bool
    default: true
extends_documentation_fragment: [ansible.builtin.files, ansible.builtin.action_common_attributes]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Stricter than auditctl where its leniency hides mistakes - a syscall rule must give
    C(-F arch=) before C(-S), and comments must be on their own line.
"""

EXAMPLES = r"""
- name: Write the audit rules
  carepath.core.carepath_audit_rules:
    path: /etc/audit/rules.d/50-carepath.rules
    content: "{{ lookup('ansible.builtin.template', 'carepath.rules.j2') }}"
    owner: root
    group: root
    mode: "0640"

- name: Check a rules file someone else wrote, changing nothing
  carepath.core.carepath_audit_rules:
    path: /etc/audit/rules.d/60-vendor.rules
"""

RETURN = r"""
rules:
  description: How many rules the file holds.
  returned: success
  type: int
  sample: 57
problems:
  description: Each rule that would not load, as C(line N, problem [rule]). Empty on success.
  returned: always
  type: list
  elements: str
  sample: ["line 4: unknown syscall 'bogus' for arch b64 (ausyscall b64 bogus does not know it)  [-a always,exit ...]"]
"""

import grp
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carepath.core.plugins.module_utils.carepath_audit_rules import (
    active_rules,
    check_text,
    parse_syscall_table,
)


def _known(lookup, name):
    try:
        lookup(name)
    except KeyError:
        return False
    return True


class _SyscallTables:
    """``ausyscall ARCH --dump``, run once per architecture the rules name."""

    def __init__(self, module):
        self.module = module
        self.ausyscall = module.get_bin_path("ausyscall", opt_dirs=["/usr/bin", "/usr/sbin", "/sbin"])
        self.tables = {}
        self.errors = []

    def __call__(self, arch, name):
        if arch not in self.tables:
            rc, out, err = self.module.run_command([self.ausyscall, arch, "--dump"])
            names = parse_syscall_table(out) if rc == 0 else set()
            if not names:
                self.errors.append(f"ausyscall {arch} --dump lists no syscalls on this host: {(err or out).strip()}")
            self.tables[arch] = names or None
        table = self.tables[arch]
        return None if table is None else name in table


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True, "aliases": ["dest"]},
            "content": {"type": "str"},
            "check_syscalls": {"type": "bool", "default": True},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    content = module.params["content"]
    before = _read(path)
    text = content if content is not None else before
    if text is None:
        module.fail_json(msg=f"{path} does not exist: there are no audit rules to check", problems=[])
    if content is not None and not content.endswith("\n"):
        content += "\n"

    syscalls = None
    if module.params["check_syscalls"]:
        syscalls = _SyscallTables(module)
        if syscalls.ausyscall is None:
            module.fail_json(
                msg="ausyscall is needed to check syscall names and was not found: install the auditd package "
                    "first, or set check_syscalls: false",
                problems=[],
            )
    problems = check_text(text, syscalls, lambda n: _known(pwd.getpwnam, n), lambda n: _known(grp.getgrnam, n))
    if syscalls is not None:
        problems += syscalls.errors
    if problems:
        action = "nothing was written" if content is not None else "the file was left as it is"
        module.fail_json(
            msg=f"{path}: {len(problems)} audit rule problem(s), {action}:\n  " + "\n  ".join(problems),
            problems=problems,
        )

    result = {"changed": False, "rules": len(active_rules(text)), "problems": []}
    if content is None:
        module.exit_json(**result)

    changed = before != content
    if changed:
        result["diff"] = {"before": before or "", "after": content, "before_header": path, "after_header": path}
        if not module.check_mode:
            directory = os.path.dirname(path) or "."
            fd, tmp = tempfile.mkstemp(prefix=".carepath-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            module.atomic_move(tmp, path)
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params)
        changed = module.set_fs_attributes_if_different(file_args, changed)
    result["changed"] = changed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
