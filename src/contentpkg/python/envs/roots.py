"""What the Python namespace registers with the store's gc.

* A root may point at a project's ``pylock.toml``: it keeps every entry made
  from a file the lock names (found by source hash), so a project's lock
  keeps its packages and a deleted project's root dangles and is pruned.
* ``contentpkg.use()`` farms (roots named ``runtime-...``) have no owner that
  could delete them; ``use()`` touches a farm each time, so gc collects one
  unused for :data:`RUNTIME_MAX_AGE` with its root.
* Views and the per-project overlays on them are caches under the home's
  ``views/`` and ``envs/``: alive while a root reaches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError
from contentpkg.store.registry import ExpiringRoots, Registry

if TYPE_CHECKING:
    from contentpkg.store.interfaces import StoreReader

#: A contentpkg.use() farm unused this long (seconds) is collected with its root.
RUNTIME_MAX_AGE = 30 * 24 * 3600


class PylockRoots:
    """Roots that point at a PEP 751 lock file."""

    def claims(self, target: Path) -> bool:
        return target.name.endswith(".toml")

    def entry_names(self, store: StoreReader, target: Path) -> list[str]:
        """Entries a lock file reaches through its files' hashes."""
        from contentpkg.python.lock import read_lock

        try:
            lock = read_lock(target)
        except CpkError:
            return []  # not a lock we can read: it keeps nothing alive
        names = []
        for package in lock.packages:
            # .file: a git commit's or an archive URL's (no wheels, no sdist).
            for file in (*package.wheels, package.sdist, package.file):
                if file is not None and file.sha256:
                    entry = store.find_source(f"sha256:{file.sha256}")
                    if entry is not None:
                        names.append(entry.dirname)
        return names


def registry() -> Registry:
    """The Python namespace's registrations."""
    from contentpkg.python.envs.links import PoolGarbage
    from contentpkg.python.envs.overlay import ENVS
    from contentpkg.python.envs.views import VIEWS

    return Registry(
        root_kinds=(PylockRoots(),),
        expiring=(ExpiringRoots("runtime-", RUNTIME_MAX_AGE),),
        environment_areas=(VIEWS, ENVS),
        derived=(PoolGarbage(),),
    )
