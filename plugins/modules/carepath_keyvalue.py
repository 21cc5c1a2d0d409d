#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set several ``KEY VALUE`` settings of a configuration file in one pass."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_keyvalue
short_description: Set many KEY VALUE settings of one file in a single pass
description:
  - For files such as C(/etc/login.defs) that have no drop-in directory and keep the
    distribution's other settings. Sets every key of O(settings) in one read and one atomic
    write, where a loop of M(ansible.builtin.lineinfile) would take one round trip per key.
  - The first active line of a key is replaced in place; any later active line of the same key
    is removed, so the value read is never ambiguous; a key not set yet is appended.
  - Comments and every other line are kept as they are.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  path:
    description: The file; it must exist.
    type: path
    required: true
  settings:
    description: Keys and the values they must have.
    type: dict
    required: true
  separator:
    description: What separates a key from its value in lines written.
    type: str
    default: "\t"
  owner:
    description: Owner of the file.
    type: str
    default: root
  group:
    description: Group of the file.
    type: str
    default: root
  mode:
    description: Mode of the file.
    type: str
    default: "0644"
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Set password ageing in login.defs
  carepath.core.carepath_keyvalue:
    path: /etc/login.defs
    settings: {PASS_MAX_DAYS: 365, PASS_MIN_DAYS: 1}
"""

RETURN = r"""
keys_changed:
  description: Keys whose line was changed, added or de-duplicated.
  returned: always
  type: list
  elements: str
"""

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

KEY = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\s+|\s*=\s*|$)")


def apply(text, settings, separator="\t"):
    """The new text, and the keys whose lines changed."""
    wanted = {str(k): str(v) for k, v in settings.items()}
    seen, changed, out = set(), set(), []
    for line in text.splitlines(keepends=True):
        match = KEY.match(line) if not line.lstrip().startswith("#") else None
        key = match.group(1) if match else None
        if key not in wanted:
            out.append(line)
            continue
        if key in seen:
            changed.add(key)  # a later duplicate: dropped
            continue
        seen.add(key)
        new = f"{key}{separator}{wanted[key]}\n"
        if KEY.sub("", line).split() == [wanted[key]]:
            out.append(line)  # already right: keep its spacing
        else:
            changed.add(key)
            out.append(new)
    missing = [k for k in wanted if k not in seen]
    if missing and out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out += [f"{key}{separator}{wanted[key]}\n" for key in missing]
    changed.update(missing)
    return "".join(out), sorted(changed)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "settings": {"type": "dict", "required": True},
            "separator": {"type": "str", "default": "\t"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
        add_file_common_args=False,
    )
    path = module.params["path"]
    try:
        with open(path, encoding="utf-8") as handle:
            before = handle.read()
    except OSError as err:
        module.fail_json(msg=f"cannot read {path}: {err.strerror}")
    after, keys = apply(before, module.params["settings"], module.params["separator"])
    result = {"changed": bool(keys), "keys_changed": keys}
    if module._diff and keys:
        result["diff"] = {"before": before, "after": after, "before_header": path, "after_header": path}
    if keys and not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".carepath-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(after)
        module.atomic_move(tmp, path)
    attrs = {"path": path, "owner": module.params["owner"], "group": module.params["group"],
             "mode": module.params["mode"], "secontext": None, "attributes": None}
    result["changed"] = module.set_fs_attributes_if_different(attrs, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
