"""Is the lock current? Read it once and apply ``--frozen`` and ``--locked``.

``cpk lock``, ``cpk sync`` and ``cpk run`` all judge a lock the same way:
it is current when the fingerprint recorded in it equals the fingerprint of
the inputs it is meant for (see ``inputs_fingerprint``). ``--frozen`` takes
it as it is, and ``--locked`` refuses to replace a stale one; this module is
the one place those two rules and their errors are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contentpkg.errors import LockOutdatedError, LockUnreadableError, NotFoundError
from contentpkg.python.lock import Lock, read_lock


@dataclass(frozen=True)
class LockState:
    """A lock file, what it holds, and whether it can be used as it is."""

    path: Path
    #: The fingerprint of the inputs the lock is for.
    fingerprint: str
    #: What the file holds (None: missing, or unreadable and to be replaced).
    found: Lock | None
    #: The lock to use without resolving: ``found`` when it is current, or
    #: under ``--frozen``; None when it must be (re)made.
    usable: Lock | None

    @property
    def fresh(self) -> bool:
        return self.found is not None and self.found.fingerprint == self.fingerprint


def lock_state(
    path: Path,
    fingerprint: str,
    *,
    cache_dir: Path,
    frozen: bool = False,
    locked: bool = False,
) -> LockState:
    """Read the lock at path (once) and decide whether it can be used as it is.

    Raises :class:`~contentpkg.errors.NotFoundError` under ``frozen`` when
    there is no lock, :class:`~contentpkg.errors.LockOutdatedError` under
    ``locked`` when it is missing or stale. An unreadable lock (merge
    conflict markers, a hand edit gone wrong) counts as missing, since
    re-locking is how it gets fixed; under ``frozen`` its error is raised.
    """
    found: Lock | None = None
    if path.is_file():
        try:
            found = read_lock(path, cache_dir=cache_dir)
        except LockUnreadableError:
            if frozen:
                raise
    usable = found if found is not None and (frozen or found.fingerprint == fingerprint) else None
    if usable is None and frozen:
        raise NotFoundError(f"{path}: no lock file (--frozen uses it as it is)", what=str(path))
    if usable is None and locked:
        raise LockOutdatedError(f"{path}: the lock is out of date with the project (--locked)")
    return LockState(path, fingerprint, found, usable)
