#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a file rendered from a template on the controller, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_template
short_description: Render a template and write it, checked and validated, in one round trip
description:
  - Renders a Jinja2 template on the controller, exactly as M(ansible.builtin.template) does
    (same search path, C(ansible_managed), C(trim_blocks)), then compares, validates and writes
    it on the host in a single module run.
  - M(ansible.builtin.template) needs two module runs even when nothing changes (a C(stat)
    for the checksum, then the C(file) module for owner and mode); a baseline of some thirty
    configuration files spends most of its re-run time there.
  - The file is written atomically, after O(validate) has accepted a temporary copy.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  src:
    description:
      - Template file, looked up in the role's C(templates/) like M(ansible.builtin.template).
      - Exactly one of O(src) and O(content).
    type: path
  content:
    description: The text of the file, for short files written inline (templated like any task argument).
    type: str
  dest:
    description: Absolute path of the file on the host (or use O(files)).
    type: path
  files:
    description:
      - Several files in one module run instead of O(src)/O(content) and O(dest); each a dict with C(src) or
        C(content), C(dest) and C(mode), and optionally C(owner), C(group), C(validate) and C(directory_mode).
      - The task is changed when any file changed (its handlers then run once).
    type: list
    elements: dict
  directory_mode:
    description:
      - Create the directory of O(dest), owned by root, with this mode when it does not exist
        (a drop-in directory such as C(/etc/modprobe.d)), and keep an existing one owned by root
        with this mode. Without it a missing directory is an error.
      - Missing folders above it are created owned by root with mode C(0755), whatever the host's umask.
    type: str
  owner:
    description: Owner of the file.
    type: str
    default: root
  group:
    description: Group of the file.
    type: str
    default: root
  mode:
    description: Mode of the file, as an octal string such as C("0644"). Required with O(dest).
    type: str
  validate:
    description:
      - Command that must succeed on the new content before it replaces O(dest); C(%s) is the path of
        the temporary copy. Split like a shell would, never run through one.
    type: str
notes:
  - Supports check mode and diff mode. In check mode a file whose directory does not exist yet
    reports as changed.
  - The module side receives the rendered text as its C(content) argument, and reports it in its
    diff. For a secret (a private key), set C(no_log) to true and C(diff) to false on the task; neither
    the content nor a diff then appears in output, logs or evidence.
"""

EXAMPLES = r"""
- name: Write the chrony configuration
  carepath.core.carepath_template:
    src: chrony.conf.j2
    dest: /etc/chrony/chrony.conf
    mode: "0644"
    validate: chronyd -p -f %s
  notify: Restart chrony
"""

RETURN = r"""
changed_files:
  description: With O(files), the files that were (or would be) changed.
  returned: when files is used
  type: list
  elements: str
dest:
  description: The file written or checked.
  returned: always
  type: str
checksum:
  description: SHA-1 of the rendered content (as M(ansible.builtin.template) reports it).
  returned: always
  type: str
"""

import hashlib
import os
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carepath.core.plugins.module_utils.carepath_dirs import make_parents

FILE_KEYS = ("content", "dest", "owner", "group", "mode", "validate", "directory_mode", "src")


def _keep_directory(module, directory, mode):
    """Give the directory of a file root's ownership and ``mode`` (if both given); True if it changed."""
    if not mode or not os.path.isdir(directory):
        return False
    return module.set_fs_attributes_if_different(
        {"path": directory, "owner": "root", "group": "root", "mode": mode, "secontext": None, "attributes": None}, False)


def write_file(module, entry):
    """Compare, validate and write one file; returns its result (``changed``, ``dest``, ...)."""
    dest = entry["dest"]
    wanted = entry["content"].encode("utf-8")
    result = {"changed": False, "dest": dest, "checksum": hashlib.sha1(wanted).hexdigest()}
    if os.path.islink(dest):
        module.fail_json(msg=f"{dest} is a symbolic link; carepath does not write through links", **result)
    try:
        with open(dest, "rb") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    except OSError as err:
        module.fail_json(msg=f"cannot read {dest}: {err.strerror}", **result)

    attrs = {"path": dest, "owner": entry["owner"], "group": entry["group"], "mode": entry["mode"],
             "secontext": None, "attributes": None}
    directory = os.path.dirname(dest)
    directory_changed = _keep_directory(module, directory, entry.get("directory_mode"))
    if current == wanted:
        result["changed"] = module.set_fs_attributes_if_different(attrs, directory_changed)
        return result

    result["changed"] = True
    if module._diff:
        result["diff"] = {
            "before": "" if current is None else current.decode("utf-8", "replace"),
            "after": entry["content"],
            "before_header": dest if current is not None else "(absent)",
            "after_header": dest,
        }
    if module.check_mode:
        return result
    if not os.path.isdir(directory):
        if not entry.get("directory_mode"):
            module.fail_json(msg=f"the directory of {dest} does not exist", **result)
        make_parents(directory)  # traversable whatever the umask (carepath_dirs)
        os.makedirs(directory, exist_ok=True)
        _keep_directory(module, directory, entry["directory_mode"])

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".carepath-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(wanted)
        module.set_fs_attributes_if_different(dict(attrs, path=tmp), True)
        validate = entry.get("validate")
        if validate:
            if "%s" not in validate:
                module.fail_json(msg="validate must contain %s (the path of the new content)", **result)
            argv = [tmp if word == "%s" else word.replace("%s", tmp) for word in shlex.split(validate)]
            rc, out, err = module.run_command(argv)
            if rc != 0:
                module.fail_json(msg=f"{dest} was not changed: the new content fails validation "
                                     f"({validate}): {(err or out).strip()}", rc=rc, **result)
        module.atomic_move(tmp, dest, unsafe_writes=False, keep_dest_attrs=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    module.set_fs_attributes_if_different(attrs, True)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "content": {"type": "str"},
            "dest": {"type": "path"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "str"},
            "validate": {"type": "str"},
            "directory_mode": {"type": "str"},
            "files": {"type": "list", "elements": "dict"},
            # Kept for the action plugin's messages only.
            "src": {"type": "path"},
        },
        required_one_of=[("dest", "files")],
        mutually_exclusive=[("dest", "files")],
        supports_check_mode=True,
    )
    params = module.params
    if not params["files"]:
        if params["content"] is None or not params["mode"]:
            module.fail_json(msg="content and mode are required with dest")
        module.exit_json(**write_file(module, params))
    results = []
    for raw in params["files"]:
        entry = {"owner": "root", "group": "root", **{k: v for k, v in raw.items() if k in FILE_KEYS}}
        if not entry.get("dest") or entry.get("content") is None or not entry.get("mode"):
            module.fail_json(msg=f"each of files needs dest, content and mode: {sorted(raw)}")
        if not os.path.isabs(entry["dest"]):
            module.fail_json(msg=f"each of files needs an absolute dest: {entry['dest']!r}")
        results.append(write_file(module, entry))
    diffs = [r.pop("diff") for r in results if "diff" in r]
    module.exit_json(changed=any(r["changed"] for r in results), results=results,
                     changed_files=[r["dest"] for r in results if r["changed"]], **({"diff": diffs} if diffs else {}))


if __name__ == "__main__":
    main()
