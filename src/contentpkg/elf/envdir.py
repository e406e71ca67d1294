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
- ``share/``: the packages' man pages, documentation, translations, data.
- ``.cpk/manifest.json``: every file's back-reference (entry, path in the
  entry, sha256), the installed requests, and what each entry provides;
  ``.cpk/refs`` lists the entries, so gc keeps them while WHERE exists.

Files are placed by reflink, else hard link, else copy: WHERE never points
into the store, so ``cp -a``, ``cp -rL`` and ``tar`` of WHERE work after
the entries are collected; a library found in a ``--libs`` env dir is the
exception, reached by a symlink as the user asked. glibc's own libraries
come from the system, as manylinux does.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contentpkg.elf.versions import newest_first
from contentpkg.errors import CpkError, MissingLibraryError
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
        for entry in store.entries():
            try:
                meta = entry.metadata
            except CpkError:
                continue
            if meta.get("kind") != "elf":
                continue
            for soname, rel in (meta.get("provides", {}).get("sonames") or {}).items():
                self.by_soname.setdefault(soname, []).append((entry, rel))
            deb = meta.get("deb") or {}
            for pkg in [deb.get("package"), entry.name]:
                if pkg:
                    self.by_package.setdefault(pkg, []).append(entry)

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
        found = self.candidates(soname, arch)
        if not found:
            return None
        rank = {e.dirname: i for i, e in enumerate(prefer)}
        preferred = [c for c in found if c[0].dirname in rank]
        if preferred:
            return min(preferred, key=lambda c: rank[c[0].dirname])
        return newest_first(found, lambda c: c[0].version)[0]

    def dependency_entries(self, entry: Entry) -> list[Entry]:
        """Entries for the packages entry's .deb metadata depends on."""
        deb = entry.metadata.get("deb") or {}
        out: list[Entry] = []
        for group in [*deb.get("pre_depends", []), *deb.get("depends", [])]:
            for alt in group:
                name = alt[0] if isinstance(alt, list | tuple) else str(alt)
                out.extend(newest_first(self.by_package.get(name, []), lambda e: e.version))
        return out


# --- planning ------------------------------------------------------------------


@dataclass
class _Plan:
    files: dict[str, _Placement] = field(default_factory=dict)
    result: InstallResult | None = None
    missing: dict[str, set[str]] = field(default_factory=dict)  # soname -> needed by
    common: dict[str, tuple[str, str]] = field(default_factory=dict)  # soname -> (entry, rel)
    symlink_libs: bool = False


def _records(entry: Entry) -> dict[str, Any]:
    return {r.path: r for r in entry.file_records()}


def _resolve_in_entry(entry: Entry, rel: str, records: dict[str, Any]) -> str:
    for _ in range(40):
        r = records.get(rel)
        if r is None or r.kind != "l":
            return rel
        rel = os.path.normpath(os.path.join(os.path.dirname(rel), r.value))
    raise CpkError(f"{entry.dirname}: symlink loop at {rel}")


def _add_file(plan: _Plan, where: str, entry: Entry, rel: str, records: dict[str, Any]) -> None:
    real = _resolve_in_entry(entry, rel, records)
    rec = records.get(real)
    if rec is None or rec.kind not in "fx":
        raise CpkError(f"{entry.dirname}: {rel} points to {real}, which the entry lacks")
    new = _Placement(where, "file", str(entry.path / real), entry.dirname, real, rec.value)
    old = plan.files.get(where)
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
) -> _Plan:
    plan = _Plan(symlink_libs=symlink_libs)
    result = InstallResult(where=Path(), changed=False)
    plan.result = result
    providers = _Providers(store)
    libs_index = _libs_index(libs)
    programs: set[str] = set()

    for entry in requests:
        records = _records(entry)
        meta = entry.metadata
        elf = meta.get("elf", {})
        prefer = [entry, *providers.dependency_entries(entry)]
        roots: list[tuple[str, str]] = []  # (entry rel of an ELF, its private deps dir name)

        for rel in _provided(entry, "PATH"):
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
                roots.append((real, _deps_dir_name(elf[real], name)))
        if not _provided(entry, "PATH"):
            # A library package: its libraries are what was asked for.
            for soname, rel in (meta.get("provides", {}).get("sonames") or {}).items():
                _place_lib(plan, soname, entry, rel, records, None, "requested")
                roots.append((rel, ""))
        for rel in _share_files(entry):
            _add_file(plan, rel, entry, rel, records)

        for rel, deps_dir in roots:
            _closure(plan, providers, libs_index, entry, rel, deps_dir, prefer, system_libs)

    if plan.missing:
        raise _missing_error(plan.missing, providers)
    if any(p.path.startswith("lib/") for p in plan.files.values()):
        _add_link(plan, "bin/common_libs", "../lib", None)
    return plan


