"""What a distribution's file name says: project, version, wheel tags.

Two readings: :func:`parse_filename`, the full one (packaging's, validating
the name, the version and every tag), and :func:`split_filename`, a split
that only finds where the project and version parts are. A page is grouped
by the split (see :mod:`.releases`) and each file parsed in full only when
its release is looked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
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


def metadata_member(names: Iterable[str], filename: str) -> str | None:
    """The wheel's own ``<name>-<version>.dist-info/METADATA`` among its
    members' names; None when there is not exactly one.

    A wheel that vendors another distribution keeps a second ``.dist-info``
    at its top; the file name says which project's is the wheel's.
    """
    candidates = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if len(candidates) > 1:
        parsed = parse_filename(filename)
        if parsed is not None:
            candidates = [
                n for n in candidates if canonicalize_name(n.split("-", 1)[0]) == parsed.name
            ] or candidates
    return candidates[0] if len(candidates) == 1 else None
