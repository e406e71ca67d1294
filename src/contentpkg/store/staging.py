"""Staging: where entries are built before they appear, and how debris goes.

Every write builds in a slot under ``<store>/.staging/`` (same filesystem, so
publishing is one ``rename(2)``), and every removal renames the entry into a
slot before deleting it, so an entry is only ever whole or absent.

A slot is a directory ``<id>`` beside a lock file ``<id>.lock`` that its
owner holds with ``flock`` for as long as it lives. The kernel drops the lock
when the owner dies, even by SIGKILL, so the next run can tell debris (lock
free) from work in progress (lock held) without guessing from timestamps or
PIDs. The lock file is made visible before the directory and removed after
it, so a directory without a lock file is debris too.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path
from types import TracebackType

from contentpkg.fs import publish_dir, remove_tree

__all__ = ["PUBLISHING", "STAGING", "Slot", "clean_stale"]

STAGING = ".staging"
# A slot on its way into the store root (see Slot.publish); not an entry name,
# since entry names never start with a dot.
PUBLISHING = ".publishing-"


def _lock_path_fd(path: Path) -> int | None:
    """Open and flock a lock file, returning the fd once we own *that* file.

    A cleaner may unlink a lock file between our open and our flock; we then
    hold a lock on an orphan inode, so compare inodes and report failure.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


class Slot:
    """A private staging directory, owned by this process until closed."""

    def __init__(self, store_root: Path) -> None:
        self.area = store_root / STAGING
        self.area.mkdir(exist_ok=True)
        while True:
            ident = f"{os.getpid()}-{secrets.token_hex(6)}"
            lock = self.area / f"{ident}.lock"
            fd = _lock_path_fd(lock)
            if fd is not None:
                break
        self.lock_fd: int | None = fd
        self.lock_path = lock
        self.ident = ident
        self.path = self.area / ident
        self.path.mkdir()

    def publish(self, final: Path, *, durable: bool = True) -> bool:
        """Rename the slot's directory to final; False if final already exists.

        When two processes publish the same entry exactly one wins and the
        other learns that an identical entry is already in place. Durable: a
        store entry is what everything else relies on after a crash. A
        caller publishing several entries into one directory passes
        ``durable=False`` and fsyncs that directory once after the last.
        """
        # The entry appears sealed or not at all. Moving a directory to
        # another parent needs write permission on it, so a slot renamed
        # straight from .staging/ would be visible, writable, until a chmod
        # after the rename; a kill between the two left a writable entry.
        # Instead cross into the store under a hidden name (debris that
        # clean_stale finds by this slot's lock), seal the top there, and
        # publish with a rename within one parent, which needs none.
        hidden = final.parent / f"{PUBLISHING}{self.ident}"
        os.rename(self.path, hidden)
        self.path = hidden
        os.chmod(hidden, 0o555)
        return publish_dir(hidden, final, durable=durable)

    def close(self) -> None:
        if self.lock_fd is None:
            return
        if os.path.lexists(self.path):
            remove_tree(self.path)
        # Unlink while still holding the lock: a cleaner that opens the path
        # afterwards creates a new file and never sees ours.
        try:
            os.unlink(self.lock_path)
        except FileNotFoundError:
            pass
        os.close(self.lock_fd)
        self.lock_fd = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def clean_stale(store_root: Path) -> list[str]:
    """Remove staging debris left by dead processes; return what went."""
    area = store_root / STAGING
    try:
        names = os.listdir(area)
    except FileNotFoundError:
        return []
    removed = []
    locks = {n[: -len(".lock")] for n in names if n.endswith(".lock")}
    for ident in locks:
        lock = area / f"{ident}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            if os.fstat(fd).st_ino != _ino(lock):
                continue
            if os.path.lexists(area / ident):
                remove_tree(area / ident)
            if os.path.lexists(store_root / f"{PUBLISHING}{ident}"):
                remove_tree(store_root / f"{PUBLISHING}{ident}")
            os.unlink(lock)
            removed.append(ident)
        finally:
            os.close(fd)
    for name in names:
        # A directory whose lock file is gone is debris: a live owner creates
        # its lock file before the directory and removes it after. listdir is
        # no atomic snapshot, so look for the lock once more before deleting.
        if (
            not name.endswith(".lock")
            and name not in locks
            and not os.path.lexists(area / f"{name}.lock")
        ):
            remove_tree(area / name)
            removed.append(name)
    return removed


def _ino(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1
