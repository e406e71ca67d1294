"""Views: virtualenv-shaped directories made of links into the store.

A view looks like a virtualenv to CPython and to every tool (``pyvenv.cfg``,
``bin/python``, ``bin/<console scripts>``, ``lib/pythonX.Y/site-packages``),
but its site-packages holds symlinks to each wheel entry's top-level names
and ``.dist-info`` directories instead of copies.

Why a farm of symlinks rather than a meta-path finder over a prebuilt index,
the other way to keep imports as cheap as a plain virtualenv's:

* Every tool that scans site-packages (``importlib.metadata``, ``pkgutil``,
  ``pkg_resources``, ``site``'s ``.pth`` processing, editors, type checkers)
  sees an ordinary directory: nothing of Python's import system is replaced.
* ``sys.path`` holds one site-packages, so an import costs one directory
  lookup whatever the number of packages, exactly as in a virtualenv.
  Following one more link per package made importing all of them 1.03-1.06x
  as long as from uv's ``.venv`` (bench/python_run.py); the view's own
  finder (:mod:`.sitefinder`, a ``FileFinder`` that lists each directory
  once instead of stat'ing it per lookup) more than makes up for it, with
  the same paths and loaders. A ``sys.path`` entry per package costs several
  times more at a few hundred packages.
* Building costs one link per top-level name (a few per package), not per
  file, and no new inode: each is a hard link to a symlink shared by every
  view (:mod:`.links`); only directories shared by several distributions (PEP 420 and
  legacy namespaces) become real directories, recursively, holding links to
  each provider's children. In those, ``__pycache__`` is merged too, one
  link per ``.pyc``, taken from the distribution whose source won (see
  :func:`link_merged`).
* A distribution with ``.data`` (scripts, data, headers) or entry-point
  scripts gets a real ``.dist-info`` directory whose ``RECORD`` names where
  the view put those files, as pip rewrites it on install; every other
  ``.dist-info`` is one link (see :func:`_write_records`).
* The files a view writes itself (``pyvenv.cfg``, scripts, those
  ``RECORD`` files, ``.cpk/``) are hard links to read-only copies in the pool,
  named by the hash of their bytes. So a view is nothing but directories
  and pool inodes, and the builder leaves its plan in the pool: a deleted
  view is made again from it by links alone (:mod:`.replay`).

A shared library's ``$ORIGIN`` is the path it was opened under, so C
extensions that find vendored libraries next to themselves (numpy's
``numpy.libs``) keep working through a linked package directory.

Views are keyed by the interpreter and the exact ordered list of entries, so
projects with equal locks share one; they are built in a staging directory
and renamed into place, so a view is whole or absent. Which view a root
reaches keeps it (and its entries) alive in ``gc``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.fs import discard, make_tmp_dir, publish_dir
from contentpkg.python.envs import replay
from contentpkg.python.envs.links import LinkPool
from contentpkg.python.envs.replay import VIEW_FORMAT, VIEWS
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.store import Entry, Store
from contentpkg.store.hashing import b32

VIEW_JSON = "view.json"
SITE = "site-packages"
PYCACHE = "__pycache__"

#: How a view makes one symlink: ``os.symlink``, or a pool's hard link to a
#: shared one (:class:`~contentpkg.python.envs.links.LinkPool`).
Symlinker = Callable[[str | os.PathLike[str], str | os.PathLike[str]], None]
#: How a view writes one file (path, bytes): in place, or as a hard link to
#: the pool's copy of those bytes (:meth:`.links.LinkPool.file`).
Writer = Callable[[Path, bytes], None]


class Conflict:
    """One path that two distributions both install, with different bytes,
    or (with a ``reason``) a script the view refused to install at all.

    A plain class, as :class:`View` is: generating a dataclass's methods
    at import costs every ``cpk run`` that builds a view more than its
    conflicts ever do."""

    __slots__ = ("loser", "path", "reason", "winner")

    def __init__(self, path: str, winner: str, loser: str, reason: str = "") -> None:
        self.path = path  # relative to site-packages (or to the prefix, for data)
        self.winner = winner  # entry dirname whose file is used: the first declared
        self.loser = loser
        self.reason = reason  # why loser's path is not installed, when no entry won

    def as_dict(self) -> dict[str, str]:
        """What ``view.json`` records, and ``Conflict(**d)`` reads back."""
        return {"path": self.path, "winner": self.winner, "loser": self.loser,
                "reason": self.reason}  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conflict) and other.as_dict() == self.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().values()))

    def __repr__(self) -> str:
        return f"Conflict({self.path!r}, {self.winner!r}, {self.loser!r}, {self.reason!r})"

    def describe(self) -> str:
        """The one warning line a user sees for it."""
        if self.reason:
            return f"{self.path} of {self.loser} is not installed: {self.reason}"
        return (
            f"{self.path} is installed by both {self.winner} and {self.loser};"
            f" using {self.winner.split(',')[0]}'s (declared first)"
        )


# The names a view's skeleton links to the interpreter, and the ones another
# interpreter would have: a package's script must never take them, or it
# would replace (in a view) or shadow (in a profile on PATH) a python.
_INTERPRETER_NAME = re.compile(r"python(\d+(\.\d+)?)?")


def script_name_problem(name: str) -> str | None:
    """Why a console or data script ``name`` cannot go into ``bin/``; None if it can."""
    if _INTERPRETER_NAME.fullmatch(name):
        return "the name belongs to the environment's interpreter"
    if name.startswith("."):
        return "a name starting with '.' would be a hidden file"
    if not name or "/" in name or "\\" in name:
        return "not a plain file name"
    return None


class View:
    """A built view: where it is, for which interpreter, of which entries."""

    __slots__ = ("conflicts", "created", "entries", "path", "python")

    def __init__(
        self,
        path: Path,
        python: InterpreterInfo,
        entries: list[str],
        conflicts: list[Conflict] | None = None,
        created: bool = False,
    ) -> None:
        self.path = path
        self.python = python
        self.entries = entries
        self.conflicts = conflicts if conflicts is not None else []
        #: Whether this call built it (another process may have, meanwhile).
        self.created = created

    def __repr__(self) -> str:
        return f"View({str(self.path)!r}, {len(self.entries)} entries)"

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def site_packages(self) -> Path:
        return self.path / self.python.site_packages

    @property
    def python_path(self) -> Path:
        return self.bin_dir / "python"


def view_key(python: InterpreterInfo, entries: Sequence[str]) -> str:
    """The name of the view of entries (ordered dirnames) for python."""
    h = hashlib.sha256(f"cpk-view-{VIEW_FORMAT}\0".encode())
    h.update(os.fsencode(python.base_executable or python.executable) + b"\0")
    h.update(python.version.encode() + b"\0")
    for dirname in entries:
        h.update(dirname.encode() + b"\0")
    return b32(h.digest())[:32]


def views_dir(store: Store) -> Path:
    return store.home / VIEWS


def find_view(store: Store, python: InterpreterInfo, entries: Sequence[str]) -> Path | None:
    """The existing view of entries, without building anything (hot path)."""
    path = views_dir(store) / view_key(python, entries)
    return path if (path / ".cpk" / VIEW_JSON).is_file() else None


def ensure_view(store: Store, entries: Sequence[Entry], python: InterpreterInfo) -> View:
    """The view of entries (first declared first) for python, built if missing.

    Concurrent builders of one view race harmlessly: each builds privately
    and renames; the loser discards its copy and uses the winner's.
    """
    names = [e.dirname for e in entries]
    final = views_dir(store) / view_key(python, names)
    meta = final / ".cpk" / VIEW_JSON
    if meta.is_file():
        return _load(final, python)
    pool = LinkPool.of(store)
    paths = [os.fspath(e.path) for e in entries]
    # Made before and deleted since: its plan makes it again by links alone.
    plan = replay.load(pool.root, final.name, paths)
    if plan is not None:
        made = replay.make(plan, pool.root, os.fspath(final))
        if made:
            conflicts = [Conflict(**c) for c in plan["conflicts"]]
            return View(final, python, names, conflicts, created=True)
        if made is not None:
            return _load(final, python)  # another process published it first
    staging: Path | None = None
    try:
        staging = make_tmp_dir(final.parent, final.name)
        conflicts = _build(staging, final, entries, python, pool)
        ops = replay.record(os.fspath(staging), pool.linked)
        # Not durable (fs's rule): a view is derived from the store and
        # rebuilt when missing, so a crash costs only a rebuild.
        created = publish_dir(staging, final, durable=False)
        if created and ops is not None:
            replay.save(pool.root, final.name, paths, ops,
                        [c.as_dict() for c in conflicts],
                        [c.describe() for c in conflicts])  # fmt: skip
    except OSError as exc:
        if not meta.is_file():
            raise CpkError(f"cannot build the view in {final.parent}: {exc}") from None
        created = False  # another process published the same view first
    finally:
        if staging is not None:
            discard(staging)
    view = _load(final, python)
    view.created = created
    if created:
        view.conflicts = conflicts
    return view


def _load(path: Path, python: InterpreterInfo) -> View:
    data = json.loads((path / ".cpk" / VIEW_JSON).read_text())
    conflicts = [Conflict(**c) for c in data.get("conflicts", [])]
    return View(path, python, list(data["entries"]), conflicts)


# --- building ---------------------------------------------------------------------


def _build(
    root: Path,
    final: Path,
    entries: Sequence[Entry],
    python: InterpreterInfo,
    pool: LinkPool,
) -> list:
    """Write the view into root; paths inside it name final (where it will live).

    Every symlink comes from the store's link pool, which shares one inode
    per target between all views (see :mod:`.links`).
    """
    symlink = pool.symlink

    def write(path: Path, data: bytes) -> None:
        pool.file(data, path)

    def write_executable(path: Path, data: bytes) -> None:
        pool.file(data, path, executable=True)

    for entry in entries:
        if entry.kind != "wheel":
            raise CpkError(f"{entry.dirname}: a {entry.kind} entry cannot be in a Python view")
    write_skeleton(root, python, prompt="cpk", symlink=symlink, write=write)
    site = root / python.site_packages
    site.mkdir(parents=True)
    conflicts: list[Conflict] = []
    link_merged(site, [(e.dirname, e.path / SITE) for e in entries], conflicts, "", symlink=symlink)
    # Which install schemes each entry has (site-packages, data, scripts,
    # headers): one listing per entry instead of a failing call per scheme.
    layout = {e.dirname: _listing(e.path) for e in entries}
    link_merged(
        root,
        [(e.dirname, e.path / "data") for e in entries if "data" in layout[e.dirname]],
        conflicts,
        "",
        skip_top={"bin", "lib", "pyvenv.cfg", ".cpk", "include"},
        symlink=symlink,
    )
    for entry in entries:
        headers = entry.path / "headers"
        if "headers" in layout[entry.dirname]:
            target = root / "include" / "site" / f"python{python.short_version}"
            target.mkdir(parents=True, exist_ok=True)
            name = entry.name
            if not (target / name).exists():
                symlink(headers, target / name)
    install_finder(site, python, pool)
    written = write_scripts(
        root / "bin",
        final / "bin" / "python",
        entries,
        root_final=final,
        dropped=conflicts,
        layout=layout,
        write=write_executable,
    )
    _write_records(root, site, entries, written, python, symlink, layout, write)
    meta = root / ".cpk"
    meta.mkdir()
    write(meta / "refs", "".join(f"{e.dirname}\n" for e in entries).encode())
    data = {
        "format": VIEW_FORMAT,
        "python": python.base_executable or python.executable,
        "version": python.version,
        "entries": [e.dirname for e in entries],
        "conflicts": [c.as_dict() for c in conflicts],
    }
    write(meta / VIEW_JSON, (json.dumps(data, indent=1) + "\n").encode())
    return conflicts


#: The module every view's interpreter loads at start, and the line that loads it.
FINDER = "_cpk_finder"
FINDER_PTH = f"import {FINDER}; {FINDER}.install(sitedir)\n"


def _listing(path: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return frozenset()


def install_finder(site: Path, python: InterpreterInfo, pool: LinkPool) -> None:
    """Put the view's import finder (:mod:`.sitefinder`) into site.

    ``site`` runs the ``.pth`` line with ``sitedir`` naming the directory it
    is adding, so the finder serves the path the interpreter actually uses
    (a project's ``.venv`` link or the view itself). The module gets
    unchecked-hash bytecode when cpk runs the view's Python version (the
    view may not be writable, and every start would compile it otherwise).
    """
    source = Path(__file__).with_name("sitefinder.py").read_bytes()
    if os.path.lexists(site / f"{FINDER}.py"):
        return  # a distribution's own module of that name: leave it
    pool.file(source, site / f"{FINDER}.py")
    if _compiles_for(python):
        cache = site / PYCACHE
        cache.mkdir(exist_ok=True)
        # Named by what it is compiled from, so a view whose pool has it
        # already links it without compiling the finder again.
        import importlib.util

        made_from = b"cpk-finder-pyc\0" + importlib.util.MAGIC_NUMBER + b"\0" + source
        pool.made_file(
            hashlib.sha256(made_from).hexdigest()[:40],
            lambda: _unchecked_pyc(source),
            cache / f"{FINDER}.{python.cache_tag}.pyc",
        )
    pool.file(FINDER_PTH.encode(), site / f"{FINDER}.pth")


def _compiles_for(python: InterpreterInfo) -> bool:
    """Whether this interpreter's bytecode is python's (same cache tag and
    magic number), so that it can compile the view's finder for it."""
    import importlib.util
    import sys

    if python.cache_tag is None or python.cache_tag != sys.implementation.cache_tag:
        return False
    return python.magic_number in (None, importlib.util.MAGIC_NUMBER.hex())


