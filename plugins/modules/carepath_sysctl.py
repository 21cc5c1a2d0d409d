#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write kernel parameters to a sysctl.d file and apply them in an order that holds, then check they held."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_sysctl
short_description: Set kernel parameters in an order that holds, persist them, and prove they hold
description:
  - Writes O(parameters) to the sysctl.d file O(path) (read again at boot by systemd-sysctl) and
    sets each one whose value in effect differs, by writing C(/proc/sys) directly.
  - "Order matters in Linux: writing a forwarding switch (C(net.ipv4.ip_forward),
    C(net.ipv4.conf.*.forwarding), C(net.ipv6.conf.*.forwarding)) resets other parameters, e.g.
    turning IPv4 forwarding off sets C(net.ipv4.conf.all.accept_redirects) back to 1. Those
    switches are therefore written first, in the file and at run time; the rest keep the order
    given."
  - After writing, every parameter that can be written here is read again; one whose value did
    not hold fails the task, with the parameter, the value in effect and the value asked for.
  - Whether a parameter can be written is a fact of the host, judged per parameter. On a host
    whose C(/proc/sys) is read-only (an unprivileged container) the file is still written, and
    the parameters are returned in RV(read_only) instead of being applied.
  - A parameter the kernel does not have (a module not loaded, an older kernel) is written to the
    file, skipped at run time and returned in RV(unknown), as C(sysctl -e) would.
version_added: "0.2.0"
author: carepath contributors (@carepath)
options:
  parameters:
    description: Kernel parameters (dotted names) and their values, in the order to apply them.
    type: dict
    required: true
  path:
    description: The sysctl.d file that holds the parameters for the next boot.
    type: path
    required: true
  header:
    description: Comment lines written at the top of O(path) (without the leading C(#)).
    type: list
    elements: str
    default: []
notes:
  - Supports check mode and diff mode. In check mode nothing is written, so whether values
    would hold is not known; the parameters that differ are reported as changes.
"""

EXAMPLES = r"""
- name: Turn forwarding and ICMP redirects off
  carepath.core.carepath_sysctl:
    path: /etc/sysctl.d/60-carepath.conf
    parameters:
      net.ipv4.conf.all.accept_redirects: 0
      net.ipv4.ip_forward: 0   # written first whatever its place here
"""

RETURN = r"""
applied:
  description: Parameters written to the running kernel (in the order written).
  returned: always
  type: list
  elements: str
order:
  description: The order in which the parameters are written to the file and the kernel.
  returned: always
  type: list
  elements: str
read_only:
  description: Parameters that cannot be written on this host (C(/proc/sys) read-only); not applied.
  returned: always
  type: list
  elements: str
unknown:
  description: Parameters this kernel does not have; not applied.
  returned: always
  type: list
  elements: str
file_changed:
  description: Whether O(path) was (or in check mode would be) rewritten.
  returned: always
  type: bool
"""

import errno
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

#: Where the kernel's parameters are read and written (a test points it elsewhere).
PROC_SYS = "/proc/sys"
#: Parameters whose write resets others; they are written before everything else.
RESETTING = re.compile(r"^net\.ipv4\.ip_forward$|^net\.ipv[46]\.conf\.[^.]+\.forwarding$")


def order(keys):
    """``keys`` with the parameters whose write resets others first; otherwise as given."""
    keys = list(keys)
    return [k for k in keys if RESETTING.match(k)] + [k for k in keys if not RESETTING.match(k)]


def normal(value):
    """A value as the kernel prints it (tabs and runs of spaces between fields become one space)."""
    return " ".join(str(value).split())


def proc_path(key, root=None):
    return os.path.join(root or PROC_SYS, *key.split("."))


def read(key, root=None):
    """The value in effect, or None when this kernel has no such parameter."""
    try:
        with open(proc_path(key, root), encoding="utf-8") as handle:
            return normal(handle.read())
    except FileNotFoundError:
        return None


def writable(key, root=None):
    return os.access(proc_path(key, root), os.W_OK)


def content(parameters, header):
    """The sysctl.d file: the header as comments, then one ``key = value`` line per parameter, in order."""
    lines = [f"# {line}".rstrip() for line in header]
    lines += [f"{key} = {normal(parameters[key])}" for key in order(parameters)]
    return "\n".join(lines) + "\n"


def not_holding(parameters, keys, root=None):
    """``key is X, Y was set`` for each of ``keys`` whose value in effect is not the one asked for."""
    found = []
    for key in keys:
        now = read(key, root)
        if now != normal(parameters[key]):
            found.append(f"{key} is {now}, {normal(parameters[key])} was set")
    return found


def write_file(module, path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".carepath-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec={
            "parameters": {"type": "dict", "required": True},
            "path": {"type": "path", "required": True},
            "header": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    parameters = {str(k): v for k, v in module.params["parameters"].items()}
    bad = [k for k in parameters if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_:-]+)+", k)]
    if bad:
        module.fail_json(msg=f"not kernel parameter names: {', '.join(bad)}")
    path = module.params["path"]
    keys = order(parameters)

    text = content(parameters, module.params["header"])
    try:
        with open(path, encoding="utf-8") as handle:
            before_text = handle.read()
    except FileNotFoundError:
        before_text = ""
    except OSError as err:
        module.fail_json(msg=f"cannot read {path}: {err.strerror}")
    file_changed = before_text != text

    now = {key: read(key) for key in keys}
    unknown = [k for k in keys if now[k] is None]
    read_only = [k for k in keys if now[k] is not None and not writable(k)]
    to_apply = [k for k in keys if now[k] is not None and k not in read_only and now[k] != normal(parameters[k])]

    if file_changed and not module.check_mode:
        write_file(module, path, text)
    attrs = {"path": path, "owner": "root", "group": "root", "mode": "0644", "secontext": None, "attributes": None}
    if os.path.exists(path):
        file_changed = module.set_fs_attributes_if_different(attrs, file_changed)
    failures = []
    if not module.check_mode:
        # Each value is read again just before it is decided on: a forwarding switch written
        # first may have reset it (accept_redirects goes back to 1 when forwarding turns off).
        to_apply = []
        for key in [k for k in keys if k not in unknown and k not in read_only]:
            if read(key) == normal(parameters[key]):
                continue
            to_apply.append(key)
            try:
                with open(proc_path(key), "w", encoding="utf-8") as handle:
                    handle.write(normal(parameters[key]))
            except OSError as err:
                # EROFS/EPERM/EACCES: not writable after all (access() cannot see every refusal).
                why = ("refused by the kernel" if err.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
                       else err.strerror)
                failures.append(f"{key} could not be set to {normal(parameters[key])} ({why})")
    if not module.check_mode and not failures:
        failures = not_holding(parameters, [k for k in keys if k not in unknown and k not in read_only])

    result = {"changed": file_changed or bool(to_apply), "applied": [] if module.check_mode else to_apply,
              "order": keys, "read_only": read_only, "unknown": unknown, "file_changed": file_changed}
    if module._diff and result["changed"]:
        result["diff"] = [{"before": before_text, "after": text, "before_header": path, "after_header": path},
                          {"before": "".join(f"{k} = {now[k]}\n" for k in to_apply),
                           "after": "".join(f"{k} = {normal(parameters[k])}\n" for k in to_apply),
                           "before_header": "kernel (in effect)", "after_header": "kernel (applied)"}]
    if failures:
        module.fail_json(msg="kernel parameters that do not hold after being applied: " + "; ".join(failures)
                         + " (another parameter written later, another sysctl.d file or a service may be"
                         " resetting them)", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
