#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the carepath_control action (plugins/action/carepath_control.py), which runs on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_control
short_description: Check one role's controls against the state observed on the host
description:
  - The audit step of every baseline role, generated from the control catalog
    (C(carepath controls generate)); runs on the controller as an action plugin, with no
    connection - the host was read once by M(carepath.core.carepath_observe).
  - Returns C(carepath_controls), one result per control of the role selected by the run's
    C(--tags) and C(--skip-tags), each C(compliant), C(drifted), C(excepted) or C(not_applicable).
  - A drifted control reports changed in check mode (drift detection) and fails the task
    otherwise (enforcement did not hold). An invalid or expired exception fails the task.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  role:
    description: The role whose controls these are (the catalog's C(role)).
    type: str
    required: true
  controls:
    description: The role's controls from the catalog, each with its id, title, tags and check.
    type: list
    elements: dict
    required: true
  observed:
    description: What M(carepath.core.carepath_observe) read on the host.
    type: dict
    required: true
  exceptions:
    description: The site's exceptions (C(carepath_exceptions)); an excepted control is reported as such.
    type: list
    elements: raw
    default: []
  container:
    description: The host is a container, so controls that need a real kernel are C(not_applicable).
    type: bool
    default: false
extends_documentation_fragment: [ansible.builtin.action_common_attributes]
attributes:
  check_mode:
    support: full
    details: Reads only; in check mode a drifted control is reported as changed.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Audit | Check the controls of ssh_hardening
  carepath.core.carepath_control:
    role: ssh_hardening
    controls: "{{ __ssh_hardening_controls }}"
    observed: "{{ __ssh_hardening_observed }}"
    exceptions: "{{ carepath_exceptions | default([]) }}"
"""

RETURN = r"""
carepath_controls:
  description: One result per control checked.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: CP-SSH-05, title: Password authentication is off, status: drifted,
       problems: ["sshd passwordauthentication is 'yes', expected 'no'"], exception: null}
"""