def _unchecked_pyc(source: bytes) -> bytes:
    """PEP 552 unchecked-hash bytecode of the finder's source, for this interpreter."""
    import importlib.util

    # importlib's own writer of hash-based .pyc (what py_compile uses),
    # without py_compile's detour through files.
    from importlib._bootstrap_external import _code_to_hash_pyc  # type: ignore[attr-defined]

    code = compile(source, f"{FINDER}.py", "exec", dont_inherit=True)
    return bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False))


def write_skeleton(
    root: Path,
    python: InterpreterInfo,
    prompt: str,
    symlink: Symlinker = os.symlink,
    write: Writer | None = None,
) -> None:
    """``pyvenv.cfg`` and ``bin/python*``: what makes CPython treat root as a venv.

    ``home`` is the real installation's bin directory (where CPython finds
    its standard library, as venv writes it); the interpreter links point at
    the real binary, so ``sys.executable`` is the view's ``bin/python`` and a
    subprocess started with it lands in the same environment.
    """
    base = python.base_executable or python.executable
    version = ".".join(map(str, python.version_info))
    (write or _write_file)(
        root / "pyvenv.cfg",
        (
            f"home = {os.path.dirname(base)}\n"
            "include-system-site-packages = false\n"
            f"version = {version}\n"
            f"executable = {base}\n"
            f"prompt = {prompt}\n"
        ).encode(),
    )
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    major = python.version_info[0]
    for name in ("python", f"python{major}", f"python{python.short_version}"):
        symlink(base, bin_dir / name)


