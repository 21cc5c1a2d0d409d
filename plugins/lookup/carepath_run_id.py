# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run id of this playbook run: the one the evidence bundle carries, however the run was started."""

from __future__ import annotations

DOCUMENTATION = r"""
name: carepath_run_id
author: carepath contributors (@carepath)
short_description: The id of this run, as its evidence bundle names it
description:
  - Returns the run id every part of a run carries (evidence bundle, deploy lock, host history).
  - C(carepath run) chooses it and passes it as C(CAREPATH_RUN_ID); under C(ansible-playbook),
    C(ansible-runner) or AWX the evidence callback chooses it when the playbook starts and sets
    C(CAREPATH_RUN_ID) for the rest of the run, so this lookup returns the bundle's id.
  - Without the evidence callback (not enabled), a new id is made the same way
    (C(carepath.runid.new_run_id)), named after the term; such a run leaves no evidence.
options:
  _terms:
    description: What to name a run id made here (the service being deployed); optional.
    required: false
"""

EXAMPLES = r"""
- name: Name the lock after this run
  ansible.builtin.set_fact:
    holder: {run_id: "{{ lookup('carepath.core.carepath_run_id', 'adt') }}"}
"""

RETURN = r"""
_raw:
  description: The run id, e.g. C(20261206T093000Z-deploy_hl7_engine-1a2b3c).
  type: list
  elements: str
"""

import os
from pathlib import Path

from ansible.plugins.lookup import LookupBase
from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import require

try:
    from carepath.runid import RUN_ID_ENV, new_run_id
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        require(CAREPATH_IMPORT_ERROR)
        name = str(terms[0]) if terms else "run"
        return [os.environ.get(RUN_ID_ENV) or new_run_id(Path(name))]
