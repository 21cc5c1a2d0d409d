# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``carepath`` Python package (the wheel) that the collection's controller-side plugins call.

The plugins import it guarded, so that listing and documenting the collection works without it
(``ansible-doc``, ``ansible-test sanity``); using a plugin without it fails with what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from ansible.errors import AnsibleError

HINT = ("carepath.core's controller-side plugins need the carepath Python package beside the collection: "
        "install the wheel built with it (`carepath dist`: pip install dist/carepath-<version>-py3-none-any.whl), "
        "or run in carepath's execution environment")


def missing(error: ImportError) -> AnsibleError:
    """The error for a plugin used without the package."""
    return AnsibleError(f"{HINT} ({error})")


def require(error: ImportError | None) -> None:
    """Raise the clear error when the package could not be imported."""
    if error is not None:
        raise missing(error)


def unavailable(names: Iterable[str], error: ImportError) -> dict[str, Callable[..., Any]]:
    """Filters that say what to install when used (the package is missing)."""
    def fail(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise missing(error)

    return dict.fromkeys(names, fail)
