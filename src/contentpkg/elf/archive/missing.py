"""Which Debian packages would supply the libraries an install found missing.

Two sources, used together: the ``Depends`` the ``.deb`` itself declared
(kept in its entry's metadata), and the archive's indexes, through which
the whole dependency closure is resolved — every layer, not only the
libraries the first pass of the install saw missing (a missing library's
own dependencies cannot be seen until it is there). The soname to package
step follows Debian Policy 8.1's naming (``libfoo.so.1`` is in
``libfoo1``, ``libfoo-2.0.so.0`` in ``libfoo-2.0-0``), checked against
the names the ``.deb`` and the closure actually use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry
    from contentpkg.store.layers import Store

_SONAME = re.compile(r"(?P<stem>.+?)\.so(?:\.(?P<major>\d+))?(?:\..*)?$")


def policy_names(soname: str) -> list[str]:
    """Package names Debian Policy 8.1 gives a library of this soname."""
    m = _SONAME.match(soname)
    if m is None or not m["major"]:
        return []
    stem = m["stem"].lower().replace("_", "-")
    major = m["major"]
    sep = "-" if stem[-1].isdigit() else ""
    base = f"{stem}{sep}{major}"
    return [base, f"{base}t64"]


def _deb_depends(entry: Entry) -> list[str]:
    try:
        deb = entry.metadata.get("deb") or {}
    except CpkError:
        return []
    groups = [*deb.get("pre_depends", []), *deb.get("depends", [])]
    return [str(rel[0]) for group in groups for rel in group]


def name_missing(
    ctx: Context,
    store: Store,
    entries: Sequence[Entry],
    missing: Mapping[str, Iterable[str]],
) -> list[str]:
    """Detail lines: the package of each missing soname, and every package of
    the entries' archive closure the store lacks."""
    declared: dict[str, str] = {}
    for entry in entries:
        for name in _deb_depends(entry):
            declared.setdefault(name, entry.name)
    lines: list[str] = []
    closure: set[str] = set()
    lacking: list[str] = []
    # Only packages that came from the archive send us to it: a .deb added
    # by hand may come from anywhere, and asking would mean the network.
    from contentpkg.context import Bucket

    fetched_from = str(ctx.bucket(Bucket.DEBIAN))
    roots = []
    for e in entries:
        try:
            meta = e.metadata
        except CpkError:
            continue
        package = (meta.get("deb") or {}).get("package")
        if package and str(meta.get("source") or "").startswith(fetched_from):
            roots.append(package)
    if roots:
        try:
            from contentpkg.elf.archive.fetch import resolve_names

            resolution = resolve_names(ctx, roots)
        except CpkError as exc:
            lines.append(f"the Debian archive could not be asked: {exc}")
        else:
            stored = {e.name for e in store.entries()}
            closure = {p.name for p in resolution.packages}
            lacking = [p.name for p in resolution.packages if p.name not in stored]
    for soname in sorted(missing):
        names = [n for n in policy_names(soname) if n in declared or n in closure]
        if names:
            where = (
                f"a Depends of {declared[names[0]]}"
                if names[0] in declared
                else "in the archive's closure"
            )
            lines.append(f"{soname}: in package {names[0]} ({where})")
    if lacking:
        lines.append(
            "the store lacks these packages of the archive's dependency closure: "
            + ", ".join(lacking)
            + f" (cpk fetch --deb {' '.join(roots)} brings them)"
        )
    return lines
