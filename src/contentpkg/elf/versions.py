"""Ordering package versions of every kind, to pick "the newest".

Entries come from wheels (PEP 440 versions) and from ``.deb`` files and
hand-made prefixes (Debian versions, or anything). ``packaging`` orders the
first; Debian's ordering (``~`` before everything, digits compared as
numbers, letters before other characters) is hand-written here because no
maintained PyPI library implements dpkg's ``verrevcmp`` without the rest of
python-apt.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

_DIGITS = re.compile(r"\d+|\D+")


def _order(c: str) -> int:
    """dpkg's weight of one non-digit character."""
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """Compare two upstream or revision strings as dpkg does."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def _split(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, _, rest = v.partition(":")
        if e.isdigit():
            epoch, v = int(e), rest
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    return epoch, upstream, revision


def compare_debian(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian orders versions a and b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def compare(a: str, b: str) -> int:
    """Order two versions: PEP 440 when both parse, Debian's rules otherwise."""
    from packaging.version import InvalidVersion, Version

    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return compare_debian(a, b)
    return (va > vb) - (va < vb)


def newest_first(items: Iterable[T], version: Callable[[T], str]) -> list[T]:
    """items sorted newest first by their version string."""
    return sorted(items, key=functools.cmp_to_key(lambda x, y: compare(version(y), version(x))))
