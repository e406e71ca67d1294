"""Native packages into the store: an ELF file, a prefix tree, or a ``.deb``.

A package is a set of files (seed 000 §5): programs, their libraries, man
pages, documentation and translations travel together as one entry, laid
out as a prefix (``bin/``, ``lib/``, ``share/``). Every dynamic ELF in it
is patched to the store's RUNPATH on its way in (:mod:`.patching`), and the
entry records, per ELF file, both hashes (before and after patching) and
what the loader will read: SONAME, DT_NEEDED, the interpreter, class and
machine. The hash before patching also goes into the store's file table,
so ``cpk identify /usr/bin/jq`` finds the entry made from that very file.

All checks run inside the staging slot, before anything is published: a
malformed ELF, an ELF for another machine or a failed patch raises, and the
slot is thrown away.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.elf.patching import fits_in_place, grow_runpaths, patch_file, runpath_for
from contentpkg.elf.reader import (
    ELF_MAGIC,
    ElfError,
    ElfInfo,
    NotElf,
    check_native,
    read_elf,
)
from contentpkg.errors import CpkError
from contentpkg.store.add import (
    AddResult,
    add_built,
    check_source,
    copy_file,
    copy_tree,
    publishing_together,
)
from contentpkg.store.entry import check_part
from contentpkg.store.hashing import FileRecord, hash_file
from contentpkg.store.layers import Store

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry

#: Top-level directories whose executables a user runs (bound to PATH).
_BIN_DIRS = ("bin/", "sbin/", "games/")

_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "riscv64": "riscv64"}


@dataclass
class _Scan:
    """What populate learnt about the files it wrote, for the metadata."""

    elf: dict[str, dict[str, Any]] = field(default_factory=dict)
    original_rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def add_package(
    store: Store,
    src: Path,
    name: str | None = None,
    version: str | None = None,
    *,
    requires: Sequence[tuple[str, str]] = (),
) -> tuple[AddResult, list[str]]:
    """Add src (an ELF file, a directory prefix or a ``.deb``) as one entry.

    Returns the result and notes worth telling the user (dropped setuid
    bits, say). ``requires`` lists plain files the package needs, as
    (namespace, relative path) pairs, checked when an environment is bound.
    """
    try:
        st = os.stat(src)
    except OSError as exc:
        raise CpkError(f"{src}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode) and _is_deb(src):
        return _add_deb(store, src, name, version, requires)
    if stat.S_ISREG(st.st_mode) and src.name.endswith(".deb"):
        # Named as a package but not one (an empty download, an error page
        # saved under the package's name): say so, rather than asking for
        # the --version that would store it as a plain file.
        what = "it is empty" if st.st_size == 0 else "no ar archive header"
        raise CpkError(f"{src}: not a Debian package ({what})")
    if version is None:
        raise CpkError(f"{src}: --version is needed (only a .deb carries its own)")
    # A file's or directory's own name is the natural package name, as
    # "cpk store add ./mytool --version 1.0" should need nothing more.
    name = name or Path(os.path.realpath(src)).name
    check_part("name", name)
    check_part("version", version)
    if stat.S_ISDIR(st.st_mode):
        listing = check_source(src, st)
        # The copy hashes every file and notes the ELF ones as it goes: no
        # second pass over the tree needs to read them again (nor list it:
        # the check's listing is the copy's).
        elf: list[str] = []
        return _add(
            store,
            src,
            name,
            version,
            lambda d: copy_tree(src, d, elf, listing),
            None,
            requires,
            elf=elf,
        )
    if not stat.S_ISREG(st.st_mode):
        raise CpkError(f"{src}: not a regular file, directory or .deb")
    with open(src, "rb") as f:
        head = f.read(4)
    if head != ELF_MAGIC:
        from contentpkg.store.add import add_path

        return add_path(store, src, name, version), []
    info = read_elf(src)  # malformed: one line, before anything is staged
    check_native(info, src)
    where = "bin" if info.is_executable else "lib"
    real_name = Path(os.path.realpath(src)).name  # libfoo.so.1 -> libfoo.so.1.2.3

    def populate(dest: Path) -> None:
        os.mkdir(dest / where)
        copy_file(Path(os.path.realpath(src)), dest / where / real_name)
        if where == "lib" and info.soname and info.soname != real_name:
            os.symlink(real_name, dest / where / info.soname)

    return _add(store, src, name, version, populate, f"sha256:{hash_file(src)[0]}", requires)


def _is_deb(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"!<arch>\n"


def _add_deb(
    store: Store,
    src: Path,
    name: str | None,
    version: str | None,
    requires: Sequence[tuple[str, str]],
) -> tuple[AddResult, list[str]]:
    from contentpkg.elf.deb import extract_data, read_deb

    pkg = read_deb(src)  # hashes the file and reads the control part only
    source_hash = f"sha256:{pkg.sha256}"  # spelled as wheels' are
    reused = _stored_from(
        store, source_hash, name or pkg.name, version or _entry_version(pkg.version)
    )
    if reused is not None:
        # The entry made from these very bytes exists: no unpacking, patching
        # or hashing again (an entry's content follows from its source).
        return AddResult(reused, created=False), []
    host = _DEB_ARCH.get(os.uname().machine, os.uname().machine)
    if pkg.architecture not in ("all", host):
        raise CpkError(f"{src}: package for {pkg.architecture}, this machine runs {host}")
    # Debian epochs ("1:2.3-1") use a colon, which entry names cannot hold;
    # the epoch only orders versions, so the name drops it and the metadata
    # keeps the whole version.
    deb_version = pkg.version
    version = version or _entry_version(deb_version)
    name = name or pkg.name
    check_part("name", name)
    check_part("version", version)
    notes: list[str] = []
    elf: list[str] = []

    def populate(dest: Path) -> list[FileRecord]:
        # Hashed as unpacked, ELF files noted: nothing is read twice.
        records: list[FileRecord] = []
        notes.extend(extract_data(pkg, dest, records, elf))
        return records

    extra = {
        "deb": {
            "package": pkg.name,
            "version": deb_version,
            "architecture": pkg.architecture,
            "depends": pkg.depends,
            "pre_depends": pkg.pre_depends,
            "provides": pkg.provides,
            "description": pkg.control.get("Description", "").split("\n", 1)[0],
        },
        "dependencies": [
            " | ".join(n if c is None else f"{n} ({c})" for n, c in group)
            for group in [*pkg.pre_depends, *pkg.depends]
        ],
    }
    result, more = _add(
        store,
        src,
        name,
        version,
        populate,
        source_hash,
        requires,
        extra=extra,
        notes=notes,
        elf=elf,
    )
    return result, more


def _entry_version(deb_version: str) -> str:
    return deb_version.split(":", 1)[-1]


def _stored_from(store: Store, source_hash: str, name: str, version: str) -> Entry | None:
    """The entry already made from source_hash under this name and version."""
    entry = store.find_source(source_hash)
    if entry is not None and entry.name == name and entry.version == version:
        return entry
    return None


@dataclass(frozen=True)
class Added:
    """One path of a :func:`add_packages` call: its entry, or why it failed."""

    path: Path
    result: AddResult | None
    notes: list[str]
    error: str | None = None


def _stored_deb(store: Store, path: Path) -> Entry | None:
    """The entry made from this very .deb under its own name and version, found
    by the file's sha256 alone: one read of the file, no unpacking, no worker.
    (The name and version an entry took by default are the control file's,
    which the same bytes always give.)"""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"!<arch>\n":
                return None
            f.seek(0)
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None  # add_package says what is wrong with it
    entry = store.find_source(f"sha256:{sha256}")  # or bare hex, as older entries have it
    if entry is None:
        return None
    try:
        deb = entry.metadata.get("deb") or {}
    except CpkError:
        return None
    version = _entry_version(str(deb.get("version")))
    if deb.get("package") == entry.name and version == entry.version:
        return entry
    return None


def _add_chunk(
    ctx: Context, paths: Sequence[Path], name: str | None, version: str | None,
    requires: Sequence[tuple[str, str]],
) -> list[Added]:  # fmt: skip
    """A worker's whole job: its own store handle, several paths published
    together (one flush, one files-table transaction for all of them), errors
    as text (a CpkError subclass need not survive pickling, its message does)."""
    store = Store.open(ctx=ctx)
    results: list[Added] = []
    try:
        with publishing_together(store):
            for path in paths:
                try:
                    result, notes = add_package(store, path, name, version, requires=requires)
                except CpkError as exc:
                    results.append(Added(path, None, [], str(exc)))
                    continue
                results.append(Added(path, result, notes))
    except CpkError as exc:
        # Publishing failed (the disk filled, say) partway: what was renamed
        # into the store before the failure is there, whole, and is reported
        # as added; every path still pending says why it is not. When none
        # was pending (the last directory flush failed), the published ones
        # carry the failure as a note: it must not go unsaid.
        pending = any(a.result is not None and a.result.pending for a in results)
        note = [] if pending else [f"added, but finishing the publish failed: {exc}"]
        return [
            a
            if a.error or a.result is None
            else Added(a.path, None, [], str(exc))
            if a.result.pending
            else Added(a.path, a.result, [*a.notes, *note])
            for a in results
        ]
    return results


def add_packages(
    ctx: Context,
    paths: Sequence[Path],
    name: str | None = None,
    version: str | None = None,
    *,
    requires: Sequence[tuple[str, str]] = (),
    jobs: int | None = None,
) -> list[Added]:
    """Add many paths, each as its own entry, in parallel; results in order.

    Processes, not threads: hashing, decompressing and patchelf are CPU
    bound and the GIL would serialise most of the first two. Each entry is
    still published whole or not at all (the store's concurrent-writer
    rule), so one bad path leaves the others added.
    """
    if len(paths) > 1 and (name or version):
        raise CpkError("--name and --version apply to one path; give one path with them")
    store = Store.open(ctx=ctx)
    done: dict[int, Added] = {}
    if name is None and version is None:
        for i, path in enumerate(paths):
            entry = _stored_deb(store, path)
            if entry is not None:
                done[i] = Added(path, AddResult(entry, created=False), [])
    todo = [(i, p) for i, p in enumerate(paths) if i not in done]
    if len(todo) < len(paths):
        rest = [p for _i, p in todo]
        added = add_packages(ctx, rest, requires=requires, jobs=jobs) if rest else []
        done.update({i: a for (i, _p), a in zip(todo, added, strict=True)})
        return [done[i] for i in range(len(paths))]
    if len(paths) == 1:
        # One path: its error is the command's, with its type and details.
        result, notes = add_package(store, paths[0], name, version, requires=requires)
        return [Added(paths[0], result, notes)]
    workers = min(jobs or os.cpu_count() or 1, len(paths))
    if workers <= 1:
        return _add_chunk(ctx, paths, name, version, requires)
    from concurrent.futures import ProcessPoolExecutor

    # Chunks rather than single paths: each chunk pays one flush and one
    # files-table transaction. Balanced by size (largest first, each to the
    # lightest chunk), several per worker, so no worker is left with the
    # big packages while the other idles.
    count = min(len(paths), workers * _CHUNKS_PER_WORKER)
    chunks: list[list[int]] = [[] for _ in range(count)]
    loads = [0] * count
    for i in sorted(range(len(paths)), key=lambda i: -_size(paths[i])):
        lightest = loads.index(min(loads))
        chunks[lightest].append(i)
        loads[lightest] += _size(paths[i]) + _PER_PATH
    order = sorted(range(count), key=lambda c: -loads[c])
    done: dict[int, Added] = {}
    with ProcessPoolExecutor(workers) as pool:
        futures = {
            c: pool.submit(_add_chunk, ctx, [paths[i] for i in chunks[c]], name, version, requires)
            for c in order
        }
        for c, future in futures.items():
            done.update(zip(chunks[c], future.result(), strict=True))
    return [done[i] for i in range(len(paths))]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # add_package says what is wrong with it


#: What one path costs beyond its bytes, in bytes (opening, staging, a slot).
_PER_PATH = 64 << 10


#: How many chunks :func:`add_packages` gives each worker process.
_CHUNKS_PER_WORKER = 4


def _add(
    store: Store,
    src: Path,
    name: str,
    version: str,
    write: Callable[[Path], object],
    source_hash: str | None,
    requires: Sequence[tuple[str, str]],
    *,
    extra: dict[str, Any] | None = None,
    notes: list[str] | None = None,
    elf: list[str] | None = None,
) -> tuple[AddResult, list[str]]:
    """Add what write puts into the slot, its ELF files patched.

    When write returns the records of what it wrote (a copy that hashed as it
    went) and ``elf`` lists its ELF files (filled by write), neither the
    search for ELF files nor the hashing reads the tree again; only patched
    files are hashed anew.
    """
    scan = _Scan(notes=notes if notes is not None else [])

    def populate(dest: Path) -> list[FileRecord] | None:
        written = write(dest)
        if not isinstance(written, list) or elf is None:
            _patch_tree(dest, scan)
            return None
        _patch_tree(dest, scan, elf, {r.path: r.value for r in written if r.kind in "fx"})
        changed = {
            rel: facts
            for rel, facts in scan.elf.items()
            if facts["sha256"] != facts["original_sha256"]
        }
        if not changed:
            return written
        records = []
        for r in written:
            facts = changed.get(r.path)
            if facts is not None:
                # The patch already hashed what it wrote; only the size is new.
                size = os.lstat(dest / r.path).st_size
                r = FileRecord(r.path, r.kind, facts["sha256"], size)
            records.append(r)
        return records

    def describe(records: list[FileRecord]) -> dict[str, Any]:
        return {
            "kind": "elf" if scan.elf else "generic",
            "elf": scan.elf,
            "provides": provides_of(records, scan.elf),
            "requires": [{"namespace": ns, "path": p} for ns, p in requires],
            "notes": scan.notes,
        }

    result = add_built(
        store,
        name,
        version,
        "generic",  # describe() says "elf" once it has seen the files
        populate,
        source=str(src.absolute()),
        source_hash=source_hash,
        extra=extra,
        extra_file_rows=scan.original_rows,  # filled by populate, read after it
        describe=describe,
    )
    return result, scan.notes


def _patch_tree(
    root: Path,
    scan: _Scan,
    known: list[str] | None = None,
    hashes: dict[str, str] | None = None,
) -> None:
    """Patch every dynamic ELF below root in place (inside the slot).

    ``known`` lists the ELF files when whoever wrote the tree saw them;
    otherwise every file's first bytes are read to find them. ``hashes``
    gives the sha256 of files the writer hashed as it wrote them, so their
    original hash is not read again.
    """
    hashes = hashes or {}
    candidates: list[str] = list(known) if known is not None else []
    for dirpath, _dirnames, filenames in os.walk(root) if known is None else ():
        for f in filenames:
            full = os.path.join(dirpath, f)
            if os.path.islink(full):
                continue
            with open(full, "rb") as fh:
                if fh.read(4) == ELF_MAGIC:
                    candidates.append(os.path.relpath(full, root))
    if not candidates:
        return

    def facts_of(
        rel: str, info: ElfInfo, patched: ElfInfo, original: str, current: str
    ) -> tuple[str, dict[str, Any], str]:
        facts = patched.facts()
        facts["original_runpath"] = info.runpath
        facts["original_rpath"] = info.rpath
        facts["original_sha256"] = original
        facts["sha256"] = current
        return rel, facts, original

    #: Files whose RUNPATH must be added rather than rewritten: patched
    #: together, with one patchelf call, once the others are done.
    grow: list[tuple[str, ElfInfo, str]] = []

    def one(rel: str) -> tuple[str, dict[str, Any], str] | None:
        full = root / rel
        try:
            info = read_elf(full)
        except NotElf:  # pragma: no cover - the magic was just read
            raise
        except ElfError as exc:
            raise ElfError(str(exc).replace(str(full), rel)) from None
        check_native(info, rel)
        original = hashes.get(rel) or hash_file(full)[0]
        if _needs_runpath(info) and not fits_in_place(info, runpath_for(rel, info)):
            grow.append((rel, info, original))  # list.append is atomic: threads share it
            return None
        mode = os.stat(full).st_mode
        tmp = full.with_name(full.name + ".cpk-patched")
        patched = _patch(full, tmp, rel, info)
        if tmp.exists():
            os.chmod(tmp, 0o555 if mode & stat.S_IXUSR else 0o444)  # as sealed
            # Unlink, then rename, in the private slot: a rename over the old
            # file would make ext4 flush the new one's data first
            # (auto_da_alloc); the entry is flushed once, as a whole, later.
            os.unlink(full)
            os.rename(tmp, full)
            current = hash_file(full)[0]
        else:
            current = original  # nothing written: the file is as it came
        return facts_of(rel, info, patched, original, current)

    workers = min(8, (os.cpu_count() or 2) * 2, len(candidates))
    with ThreadPoolExecutor(workers) as pool:
        done = [r for r in pool.map(one, sorted(candidates)) if r is not None]
        grow.sort()
        grown = grow_runpaths([(root / rel, rel, info) for rel, info, _o in grow])
        hashed = pool.map(lambda item: hash_file(root / item[0])[0], grow)
        for (rel, info, original), current in zip(grow, hashed, strict=True):
            done.append(facts_of(rel, info, grown[root / rel], original, current))
    for rel, facts, original in sorted(done):
        scan.elf[rel] = facts
        if original != facts["sha256"]:
            scan.original_rows.append((original, rel))


def _needs_runpath(info: ElfInfo) -> bool:
    # Static (and static-pie) programs never consult a search path, and
    # patchelf's rewrite breaks a static-pie's self-relocation.
    return info.has_dynamic and not info.is_static


def _patch(full: Path, tmp: Path, rel: str, info: ElfInfo) -> ElfInfo:
    if not _needs_runpath(info):
        return info
    return patch_file(full, tmp, rel, info)


def provides_of(records: list[FileRecord], elf: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the entry offers to each namespace ("what-where", seed 000 §2).

    Keys are the search paths that find each kind of file: ``PATH`` for
    programs, ``MANPATH`` for man pages, ``LD_LIBRARY_PATH`` for shared
    libraries (with ``sonames`` mapping each SONAME to its file),
    ``XDG_DATA_DIRS`` for other shared data, ``locale`` for translations,
    ``INFOPATH`` for info manuals and ``doc`` for documentation.
    """
    out: dict[str, list[str]] = {}

    def add(ns: str, path: str) -> None:
        out.setdefault(ns, []).append(path)

    kinds = {r.path: r for r in records}
    for r in sorted(records, key=lambda r: r.path):
        p = r.path
        if r.kind == "d":
            continue
        if p.startswith(_BIN_DIRS) and p.count("/") == 1:
            target = kinds.get(_resolve(p, kinds))
            if target is not None and target.kind == "x":
                add("PATH", p)
        elif p.startswith("share/man/"):
            add("MANPATH", p)
        elif p.startswith("share/locale/"):
            add("locale", p)
        elif p.startswith("share/info/"):
            add("INFOPATH", p)
        elif p.startswith("share/doc/"):
            add("doc", p)
        elif p.startswith("share/"):
            add("XDG_DATA_DIRS", p)
    sonames = {}
    for rel, facts in sorted(elf.items()):
        if facts["type"] == "library" and facts["soname"]:
            sonames.setdefault(facts["soname"], rel)
            add("LD_LIBRARY_PATH", rel)
    result: dict[str, Any] = dict(out)
    if sonames:
        result["sonames"] = sonames
    return result


def _resolve(path: str, kinds: dict[str, FileRecord], depth: int = 0) -> str:
    """Follow symlinks inside the entry (``bin/x -> x.real``) by records."""
    r = kinds.get(path)
    if r is None or r.kind != "l" or depth > 40:
        return path
    target = os.path.normpath(os.path.join(os.path.dirname(path), r.value))
    return _resolve(target, kinds, depth + 1)
