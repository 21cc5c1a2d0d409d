# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the policy gate play; the logic lives in src/carepath/policy.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import unavailable

try:
    from carepath import policy, sitepolicy, specs
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None

#: The roles whose argument specs extra variables are checked against: this checkout's.
ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


def policy_problems(hostvars: Any, inventory_sources: Any = None) -> list[str]:
    """Why the policy gate refuses this host's variables (empty: it may proceed).

    ``inventory_sources`` (``ansible_inventory_sources``) locates the site policy, which sets the
    longest an exception may run.
    """
    return policy.host_problems(hostvars, max_days=sitepolicy.exception_max_days(inventory_sources))


def extra_var_problems(variables: Any = None) -> list[str]:
    """Why the run's extra variables do not fit the roles' argument specs (empty: they do).

    Ansible keeps no separate view of the extra variables in a task, so they are read from the
    command line the way Ansible reads them (``load_extra_vars``, which the run has already
    loaded and cached). A value that is a template is taken as the play sees it (``variables``:
    the host's vars), so ``-e 'x={{ y }}'`` is judged by what the role will receive.
    """
    extra = _extra_vars()
    values = {}
    for name, value in extra.items():
        if isinstance(value, str) and ("{{" in value or "{%" in value) and variables is not None and name in variables:
            value = variables[name]
        values[name] = value
    return specs.problems(values, specs.load_specs(ROLES_DIR))


def _extra_vars() -> dict[str, Any]:
    from ansible import context
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultSecretsContext
    from ansible.utils.vars import load_extra_vars

    loader = DataLoader()
    secrets = VaultSecretsContext.current(optional=True)
    if secrets is not None:
        loader.set_vault_secrets(secrets.secrets)  # an @file of extra vars may be vault-encrypted
    if not context.CLIARGS.get("extra_vars"):
        return {}
    return dict(load_extra_vars(loader))


class FilterModule:
    """carepath policy filters."""

    def filters(self) -> dict[str, Any]:
        found = {"carepath_policy_problems": policy_problems, "carepath_extra_var_problems": extra_var_problems}
        return found if CAREPATH_IMPORT_ERROR is None else unavailable(found, CAREPATH_IMPORT_ERROR)
