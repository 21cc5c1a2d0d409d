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
    """Create the missing ancestors of ``path`` owned by root, mode ``0755``; returns those it created.

    Each folder is set through a descriptor opened without following links, so a folder swapped for a
    link between mkdir and chmod (by a user who may write to its parent) is never what gets changed.
    """
    created = []
    for parent in missing_parents(path):
        try:
            os.mkdir(parent, 0o700)
        except FileExistsError:  # made meanwhile by someone else: theirs to keep
            continue
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, PARENT_MODE)  # mkdir's mode is cut by the umask; this one is not
        finally:
            os.close(fd)
        created.append(parent)
    return created
