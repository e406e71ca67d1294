"""Verification: recompute every content hash and name what changed.

The store checks what it owns (names, metadata, content hash, file list);
what a kind's metadata promises beyond that (an ELF file's RUNPATH and its
hash before patching) is checked by the namespace that wrote it, through the
:class:`~contentpkg.store.registry.EntryCheck` s it registers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry
from contentpkg.store.hashing import content_hash, scan_tree, short_hash
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
    hashes = {r.path: r.value for r in actual}
    for check in checks:
        problems += check.problems(entry, hashes)
    return problems


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
            shown = ", ".join(paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")
            parts.append(f"{label} {shown}")
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
