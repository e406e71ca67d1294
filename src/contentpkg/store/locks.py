"""Advisory locks that order the store's writers against its collector.

Anything that adds entries or creates roots holds the collector lock shared;
``gc`` holds it exclusively, so it never sweeps an entry that a concurrent
writer has just published but not yet rooted. Per-entry locks serialise the
few derived writes an entry allows (bytecode caches).

Readers that want the store at rest (``gc --dry-run``) take the collector
lock too, but must not need write access to take it: a home on a read-only
mount, or owned by someone else, is still readable (:func:`reading_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from contentpkg.fs import flocked

__all__ = ["IN_USE", "LOCKS", "collector_lock", "entry_lock", "hold_in_use", "reading_lock"]

LOCKS = ".locks"
#: A lock file in an environment that running processes hold shared while
#: they use it (a union's farm, mounted in a process tree): gc must neither
#: remove it nor the entries it links, whatever became of its root.
IN_USE = ".cpk/in-use"

#: Errors that mean "this process may not write here", not "something broke".
_CANNOT_WRITE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def collector_lock(store_root: Path, exclusive: bool = False) -> AbstractContextManager[None]:
    """Shared for writers and root makers, exclusive for ``gc``."""
    return flocked(store_root / LOCKS / "gc.lock", exclusive)


@contextlib.contextmanager
def reading_lock(store_root: Path, exclusive: bool = False) -> Iterator[None]:
    """The collector lock for a command that writes nothing.

    Taken as writers take it where the store is writable. Where it is not
    (a read-only mount, another user's home), the existing lock file is
    opened read-only (``flock`` does not care how a file was opened); where
    there is none to open, nothing is locked: no writer can have made one,
    so none is running for this reader to wait for.
    """
    path = store_root / LOCKS / "gc.lock"
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(flocked(path, exclusive))
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                held.callback(os.close, fd)
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def entry_lock(store_root: Path, dirname: str) -> AbstractContextManager[None]:
    """Serialise derived writes (bytecode) into one entry."""
    return flocked(store_root / LOCKS / f"{dirname}.lock", exclusive=True)


def hold_in_use(environment: Path) -> int:
    """Hold environment shared until the returned descriptor is closed.

    flock(2) rather than a pid file: the lock belongs to the open file, so
    it passes through exec to the command and to the children that inherit
    the descriptor, and the kernel drops it when the last of them ends,
    however it ends (SIGKILL included); no process has to stay behind to
    wait. The descriptor is close-on-exec until the caller says otherwise.
    """
    lock = environment / IN_USE
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        # An environment made before in-use locks: give it one now.
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd
