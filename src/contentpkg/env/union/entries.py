"""Unmodified entries: packages stored as shipped, for unions.

An env dir needs RUNPATH rewritten to find libraries wherever it is copied;
a union needs the opposite, the files exactly as the package ships them,
since its programs find everything at their compiled-in paths. So a
``.deb`` for a union is stored as its own entry, marked ``unmodified``,
beside the patched one when both exist. Their files that patching did not
change (data, documentation, scripts, every non-ELF file) have the same
bytes, and are hard links to the patched entry's inodes: stored once.

The unmodified entry records the ``.deb``'s sha256 under ``unmodified_of``,
not as its source hash, because the source table maps one source to one
entry and that one is the patched entry ``cpk install`` relies on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.context import Bucket
from contentpkg.errors import CpkError, NotFoundError
from contentpkg.store.entry import Spec, check_part, parse_dirname
from contentpkg.store.hashing import hash_file

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry
    from contentpkg.store.layers import Store


def is_unmodified(entry: Entry) -> bool:
    try:
        return bool(entry.metadata.get("unmodified"))
    except CpkError:
        return False


def _twin(store: Store, name: str, version: str, sha256: str) -> Entry | None:
    """The unmodified entry made from the .deb with this sha256, if stored."""
    for e in store.match(Spec.parse(f"{name},{version}")):
        if is_unmodified(e) and e.metadata.get("unmodified_of") == sha256:
            return e
    return None


def add_unmodified_deb(
    store: Store, deb: Path, *, image_in: Context | None = None
) -> tuple[Entry, list[str]]:
    """Store deb unpacked as shipped (no RUNPATH rewrite); reuse one made before.

    With ``image_in``, a squashfs image of the tree is made too, kept in that
    context's home, and its sha256 recorded in the entry's metadata.
    """
    # Here, not at the top: entering a union of stored entries (the common,
    # start-up-bound case) adds nothing, and needs neither.
    from contentpkg.elf.deb import extract_data, read_deb
    from contentpkg.env.union.scripts import MAINTAINER_SCRIPTS, scripts_facts
    from contentpkg.store.add import add_built

    pkg = read_deb(deb)
    version = pkg.version.split(":", 1)[-1]  # entry names hold no epoch colon
    check_part("name", pkg.name)
    check_part("version", version)
    found = _twin(store, pkg.name, version, pkg.sha256)
    if found is not None:
        return found, _without_image(found, image_in)
    patched = store.find_source(pkg.sha256)
    present = [s for s in MAINTAINER_SCRIPTS if s in pkg.control_files]
    alts, notes = scripts_facts(deb, pkg.name, present)

    def populate(dest: Path) -> None:
        notes.extend(extract_data(pkg, dest))
        if patched is not None:
            _share_with(patched, dest)
        if image_in is not None:
            from contentpkg.env.union.images import make_image

            extra["image"] = make_image(image_in, dest)

    extra: dict[str, Any] = {
        "unmodified": True,
        "unmodified_of": pkg.sha256,
        "deb": {
            "package": pkg.name,
            "version": pkg.version,
            "architecture": pkg.architecture,
            "maintainer_scripts": present,
            "depends": pkg.depends,
            "pre_depends": pkg.pre_depends,
        },
        "alternatives": alts,
        "notes": list(notes),
    }
    result = add_built(
        store, pkg.name, version, "generic", populate, source=str(deb.absolute()), extra=extra
    )
    return result.entry, notes + _without_image(result.entry, image_in)


def _without_image(entry: Entry, image_in: Context | None) -> list[str]:
    if image_in is None or entry.metadata.get("image"):
        return []
    return [f"{entry.dirname}: stored before without an image; the union uses its tree"]


def _share_with(patched: Entry, dest: Path) -> None:
    """Hard-link dest's files whose bytes and mode equal the patched entry's.

    The content hash does not see inodes, and both entries are sealed
    read-only, so the shared files can never diverge.
    """
    for r in patched.file_records():
        if r.kind not in "fx":
            continue
        mine = dest / r.path
        try:
            st = os.lstat(mine)
        except FileNotFoundError:
            continue
        if not os.path.isfile(mine) or os.path.islink(mine) or st.st_size != r.size:
            continue
        if bool(st.st_mode & 0o100) != (r.kind == "x") or hash_file(mine)[0] != r.value:
            continue
        tmp = mine.with_name(mine.name + ".cpk-link")
        try:
            os.link(patched.path / r.path, tmp)
        except OSError:
            continue  # another file system, a link limit: keep the copy
        os.replace(tmp, mine)


def deb_of(ctx: Context, entry: Entry) -> Path | None:
    """The .deb an entry was made from, if still on disk with the same bytes."""
    meta = entry.metadata
    sha = str(meta.get("unmodified_of") or meta.get("source_hash") or "").removeprefix("sha256:")
    if not sha:
        return None
    candidates = [ctx.bucket(Bucket.DEBIAN) / "debs" / f"{sha}.deb"]
    if meta.get("source"):
        candidates.append(Path(meta["source"]))
    for path in candidates:
        try:
            if path.is_file() and hash_file(path)[0] == sha:
                return path
        except OSError:
            continue
    return None


class Matcher:
    """Specs matched against one listing of the store, made once.

    ``Store.match`` lists every layer per call; a union of hundreds of
    entries would list the store hundreds of times. A full entry name is
    looked up directly, without any listing.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_name: dict[str, list[Entry]] | None = None

    def match(self, text: str) -> list[Entry]:
        if parse_dirname(text) is not None:
            exact = self.store.entry(text)
            if exact is not None:
                return [exact]
        spec = Spec.parse(text)
        if self._by_name is None:
            self._by_name = {}
            for e in self.store.entries():
                self._by_name.setdefault(e.name, []).append(e)
        found = self._by_name.get(spec.name, [])
        return sorted(
            (e for e in found if spec.matches(e.name, e.version, e.short_hash)),
            key=lambda e: e.dirname,
        )


