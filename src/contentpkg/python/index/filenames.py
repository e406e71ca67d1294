"""What a distribution's file name says: project, version, wheel tags.

Two readings: :func:`parse_filename`, the full one (packaging's, validating
the name, the version and every tag), and :func:`split_filename`, a split
that only finds where the project and version parts are. A page is grouped
by the split (see :mod:`.releases`) and each file parsed in full only when
its release is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class FileName:
    """What a distribution's file name says: project, version and wheel tags."""

    name: NormalizedName
    version: Version
    tags: frozenset[Tag] | None  # None for an sdist
    build: tuple[int, str] | tuple[()] = ()


# Cached: the resolver and the look-ahead threads ask about the same files.
@lru_cache(maxsize=1 << 16)
def parse_filename(filename: str) -> FileName | None:
    """Parse a wheel or sdist file name; None for anything else or anything invalid.

    Indexes list files no installer can use (eggs, .exe, .tar.bz2, names with
    invalid versions from before PEP 440); skipping them is what pip and uv do.
    """
    try:
        if filename.endswith(".whl"):
            name, version, build, tags = parse_wheel_filename(filename)
            return FileName(name, version, tags, build)
        if filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return FileName(name, version, None)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def split_filename(filename: str) -> tuple[str, str] | None:
    """(project part, version part) of a wheel or sdist name, by splitting only.

    Where :func:`parse_filename` takes the name and version from (packaging
    splits the same way), without validating either: enough to group a
    page's files and drop other projects' files.
    """
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        return parts[0], parts[1]
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            name, sep, version = filename[: -len(suffix)].rpartition("-")
            return (name, version) if sep else None
    return None
