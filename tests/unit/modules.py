"""Load a module of plugins/modules and run its main() in-process, as Ansible would.

Its module_utils are imported by FQCN from the checkout's collection (pyproject.toml puts
playbooks/collections on the tests' path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

MODULES = Path(__file__).resolve().parents[2] / "plugins" / "modules"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, MODULES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Done(Exception):
    def __init__(self, result: dict) -> None:
        self.result = result


def run(module: ModuleType, check: bool = False, **args: object) -> dict:
    """Run ``module.main()`` with ``args``; returns what it passed to exit_json or fail_json (failed=True)."""

    def exit_json(_module, **kw):
        raise _Done({"failed": False, **kw})

    def fail_json(_module, msg, **kw):
        raise _Done({"failed": True, "msg": msg, **kw})

    with patch_module_args({**args, "_ansible_check_mode": check, "_ansible_no_log": True}), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), pytest.raises(_Done) as done:
        module.main()
    return done.value.result