def link_merged(
    dest: Path,
    providers: Sequence[tuple[str, Path]],
    conflicts: list[Conflict],
    prefix: str,
    skip_top: Iterable[str] = (),
    symlink: Symlinker = os.symlink,
) -> None:
    """Fill dest with links to the children of each provider directory.

    A name only one provider has becomes one symlink (a whole package in
    one link); a directory several providers have becomes a real directory,
    merged recursively; a file several have goes to the first provider, and
    a differing copy is recorded as a conflict.

    ``__pycache__`` is the exception: it is derived from the sources beside
    it, so it is never a conflict, and each ``.pyc`` must come from the
    provider whose source is linked. Every entry compiles its own copy of a
    shared file (a pkgutil-style ``__init__.py`` in each portion), and those
    differ in ``co_filename`` alone: reporting them would warn about files
    no one wrote, and taking a ``.pyc`` from another provider than its
    source's would run the wrong code, because the entries' bytecode is
    unchecked-hash (PEP 552) and never compared with the source.
    """
    skip = set(skip_top)
    # Paths as strings until a name turns out shared: most names have one
    # provider and need only a link, and a pathlib join per name is most of
    # the Python time of a view of hundreds of small packages.
    children: dict[str, list[tuple[str, str]]] = {}
    for owner, directory in providers:
        base = os.fspath(directory)
        try:
            names = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name in skip or (not prefix and name == ".cpk"):
                continue
            children.setdefault(name, []).append((owner, f"{base}/{name}"))
    owners: dict[str, str] = {}  # file name -> the provider whose copy is linked
    into = os.fspath(dest)
    for name in sorted(children):
        if name == PYCACHE:
            continue  # after the sources, whose owners it needs
        if len(children[name]) == 1:
            owner, path = children[name][0]
            symlink(path, f"{into}/{name}")
            owners[name] = owner
            continue
        found = [(o, Path(p)) for o, p in children[name]]
        target = dest / name
        dirs = [(o, p) for o, p in found if p.is_dir() and not p.is_symlink()]
        if len(dirs) == len(found):
            target.mkdir()
            link_merged(target, dirs, conflicts, f"{prefix}{name}/", symlink=symlink)
            continue
        first_owner, first = found[0]
        symlink(first, target)
        owners[name] = first_owner
        for owner, other in found[1:]:
            if not _same_file(first, other):
                conflicts.append(Conflict(f"{prefix}{name}", first_owner, owner))
    caches = [
        (o, Path(p))
        for o, p in children.get(PYCACHE, ())
        if os.path.isdir(p) and not os.path.islink(p)
    ]
    if caches:
        _link_bytecode(dest / PYCACHE, caches, owners, symlink)


