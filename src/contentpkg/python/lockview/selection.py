"""Which of a lock's packages a selection of extras and groups takes.

A universal lock (PEP 751) gives a package a ``marker`` that may test the
selection (``'dev' in dependency_groups``, ``'cli' in extras``) as well as
the environment; it is evaluated in packaging's ``lock_file`` context with
this interpreter's environment. A package without a marker is always taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contentpkg.errors import CpkError
from contentpkg.python.lock import Lock, LockedPackage


def environment(
    extras: Sequence[str] = (),
    groups: Sequence[str] = (),
    markers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The marker environment of a selection: markers (default: this
    interpreter's) with the chosen extras and dependency groups."""
    from packaging.markers import default_environment

    env: dict[str, Any] = dict(default_environment() if markers is None else markers)
    env["extras"] = frozenset(extras)
    env["dependency_groups"] = frozenset(groups)
    return env


def selected(lock: Lock, env: dict[str, Any]) -> list[LockedPackage]:
    """The lock's packages whose marker holds in env, in the lock's order."""
    from packaging.markers import InvalidMarker, Marker

    taken = []
    for package in lock.packages:
        if package.marker:
            try:
                marker = Marker(package.marker)
            except InvalidMarker as exc:
                raise CpkError(f"{lock.path}: package {package.name}: bad marker ({exc})") from None
            if not marker.evaluate(env, "lock_file"):
                continue
        taken.append(package)
    return taken
