#!/usr/bin/python
# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install a web app release from a verified artifact into its own, never-modified directory."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: carepath_release
short_description: Verify a release artifact and install it into releases/<version>, keeping N releases
description:
  - Checks the SHA-256 of a release artifact (a gzipped tarball) already on the host, and only then
    unpacks it into O(root)/releases/O(version), through a temporary directory renamed into place,
    so a release directory is either whole or absent.
  - A release directory is never modified after install. Files are made read-only and a stamp,
    C(.carepath-release.json), records the artifact's digest. Installing the same version again
    from the same artifact changes nothing; from a different artifact it is refused.
  - The artifact's manifest (C(carepath-release.json)), when present, must name the same version.
  - Only regular files and directories with relative paths are unpacked; anything else (links,
    devices, absolute paths, C(..)) fails the install before a file is written.
  - Keeps the O(keep) most recently installed releases plus the O(protect)ed ones (those the
    colours run) and removes older ones.
version_added: "0.1.0"
author: carepath contributors (@carepath)
options:
  root:
    description: The app's directory; releases live in its C(releases/) folder.
    type: path
    required: true
  version:
    description: The release version (a directory name).
    type: str
    required: true
  src:
    description: Path of the artifact on the host.
    type: path
    required: true
  sha256:
    description: Expected SHA-256 of the artifact, in hex.
    type: str
    required: true
  keep:
    description: How many releases to keep, the newest first; protected ones are kept on top.
    type: int
    default: 5
  protect:
    description: Versions never removed (those installed in a colour).
    type: list
    elements: str
    default: []
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Install release 2.0.0 of the scheduling app
  carepath.core.carepath_release:
    root: /srv/carepath/scheduling
    version: 2.0.0
    src: /var/lib/carepath/webapp/scheduling/artifacts/scheduling-2.0.0.tar.gz
    sha256: 3968076b79b86e3f48bd7b9489b87072cdd90db46b69eaf1e972e7816999a6ae
    keep: 5
    protect: [1.0.0]
"""

RETURN = r"""
path:
  description: The release directory.
  returned: always
  type: str
installed:
  description: Whether the release was unpacked by this run (false when it was there already).
  returned: always
  type: bool
pruned:
  description: Versions removed because more than O(keep) releases were installed.
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

STAMP = ".carepath-release.json"
MANIFEST = "carepath-release.json"
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_stamp(directory):
    try:
        with open(os.path.join(directory, STAMP), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def safe_members(tar):
    """The archive's members, or ValueError naming the first one that may not be unpacked."""
    members = tar.getmembers()
    for member in members:
        name = member.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise ValueError(f"member {name!r} is not a plain relative file or directory")
        if name.removeprefix("./") == STAMP:
            raise ValueError(f"member {name!r} uses a name carepath reserves")
    return members


def make_read_only(directory):
    for current, dirs, files in os.walk(directory):
        for name in files:
            os.chmod(os.path.join(current, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(current, name), 0o555)
    os.chmod(directory, 0o555)


def remove_tree(directory):
    for current, dirs, _files in os.walk(directory):
        os.chmod(current, 0o755)
        for name in dirs:
            os.chmod(os.path.join(current, name), 0o755)
    shutil.rmtree(directory)


def unpack(src, releases, version, digest):
    """Unpack into a temporary directory next to the final one; returns that directory."""
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=releases)
    try:
        with tarfile.open(src, "r:gz") as tar:
            members = safe_members(tar)
            for member in members:
                target = os.path.join(tmp, member.name)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as dest:
                    shutil.copyfileobj(source, dest)
        manifest_path = os.path.join(tmp, MANIFEST)
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                manifest = json.load(handle)
            if not isinstance(manifest, dict):
                raise ValueError(f"{MANIFEST} is not a JSON object")
            declared = str(manifest.get("version", ""))
            if declared != version:
                raise ValueError(f"the artifact's manifest says version {declared!r}, not {version!r}")
        with open(os.path.join(tmp, STAMP), "w", encoding="utf-8") as handle:
            json.dump({"version": version, "sha256": digest, "installed_at": time.time()}, handle)
        make_read_only(tmp)
        return tmp
    except BaseException:
        remove_tree(tmp)
        raise


def installed_releases(releases):
    found = []
    for name in os.listdir(releases):
        path = os.path.join(releases, name)
        if name.startswith(".") or not os.path.isdir(path) or os.path.islink(path):
            continue
        stamp = read_stamp(path) or {}
        found.append((float(stamp.get("installed_at", os.stat(path).st_mtime)), name))
    return sorted(found, reverse=True)


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "version": {"type": "str", "required": True},
            "src": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "keep": {"type": "int", "default": 5},
            "protect": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    version, expected = params["version"], params["sha256"].strip().lower()
    if not VERSION.match(version) or ".." in version:
        module.fail_json(msg=f"release version {version!r} is not a valid directory name")
    if params["keep"] < 1:
        module.fail_json(msg="keep must be at least 1")
    releases = os.path.join(params["root"], "releases")
    path = os.path.join(releases, version)
    result = {"changed": False, "path": path, "installed": False, "pruned": []}

    if not os.path.isfile(params["src"]) and module.check_mode and not os.path.lexists(path):
        # Check mode before the artifact was ever copied: the release would be installed.
        module.exit_json(changed=True, path=path, installed=True, pruned=[])
    if not os.path.isfile(params["src"]):
        module.fail_json(msg=f"release artifact {params['src']} is not on the host", **result)
    actual = sha256_file(params["src"])
    if actual != expected:
        module.fail_json(msg=f"release {version}: the artifact's SHA-256 is {actual}, not the expected {expected}; "
                             "nothing was installed", **result)

    if os.path.lexists(path):
        stamp = read_stamp(path)
        if stamp is None or stamp.get("sha256") != expected:
            module.fail_json(msg=f"release {version} is already installed from a different artifact "
                                 f"(sha256 {(stamp or {}).get('sha256', 'unknown')}); a release is never modified, "
                                 "so give the new build a new version", **result)
    else:
        result.update(changed=True, installed=True)
        if not module.check_mode:
            os.makedirs(releases, mode=0o755, exist_ok=True)
            try:
                tmp = unpack(params["src"], releases, version, expected)
            except (ValueError, tarfile.TarError, OSError) as exc:
                module.fail_json(msg=f"release {version}: cannot unpack {params['src']}: {exc}; nothing was installed",
                                 **result)
            os.rename(tmp, path)

    if os.path.isdir(releases):
        protected = set(params["protect"]) | {version}
        kept = 0
        for _installed_at, name in installed_releases(releases):
            if name in protected:
                continue
            kept += 1
            if kept + 1 > params["keep"]:  # the new release counts towards keep
                result["pruned"].append(name)
                result["changed"] = True
                if not module.check_mode:
                    remove_tree(os.path.join(releases, name))
        # Leftovers of an install that was killed half-way.
        for name in os.listdir(releases):
            if name.startswith(".tmp-") and not module.check_mode:
                remove_tree(os.path.join(releases, name))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
