#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install and remove Debian packages in one apt transaction, reading state with dpkg only."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_packages
short_description: Install and remove packages in one apt transaction
description:
  - Makes the packages in O(present) installed and those in O(absent) not installed, with a
    single C(apt-get install) run (C(pkg-) marks a removal), so a role needs one package task
    and one dpkg run however many packages it names.
  - Reads what is installed with C(dpkg-query) alone. When nothing is to change, which is every
    run after the first, apt is not loaded at all; this is what makes a re-run fast.
  - Refreshes the package lists first (C(apt-get update)) only when something is to be installed
    and the lists are older than O(cache_valid_time).
  - Downloads first (C(apt-get install --download-only), which changes nothing) and retries a
    download that failed, as a mirror or its name server that is briefly unreachable makes it
    fail, twice (after 5 s, then 15 s) before failing with nothing changed; then installs from
    the downloaded files.
  - Debian family only for now; anything else is a clear failure.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  present:
    description: Packages that must be installed (already installed ones are left as they are).
    type: list
    elements: str
    default: []
  absent:
    description: Packages that must not be installed.
    type: list
    elements: str
    default: []
  purge:
    description: Remove the configuration files of the packages in O(absent) too.
    type: bool
    default: true
  install_recommends:
    description:
      - Whether to install recommended packages; null leaves it to apt's configuration.
    type: bool
  dpkg_options:
    description:
      - dpkg options passed through apt (C(Dpkg::Options::=--OPTION)), without the leading dashes.
      - C(force-confdef) and C(force-confold) are always passed, so an upgrade never asks.
    type: list
    elements: str
    default: []
  cache_valid_time:
    description: Age in seconds under which the package lists are fresh enough to install from.
    type: int
    default: 3600
notes:
  - Supports check mode and diff mode; in check mode nothing is run but C(dpkg-query).
  - A package half-installed or removed with its configuration left (dpkg state C(rc)) counts as
    not installed for O(present); for O(absent) with O(purge), an C(rc) package is purged.
"""

EXAMPLES = r"""
- name: Install chrony as the only time daemon
  carepath.core.carepath_packages:
    present: [chrony]
    absent: [ntp, ntpsec, systemd-timesyncd]
  register: __time_sync_install
"""

RETURN = r"""
installed:
  description: Packages this run installed (or would install, in check mode).
  returned: always
  type: list
  elements: str
removed:
  description: Packages this run removed (or would remove).
  returned: always
  type: list
  elements: str
cache_updated:
  description: Whether the package lists were refreshed.
  returned: always
  type: bool
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

LISTS_STAMPS = ("/var/lib/apt/periodic/update-success-stamp", "/var/lib/apt/lists")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a", "LC_ALL": "C"}
#: Seconds to wait before each new try of a download that failed (apt retries within a try too).
FETCH_RETRY_DELAYS = (5, 15)


def parse_status(text):
    """dpkg-query lines ``NAME<TAB>STATUS-ABBREV`` to {name: abbrev}, e.g. ``ii``, ``rc``."""
    states = {}
    for line in text.splitlines():
        name, unused, abbrev = line.partition("\t")
        if name:
            states[name.split(":", 1)[0]] = abbrev.strip()
    return states


def plan(present, absent, states, purge):
    """What to install and what to remove, given dpkg states."""
    # The second letter is dpkg's current status: i installed, c config-files only, n not
    # installed; the others (U, F, H, W, t) are half-done states that still hold files.
    install = [p for p in present if states.get(p, "")[1:2] != "i"]
    remove = []
    for name in absent:
        status = states.get(name, "")[1:2]
        if status not in ("", "n", "c") or (purge and status == "c"):
            remove.append(name)
    return install, remove


def apt_arguments(install, remove, purge, install_recommends, dpkg_options):
    """The apt-get command line of one transaction."""
    argv = ["apt-get", "install", "-y", "-q"]
    if not remove:
        argv.append("--no-remove")  # never remove a package as a side effect of an install
    if purge and remove:
        argv.append("--purge")
    if install_recommends is True:
        argv.append("--install-recommends")
    elif install_recommends is False:
        argv.append("--no-install-recommends")
    for option in ["force-confdef", "force-confold", *dpkg_options]:
        argv += ["-o", f"Dpkg::Options::=--{option}"]
    return argv + install + [f"{name}-" for name in remove]