def _link_bytecode(
    dest: Path,
    caches: Sequence[tuple[str, Path]],
    owners: dict[str, str],
    symlink: Symlinker = os.symlink,
) -> None:
    """A real ``__pycache__`` of links, each ``.pyc`` from its source's owner.

    ``mod.cpython-311.pyc`` and ``mod.cpython-311.opt-1.pyc`` belong to
    ``mod.py``; a ``.pyc`` whose source's owner did not compile it is left
    out (the import compiles in memory: slower, still the right code), and
    one without a source here goes to the first provider.
    """
    dest.mkdir()
    for owner, directory in caches:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            source = name.split(".", 1)[0] + ".py"
            if owners.get(source, owner) != owner or os.path.lexists(dest / name):
                continue
            symlink(directory / name, dest / name)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.is_dir() or b.is_dir():
            return False
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def shebang(python: Path) -> bytes:
    """The first line(s) that run a script with python.

    Linux truncates a ``#!`` line at 127 bytes and splits it at spaces, so a
    long or spaced interpreter path goes through ``/bin/sh``, the trick pip
    and installer use.
    """
    path = os.fsencode(python)
    if len(path) + 2 <= 127 and b" " not in path:
        return b"#!" + path + b"\n"
    import shlex

    quoted = shlex.quote(os.fsdecode(path)).encode()
    return b"#!/bin/sh\n'''exec' " + quoted + b' "$0" "$@"\n' + b"' '''\n"


