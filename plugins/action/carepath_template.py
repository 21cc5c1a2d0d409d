# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render a template on the controller like ansible.builtin.template; write it in one module run.

The rendering is the builtin action's (same search path, template variables and Jinja
settings); only the transfer differs: the rendered text goes to the ``carepath_template``
module, which compares, validates and writes it in the same run (see its DOCUMENTATION).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

# generate_ansible_template_vars: the variables ansible.builtin.template adds (ansible_managed,
# template_path, ...); public in ansible-core 2.19, marked for deprecation in 2.23 (then inline them).
from ansible.template import generate_ansible_template_vars, trust_as_template


class ActionModule(ActionBase):
    """Render ``src`` with the task's variables and hand the text to the module."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset({"src", "content", "dest", "owner", "group", "mode", "validate", "directory_mode", "files"})

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if "files" in args:
            if not isinstance(args["files"], list) or not args["files"] or set(args) - {"files"}:
                raise AnsibleActionFail("files must be a non-empty list, and the only argument")
            files = [self._prepare(dict(entry), task_vars) for entry in args["files"]]
            module_args = {"files": files}
        else:
            module_args = self._prepare(args, task_vars)
        result.update(self._execute_module(module_name="carepath.core.carepath_template", module_args=module_args,
                                           task_vars=task_vars))
        return result

    def _prepare(self, args: dict, task_vars: dict) -> dict:
        """One file's module arguments: ``src`` rendered into ``content`` (``content`` is already templated)."""
        unknown = set(args) - self._VALID_ARGS
        if unknown:
            raise AnsibleActionFail(f"unknown arguments: {', '.join(sorted(unknown))}")
        if not args.get("dest") or ("src" in args) == ("content" in args):
            raise AnsibleActionFail("dest is required, and exactly one of src and content")
        if "content" in args:
            return args
        try:
            source = self._find_needle("templates", args["src"])
        except AnsibleError as err:
            raise AnsibleActionFail(str(err)) from err
        searchpath = [*task_vars.get("ansible_search_path", []), self._loader._basedir, os.path.dirname(source)]
        searchpath = [q for p in searchpath for q in (os.path.join(p, "templates"), p)]
        template_vars = dict(task_vars)
        generated = generate_ansible_template_vars(path=args["src"], fullpath=source, dest_path=args["dest"])
        if "ansible_managed" in template_vars:  # a site's own ansible_managed wins, as with ansible.builtin.template
            generated.pop("ansible_managed", None)
        template_vars.update(generated)
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=template_vars)
        text = templar.template(trust_as_template(self._loader.get_text_file_contents(source)),
                                escape_backslashes=False, overrides={"trim_blocks": True})
        return {**args, "content": text or ""}