def _deps_dir_name(facts: dict[str, Any], fallback: str) -> str:
    m = _DEPS_DIR.search(facts.get("runpath") or "")
    return m.group(1) if m else fallback


def _share_files(entry: Entry) -> Iterable[str]:
    provides = entry.metadata.get("provides", {})
    for ns in ("MANPATH", "locale", "INFOPATH", "doc", "XDG_DATA_DIRS"):
        for rel in provides.get(ns, []) or []:
            if rel.startswith("share/"):
                yield rel


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
        where = f"bin/{private}_deps/{soname}"
        _add_link(plan, f"bin/{private}_deps/common_libs", "../../lib", None)
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
) -> None:
    """Choose and place one program's library closure.

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
        return cls(
            tool.requirement, tool.name, tool.view, tuple(tool.scripts), tuple(tool.entries)
        )

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
) -> InstallResult:
    """Install what specs name, and Python tools, into WHERE (made if missing).

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
        if not fresh and not new_tools and read_manifest(source) is not None:
            # Already there: a no-op (a profile then discards its new generation).
            result = InstallResult(where=source, changed=False)
            result.programs = [(p, e.dirname) for e in wanted for p in _bin_links(e)]
            return result
        old = read_manifest(source) or {}
        libs = list(libs) or [Path(p) for p in old.get("libs", [])]
        system_libs = system_libs or bool(old.get("system_libs"))
        result = _apply(store, where, requests, libs, system_libs, symlink_libs, have_tools, root)
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
            store, where, kept, libs, bool(manifest.get("system_libs")), False, kept_tools, root
        )
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


def _apply(
    store: Store,
    where: Path,
    requests: list[Entry],
    libs: list[Path],
    system_libs: bool,
    symlink_libs: bool = False,
    tools: list[LinkedTool] | None = None,
    root: bool = True,
) -> InstallResult:
    tools = tools or []
    plan = _plan(store, requests, libs, system_libs, symlink_libs)
    for tool in tools:
        for script in tool.scripts:
            rel = f"bin/{script}"
            if rel in plan.files:
                raise CpkError(f"{rel}: both {plan.files[rel].entry} and {tool.name} provide it")
            _add_link(plan, rel, os.path.join(tool.view, "bin", script), None, "extern")
    result = plan.result
    assert result is not None
    result.where = where
    old = read_manifest(where) or {}
    old_files: dict[str, dict[str, Any]] = old.get("files", {})

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

    for rel in sorted(plan.files, key=lambda r: (r.count("/"), r)):
        p = plan.files[rel]
        if rel in old_files and old_files[rel] == p.row() and _same(where / rel, p):
            continue
        _put(where, p)
        result.changed = True
    for rel in sorted(set(old_files) - set(plan.files), reverse=True):
        try:
            os.unlink(where / rel)
        except FileNotFoundError:
            pass
        result.changed = True
        _prune_dirs(where, os.path.dirname(rel))

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
        if p.kind == "file":
            if os.path.islink(full):
                return False
            return hash_file(full)[0] == p.sha256
        return os.path.islink(full) and os.readlink(full) == p.source
    except OSError:
        return False


def _put(where: Path, p: _Placement) -> None:
    """Place one file or link atomically: build beside it, then rename.

    Not fsynced: a profile's generation is flushed whole before it is
    published, and a plain WHERE is rebuilt by installing again.
    """
    dest = where / p.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    if p.kind == "file":
        replace_path(dest, lambda tmp: place_file(Path(p.source), tmp), durable=False)
    else:
        replace_symlink(dest, p.source, durable=False)


def place_file(src: Path, dest: Path) -> str:
    """Reflink, else hard link, else copy src to dest; say which.

    A reflink shares blocks but not the inode, so a user who edits the file
    cannot corrupt the store; a hard link shares the (read-only) inode; a
    copy is for other filesystems.
    """
    try:
        with open(src, "rb") as fi:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.ioctl(fd, _FICLONE, fi.fileno())
            except OSError:
                os.close(fd)
                os.unlink(dest)
            else:
                os.close(fd)
                os.chmod(dest, os.stat(src).st_mode & 0o555)
                return "reflink"
    except OSError:
        if os.path.lexists(dest):
            os.unlink(dest)
    try:
        os.link(src, dest)
        return "hardlink"
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
            raise
    shutil.copyfile(src, dest)
    os.chmod(dest, os.stat(src).st_mode & 0o555)
    return "copy"


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
    write_atomic(meta / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
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