def launcher(python: Path, module: str, attr: str) -> bytes:
    """A console or GUI script for entry point ``module:attr``.

    Written here rather than with installer's Script: importing the
    installer package loads its whole install machinery (21 ms measured),
    on every view built, for these few lines, which are the ones pip and
    installer write.
    """
    return (
        shebang(python)
        + (
            "# -*- coding: utf-8 -*-\n"
            "import re\n"
            "import sys\n"
            f"from {module} import {attr.split('.')[0]}\n"
            'if __name__ == "__main__":\n'
            '    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])\n'
            f"    sys.exit({attr}())\n"
        ).encode()
    )


def write_scripts(
    bin_dir: Path,
    python: Path,
    entries: Sequence[Entry],
    root_final: Path | None = None,
    dropped: list[Conflict] | None = None,
    layout: dict[str, frozenset[str]] | None = None,
    write: Writer | None = None,
) -> dict[str, list[str]]:
    """Console and GUI scripts of the entries, and their data-scheme scripts.

    Scripts name the view's interpreter by absolute path (the view does not
    move); the first entry to claim a name wins, as on PATH, and no package
    may replace ``python`` itself (:func:`script_name_problem`). Returns the
    names each entry (by dirname) wrote, which its ``RECORD`` in the view
    then lists; every script not written is added to ``dropped``, so the
    caller can say so instead of leaving a declared command missing.
    """
    owners = {p.name: "" for p in bin_dir.iterdir()}
    written: dict[str, list[str]] = {}
    write_executable = write or _write_executable

    def claim(entry: Entry, name: str) -> bool:
        problem = script_name_problem(name)
        owner = owners.get(name)
        if problem is None and owner is None:
            owners[name] = entry.dirname
            return True
        if dropped is not None:
            if problem is not None:
                dropped.append(Conflict(f"bin/{name}", "", entry.dirname, problem))
            elif owner:
                dropped.append(Conflict(f"bin/{name}", owner, entry.dirname))
        return False

    for entry in entries:
        mine = written.setdefault(entry.dirname, [])
        meta = entry.metadata.get("python") or {}
        points = meta.get("entry_points") or {}
        for group in ("console_scripts", "gui_scripts"):
            for name, value in sorted((points.get(group) or {}).items()):
                module, _, attr = str(value).partition(":")
                attr = attr.split("[")[0].strip()
                if not attr or not claim(entry, name):
                    continue
                write_executable(bin_dir / name, launcher(python, module.strip(), attr))
                mine.append(name)
        scripts = entry.path / "scripts"
        if ("scripts" in layout[entry.dirname]) if layout is not None else scripts.is_dir():
            for path in sorted(scripts.iterdir()):
                if not path.is_file() or not claim(entry, path.name):
                    continue
                data = path.read_bytes()
                # The wheel spec's "#!python" marks a script to be pointed
                # at the environment's interpreter on install.
                if data.startswith((b"#!python", b"#!/usr/bin/env python")):
                    data = shebang(python) + data[data.index(b"\n") + 1 :]
                write_executable(bin_dir / path.name, data)
                mine.append(path.name)
    return written


