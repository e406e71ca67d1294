"""A pool of shared symlinks, so that building a view writes no new inode per link.

A view is a farm of symlinks into store entries, and on the file systems
this project is measured on, creating a symlink costs what creating any
inode costs: about ten times a hard link (1,000 symlinks 380-1,660 ms,
1,000 hard links 17-90 ms, ext4 on a shared 2-core machine). Every view
that holds an entry links the same names to the same targets, so each
such symlink is made once, in the pool (``<home>/links/``, named by the
hash of its target), and every view gets a *hard link to that symlink
inode* (``link(2)`` without ``AT_SYMLINK_FOLLOW`` links the symlink
itself). Reading a view is unchanged: the kernel follows the symlink the
hard link names, whatever directory it sits in, because the targets are
absolute.

The pool is derived data: a missing pool symlink is made on first use; a
pool on another file system than the view, a file system without hard
links, or an inode at its link limit falls back to an ordinary symlink in
the view. Symlinks are created whole by one ``symlink(2)``, so concurrent
builders can only race to make an identical one, and the loser uses the
winner's.

The files a view writes (its finder, ``pyvenv.cfg``, scripts, rewritten
``RECORD`` files, its metadata) are pooled too, read-only, named by the hash
of their bytes (:meth:`LinkPool.file`), and every link the pool makes is
noted in :attr:`LinkPool.linked`, from which the view's plan is recorded
(:mod:`.replay`, kept here as ``v-<view key>``).

``cpk store gc`` removes, through :class:`PoolGarbage`, the pool symlinks
whose target entry it removes (or that an older gc left dangling), the
pooled files no view links any more, and the plans of views that are gone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from contentpkg.python.envs.replay import LINKS, PLAN_PREFIX, VIEWS
from contentpkg.store import Entry, Store

__all__ = ["LINKS", "LinkPool", "PoolGarbage"]
SITE = "site-packages"

#: What link(2) says when a hard link cannot be made here (another file
#: system, no hard links, too many links to the inode, not permitted):
#: the view gets an ordinary symlink instead.
_NO_HARD_LINK = frozenset({errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EOPNOTSUPP})


class LinkPool:
    """Makes a view's symlinks as hard links to symlinks shared by every view."""

    def __init__(self, home: Path) -> None:
        self.root = os.fspath(home / LINKS)
        self.enabled = True
        #: Counts, for tests and benchmarks: how many links came from the
        #: pool, how many pool symlinks were made, how many fell back.
        self.shared = 0
        self.made = 0
        self.plain = 0
        #: Each path this pool made, by the pool name its inode has: what a
        #: view's plan (:mod:`.replay`) records to make the view again.
        self.linked: dict[str, str] = {}

    @classmethod
    def of(cls, store: Store) -> LinkPool:
        return cls(store.home)

    def _pooled(self, target: str) -> str:
        digest = hashlib.sha256(os.fsencode(target)).hexdigest()[:40]
        return f"{self.root}/{digest}"

    def symlink(self, target: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
        """Make ``dest`` a symlink to the absolute path ``target``."""
        target = os.fspath(target)
        if self.enabled and os.path.isabs(target):
            pooled = self._pooled(target)
            for _ in range(2):
                try:
                    os.link(pooled, dest, follow_symlinks=False)
                    self.shared += 1
                    self.linked[os.fspath(dest)] = pooled[len(self.root) + 1 :]
                    return
                except FileNotFoundError:
                    if not self._make(pooled, target):
                        break
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINK:
                        raise
                    if exc.errno != errno.EMLINK:
                        self.enabled = False  # nothing here will link either
                    break
        os.symlink(target, dest)
        self.plain += 1

    def _make(self, pooled: str, target: str) -> bool:
        """Put the symlink to target in the pool; False if it cannot be."""
        try:
            os.symlink(target, pooled)
            self.made += 1
        except FileExistsError:
            pass  # made by a concurrent builder: the same target, by its name
        except FileNotFoundError:
            try:
                os.makedirs(self.root, exist_ok=True)
                os.symlink(target, pooled)
                self.made += 1
            except FileExistsError:
                pass
            except OSError:
                return False
        except OSError:
            return False
        return True

    def file(self, data: bytes, dest: str | os.PathLike[str], *, executable: bool = False) -> None:
        """Make ``dest`` a read-only file holding data, as a hard link to the
        pool's copy of those bytes (named by their hash) when it can.

        ``executable`` files (a view's scripts) are mode 0555: the mode is
        the inode's, so it is part of what the name is a hash of."""
        key = ""
        if self.enabled:
            h = hashlib.sha256(b"cpk-executable\0" if executable else b"")
            h.update(data)
            key = h.hexdigest()[:40]
        self.made_file(key, lambda: data, dest, mode=0o555 if executable else 0o444)

    def made_file(
        self,
        key: str,
        make: Callable[[], bytes],
        dest: str | os.PathLike[str],
        *,
        mode: int = 0o444,
    ) -> None:
        """:meth:`file` for bytes that cost more to make than to look up (the
        view's compiled finder): pooled under ``key``, a hash of what they
        are made from, so ``make`` runs only when the pool lacks them."""
        if self.enabled:
            pooled = f"{self.root}/f-{key}"
            if not os.path.exists(pooled):
                from contentpkg.fs import write_cache

                # Whole or absent (renamed into place); read-only, since
                # every view that links it shares the one inode.
                write_cache(pooled, make(), mode=mode)
            try:
                os.link(pooled, dest)
                self.shared += 1
                self.linked[os.fspath(dest)] = f"f-{key}"
                return
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINK and not isinstance(exc, FileNotFoundError):
                    raise
        with open(dest, "wb") as f:
            f.write(make())
        os.chmod(dest, mode)
        self.plain += 1

    def prepare(self, entry: Entry) -> None:
        """Make the pool symlinks a view of a wheel entry will want: one per
        top-level name of its site-packages, so that composing a view later
        writes no symlink at all. Best effort: the view makes what is missing."""
        site = entry.path / SITE
        try:
            names = os.listdir(site)
        except OSError:
            return
        for name in names:
            if name != "__pycache__":
                self._make(self._pooled(os.fspath(site / name)), os.fspath(site / name))


class PoolGarbage:
    """What of the pool goes when gc removes entries (registered with gc).

    A pool symlink goes when its target's entry does: gc removed it now, or
    it is missing already. Removing the pool's name never breaks a view: a
    view holds its own hard link to the symlink inode, which lives on while
    any view names it, and a live view's entries are live, so its targets
    stay. A pooled file (``f-...``: named by the hash of its bytes, or of
    what they are made from) goes when no view links it any more
    (``st_nlink`` 1: only the pool's name). A view's plan (``v-...``,
    :mod:`.replay`) goes when its view is gone. Pool symlinks into other layers
    are left: gc does not sweep those layers, so their targets live on.
    A builder racing with this finds the pool name gone and makes it again
    (or falls back to a plain link): the pool is derived data.
    """

    def doomed(self, store: Store, dead: Sequence[Entry]) -> list[Path]:
        pool = store.home / LINKS
        try:
            names = os.listdir(pool)
        except (FileNotFoundError, NotADirectoryError):
            return []
        dead_names = {e.dirname for e in dead}
        views = store.home / VIEWS
        user = store.user.root
        bases = {os.fspath(user) + os.sep, os.path.realpath(user) + os.sep}
        doomed = []
        for name in names:
            path = pool / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                if name.startswith("f-") and st.st_nlink == 1:
                    doomed.append(path)
                elif (
                    name.startswith(PLAN_PREFIX)
                    and not views.joinpath(name[len(PLAN_PREFIX) :]).is_dir()
                ):
                    # A view's plan goes with the view: the files it names
                    # that only that view linked go now too (nlink 1).
                    doomed.append(path)
                continue
            if not stat.S_ISLNK(st.st_mode):
                continue
            try:
                target = os.readlink(path)
            except OSError:
                continue
            base = next((b for b in bases if target.startswith(b)), None)
            if base is None:
                continue
            entry = target[len(base) :].split(os.sep, 1)[0]
            if entry in dead_names or not os.path.lexists(user / entry):
                doomed.append(path)
        return doomed
