"""Advisory locks that order the store's writers against its collector.

Anything that adds entries or creates roots holds the collector lock shared;
``gc`` holds it exclusively, so it never sweeps an entry that a concurrent
writer has just published but not yet rooted. Per-entry locks serialise the
few derived writes an entry allows (bytecode caches).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from contentpkg.fs import flocked

__all__ = ["LOCKS", "collector_lock", "entry_lock"]

LOCKS = ".locks"


def collector_lock(store_root: Path, exclusive: bool = False) -> AbstractContextManager[None]:
    """Shared for writers and root makers, exclusive for ``gc``."""
    return flocked(store_root / LOCKS / "gc.lock", exclusive)


def entry_lock(store_root: Path, dirname: str) -> AbstractContextManager[None]:
    """Serialise derived writes (bytecode) into one entry."""
    return flocked(store_root / LOCKS / f"{dirname}.lock", exclusive=True)