def union_entry(
    ctx: Context,
    store: Store,
    text: str,
    *,
    image: bool = False,
    matcher: Matcher | None = None,
) -> tuple[Entry, list[str]]:
    """The entry a SPEC (or a .deb path) names, in its unmodified form.

    A ``.deb`` path is stored unmodified. A spec that matches both forms of
    a package takes the unmodified one; a patched entry made from a .deb
    still on disk gets its unmodified twin made; otherwise the entry is used
    as stored, and a note says so when its programs were patched.
    """
    if text.endswith(".deb") and os.path.isfile(text):
        return add_unmodified_deb(store, Path(text), image_in=ctx if image else None)
    matcher = matcher or Matcher(store)
    matched = matcher.match(text) if "/" not in text else [store.resolve(text)]
    if not matched:
        store.resolve(text)  # raises the not-found error with its hint
        raise NotFoundError(f"no entry matches {text!r}", what=text)
    plain = [e for e in matched if is_unmodified(e)]
    if len(plain) == 1:
        return plain[0], _without_image(plain[0], ctx if image else None)
    if len(plain) > 1:
        raise CpkError(
            f"{text!r} is ambiguous: {len(plain)} unmodified entries match; "
            "add a version or hash prefix"
        )
    if len(matched) > 1:
        store.resolve(text)  # raises the ambiguity error listing candidates
    entry = matched[0]
    if entry.metadata.get("deb"):
        deb = deb_of(ctx, entry)
        if deb is not None:
            return add_unmodified_deb(store, deb, image_in=ctx if image else None)
    if entry.metadata.get("kind") == "elf" and entry.metadata.get("elf"):
        return entry, [
            f"{entry.dirname}: stored with RUNPATH rewritten and its source is "
            "gone; the union uses it as stored"
        ]
    return entry, []


def with_dependencies(
    ctx: Context, store: Store, entries: list[Entry], *, image: bool, matcher: Matcher
) -> tuple[list[Entry], list[str]]:
    """entries and, transitively, the stored packages their Depends name.

    As ``cpk install`` does, a dependency is taken from the store when it
    holds that package (one version of it: several is a choice the user
    makes by naming one); what the store lacks is left to the host, and one
    note names it.
    """
    out = list(entries)
    have = {e.name for e in entries}
    notes: list[str] = []
    host: set[str] = set()
    queue = list(entries)
    while queue:
        deb = queue.pop(0).metadata.get("deb") or {}
        for group in [*(deb.get("pre_depends") or []), *(deb.get("depends") or [])]:
            names = [str(r[0]) for r in group]
            if any(n in have for n in names):
                continue
            for n in names:
                found = matcher.match(n)
                if not found:
                    continue
                if len({f.version for f in found}) > 1:
                    notes.append(f"dependency {n}: several versions stored; name one to use it")
                    have.add(n)
                    break
                dep, more = union_entry(ctx, store, n, image=image, matcher=matcher)
                notes += more
                out.append(dep)
                have.add(n)
                queue.append(dep)
                break
            else:
                host.update(names[:1])
    if host:
        notes.append(f"left to the host (not in the store): {', '.join(sorted(host))}")
    return out, notes