def fetch(run, argv, delays=FETCH_RETRY_DELAYS, sleep=time.sleep):
    """Download what ``argv`` installs, trying again after each of ``delays``; (rc, out, err) of the last try.

    ``run`` runs a command line and returns (rc, out, err). A download-only run changes no
    package, so trying it again is safe whatever failed.
    """
    command = argv + ["--download-only"]
    for delay in delays:
        rc, out, err = run(command)
        if rc == 0:
            return rc, out, err
        sleep(delay)
    return run(command)


def _lists_age():
    for path in LISTS_STAMPS:
        try:
            return time.time() - os.stat(path).st_mtime
        except OSError:
            continue
    return float("inf")


def _states(module, names):
    if not names:
        return {}
    rc, out, err = module.run_command(
        ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\n", *names], environ_update={"LC_ALL": "C"}
    )
    # rc 1 only means some names are unknown to dpkg: they are simply not installed.
    if rc not in (0, 1):
        module.fail_json(msg=f"dpkg-query failed: {err.strip()}", rc=rc)
    return parse_status(out)


def _diff(states, install, remove):
    before = [f"{name}: {'installed' if states.get(name, '')[1:2] == 'i' else 'not installed'}" for name in install + remove]
    after = [f"{name}: installed" for name in install] + [f"{name}: not installed" for name in remove]
    return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n", "before_header": "dpkg",
            "after_header": "dpkg"}


def main():
    module = AnsibleModule(
        argument_spec={
            "present": {"type": "list", "elements": "str", "default": []},
            "absent": {"type": "list", "elements": "str", "default": []},
            "purge": {"type": "bool", "default": True},
            "install_recommends": {"type": "bool"},
            "dpkg_options": {"type": "list", "elements": "str", "default": []},
            "cache_valid_time": {"type": "int", "default": 3600},
        },
        supports_check_mode=True,
    )
    params = module.params
    both = sorted(set(params["present"]) & set(params["absent"]))
    if both:
        module.fail_json(msg=f"packages cannot be both present and absent: {', '.join(both)}")
    if not module.get_bin_path("dpkg-query") or not module.get_bin_path("apt-get"):
        module.fail_json(msg="carepath_packages needs dpkg and apt (Debian family); this host has neither")

    states = _states(module, params["present"] + params["absent"])
    install, remove = plan(params["present"], params["absent"], states, params["purge"])
    result = {"changed": bool(install or remove), "installed": install, "removed": remove, "cache_updated": False}
    if module._diff and result["changed"]:
        result["diff"] = _diff(states, install, remove)
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)

    if install and _lists_age() > params["cache_valid_time"]:
        rc, out, err = module.run_command(["apt-get", "update", "-q"], environ_update=APT_ENV)
        if rc != 0:
            module.fail_json(msg=f"apt-get update failed: {err.strip() or out.strip()}", rc=rc)
        result["cache_updated"] = True
    argv = apt_arguments(install, remove, params["purge"], params["install_recommends"], params["dpkg_options"])
    if install:
        tries = len(FETCH_RETRY_DELAYS) + 1
        rc, out, err = fetch(lambda command: module.run_command(command, environ_update=APT_ENV), argv)
        if rc != 0:
            module.fail_json(msg=f"apt-get could not download the packages in {tries} tries (nothing was changed): "
                             f"{err.strip() or out.strip()}", rc=rc, cmd=argv + ["--download-only"], stdout=out)
    rc, out, err = module.run_command(argv, environ_update=APT_ENV)
    if rc != 0:
        module.fail_json(msg=f"apt-get failed (nothing else was changed): {err.strip() or out.strip()}",
                         rc=rc, cmd=argv, stdout=out)
    after = _states(module, params["present"] + params["absent"])
    still_install, still_remove = plan(params["present"], params["absent"], after, params["purge"])
    if still_install or still_remove:
        module.fail_json(msg="apt-get finished but packages are still not as asked: "
                         f"missing {still_install}, not removed {still_remove}", cmd=argv, stdout=out)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
