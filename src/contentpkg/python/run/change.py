"""``cpk add`` and ``cpk remove``: edit ``pyproject.toml``, lock, sync; or
change nothing.

The edit is made to the file, then the project is locked and synced through
the same functions as ``cpk lock`` and ``cpk sync``. When either fails (no
version satisfies the new requirement, the index is down) both
``pyproject.toml`` and ``pylock.toml`` are put back byte for byte, as they
were read before the edit: a failed ``add`` leaves nothing to clean up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contentpkg.errors import NotFoundError
from contentpkg.fs import write_atomic
from contentpkg.python.lock import LOCK_FILENAME
from contentpkg.python.project import PYPROJECT, find_project
from contentpkg.python.run.options import Options
from contentpkg.python.run.sync import SyncOutcome, sync_project


@dataclass
class Changed:
    """What ``cpk add``/``remove`` did: the file edited and the sync after it."""

    pyproject: Path
    changed: bool
    sync: SyncOutcome | None


def project_file(options: Options) -> Path:
    """The ``pyproject.toml`` an edit applies to (requirements.txt projects
    have none to edit)."""
    start = options.project or Path.cwd()
    root = find_project(start) if options.project is None else start
    pyproject = root / PYPROJECT if root is not None else None
    if pyproject is None or not pyproject.is_file():
        raise NotFoundError(f"{start}: no pyproject.toml here or above", what=str(start))
    return pyproject


def change_project(
    options: Options, edit: Callable[[str, Path], str], *, sync: bool = True
) -> Changed:
    """Apply edit (old text → new text) to the project's ``pyproject.toml``,
    then lock and sync; on any failure, restore both files and re-raise."""
    pyproject = project_file(options)
    lock = pyproject.parent / LOCK_FILENAME
    before = pyproject.read_bytes()
    lock_before = lock.read_bytes() if lock.exists() else None
    after = edit(before.decode("utf-8"), pyproject).encode("utf-8")
    # The user's file keeps its permissions through the rename.
    mode = pyproject.stat().st_mode & 0o7777
    if after != before:
        write_atomic(pyproject, after, mode=mode, exact_mode=True)
    try:
        outcome = sync_project(options.replace(project=pyproject.parent)) if sync else None
    except BaseException:
        if after != before:
            write_atomic(pyproject, before, mode=mode, exact_mode=True)
        if lock_before is None:
            lock.unlink(missing_ok=True)
        elif not lock.exists() or lock.read_bytes() != lock_before:
            write_atomic(lock, lock_before)
        raise
    return Changed(pyproject, after != before, outcome)
