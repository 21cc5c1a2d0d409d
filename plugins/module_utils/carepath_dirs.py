# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create a path's missing parent folders traversable, whatever the managed host's umask.

``os.makedirs`` gives every folder it creates the process's umask: on a hardened host (umask
027) ``/srv/carepath`` or ``/etc/carepath`` came out ``0750`` and closed every service folder
below them to its own user. carepath's modules create the parents they need root-owned ``0755``
(as ``mkdir -p`` does under Debian's default umask) and the leaf with the mode asked for.
Standard library only: this runs on managed hosts.
"""

from __future__ import annotations

import os

PARENT_MODE = 0o755


def missing_parents(path):
    """The ancestors of ``path`` that do not exist yet, outermost first."""
    missing = []
    parent = os.path.dirname(os.path.normpath(path))
    while parent and parent != os.path.dirname(parent) and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    return list(reversed(missing))


def make_parents(path):
    """Create the missing ancestors of ``path`` root-owned ``0755``; returns those it created."""
    created = []
    for parent in missing_parents(path):
        try:
            os.mkdir(parent, PARENT_MODE)
        except FileExistsError:  # made meanwhile by someone else: theirs to keep
            continue
        os.chmod(parent, PARENT_MODE)  # mkdir's mode is cut by the umask
        created.append(parent)
    return created
