"""Env dirs: relocatable directories of programs with their library closure.

``cpk install SPEC WHERE`` makes WHERE hold what SPEC's programs need to run
from WHERE, wherever WHERE is later copied (seed 000 §6-7):

- ``bin/<name>-<version>``: each program as a real file, because the
  loader takes an executable's ``$ORIGIN`` from its real path;
  ``bin/<name>`` is a relative symlink to it.
- ``lib/<soname>``: the shared closure, found through DT_NEEDED from store
  entries that provide each soname; ``bin/common_libs -> ../lib``, so the
  store's RUNPATH ``$ORIGIN/common_libs`` reaches it from ``bin/``, and a
  library's own ``$ORIGIN`` (the path it was opened under, symlinks not
  resolved) is ``bin/common_libs`` again, where its neighbours are.
- ``bin/<elfname>_deps/<soname>``: a library build one program needs that
  differs from the one in ``lib/``, with ``common_libs -> ../../lib``.
- every other file of the requested packages and of their closure (the
  entries DT_NEEDED reaches and the ``.deb`` dependencies the store has) at
  its own path: ``share/``, ``etc/``, helpers in ``lib/<prog>/``, plugins in
  ``lib/<triplet>/<pkg>/``; each directory holding ELF files gets a
  ``common_libs`` link to ``lib/``, and ``lib/<pkg>`` links to
  ``lib/<triplet>/<pkg>`` for libraries that look beside themselves.
  Packaged symlinks stay when their target is here and are left out, with
  a note, when not.
- ``bin/<name>`` as a launcher (:mod:`contentpkg.elf.launchers`) for a
  program whose compiled-in lookups ``elf/program_env.toml`` knows how to
  point into WHERE, with ``bin/.unwrapped/<name>`` linking to the program;
  the table's post-install steps run once everything is placed.
- ``.cpk/manifest.json``: every file's back-reference (entry, path in the
  entry, sha256), the installed requests, and what each entry provides;
  ``.cpk/refs`` lists the entries, so gc keeps them while WHERE exists.

Files are placed as ``--link-mode`` says (:data:`LINK_MODES`): by default
reflink, else hard link, else copy, so WHERE never points into the store
and ``cp -a``, ``cp -rL`` and ``tar`` of WHERE work after the entries are
collected; a library found in a ``--libs`` env dir, and ``--link-mode
symlink``, are the exceptions the user asks for. glibc's own libraries (and
its packages) come from the system, as manylinux does. Absolute paths
compiled into the placed ELF files that name the packages' files are
reported (:mod:`contentpkg.elf.compiled`): relocation cannot reach them.

WHERE is changed in place, one file at a time by rename, against the
manifest: files cpk did not put there are never touched, and a conflict
with one is reported before anything changes. (A profile generation is a
fresh WHERE, so profiles switch whole environments atomically.)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from contentpkg.elf.versions import newest_first
from contentpkg.errors import CpkError, InvalidInputError, MissingLibraryError
from contentpkg.fs import flocked, replace_path, replace_symlink, write_atomic
from contentpkg.store.entry import Entry, Spec
from contentpkg.store.hashing import META_DIR, hash_file
from contentpkg.store.layers import Store

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

#: Sonames of glibc itself, taken from the system (manylinux's policy): a
#: program must use the C library, loader and threads of the running system.
_GLIBC = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "libnsl.so.1",
        "libBrokenLocale.so.1",
        "libmvec.so.1",
        "libthread_db.so.1",
        "libc_malloc_debug.so.0",
        "libcrypt.so.1",
    }
)
_LOADER = re.compile(r"ld-linux.*\.so\.\d+|ld64\.so\.\d+|ld\.so\.\d+")
_DEPS_DIR = re.compile(r"\$\{?ORIGIN\}?/([^:/]+)_deps(?::|$)")
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def is_glibc(soname: str) -> bool:
    return soname in _GLIBC or bool(_LOADER.fullmatch(soname))


@dataclass(frozen=True)
class LibChoice:
    """Where one soname of the closure comes from and where it was put."""

    soname: str
    placed: str  # path in WHERE
    entry: str | None  # the store entry, or None for a --libs file
    source: str  # the entry's path, or the --libs file's path
    needed_by: str


@dataclass
class InstallResult:
    where: Path
    changed: bool
    programs: list[tuple[str, str]] = field(default_factory=list)  # (bin path, entry)
    libraries: list[LibChoice] = field(default_factory=list)
    system: list[str] = field(default_factory=list)  # glibc sonames left to the system
    removed: list[str] = field(default_factory=list)  # requests removed
    notes: list[str] = field(default_factory=list)
    #: Absolute paths compiled into placed ELF files that name files of the
    #: installed packages: (path, who reads it, what it reads here).
    compiled_paths: list[tuple[str, list[str], str]] = field(default_factory=list)
    link_mode: str = "auto"
    #: How many files each way of placing them took ("reflink", "hardlink", ...).
    placed: dict[str, int] = field(default_factory=dict)


@dataclass
class _Placement:
    path: str  # relative to WHERE
    kind: str  # "file", "link" (relative symlink inside WHERE), "extern" (symlink out)
    source: str  # absolute file for "file", the link target otherwise
    entry: str | None = None
    entry_path: str | None = None
    sha256: str = ""

    def row(self) -> dict[str, Any]:
        if self.kind == "file":
            return {"entry": self.entry, "path": self.entry_path, "sha256": self.sha256}
        if self.kind == "generated":  # a launcher: source holds its text
            return {"generated": "launcher", "sha256": self.sha256}
        return {"link": self.source, "entry": self.entry, "path": self.entry_path}


# --- choosing entries ----------------------------------------------------------


def find_package(store: Store, text: str) -> Entry:
    """The entry SPEC names: a package, or the package holding an executable.

    ``name`` alone takes the newest version (as apt and pip do); a version
    or hash prefix narrows; several builds of one version are ambiguous.
    """
    spec = Spec.parse(text)
    found = [e for e in store.match(spec) if e.kind != "wheel"]
    if not found and spec.version is None and spec.hash_prefix is None:
        found = [e for e in store.entries() if f"bin/{spec.name}" in _provided(e, "PATH")]
    if not found:
        raise CpkError(f"no package or executable in the store matches {text!r}")
    ordered = newest_first(found, lambda e: e.version)
    top = [e for e in ordered if e.version == ordered[0].version]
    names = {e.name for e in top}
    if len(top) > 1:
        raise CpkError(
            f"{text!r} is ambiguous: {len(top)} entries match; add a version or hash prefix",
            details=[e.dirname for e in top] if len(names) == 1 else sorted(names),
        )
    return top[0]


def _provided(entry: Entry, namespace: str) -> list[str]:
    try:
        value = entry.metadata.get("provides", {}).get(namespace, [])
    except CpkError:
        return []
    return value if isinstance(value, list) else []


class _Providers:
    """soname -> (entry, file) over the whole store, read once per install."""

    def __init__(self, store: Store) -> None:
        self.by_soname: dict[str, list[tuple[Entry, str]]] = {}
        self.by_package: dict[str, list[Entry]] = {}
        self._names: dict[str, list[tuple[Entry, str]]] | None = None
        self._indexed: set[str] = set()
        for entry in store.entries():
            try:
                meta = entry.metadata
            except CpkError:
                continue
            deb = meta.get("deb") or {}
            if meta.get("kind") != "elf" and not deb:
                continue
            # Data-only packages (a -doc, a -data, a sibling's docs) are
            # dependencies too: indexed by package, never by soname.
            for pkg in {deb.get("package"), entry.name} - {None}:
                self.by_package.setdefault(pkg, []).append(entry)
            if meta.get("kind") != "elf":
                continue
            for soname, rel in (meta.get("provides", {}).get("sonames") or {}).items():
                self.by_soname.setdefault(soname, []).append((entry, rel))

    def candidates(self, soname: str, arch: tuple[Any, Any]) -> list[tuple[Entry, str]]:
        out = []
        for entry, rel in self.by_soname.get(soname, []):
            facts = entry.metadata.get("elf", {}).get(rel, {})
            if (facts.get("class"), facts.get("machine")) == arch:
                out.append((entry, rel))
        return out

    def choose(
        self, soname: str, arch: tuple[Any, Any], prefer: list[Entry]
    ) -> tuple[Entry, str] | None:
        """The requesting package itself, then its declared dependencies, then
        the newest entry anywhere that provides soname for this machine."""
        found = self.candidates(soname, arch) or self.by_file_name(soname, arch)
        if not found:
            return None
        # The first of prefer that provides it (its first file): no rank of
        # the whole prefer list per soname, which a large closure asks for
        # thousands of times.
        by_entry: dict[str, tuple[Entry, str]] = {}
        for c in found:
            by_entry.setdefault(c[0].dirname, c)
        for e in prefer:
            chosen = by_entry.get(e.dirname)
            if chosen is not None:
                return chosen
        return newest_first(found, lambda c: c[0].version)[0]

    def by_file_name(self, name: str, arch: tuple[Any, Any]) -> list[tuple[Entry, str]]:
        """Entries with a file or symlink called name in a library directory.

        What the loader does with a DT_NEEDED string (``libsndio.so.7.0``)
        is open that name in each search directory (``elf/loader.py``'s
        search): it matches file names, links included, not SONAMEs. The
        store's directories standing for the system's are the loader's own
        default directories, mapped into a prefix. Built on first use: most
        installs find every name as a SONAME.
        """
        if self._names is None:
            self._names = {}
            dirs = library_dirs()
            for entries in self.by_package.values():
                for entry in entries:
                    if entry.dirname in self._indexed:
                        continue
                    self._indexed.add(entry.dirname)
                    records = _records(entry)
                    elf = entry.metadata.get("elf", {})
                    for rel, r in records.items():
                        if r.kind == "d" or os.path.dirname(rel) not in dirs:
                            continue
                        try:
                            real = _resolve_in_entry(entry, rel, records)
                        except CpkError:
                            continue
                        if elf.get(real, {}).get("type") == "library":
                            self._names.setdefault(os.path.basename(rel), []).append((entry, rel))
        out = []
        for entry, rel in self._names.get(name, []):
            records = _records(entry)
            facts = entry.metadata.get("elf", {}).get(_resolve_in_entry(entry, rel, records), {})
            if (facts.get("class"), facts.get("machine")) == arch:
                out.append((entry, rel))
        return out

    def dependency_entries(self, entry: Entry, newest: bool = False) -> list[Entry]:
        """Entries for the packages entry's .deb metadata depends on.

        ``newest``: only the newest entry of each, and of a group of
        alternatives only the first the store has (what apt would pick).
        """
        deb = entry.metadata.get("deb") or {}
        out: list[Entry] = []
        for group in [*deb.get("pre_depends", []), *deb.get("depends", [])]:
            for alt in group:
                name = alt[0] if isinstance(alt, list | tuple) else str(alt)
                found = newest_first(self.by_package.get(name, []), lambda e: e.version)
                out.extend(found[:1] if newest else found)
                if newest and found:
                    break
        return out


# --- planning ------------------------------------------------------------------


@dataclass
class _Plan:
    files: dict[str, _Placement] = field(default_factory=dict)
    result: InstallResult | None = None
    missing: dict[str, set[str]] = field(default_factory=dict)  # soname -> needed by
    common: dict[str, tuple[str, str]] = field(default_factory=dict)  # soname -> (entry, rel)
    symlink_libs: bool = False
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (path, entry, target)
    entries: dict[str, Entry] = field(default_factory=dict)  # every entry placed from
    #: Libraries of the closure's packages no program has reached yet:
    #: (soname, entry, rel), placed once the programs' own choices are made.
    unreached: list[tuple[str, Entry, str]] = field(default_factory=list)
    subdir_links: dict[str, str] = field(default_factory=dict)  # lib/<sub> -> <triplet>/<sub>


#: Entries are immutable, so what one holds is read once per process.
_RECORDS: dict[str, dict[str, Any]] = {}


def _records(entry: Entry) -> dict[str, Any]:
    key = str(entry.path)
    if key not in _RECORDS:
        _RECORDS[key] = {r.path: r for r in entry.file_records()}
    return _RECORDS[key]


def _resolve_in_entry(entry: Entry, rel: str, records: dict[str, Any]) -> str:
    for _ in range(40):
        r = records.get(rel)
        if r is None or r.kind != "l":
            return rel
        rel = os.path.normpath(os.path.join(os.path.dirname(rel), r.value))
    raise CpkError(f"{entry.dirname}: symlink loop at {rel}")


def _add_file(
    plan: _Plan,
    where: str,
    entry: Entry,
    rel: str,
    records: dict[str, Any],
    strict: bool = True,
) -> None:
    real = _resolve_in_entry(entry, rel, records)
    rec = records.get(real)
    if rec is None or rec.kind not in "fx":
        raise CpkError(f"{entry.dirname}: {rel} points to {real}, which the entry lacks")
    new = _Placement(where, "file", str(entry.path / real), entry.dirname, real, rec.value)
    old = plan.files.get(where)
    if old is not None and old.sha256 != new.sha256 and not strict:
        # A dependency's file where another package put one: the first
        # placed stays (requests come first), and the user is told.
        assert plan.result is not None
        plan.result.notes.append(f"{where}: kept {old.entry}'s, not {entry.dirname}'s")
        return
    if old is not None and old.sha256 != new.sha256:
        raise CpkError(
            f"{where}: both {old.entry} ({old.entry_path}) and {entry.dirname} ({real}) "
            "install this path with different content"
        )
    plan.files[where] = new


def _add_link(plan: _Plan, where: str, target: str, entry: str | None, kind: str = "link") -> None:
    plan.files[where] = _Placement(where, kind, target, entry)


def _plan(
    store: Store,
    requests: list[Entry],
    libs: list[Path],
    system_libs: bool,
    symlink_libs: bool = False,
    with_docs: bool = False,
) -> _Plan:
    """Every file WHERE will hold: the requests' and their closure's.

    The closure is what the requested packages need to run as Debian
    installs them: the entries their ELF files' DT_NEEDED reach, and the
    packages their ``.deb`` declares as dependencies, when the store has
    them. Every file of each goes in (programs, libraries, helper programs
    under ``lib/<prog>/``, plugin directories, data, configuration), and
    every ELF file among them gets its own closure placed.
    """
    plan = _Plan(symlink_libs=symlink_libs)
    result = InstallResult(where=Path(), changed=False)
    plan.result = result
    providers = _Providers(store)
    libs_index = _libs_index(libs)
    programs: set[str] = set()
    requested = {e.dirname for e in requests}
    docs = _doc_packages(providers, requests, result, with_docs)
    queue: list[tuple[Entry, list[Entry]]] = [
        (e, [e, *providers.dependency_entries(e)]) for e in [*requests, *docs]
    ]
    done: set[str] = set()
    while queue or plan.unreached:
        if not queue:
            queue = _place_unreached(plan, providers, libs_index, system_libs)
            continue
        entry, prefer = queue.pop(0)
        if entry.dirname in done:
            continue
        done.add(entry.dirname)
        plan.entries[entry.dirname] = entry
        records = _records(entry)
        elf = entry.metadata.get("elf", {})
        roots: list[tuple[str, str]] = []  # (entry rel of an ELF, its private deps dir)
        on_path = _provided(entry, "PATH") if entry.dirname in requested else []
        for rel in on_path:
            name = os.path.basename(rel)
            real = _resolve_in_entry(entry, rel, records)
            versioned = f"bin/{name}-{entry.version}"
            _add_file(plan, versioned, entry, real, records)
            if f"bin/{name}" in plan.files and name in programs:
                result.notes.append(f"bin/{name}: now {entry.dirname}'s")
            _add_link(plan, f"bin/{name}", f"{name}-{entry.version}", entry.dirname)
            programs.add(name)
            result.programs.append((f"bin/{name}", entry.dirname))
            if real in elf:
                roots.append((real, "bin/" + _deps_dir_name(elf[real], name)))
        library_package = entry.dirname in requested and not on_path
        roots += _place_entry(plan, entry, records, set(on_path), library_package)
        reached: list[Entry] = []
        for rel, deps_dir in roots:
            reached += _closure(
                plan, providers, libs_index, entry, rel, deps_dir, prefer, system_libs
            )
        for dep in [*providers.dependency_entries(entry, newest=True), *reached]:
            if dep.dirname not in done and not _is_base_system(dep):
                queue.append((dep, [dep, *providers.dependency_entries(dep)]))

    if plan.missing:
        raise _missing_error(plan.missing, providers)
    _place_links(plan)
    taken = {os.path.dirname(p) for p in plan.files} | set(plan.files)
    taken |= {d for p in list(taken) for d in _parents(p)}
    for link, target in plan.subdir_links.items():
        if link not in taken:  # a package's own lib/<sub> comes first
            _add_link(plan, link, target, None)
    if any(p.path.startswith("lib/") for p in plan.files.values()):
        _add_link(plan, "bin/common_libs", "../lib", None)
    return plan


def _deps_dir_name(facts: dict[str, Any], fallback: str) -> str:
    m = _DEPS_DIR.search(facts.get("runpath") or "")
    return m.group(1) if m else fallback


def _parents(path: str) -> list[str]:
    out = []
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        out.append(path)
    return out


def _is_base_system(entry: Entry) -> bool:
    """glibc's own packages: the system provides them (manylinux's policy), and
    a second C library in WHERE's lib/ would be found before the system's."""
    sonames = entry.metadata.get("provides", {}).get("sonames") or {}
    return any(is_glibc(s) for s in sonames)


@cache
def library_dirs() -> frozenset[str]:
    """The loader's default directories, as paths inside an entry.

    ``/usr/lib/x86_64-linux-gnu`` is ``lib/x86_64-linux-gnu`` in an entry
    (the prefix layout of ``elf/deb.py``); a library there is found by the
    system's loader without any search path, so an env dir puts it in
    ``lib/`` where every RUNPATH of the store reaches it.
    """
    from contentpkg.elf.deb import map_path
    from contentpkg.elf.loader import system_config

    dirs = {map_path(d.strip("/")) for d in system_config().system_dirs}
    return frozenset(d for d in dirs if d) | {"lib"}


def _place_entry(
    plan: _Plan, entry: Entry, records: dict[str, Any], on_path: set[str], requested: bool
) -> list[tuple[str, str]]:
    """Place every file of entry but its programs; return the ELF roots.

    Shared libraries in the loader's default directories go to ``lib/``
    under their SONAME; every other file keeps its path in the entry
    (``lib/<triplet>/<pkg>/`` plugins, ``lib/<prog>/`` helpers, ``share/``,
    ``etc/``). A directory holding ELF files gets a ``common_libs`` link to
    ``lib/``, which the store's RUNPATH (``$ORIGIN/common_libs``) names, so
    a plugin or helper finds the env dir's libraries from where it lies.
    Symlinks are decided once everything else is placed (:func:`_place_links`).
    """
    elf = entry.metadata.get("elf", {})
    dirs = library_dirs()
    roots: list[tuple[str, str]] = []
    for rel in sorted(records):
        r = records[rel]
        if r.kind == "d" or rel in on_path:
            continue
        if r.kind == "l":
            if os.path.dirname(rel) in dirs:
                real = _resolve_in_entry(entry, rel, records)
                if elf.get(real, {}).get("type") == "library":
                    continue  # another name of a library: found by name when needed
            plan.links.append((rel, entry.dirname, r.value))
            continue
        facts = elf.get(rel)
        soname = facts.get("soname") if facts else None
        if soname and facts and facts.get("type") == "library" and os.path.dirname(rel) in dirs:
            if requested:  # what a library package was asked for
                _place_shared(plan, soname, entry, rel, records, True)
                roots.append((rel, "lib/" + _deps_dir_name(facts, soname)))
            else:
                plan.unreached.append((soname, entry, rel))
            continue
        _add_file(plan, rel, entry, rel, records, strict=requested)
        _link_library_subdir(plan, rel, dirs)
        if facts and facts.get("needed") is not None and "/" in rel:
            folder = os.path.dirname(rel)
            if folder not in ("lib", "bin"):
                _add_link(plan, f"{folder}/common_libs", os.path.relpath("lib", folder), None)
            roots.append((rel, f"{folder}/{_deps_dir_name(facts, os.path.basename(rel))}"))
    return roots


def _link_library_subdir(plan: _Plan, rel: str, dirs: frozenset[str]) -> None:
    """``lib/<sub> -> <triplet>/<sub>`` for a file under ``lib/<triplet>/<sub>/``.

    Libraries find their plugins beside themselves (graphviz's libgvc looks
    in ``dladdr()``'s directory + ``/graphviz``), and in WHERE a library is
    in ``lib/`` (reached as ``bin/common_libs/``), not in ``lib/<triplet>/``.
    """
    for d in dirs:
        if d != "lib" and rel.startswith(d + "/") and rel.count("/") > d.count("/") + 1:
            sub = rel[len(d) + 1 :].split("/", 1)[0]
            plan.subdir_links.setdefault(f"lib/{sub}", os.path.relpath(f"{d}/{sub}", "lib"))
            return


def _place_unreached(
    plan: _Plan, providers: _Providers, libs_index: dict[str, Path], system_libs: bool
) -> list[tuple[Entry, list[Entry]]]:
    """Place the closure's libraries no program needed (dlopen'd by name, or
    used by a plugin); return the packages their own closures reached."""
    pending, plan.unreached = plan.unreached, []
    queue: list[tuple[Entry, list[Entry]]] = []
    placed = {(p.entry, p.entry_path) for p in plan.files.values()}
    for soname, entry, rel in pending:
        if is_glibc(soname):
            continue
        records = _records(entry)
        real = _resolve_in_entry(entry, rel, records)
        if (entry.dirname, real) in placed:
            continue  # placed already, in lib/ or privately beside a program
        if not _place_shared(plan, soname, entry, rel, records, False):
            continue
        facts = entry.metadata.get("elf", {}).get(real, {})
        prefer = [entry, *providers.dependency_entries(entry)]
        deps_dir = "lib/" + _deps_dir_name(facts, soname)
        for dep in _closure(
            plan, providers, libs_index, entry, real, deps_dir, prefer, system_libs
        ):
            queue.append((dep, [dep, *providers.dependency_entries(dep)]))
    return queue


def _place_shared(
    plan: _Plan, soname: str, entry: Entry, rel: str, records: dict[str, Any], requested: bool
) -> bool:
    """A library of the closure into ``lib/``; False when another build is there.

    A requested package's library conflicting with another requested one is
    an error (as before); a dependency's is left out with a note, since
    what the programs need is chosen by :func:`_closure`.
    """
    key = (entry.dirname, _resolve_in_entry(entry, rel, records))
    common = plan.common.get(soname)
    if common is not None and common != key:
        if requested:
            raise CpkError(
                f"{soname}: requested packages {common[0]} and {entry.dirname} "
                "provide different builds"
            )
        assert plan.result is not None
        plan.result.notes.append(
            f"{soname}: {entry.dirname}'s build left out; lib/ holds {common[0]}'s"
        )
        return False
    _place_lib(plan, soname, entry, rel, records, None, "requested" if requested else entry.name)
    return True


def _place_links(plan: _Plan) -> None:
    """Keep each packaged symlink whose target WHERE holds; drop the rest, noted.

    Debian links documentation and data across packages (``LICENSE ->
    ../../common-licenses/Apache-2.0``, a doc directory linked to a
    sibling package's): such a link works here exactly when its target was
    placed too, a file or a directory. A dangling link would be a broken
    promise, so it is left out, and one note names what was.
    """
    pending = list(plan.links)
    while pending:
        folders: set[str] = set()
        for placed in plan.files:
            d = os.path.dirname(placed)
            while d and d not in folders:
                folders.add(d)
                d = os.path.dirname(d)
        progress = False
        waiting = []
        for rel, entry, value in pending:
            if rel in plan.files:
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(rel), value))
            if target in plan.files or target in folders:
                _add_link(plan, rel, value, entry)
                progress = True
            else:
                waiting.append((rel, entry, value))
        pending = waiting
        if not progress:
            break
    dropped = sorted(f"{rel} -> {value}" for rel, _entry, value in pending)
    if dropped:
        assert plan.result is not None
        shown = ", ".join(dropped[:3]) + (
            f" (+{len(dropped) - 3} more)" if len(dropped) > 3 else ""
        )
        plan.result.notes.append(
            f"left out {len(dropped)} symlink(s) whose targets are not installed here: {shown}"
        )


def _doc_packages(
    providers: _Providers, requests: list[Entry], result: InstallResult, with_docs: bool
) -> list[Entry]:
    """The requests' ``<pkg>-doc`` and ``<pkg>-man`` entries, brought or named.

    Debian splits man pages and manuals of many programs into such
    packages. With ``with_docs`` the store's are installed; otherwise the
    report names them (in the store, or the names to fetch).
    """
    out: list[Entry] = []
    for entry in requests:
        pkg = (entry.metadata.get("deb") or {}).get("package") or entry.name
        found = []
        for name in (f"{pkg}-doc", f"{pkg}-man"):
            have = newest_first(providers.by_package.get(name, []), lambda e: e.version)
            if have:
                found.append(have[0])
        if found and with_docs:
            out += found
        elif found:
            names = ", ".join(e.name for e in found)
            result.notes.append(
                f"{pkg}: documentation in the store: {names}; --with-docs installs it"
            )
        elif _provided(entry, "PATH") and not _provided(entry, "MANPATH"):
            result.notes.append(
                f"{pkg}: no man pages in the package; Debian ships some in {pkg}-doc or "
                f"{pkg}-man (not in the store)"
            )
    if with_docs and not out:
        result.notes.append("--with-docs: no -doc or -man package of these in the store")
    return out


def _libs_index(libs: list[Path]) -> dict[str, Path]:
    """soname -> file in a --libs env dir (its lib/, bin/common_libs or top)."""
    index: dict[str, Path] = {}
    for d in libs:
        if not d.is_dir():
            raise CpkError(f"--libs {d}: not a directory")
        for sub in (d / "lib", d / "bin" / "common_libs", d):
            if not sub.is_dir():
                continue
            for item in sorted(os.listdir(sub)):
                if ".so" in item and (sub / item).is_file():
                    index.setdefault(item, sub / item)
    return index


def _place_lib(
    plan: _Plan,
    soname: str,
    entry: Entry,
    rel: str,
    records: dict[str, Any],
    private: str | None,
    needed_by: str,
) -> str:
    """Put a library in lib/, or in bin/<private>_deps/ when asked to."""
    if private is None:
        key = (entry.dirname, _resolve_in_entry(entry, rel, records))
        common = plan.common.setdefault(soname, key)
        if common != key:
            raise CpkError(
                f"{soname}: requested packages {common[0]} and {entry.dirname} "
                "provide different builds"
            )
        where = f"lib/{soname}"
    else:
        # private is the ELF's folder and elfname ("bin/jq", "lib/x/y/plugin.so"):
        # its RUNPATH's $ORIGIN/<elfname>_deps.
        where = f"{private}_deps/{soname}"
        folder = f"{private}_deps"
        _add_link(plan, f"{folder}/common_libs", os.path.relpath("lib", folder), None)
    if where not in plan.files:
        if plan.symlink_libs:
            real = _resolve_in_entry(entry, rel, records)
            _add_link(plan, where, str(entry.path / real), entry.dirname, "extern")
        else:
            _add_file(plan, where, entry, rel, records)
        assert plan.result is not None
        plan.result.libraries.append(LibChoice(soname, where, entry.dirname, rel, needed_by))
    return where


@dataclass
class _Choice:
    entry: Entry
    rel: str
    records: dict[str, Any]
    needed: list[str]
    needed_by: str


def _closure(
    plan: _Plan,
    providers: _Providers,
    libs_index: dict[str, Path],
    entry: Entry,
    root_rel: str,
    deps_dir: str,
    prefer: list[Entry],
    system_libs: bool,
) -> list[Entry]:
    """Choose and place one program's library closure; return the entries used.

    The walk is breadth-first over DT_NEEDED, as the loader goes. A soname
    whose chosen build differs from the one already in lib/ is private to
    this program (``bin/<elfname>_deps/``). So is every library that reaches
    a private one other than through the program's own DT_NEEDED: the
    loader would search for it from that library's ``$ORIGIN``, and from
    lib/ it would find lib/'s build.
    """
    from contentpkg.elf.reader import read_elf

    assert plan.result is not None
    facts = entry.metadata.get("elf", {}).get(root_rel, {})
    arch = (facts.get("class"), facts.get("machine"))
    direct = set(facts.get("needed", []))
    queue: list[tuple[str, list[str]]] = [(root_rel, list(facts.get("needed", [])))]
    choices: dict[str, _Choice] = {}
    seen: set[str] = set()
    while queue:
        name, needed = queue.pop(0)
        for soname in needed:
            if soname in seen:
                continue
            seen.add(soname)
            if is_glibc(soname):
                if soname not in plan.result.system:
                    plan.result.system.append(soname)
                continue
            if soname in libs_index:
                target = libs_index[soname]
                if f"lib/{soname}" not in plan.files:
                    _add_link(plan, f"lib/{soname}", str(target), None, "extern")
                    plan.result.libraries.append(
                        LibChoice(soname, f"lib/{soname}", None, str(target), name)
                    )
                queue.append((str(target), list(read_elf(target).needed)))
                continue
            chosen = providers.choose(soname, arch, prefer)
            if chosen is None:
                if system_libs:
                    plan.result.system.append(soname)
                else:
                    plan.missing.setdefault(soname, set()).add(name)
                continue
            lib_entry, rel = chosen
            records = _records(lib_entry)
            real = _resolve_in_entry(lib_entry, rel, records)
            lib_needed = list(lib_entry.metadata.get("elf", {}).get(real, {}).get("needed", []))
            choices[soname] = _Choice(lib_entry, rel, records, lib_needed, name)
            prefer.extend(e for e in providers.dependency_entries(lib_entry) if e not in prefer)
            queue.append((f"{lib_entry.dirname}/{rel}", lib_needed))

    private: set[str] = set()
    for soname, c in choices.items():
        common = plan.common.get(soname)
        if common is not None and common != (
            c.entry.dirname,
            _resolve_in_entry(c.entry, c.rel, c.records),
        ):
            private.add(soname)
    changed = bool(private)
    while changed:
        changed = False
        for soname, c in choices.items():
            if soname not in private and any(n in private and n not in direct for n in c.needed):
                private.add(soname)
                changed = True
    for soname, c in choices.items():
        where = deps_dir if soname in private else None
        _place_lib(plan, soname, c.entry, c.rel, c.records, where, c.needed_by)
    return [c.entry for c in choices.values()]


def _missing_error(missing: dict[str, set[str]], providers: _Providers) -> MissingLibraryError:
    """One line naming every missing soname; a detail line each: who needs it, where it is."""
    details = []
    for soname in sorted(missing):
        who = ", ".join(sorted(missing[soname]))
        other = providers.by_soname.get(soname, [])
        if other:
            hint = "store entries for another machine: " + ", ".join(e.dirname for e, _ in other)
        else:
            hint = _system_hint(soname)
        details.append(f"{soname} (needed by {who}): {hint}")
    names = ", ".join(sorted(missing))
    return MissingLibraryError(
        f"missing libraries: {names}; add the packages providing them",
        missing={soname: sorted(who) for soname, who in missing.items()},
        searched=["the package's own entry", "its declared dependencies", "every store layer"],
        details=details,
    )


def _system_hint(soname: str) -> str:
    """Where the system has the library, and which Debian package owns it."""
    from contentpkg.elf.ldcache import entries_by_soname

    try:
        paths = [path for path, _flags, _hwcaps in entries_by_soname().get(soname, [])]
    except CpkError:  # an unreadable cache only loses the hint
        paths = []
    if not paths:
        return "no store entry provides it, nor does the system"
    path = paths[0]
    owner = _dpkg_owner(path)
    return f"no store entry provides it; the system has {path}" + (
        f" (Debian package {owner}: apt-get download {owner})" if owner else ""
    )


def _dpkg_owner(path: str) -> str | None:
    import subprocess

    if shutil.which("dpkg-query") is None:
        return None
    for candidate in {path, os.path.realpath(path)}:
        proc = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if proc.returncode == 0 and ":" in proc.stdout:
            return proc.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


# --- applying ------------------------------------------------------------------


def read_manifest(where: Path) -> dict[str, Any] | None:
    try:
        with open(where / META_DIR / MANIFEST, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CpkError(f"{where}: env dir manifest unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "envdir":
        raise CpkError(f"{where}: {META_DIR}/{MANIFEST} is not an env dir manifest")
    return data


def installed_requests(store: Store, where: Path) -> list[Entry]:
    """The entries WHERE was asked to hold, in the order they were asked."""
    manifest = read_manifest(where) or {}
    out = []
    for item in manifest.get("installed", []):
        entry = store.entry(item["entry"])
        if entry is None:
            raise CpkError(
                f"{where}: entry {item['entry']} is no longer in the store; reinstall "
                f"{item['name']} to rebuild this environment"
            )
        out.append(entry)
    return out


class Tool(Protocol):
    """A program environment of another namespace that WHERE links to.

    ``cpk install --python black`` makes one (``contentpkg.python.envs.tools``
    builds its view); WHERE only needs to know where its scripts are and
    which entries and environment it keeps alive, so the Python side
    implements this and env dirs import nothing from it.
    """

    requirement: str
    name: str
    view: str
    scripts: Sequence[str]
    entries: Sequence[str]


@dataclass(frozen=True)
class LinkedTool:
    """A tool as an env dir's manifest records it (``python_tools``)."""

    requirement: str
    name: str
    view: str
    scripts: tuple[str, ...]
    entries: tuple[str, ...]

    @classmethod
    def of(cls, tool: Tool) -> LinkedTool:
        return cls(tool.requirement, tool.name, tool.view, tuple(tool.scripts), tuple(tool.entries))

    def row(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "name": self.name,
            "view": self.view,
            "scripts": list(self.scripts),
            "entries": list(self.entries),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LinkedTool:
        return cls(
            row["requirement"],
            row["name"],
            row["view"],
            tuple(row.get("scripts", [])),
            tuple(row.get("entries", [])),
        )


def installed_tools(where: Path) -> list[LinkedTool]:
    """The tools of other namespaces WHERE holds (``cpk install --python``)."""
    manifest = read_manifest(where) or {}
    return [LinkedTool.from_row(r) for r in manifest.get("python_tools", [])]


def install(
    store: Store,
    specs: list[str],
    where: Path,
    *,
    tools: Iterable[Tool] = (),
    libs: Iterable[Path] = (),
    system_libs: bool = False,
    base: Path | None = None,
    symlink_libs: bool = False,
    root: bool = True,
    link_mode: str | None = None,
    with_docs: bool = False,
) -> InstallResult:
    """Install what specs name, and Python tools, into WHERE (made if missing).

    ``link_mode`` is how files are placed (:data:`LINK_MODES`); None keeps
    WHERE's (``auto`` for a new one). ``with_docs`` brings the requests'
    ``-doc``/``-man`` packages from the store.

    ``base`` is an env dir whose contents WHERE starts from (the previous
    generation of a profile, when WHERE is a new one). ``symlink_libs``
    links libraries to their store files instead of placing them, for
    environments that live only as long as the store does (``cpk run``).
    ``root`` registers WHERE as a gc root (a profile's generations are
    roots by being generations, so they need none).
    """
    wanted = [find_package(store, s) for s in specs]
    where = Path(os.path.abspath(where))
    source = base if base is not None else where
    with _locked(where):
        requests = installed_requests(store, source)
        fresh: list[Entry] = []
        for entry in wanted:
            if any(e.dirname == entry.dirname for e in requests):
                continue
            requests = [e for e in requests if e.name != entry.name]  # an upgrade
            requests.append(entry)
            fresh.append(entry)
        have_tools = installed_tools(source)
        new_tools = [t for t in map(LinkedTool.of, tools) if t not in have_tools]
        for tool in new_tools:
            have_tools = [t for t in have_tools if t.name != tool.name] + [tool]
        old = read_manifest(source) or {}
        link_mode = check_link_mode(link_mode or old.get("link_mode") or "auto")
        same_mode = link_mode == old.get("link_mode", "auto")
        more_docs = with_docs and not old.get("with_docs")
        if (
            not fresh
            and not new_tools
            and not more_docs
            and same_mode
            and old
            and not _steps_stale(source, old)
        ):
            # Already there: a no-op (a profile then discards its new generation).
            result = InstallResult(where=source, changed=False)
            result.programs = [(p, e.dirname) for e in wanted for p in _bin_links(e)]
            return result
        libs = list(libs) or [Path(p) for p in old.get("libs", [])]
        system_libs = system_libs or bool(old.get("system_libs"))
        with_docs = with_docs or bool(old.get("with_docs"))
        result = _apply(
            store, where, requests, libs, system_libs, symlink_libs, have_tools, root,
            link_mode=link_mode, with_docs=with_docs,
        )  # fmt: skip
        for tool in new_tools:
            result.programs += [(f"bin/{s}", f"{tool.name} (Python)") for s in tool.scripts]
        return result


def shared_env(store: Store, specs: list[str]) -> Path:
    """An env dir of specs for processes to use while the store holds them.

    Used by ``cpk run --with-elf``: keyed by the exact entries, so equal
    requests share one directory, and built with libraries as symlinks into
    the store (nothing placed, and ``/proc/self/maps`` names the store file).
    """
    from contentpkg.elf.checks import SHARED_ENVS

    entries = [find_package(store, s) for s in specs]
    key = hashlib.sha256("\n".join(sorted(e.dirname for e in entries)).encode()).hexdigest()
    where = store.home / SHARED_ENVS / f"elf-{key[:24]}"
    if read_manifest(where) is None:
        install(store, [e.dirname for e in entries], where, symlink_libs=True)
    return where


def remove(
    store: Store, names: list[str], where: Path, *, base: Path | None = None, root: bool = True
) -> InstallResult:
    """Remove packages or Python tools by name from WHERE; unknown names are errors."""
    where = Path(os.path.abspath(where))
    source = base if base is not None else where
    with _locked(where):
        current = installed_requests(store, source)
        tools = installed_tools(source)
        have = {e.name for e in current} | {t.name for t in tools}
        drop = {Spec.parse(n).name for n in names}
        unknown = sorted(drop - have)
        if unknown:
            raise CpkError(f"{source}: {', '.join(unknown)} not installed here")
        kept = [e for e in current if e.name not in drop]
        kept_tools = [t for t in tools if t.name not in drop]
        manifest = read_manifest(source) or {}
        libs = [Path(p) for p in manifest.get("libs", [])]
        result = _apply(
            store, where, kept, libs, bool(manifest.get("system_libs")), False, kept_tools, root,
            link_mode=manifest.get("link_mode", "auto"), with_docs=bool(manifest.get("with_docs")),
        )  # fmt: skip
        result.removed = sorted(drop)
        return result


def _bin_links(entry: Entry) -> list[str]:
    return [f"bin/{os.path.basename(p)}" for p in _provided(entry, "PATH")]


class _locked:
    """An exclusive flock on WHERE/.cpk/lock: installs into one WHERE queue.

    When the install fails, directories this lock had to create are removed
    again, so a failed first install leaves no WHERE behind.
    """

    def __init__(self, where: Path) -> None:
        self.where = where
        self.created: list[Path] = []

    def __enter__(self) -> None:
        if os.path.lexists(self.where) and not os.path.isdir(self.where):
            raise InvalidInputError(f"{self.where}: not a directory", path=str(self.where))
        meta = self.where / META_DIR
        for d in reversed([meta, *meta.parents]):
            if not d.exists():
                self.created.append(d)
        self.lock = flocked(meta / "lock", exclusive=True)
        self.lock.__enter__()  # released in __exit__, after the cleanup

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self.created and read_manifest(self.where) is None:
            try:
                os.unlink(self.where / META_DIR / "lock")
            except OSError:
                pass
            for d in reversed(self.created):
                try:
                    os.rmdir(d)
                except OSError:
                    break
        self.lock.__exit__(None, None, None)


def _steps_stale(where: Path, manifest: dict[str, Any]) -> bool:
    """Whether a file a post-install step wrote is missing or changed: the
    install that finds everything else in place runs the step again."""
    from contentpkg.elf.launchers import file_sha256

    return any(
        file_sha256(where / rel) != (row or {}).get("sha256")
        for rel, row in (manifest.get("post_install") or {}).items()
    )


def _apply(
    store: Store,
    where: Path,
    requests: list[Entry],
    libs: list[Path],
    system_libs: bool,
    symlink_libs: bool = False,
    tools: list[LinkedTool] | None = None,
    root: bool = True,
    *,
    link_mode: str = "auto",
    with_docs: bool = False,
) -> InstallResult:
    tools = tools or []
    plan = _plan(store, requests, libs, system_libs, symlink_libs, with_docs)
    launch = _launchers(plan)
    if link_mode == "symlink":
        _symlink_data(plan)
    for tool in tools:
        for script in tool.scripts:
            rel = f"bin/{script}"
            if rel in plan.files:
                raise CpkError(f"{rel}: both {plan.files[rel].entry} and {tool.name} provide it")
            _add_link(plan, rel, os.path.join(tool.view, "bin", script), None, "extern")
    result = plan.result
    assert result is not None
    result.where = where
    result.link_mode = link_mode
    from contentpkg.elf.launchers import package_of, redirections

    # Which Debian package each placed file is from: a redirection is
    # claimed only for readers whose package honours the variable.
    readers = {
        p.path: package_of(plan.entries[p.entry])
        for p in plan.files.values()
        if p.entry is not None and p.entry in plan.entries
    }
    result.compiled_paths = redirections(launch, _compiled_paths(plan), readers)
    result.notes += launch.notes
    old = read_manifest(where) or {}
    old_files: dict[str, dict[str, Any]] = old.get("files", {})
    same_mode = old.get("link_mode", "auto") == link_mode

    # Check everything before changing anything: a path cpk did not put in
    # WHERE is the user's, and is never overwritten.
    for rel in sorted(plan.files):
        full = where / rel
        if rel not in old_files and os.path.lexists(full) and not _same(full, plan.files[rel]):
            raise CpkError(f"{full}: exists and was not installed by cpk; move it away first")

    # A crash from here on leaves files the manifest must still own: record
    # the union first, then change files, then record the result.
    union = dict(old_files)
    union.update({rel: p.row() for rel, p in plan.files.items()})
    _write_manifest(where, {**old, "files": union, "installed": old.get("installed", [])}, None)

    made: set[Path] = set()
    for rel in sorted(plan.files, key=lambda r: (r.count("/"), r)):
        p = plan.files[rel]
        if same_mode and rel in old_files and old_files[rel] == p.row() and _same(where / rel, p):
            continue
        how = _put(where, p, link_mode, made)
        result.placed[how] = result.placed.get(how, 0) + 1
        result.changed = True
    for rel in sorted(set(old_files) - set(plan.files), reverse=True):
        try:
            os.unlink(where / rel)
        except FileNotFoundError:
            pass
        result.changed = True
        _prune_dirs(where, os.path.dirname(rel))
    steps_made = _post_install(where, launch, old, result)

    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": "envdir",
        "installed": [
            {
                "request": e.name,
                "entry": e.dirname,
                "name": e.name,
                "version": e.version,
                "executables": _provided(e, "PATH"),
            }
            for e in requests
        ],
        "entries": _entries_section(store, plan, requests),
        "files": {rel: p.row() for rel, p in sorted(plan.files.items())},
        "libs": [str(p) for p in libs],
        "system_libs": system_libs,
        "system": sorted(set(result.system)),
        "python_tools": [t.row() for t in tools],
        "link_mode": link_mode,
        "with_docs": with_docs,
        "post_install": steps_made,
    }
    if manifest != old:
        result.changed = True
    _write_manifest(where, manifest, store, root)
    return result


def _entries_section(store: Store, plan: _Plan, requests: list[Entry]) -> dict[str, Any]:
    names = {p.entry for p in plan.files.values() if p.entry} | {e.dirname for e in requests}
    out = {}
    for name in sorted(names):
        entry = store.entry(name)
        if entry is None:
            continue
        meta = entry.metadata
        out[name] = {
            "name": entry.name,
            "version": entry.version,
            "content_hash": meta.get("content_hash"),
            "provides": {k: v for k, v in meta.get("provides", {}).items() if k != "sonames"},
            "requires": meta.get("requires", []),
        }
    return out


def _same(full: Path, p: _Placement) -> bool:
    try:
        if p.kind in ("file", "generated"):
            if os.path.islink(full):
                return False
            return hash_file(full)[0] == p.sha256
        return os.path.islink(full) and os.readlink(full) == p.source
    except OSError:
        return False


def _put(where: Path, p: _Placement, link_mode: str = "auto", made: set[Path] | None = None) -> str:
    """Place one file or link atomically: build beside it, then rename; say how.

    Where nothing is in the way (a fresh WHERE), the file or link is made
    in place: the manifest already owns the path (it is written first), so
    a crash leaves nothing the next install would not replace. Not
    fsynced: a profile's generation is flushed whole before it is
    published, and a plain WHERE is rebuilt by installing again. ``made``
    remembers the directories already there, one mkdir each.
    """
    dest = where / p.path
    if made is None or dest.parent not in made:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(dest.parent)
    if p.kind == "generated":
        return _put_generated(dest, p.source)
    if not os.path.lexists(dest):
        if p.kind == "file":
            return place_file(Path(p.source), dest, link_mode)
        os.symlink(p.source, dest)
        return "symlink"
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    if p.kind == "file":
        how: list[str] = []
        replace_path(
            dest, lambda tmp: how.append(place_file(Path(p.source), tmp, link_mode)), durable=False
        )
        return how[0]
    replace_symlink(dest, p.source, durable=False)
    return "symlink"


def _put_generated(dest: Path, text: str) -> str:
    """A file cpk writes (a launcher): executable, read-only like placed files."""
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    write_atomic(dest, text, durable=False, mode=0o555, exact_mode=True)
    return "generated"


def _launchers(plan: _Plan) -> Any:
    """Launchers for programs with compiled-in lookups the table redirects
    (:mod:`contentpkg.elf.launchers`), added to the plan."""
    from contentpkg.elf.launchers import plan_for_envdir, text_sha256

    launch = plan_for_envdir(plan.files, plan.entries)
    for old, new in launch.moves.items():
        moved = plan.files.pop(old)
        moved.path = new
        plan.files[new] = moved
    for rel, target in launch.links.items():
        _add_link(plan, rel, target, None)
    for rel, text in launch.scripts.items():
        plan.files[rel] = _Placement(rel, "generated", text, None, None, text_sha256(text))
    return launch


def _post_install(where: Path, launch: Any, old: dict[str, Any], result: InstallResult) -> Any:
    """Run the table's post-install steps in WHERE once its files are placed."""
    from contentpkg.elf.launchers import run_steps

    made, notes = run_steps(where, launch.steps, old.get("post_install") or {}, result.changed)
    result.notes += notes
    return made


#: How ``cpk install --link-mode`` places files (uv's ``--link-mode``):
#: ``auto`` reflinks where the file system can, else hard-links, else copies;
#: ``reflink`` and ``copy`` give WHERE inodes of its own (a reflink falls back
#: to a copy); ``hardlink`` shares the store's read-only inodes; ``symlink``
#: links data and libraries to the store (programs stay real files, since the
#: loader takes a program's ``$ORIGIN`` from its real path).
LINK_MODES = ("auto", "reflink", "hardlink", "copy", "symlink")


def check_link_mode(mode: str) -> str:
    mode = {"clone": "reflink"}.get(mode, mode)
    if mode not in LINK_MODES:
        raise CpkError(f"--link-mode {mode!r}: not one of {', '.join(LINK_MODES)}")
    return mode


def _compiled_paths(plan: _Plan) -> list[tuple[str, list[str], str]]:
    """The packaged files WHERE's ELF files name by absolute path (see
    :mod:`contentpkg.elf.compiled`)."""
    from contentpkg.elf.compiled import find_compiled_paths

    elf_files: dict[str, tuple[str, str]] = {}  # store file -> (shown as, entry)
    for p in plan.files.values():
        if p.kind == "link" or p.entry is None or p.entry_path is None:
            continue
        entry = plan.entries.get(p.entry)
        if entry is None or p.entry_path not in entry.metadata.get("elf", {}):
            continue
        elf_files.setdefault(p.source, (p.path, p.entry))
    packaged: set[str] = set()
    for entry in plan.entries.values():
        packaged.update(_records(entry))
    return find_compiled_paths(elf_files, packaged)


def _symlink_data(plan: _Plan) -> None:
    """``--link-mode symlink``: every placed non-executable file becomes a link
    to its store file; executables (programs, helpers) stay real files."""
    for rel, p in list(plan.files.items()):
        if p.kind == "file" and not os.stat(p.source).st_mode & stat.S_IXUSR:
            plan.files[rel] = _Placement(rel, "extern", p.source, p.entry, p.entry_path)


def place_file(src: Path, dest: Path, mode: str = "auto") -> str:
    """Place src at dest as mode asks (:data:`LINK_MODES`); say how it went.

    A reflink shares blocks but not the inode, so a user who edits the file
    cannot corrupt the store; a hard link shares the (read-only) inode; a
    copy is for other filesystems, or for a WHERE that must share nothing.
    """
    if mode == "copy":
        _copy(src, dest)
        return "copy"
    if mode in ("auto", "reflink", "symlink") and _reflink(src, dest):
        return "reflink"
    if mode in ("auto", "hardlink", "symlink"):
        try:
            os.link(src, dest)
            return "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
    _copy(src, dest)
    return "copy"


def _copy(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)
    os.chmod(dest, os.stat(src).st_mode & 0o555)


#: (device of the store file, device of WHERE) pairs whose file system
#: cannot clone: asked once per process, not once per file (an attempt costs
#: two opens and an unlink; an env dir has thousands of files).
_NO_REFLINK: set[tuple[int, int]] = set()


#: Directory -> its file system's device, asked once per directory: placing
#: a large closure would otherwise stat two paths for every file.
_DEVICES: dict[Path, int] = {}


def _device(directory: Path) -> int:
    dev = _DEVICES.get(directory)
    if dev is None:
        dev = _DEVICES[directory] = os.stat(directory).st_dev
    return dev


def _reflink(src: Path, dest: Path) -> bool:
    """Clone src's blocks into a new dest (FICLONE); False where unsupported."""
    try:
        devices = (_device(src.parent), _device(dest.parent))
    except OSError:
        return False
    if devices in _NO_REFLINK:
        return False
    try:
        with open(src, "rb") as fi:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.ioctl(fd, _FICLONE, fi.fileno())
            except OSError as exc:
                os.close(fd)
                os.unlink(dest)
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL):
                    _NO_REFLINK.add(devices)
            else:
                os.close(fd)
                os.chmod(dest, os.stat(src).st_mode & 0o555)
                return True
    except OSError:
        if os.path.lexists(dest):
            os.unlink(dest)
    return False


