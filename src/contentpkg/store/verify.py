"""Verification: recompute every content hash and name what changed.

The store checks what it owns (names, metadata, content hash, file list,
the recorded hashes of derived files, and that nothing is writable);
what a kind's metadata promises beyond that (an ELF file's RUNPATH and its
hash before patching) is checked by the namespace that wrote it, through the
:class:`~contentpkg.store.registry.EntryCheck` s it registers.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry
from contentpkg.store.hashing import DERIVED_DIRS, content_hash, scan_tree, short_hash
from contentpkg.store.registry import EntryCheck


@dataclass(frozen=True)
class Problem:
    entry: Entry
    message: str


def verify_entry(entry: Entry, checks: Sequence[EntryCheck] = ()) -> list[str]:
    """What is wrong with one entry; empty when it is intact.

    ``checks`` are the namespaces' own checks of what their metadata says
    (see :class:`~contentpkg.store.registry.EntryCheck`).
    """
    try:
        meta = entry.metadata
        stored = entry.file_records()
    except CpkError as exc:
        return [str(exc).split(": ", 1)[-1]]
    problems = []
    if meta.get("name") != entry.name or meta.get("version") != entry.version:
        problems.append(
            f"metadata names {meta.get('name')},{meta.get('version')}, not the directory's"
        )
    recorded = str(meta.get("content_hash", ""))
    if ":" not in recorded or short_hash(recorded) != entry.short_hash:
        problems.append(f"metadata hash {recorded!r} does not match the directory name")
    actual = scan_tree(entry.path)
    if content_hash(actual) != recorded:
        problems.append("content hash mismatch: " + _describe(stored, actual))
    elif content_hash(stored) != recorded:
        problems.append("file list does not match the content hash")
    writable, derived = _scan_extras(entry)
    problems += _derived_problems(entry, derived)
    if writable:
        problems.append("writable (store files must be read-only): " + _shown(writable))
    hashes = {r.path: r.value for r in actual}
    for check in checks:
        problems += check.problems(entry, hashes)
    return problems


def _scan_extras(entry: Entry) -> tuple[list[str], dict[str, str]]:
    """What the content hash does not see: modes, and derived files' hashes.

    Returns the paths that are writable (the entry's own directory is
    ``.``) and the sha256 of every file inside a derived directory
    (``__pycache__``), by path. Modes are read, not tried, so running as
    root changes nothing.
    """
    writable: list[str] = []
    derived: dict[str, str] = {}
    stack: list[tuple[str, str, bool]] = [("", os.fspath(entry.path), False)]
    if os.lstat(entry.path).st_mode & 0o222:
        writable.append(".")
    while stack:
        prefix, directory, in_derived = stack.pop()
        try:
            with os.scandir(directory) as it:
                items = list(it)
        except OSError:
            continue  # unreadable: the content hash has already said so
        for item in items:
            rel = prefix + item.name
            st = item.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o222:
                writable.append(rel)
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel + "/", item.path, in_derived or item.name in DERIVED_DIRS))
            elif in_derived and stat.S_ISREG(st.st_mode):
                try:
                    with open(item.path, "rb") as f:
                        derived[rel] = hashlib.file_digest(f, "sha256").hexdigest()
                except OSError:
                    derived[rel] = ""
            elif in_derived:
                derived[rel] = ""  # a special file where bytecode belongs
    return sorted(writable), derived


def _derived_problems(entry: Entry, actual: dict[str, str]) -> list[str]:
    """Compare derived files with the records written when they were made.

    Python runs unchecked-hash bytecode without looking at the source, so a
    changed ``.pyc`` is as bad as a changed ``.py``; one nobody recorded
    (an interrupted compile, a hand-placed file) is unvouched-for code.
    """
    recorded: dict[str, str] = {}
    for files in entry.derived_records().values():
        recorded.update(files)
    changed = sorted(p for p in actual.keys() & recorded.keys() if actual[p] != recorded[p])
    missing = sorted(recorded.keys() - actual.keys())
    unrecorded = sorted(actual.keys() - recorded.keys())
    problems = []
    for label, paths in (
        ("bytecode changed", changed),
        ("bytecode missing", missing),
        ("bytecode not recorded by any compile", unrecorded),
    ):
        if paths:
            problems.append(f"{label}: {_shown(paths)}")
    return problems


def _shown(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")


def _describe(stored: list, actual: list) -> str:
    """Name the paths that differ between the recorded and the actual tree."""
    want = {r.path: r for r in stored}
    have = {r.path: r for r in actual}
    parts = []
    changed = sorted(p for p in want.keys() & have.keys() if want[p] != have[p])
    missing = sorted(want.keys() - have.keys())
    added = sorted(have.keys() - want.keys())
    for label, paths in (("changed", changed), ("missing", missing), ("added", added)):
        if paths:
            parts.append(f"{label} {_shown(paths)}")
    return "; ".join(parts) or "file list unreadable"


def verify(entries: Iterable[Entry], checks: Sequence[EntryCheck] = ()) -> list[Problem]:
    """Verify entries in parallel (hashing releases the GIL); list problems."""
    entries = list(entries)
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda entry: verify_entry(entry, checks), entries)
        return [
            Problem(entry, message)
            for entry, messages in zip(entries, results, strict=True)
            for message in messages
        ]
