"""Verification: recompute every content hash and name what changed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry
from contentpkg.store.hashing import content_hash, scan_tree, short_hash


@dataclass(frozen=True)
class Problem:
    entry: Entry
    message: str


def verify_entry(entry: Entry) -> list[str]:
    """What is wrong with one entry; empty when it is intact."""
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
    if meta.get("elf"):
        problems += _verify_elf(entry, meta["elf"], {r.path: r.value for r in actual})
    return problems


def _verify_elf(entry: Entry, elf: dict, actual: dict[str, str]) -> list[str]:
    """Check what an ELF entry says of each file against the file itself.

    The stored file must hash as recorded and still carry the recorded
    RUNPATH, SONAME and DT_NEEDED (what the loader will read); its hash
    before patching must be a well-formed sha256 that the store's file table
    maps back to it, so ``cpk identify`` of the original keeps working.
    """
    from contentpkg.elf.reader import ElfError, read_elf
    from contentpkg.store import lookup

    problems = []
    for rel, facts in sorted(elf.items()):
        if actual.get(rel) != facts.get("sha256"):
            problems.append(f"{rel}: hash differs from the ELF record")
            continue
        try:
            info = read_elf(entry.path / rel)
        except ElfError as exc:
            problems.append(f"{rel}: {str(exc).split(': ', 1)[-1]}")
            continue
        for key, value in (
            ("runpath", info.runpath),
            ("soname", info.soname),
            ("needed", list(info.needed)),
        ):
            if facts.get(key) != value:
                problems.append(f"{rel}: {key} is {value!r}, recorded {facts.get(key)!r}")
        original = str(facts.get("original_sha256", ""))
        if len(original) != 64 or original.strip("0123456789abcdef"):
            problems.append(f"{rel}: no valid hash of the original file recorded")
        elif original != facts.get("sha256"):
            rows = lookup.find_files(entry.layer.root, original, writable=False)
            if rows is not None and (entry.dirname, rel) not in rows:
                problems.append(f"{rel}: the original's hash is missing from the file table")
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


def verify(entries: Iterable[Entry]) -> list[Problem]:
    """Verify entries in parallel (hashing releases the GIL); list problems."""
    entries = list(entries)
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(verify_entry, entries)
        return [
            Problem(entry, message)
            for entry, messages in zip(entries, results, strict=True)
            for message in messages
        ]
