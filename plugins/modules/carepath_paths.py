#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set owner, group and mode of many paths, and create directories, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_paths
short_description: Owner, group and mode of many files and directories in one run
description:
  - Sets the owner, group and mode of every path listed, in a single module run (one round trip
    however many paths), and creates the directories among them that do not exist yet.
  - A path whose state is C(file) (O(state=file), or C(state=file) in its dict) that does not exist
    is left alone and reported in RV(missing) (e.g. C(/etc/shadow-) before the first password change).
  - Refuses symbolic links rather than changing what they point to.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  paths:
    description:
      - The paths. Each is an absolute path, taking O(state), O(owner), O(group) and O(mode) from
        the module's options, or a dict with C(path) and any of those four to override them.
    type: list
    elements: raw
    required: true
  state:
    description:
      - C(directory) creates a missing path; C(file) only fixes an existing path.
      - Missing parents are created owned by root with mode C(0755) whatever the host's umask (a hardened
        host's C(027) would otherwise close them to the service users below them), and reported.
    type: str
    choices: [file, directory]
    default: file
  owner:
    description: User name that must own the paths.
    type: str
    default: root
  group:
    description: Group name the paths must belong to.
    type: str
    default: root
  mode:
    description: Octal mode as a string, e.g. C("0640"). Required, here or in every path's dict.
    type: str
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Restrict the account databases
  carepath.core.carepath_paths:
    paths:
      - {path: /etc/shadow, group: shadow, mode: "0640"}
      - {path: /etc/passwd, mode: "0644"}

- name: Create the drop-in directories
  carepath.core.carepath_paths:
    state: directory
    mode: "0755"
    paths: [/etc/systemd/system/auditd.service.d, /etc/systemd/system/audit-rules.service.d]
"""

RETURN = r"""
changed_paths:
  description: Paths created or whose owner, group or mode was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
missing:
  description: Paths of state C(file) that do not exist and were left alone.
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carepath.core.plugins.module_utils.carepath_dirs import make_parents


def describe(owner, group, mode):
    return f"{owner}:{group} {mode:04o}"


def current(path):
    """(owner, group, mode) of an existing path, or None; raises on a symlink."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(f"{path} is a symbolic link; carepath does not change what links point to")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return owner, group, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode)


KEYS = ("path", "state", "owner", "group", "mode")


def normalise(raw, defaults):
    """One path entry with the module's options filled in, or an error message."""
    entry = {"path": raw} if isinstance(raw, str) else raw
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"].startswith("/"):
        return f"each of paths must be an absolute path or a dict with one, not {raw!r}"
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        return f"{entry['path']}: unknown keys {', '.join(unknown)} (known: {', '.join(KEYS)})"
    merged = {key: entry.get(key, defaults.get(key)) for key in KEYS}
    if merged["state"] not in ("file", "directory"):
        return f"{entry['path']}: state must be file or directory, not {merged['state']!r}"
    if not merged["mode"]:
        return f"{entry['path']}: no mode given, for the path or the module"
    merged["mode"] = str(merged["mode"])
    return merged


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "raw", "required": True},
            "state": {"type": "str", "choices": ["file", "directory"], "default": "file"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "str"},
        },
        supports_check_mode=True,
    )
    changed_paths, missing, before, after = [], [], [], []
    for raw in module.params["paths"]:
        entry = normalise(raw, module.params)
        if isinstance(entry, str):
            module.fail_json(msg=entry)
        path = entry["path"]
        try:
            mode = int(entry["mode"], 8)
            uid = pwd.getpwnam(entry["owner"]).pw_uid
            gid = grp.getgrnam(entry["group"]).gr_gid
        except ValueError:
            module.fail_json(msg=f"{path}: mode {entry['mode']!r} is not an octal number such as \"0640\"")
        except KeyError:
            module.fail_json(msg=f"{path}: user {entry['owner']!r} or group {entry['group']!r} does not exist")
        wanted = describe(entry["owner"], entry["group"], mode)
        try:
            found = current(path)
        except ValueError as err:
            module.fail_json(msg=str(err))
        if found is None:
            if entry["state"] == "file":
                missing.append(path)
                continue
            before.append(f"{path}: absent")
        else:
            owner, group, have_mode, is_dir = found
            if entry["state"] == "directory" and not is_dir:
                module.fail_json(msg=f"{path} exists and is not a directory")
            if (owner, group, have_mode) == (entry["owner"], entry["group"], mode):
                continue
            before.append(f"{path}: {describe(owner, group, have_mode)}")
        after.append(f"{path}: {wanted}")
        changed_paths.append(path)
        if module.check_mode:
            continue
        if found is None:
            for parent in make_parents(path):
                after.append(f"{parent}: parent created, root:root 0755")
            os.makedirs(path, mode=0o700, exist_ok=True)
        # Owner first: chown clears set-uid/set-gid bits, which the mode then sets if wanted.
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)

    result = {"changed": bool(changed_paths), "changed_paths": changed_paths, "missing": missing}
    if module._diff and changed_paths:
        result["diff"] = {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