def _write_records(
    root: Path,
    site: Path,
    entries: Sequence[Entry],
    written: dict[str, list[str]],
    python: InterpreterInfo,
    symlink: Symlinker = os.symlink,
    layout: dict[str, frozenset[str]] | None = None,
    write: Writer | None = None,
) -> None:
    """Make ``RECORD`` name the files where the view installed them.

    A wheel's RECORD lists ``<name>-<ver>.data/scripts/x``; an installed
    distribution's lists ``../../../bin/x`` (pip and installer rewrite it),
    and ``importlib.metadata.files()``, ``pip show -f`` and uninstallers
    resolve those rows against site-packages. The entry keeps the wheel's
    RECORD (it is what the wheel said), so the view gives each distribution
    that has ``.data`` or entry-point scripts a real ``.dist-info`` of links
    with a rewritten RECORD: purelib/platlib rows become site-packages
    paths, scripts ``bin/``, data the prefix, headers ``include/site``,
    and the generated console/GUI scripts are added, as pip adds them.
    Only those distributions pay for it, a few files each.
    """
    for entry in entries:
        meta = entry.metadata.get("python") or {}
        dist_info = meta.get("dist_info")
        mine = written.get(entry.dirname, [])
        has = layout[entry.dirname] if layout is not None else _listing(entry.path)
        schemes = [d for d in ("scripts", "data", "headers") if d in has]
        if not dist_info or not (schemes or mine):
            continue
        link = site / dist_info
        source = entry.path / SITE / dist_info
        if not link.is_symlink() or os.readlink(link) != os.fspath(source):
            continue  # another distribution's dist-info won the name
        try:
            text = (source / "RECORD").read_text(encoding="utf-8")
            rows = _record_rows(text)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        data_dir = dist_info[: -len(".dist-info")] + ".data/"
        headers = root / "include" / "site" / f"python{python.short_version}" / entry.name
        out: list[str] = []
        listed: set[str] = set()
        for line, path in rows:
            if path == f"{dist_info}/RECORD":
                continue
            if not path.startswith(data_dir):
                out.append(line)  # as the wheel wrote it: most rows of a big RECORD
                continue
            row = _record_fields(line)
            scheme, _, rest = path[len(data_dir) :].partition("/")
            if scheme in ("purelib", "platlib"):
                out.append(_record_line([rest, *row[1:]]))
            elif scheme == "scripts":
                if rest in mine:  # else an earlier entry's script has the name
                    out.append(_record_line(_row(root / "bin" / rest, site)))
                    listed.add(rest)
            elif scheme == "data":
                out.append(_record_line([os.path.relpath(root / rest, site), *row[1:]]))
            elif scheme == "headers":
                out.append(_record_line([os.path.relpath(headers / rest, site), *row[1:]]))
        out += [_record_line(_row(root / "bin" / n, site)) for n in mine if n not in listed]
        out.append(_record_line([f"{dist_info}/RECORD", "", ""]))
        link.unlink()
        link.mkdir()
        for child in sorted(os.listdir(source)):
            if child != "RECORD":
                symlink(source / child, link / child)
        (write or _write_file)(link / "RECORD", "".join(f"{line}\n" for line in out).encode())