def _prune_dirs(where: Path, rel_dir: str) -> None:
    while rel_dir and rel_dir != ".":
        try:
            os.rmdir(where / rel_dir)
        except OSError:
            return
        rel_dir = os.path.dirname(rel_dir)


def _write_manifest(
    where: Path, manifest: dict[str, Any], store: Store | None, root: bool = True
) -> None:
    meta = where / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    # Durable: after a crash the manifest is how cpk knows which files in
    # WHERE are its own to replace.
    # Compact: json's C encoder serves only unindented output, and a large
    # closure's manifest took most of a second to indent.
    write_atomic(
        meta / MANIFEST, json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n"
    )
    if store is None:
        return
    from contentpkg.store.gc import add_root, write_refs

    names = set(manifest.get("entries", {}))
    views = []
    for tool in manifest.get("python_tools", []):
        names.update(tool.get("entries", []))
        views.append(tool["view"])
    entries = [e for e in (store.entry(n) for n in sorted(names)) if e is not None]
    write_refs(meta / "refs", entries)
    # The views Python tools run in: gc keeps them while this env dir lists
    # them, so the list is as durable as a root.
    write_atomic(meta / "views", "".join(f"{v}\n" for v in views))
    if not root:
        return
    # The root is named by WHERE's path, so re-installing reuses it and gc
    # prunes it once WHERE is gone.
    key = hashlib.sha256(str(where).encode()).hexdigest()[:16]
    add_root(store, f"envdir-{key}", where)
