# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy gate as a lookup: Ansible evaluates a play's hosts line whatever the tags say."""

from __future__ import annotations

DOCUMENTATION = r"""
name: carepath_gate
author: carepath contributors (@carepath)
short_description: The policy gate's decision, in a form no tag can skip
description:
  - Decides, on the controller, whether this run may touch any host - the site policy read from the
    inventory's files (protection, approver keys, site name), the change ticket and signed approval,
    a usable evidence signing key, and no site policy variable given as an extra variable.
  - With a host pattern as its term it returns that pattern when the run may proceed and fails the
    run otherwise. Use it in the C(hosts) line of every play that touches hosts - Ansible templates
    that line before any task runs, whatever C(--tags) or C(--skip-tags) say, so skipping the gate's
    tasks cannot skip the gate.
  - With the term C(problems) (use C(query)) it returns the reasons the run is refused (empty to
    proceed); the policy gate play asserts on it, so a refusal is recorded as a failed gate task.
  - With O(optional), a term that is a group name the inventory does not have (a site without HL7
    engines has no C(hl7_engines)) returns C(all:!all), which matches no host, so Ansible does not
    warn on every run that the group is missing. Only for plays a site may not need (the baseline's);
    a deploy's groups are never optional.
options:
  _terms:
    description: A host pattern to return when the run may proceed, or C(problems).
    required: true
  optional:
    description: The term is a group some sites do not have; without it, the play matches no host, silently.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Apply the baseline
  hosts: "{{ lookup('carepath.core.carepath_gate', 'all') }}"
  roles: [os_hardening]
"""

RETURN = r"""
_raw:
  description: The host pattern (the run may proceed), or the reasons for refusing it with C(problems).
  type: list
  elements: str
"""

from pathlib import Path

from ansible import constants as C
from ansible import context
from ansible.errors import AnsibleError
from ansible.plugins.loader import callback_loader
from ansible.plugins.lookup import LookupBase
from ansible.utils.vars import load_extra_vars
from ansible_collections.carepath.core.plugins.plugin_utils import carepath_settings as settings
from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import require

try:
    from carepath import gate, sitepolicy
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
EVIDENCE_CALLBACK = "carepath.core.carepath_evidence"
#: Listing and syntax checks touch no host: they need no decision.
_NO_HOSTS = ("syntax", "listhosts", "listtasks", "listtags")


def evidence_option(option, variables=None):
    """An option of the evidence callback (signing_key, store, ...), as it will see it (ansible.cfg or environment)."""
    # Loading the callback registers its options, under the name the loader resolved it to.
    found = callback_loader.get_with_context(EVIDENCE_CALLBACK, class_only=True).plugin_load_context
    name = found.plugin_resolved_name if found.resolved else EVIDENCE_CALLBACK
    try:
        return C.config.get_config_value(option, plugin_type="callback", plugin_name=name,
                                         variables=variables)
    except AnsibleError:
        return None


def _policy_vars(variables):
    """The site policy variables as this host sees them (each templated on its own, nothing else)."""
    found = {}
    for name in sitepolicy.POLICY_VARS:
        if name in variables:
            found[name] = variables[name]
    return found


#: A pattern that matches no host, built of names every inventory has (so Ansible does not warn).
NO_HOSTS = "all:!all"


def _absent_group(pattern, variables):
    """``pattern``, or NO_HOSTS for a bare group name this inventory does not have.

    The baseline's plays name the groups of every kind of host carepath manages (hl7_lb, ...); a
    site without that kind of host should not be told on every run that the group does not exist.
    A pattern of any other form, and localhost, are returned as they are, for Ansible to match.
    """
    groups = variables.get("groups")
    if not isinstance(groups, dict) or not pattern.isidentifier() or pattern == "localhost":
        return pattern
    if pattern in groups or pattern in (groups.get("all") or ()):
        return pattern
    return NO_HOSTS


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        require(CAREPATH_IMPORT_ERROR)
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1:
            raise AnsibleError("carepath_gate takes one term: a host pattern, or 'problems'")
        term = str(terms[0])
        removed = settings.removed_settings()
        if removed:  # read as before, they would sign with another key than `carepath run` does
            raise AnsibleError(
                f"{C.CONFIG_FILE}: [carepath_evidence] {' and '.join(removed)} are no longer read, so that every "
                "launcher uses one key and folder: remove them and set CAREPATH_EVIDENCE_KEY / "
                "CAREPATH_EVIDENCE_DIR in the environment instead (or keep carepath's state folder)")
        if term != "problems" and any(context.CLIARGS.get(flag) for flag in _NO_HOSTS):
            return [term]
        extra_vars = load_extra_vars(self._loader)
        decision = gate.decide(
            [str(s) for s in context.CLIARGS.get("inventory") or ()],
            extra_vars=extra_vars,
            operator_key=str(settings.evidence_key()),
            store=evidence_option("store", variables),
            store_ssh_args=evidence_option("store_ssh_args", variables),
            # The hosts line also answers for the gate's other tasks (which report these themselves).
            cliargs=context.CLIARGS if term != "problems" else None,
            roles_dir=ROLES_DIR if term != "problems" else None,
            # For one host (the gate task): its values of the policy variables, to refuse an override.
            host_variables=[_policy_vars(variables)] if term == "problems" and variables else [],
        )
        if term == "problems":
            return list(decision.problems)
        if not decision.accepted:
            raise AnsibleError(gate.message(decision))
        if self.get_option("optional"):
            return [_absent_group(term, variables or {})]
        return [term]