# RECORD is CSV, but a view rewrites only its few ``.data`` rows and adds
# its scripts: the thousands of other rows of a big distribution (numpy,
# botocore) are copied as written. Read and written again through ``csv``
# they were most of the time a view with such distributions took to build.
# A row is kept as its own CSV text; only a RECORD with a quote character
# (a path with a comma or a quote in it) is read through ``csv`` as a whole.


def _record_rows(text: str) -> list[tuple[str, str]]:
    """Each row of a RECORD as (its CSV text on one line, its path)."""
    if '"' not in text:
        # No quotes: no field holds a comma or a line break, so each line
        # is one row, and its path is the text before the first comma. Lines
        # end where csv ends them (\n, \r\n, \r), not at every character
        # str.splitlines() takes for one (\x85, \u2028 may be in a name).
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return [(line, line.partition(",")[0]) for line in text.split("\n") if line]
    import csv
    import io

    try:
        return [(_record_line(row), row[0]) for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


def _record_fields(line: str) -> list[str]:
    """The fields of one row's CSV text, as :func:`_record_rows` gave it."""
    if '"' not in line:
        return line.split(",")
    import csv

    return next(csv.reader([line]))


def _record_line(fields: Sequence[str]) -> str:
    """One RECORD row as ``csv.writer`` writes it (quotes only where needed)."""
    if not any(c in f for f in fields for c in ',"\r\n'):
        return ",".join(fields)
    import csv
    import io

    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(fields)
    return text.getvalue()[:-1]


def _row(path: Path, site: Path) -> list[str]:
    """A RECORD row for a file the view wrote (a script), hashed as written."""
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [os.path.relpath(path, site), f"sha256={digest}", str(len(data))]


def _write_executable(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o755)


def _write_file(path: Path, data: bytes) -> None:
    path.write_bytes(data)
