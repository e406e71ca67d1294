"""The download and build cache's housekeeping: ``cpk cache dir|clean|prune``.

The cache (``Context.cache_dir``) holds what can be fetched or computed
again: index pages, downloaded archives, metadata, built wheels, parsed
locks, run memos, each in a :class:`~contentpkg.context.Bucket`. It is not
the store: entries live under the home and only ``cpk store gc`` removes
them. Emptying the cache costs time on the next command, never correctness.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.context import Bucket, Context
from contentpkg.errors import CpkError
from contentpkg.fs import remove_tree

#: Scratch directories a command makes in the cache (``cpk-fetch-*``) are
#: left behind only by a killed command; one this old has no owner left.
_SCRATCH_AGE = 3600.0

#: Short names for the buckets, as ``cpk cache clean NAME`` takes them.
BUCKET_NAMES = {b.name.lower().replace("_", "-"): b for b in Bucket}


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@dataclass
class Cleaned:
    """What a clean or prune removed: (name under the cache, bytes) each."""

    removed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.removed)


def _remove(path: Path, cache: Path, report: Cleaned) -> None:
    size = _size(path)
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)
    report.removed.append((str(path.relative_to(cache)), size))


def bucket_sizes(ctx: Context) -> list[tuple[Bucket, int]]:
    """Each bucket with the bytes it holds (0 when absent)."""
    return [(bucket, _size(ctx.bucket(bucket))) for bucket in Bucket]


def clean(ctx: Context, names: list[str] | None = None) -> Cleaned:
    """Remove the whole cache, or the buckets named (``http``, ``archives``...)."""
    cache = ctx.cache_dir
    report = Cleaned()
    if names:
        unknown = [n for n in names if n not in BUCKET_NAMES]
        if unknown:
            raise CpkError(
                f"{unknown[0]}: no such cache bucket (known: {', '.join(sorted(BUCKET_NAMES))})"
            )
        for name in names:
            path = ctx.bucket(BUCKET_NAMES[name])
            if path.exists():
                _remove(path, cache, report)
        return report
    try:
        children = sorted(os.listdir(cache))
    except FileNotFoundError:
        return report
    for child in children:
        _remove(cache / child, cache, report)
    return report


def prune(ctx: Context, now: float | None = None) -> Cleaned:
    """Remove what no current cpk reads: directories of old bucket versions
    (``http-v0`` after ``http-v1``), anything else no bucket names, and
    scratch directories a killed command left (older than an hour)."""
    cache = ctx.cache_dir
    report = Cleaned()
    known = {b.value for b in Bucket}
    now = time.time() if now is None else now
    try:
        children = sorted(os.listdir(cache))
    except FileNotFoundError:
        return report
    for child in children:
        path = cache / child
        if child in known:
            continue
        if child.startswith("cpk-") or child.startswith("."):
            # A command's scratch: only when old enough to have no owner.
            try:
                if now - path.lstat().st_mtime < _SCRATCH_AGE:
                    continue
            except FileNotFoundError:
                continue
        _remove(path, cache, report)
    return report
