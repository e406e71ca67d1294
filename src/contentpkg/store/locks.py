"""Advisory locks that order the store's writers against its collector.

Anything that adds entries or creates roots holds the collector lock shared;
``gc`` holds it exclusively, so it never sweeps an entry that a concurrent
writer has just published but not yet rooted. Per-entry locks serialise the
few derived writes an entry allows (bytecode caches).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

LOCKS = ".locks"


@contextmanager
def flocked(path: Path, exclusive: bool = True) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def collector_lock(store_root: Path, exclusive: bool = False) -> AbstractContextManager[None]:
    """Shared for writers and root makers, exclusive for ``gc``."""
    return flocked(store_root / LOCKS / "gc.lock", exclusive)


def entry_lock(store_root: Path, dirname: str) -> AbstractContextManager[None]:
    """Serialise derived writes (bytecode) into one entry."""
    return flocked(store_root / LOCKS / f"{dirname}.lock", exclusive=True)
