"""Bytecode: compiled into an entry once per interpreter version, never at import.

Entries are immutable, so their ``.pyc`` files are unchecked-hash (PEP 552):
the interpreter trusts them without a stat of the source, and nothing needs
to be written at import time, which matters because entries are read-only
and ``PYTHONDONTWRITEBYTECODE`` is common. ``__pycache__`` is excluded from
the content hash, so compiling does not change what an entry *is*.

Each entry records the cache tags it has been compiled for as marker files
under its ``.cpk/`` directory, so asking again costs one ``stat``.
Compilation runs under the entry's lock, so concurrent callers (two views
built at once) compile once, and the directories it must write into are
made writable only for that time.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import py_compile
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.fs import sync_filesystem
from contentpkg.store.entry import Entry
from contentpkg.store.hashing import META_DIR
from contentpkg.store.layers import Store
from contentpkg.store.locks import collector_lock, entry_lock

if TYPE_CHECKING:
    from contentpkg.python.interpreter import InterpreterInfo

SITE_PACKAGES = "site-packages"
PYCACHE = "__pycache__"
_MARKER_PREFIX = "bytecode-"


@dataclass(frozen=True)
class _Target:
    """The interpreter to compile for; executable None means this process."""

    cache_tag: str
    executable: str | None


def bytecode_marker(entry: Entry, cache_tag: str) -> Path:
    """The file whose presence says the entry is compiled for cache_tag."""
    return entry.path / META_DIR / f"{_MARKER_PREFIX}{cache_tag}"


def compiled_tags(entry: Entry) -> list[str]:
    """Cache tags the entry has bytecode for."""
    try:
        names = os.listdir(entry.path / META_DIR)
    except OSError:
        return []
    return sorted(n.removeprefix(_MARKER_PREFIX) for n in names if n.startswith(_MARKER_PREFIX))


def ensure_bytecode(store: Store, entry: Entry, python: Any = None) -> bool:
    """Make sure the entry's site-packages is compiled for an interpreter.

    ``python`` is None for the running interpreter, a path to another one,
    or an object with ``cache_tag`` and ``executable`` attributes and
    optionally ``magic_number`` (an :class:`InterpreterInfo`, as the
    interpreter probe reports). Returns True when the entry holds bytecode
    for that interpreter on return, compiled now or before; False when it
    cannot, because the entry is in a read-only layer or on a read-only
    filesystem (imports then compile in memory: slower, still correct).
    Files that do not compile (some wheels ship Python 2 test files) are
    skipped, as pip skips them.
    """
    target = _target(python)
    if target is None:
        return False  # an implementation without bytecode caching
    marker = bytecode_marker(entry, target.cache_tag)
    if os.path.exists(marker):
        return True
    if not entry.layer.writable:
        return False
    root = store.user.root
    # Shared collector lock: gc must not sweep the entry while we write in it.
    with collector_lock(root), entry_lock(root, entry.dirname):
        if os.path.exists(marker):
            return True  # a concurrent caller did it while we waited
        if not entry.path.is_dir():
            raise CpkError(f"{entry.dirname}: entry is no longer in the store")
        try:
            skipped = _compile_entry(entry, target)
            _write_marker(entry, marker, target, skipped)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
                return False
            raise CpkError(f"{entry.dirname}: cannot write bytecode ({exc})") from None
    return True


# --- which interpreter ----------------------------------------------------------


def _target(python: Any) -> _Target | None:
    own_tag = sys.implementation.cache_tag
    if python is None:
        return _Target(own_tag, None) if own_tag else None
    if isinstance(python, str | os.PathLike):
        python = _facts(python)
    executable = getattr(python, "executable", None) or getattr(python, "path", None)
    executable = os.fspath(executable) if executable else None
    if hasattr(python, "cache_tag"):
        tag = python.cache_tag  # None: that interpreter caches no bytecode
        magic = getattr(python, "magic_number", None)
    elif executable is not None:
        facts = _facts(executable)
        tag, magic = facts.cache_tag, facts.magic_number
    else:
        raise CpkError(f"{python!r}: neither a cache tag nor an interpreter to ask")
    if not tag:
        return None
    # Same tag and bytecode format: this process writes exactly what the
    # other interpreter would, without starting it.
    if tag == own_tag and (magic is None or magic == importlib.util.MAGIC_NUMBER.hex()):
        return _Target(tag, None)
    if executable is None:
        raise CpkError(f"cannot compile bytecode for {tag}: no interpreter given to run")
    return _Target(tag, executable)


def _facts(python: str | os.PathLike[str]) -> InterpreterInfo:
    """The interpreter probe's answer (asked once per binary, then cached)."""
    from contentpkg.python.interpreter import interpreter_info

    return interpreter_info(python)


# --- compiling -------------------------------------------------------------------


def _source_dirs(site: Path) -> list[Path]:
    """Directories under site holding .py files (where __pycache__ goes)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames[:] = [d for d in dirnames if d != PYCACHE]
        if any(f.endswith(".py") for f in filenames):
            found.append(Path(dirpath))
    return found


def _compile_entry(entry: Entry, target: _Target) -> list[str]:
    """Compile site-packages; returns the files skipped as uncompilable.

    Every directory written into is made writable for the duration and
    given its mode back afterwards, whatever happens in between.
    """
    site = entry.path / SITE_PACKAGES
    if not site.is_dir():
        return []
    dirs = _source_dirs(site)
    restore: list[tuple[Path, int]] = []
    try:
        for d in dirs:
            _open_dir(d, restore)
            cache = d / PYCACHE
            if cache.is_dir() and not cache.is_symlink():
                _open_dir(cache, restore)  # left over by an interrupted run
        if target.executable is None:
            skipped = _compile_here(site, dirs, target.cache_tag)
        else:
            skipped = _compile_with(target.executable, site, entry)
        # Durable before the marker claims it: an unchecked-hash .pyc is
        # trusted blindly, so a torn one must never be marked as done.
        sync_filesystem(entry.path)
        return skipped
    finally:
        _seal_caches(dirs, restore)


def _open_dir(path: Path, restore: list[tuple[Path, int]]) -> None:
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    if mode & 0o700 != 0o700:
        os.chmod(path, mode | 0o700)
        restore.append((path, mode))


def _seal_caches(dirs: list[Path], restore: list[tuple[Path, int]]) -> None:
    """Make new bytecode read-only like the rest, then close what was opened.

    Errors are ignored here so that they never hide the one that brought
    us here; a directory left writable is harmless to the content hash.
    """
    for d in dirs:
        cache = d / PYCACHE
        try:
            if cache.is_symlink() or not cache.is_dir():
                continue
            for name in os.listdir(cache):
                full = cache / name
                if not full.is_symlink():
                    os.chmod(full, 0o444)
            os.chmod(cache, 0o555)
        except OSError:
            pass
    for path, mode in reversed(restore):
        try:
            os.chmod(path, mode)
        except OSError:
            pass


def _compile_here(site: Path, dirs: list[Path], cache_tag: str) -> list[str]:
    """Compile in this process with explicit output paths.

    ``compileall`` would place files through ``cache_from_source``, which
    honours ``PYTHONPYCACHEPREFIX`` and could send them out of the entry;
    py_compile with ``cfile`` writes exactly where imports will look, and
    (unlike imports) ignores ``PYTHONDONTWRITEBYTECODE``.
    """
    skipped = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            source = d / name
            if not name.endswith(".py") or not source.is_file():
                continue
            cfile = d / PYCACHE / f"{name[:-3]}.{cache_tag}.pyc"
            try:
                py_compile.compile(
                    str(source),
                    cfile=str(cfile),
                    doraise=True,
                    optimize=0,  # not this process's -O level: the name says plain
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
            except py_compile.PyCompileError:
                skipped.append(source.relative_to(site).as_posix())
    return skipped


def _compile_with(executable: str, site: Path, entry: Entry) -> list[str]:
    """Compile with another interpreter, which alone knows its bytecode.

    ``-I`` ignores PYTHONDONTWRITEBYTECODE and PYTHONPYCACHEPREFIX, so the
    files land in ``__pycache__`` inside the entry. compileall exits 1 when
    some files did not compile (syntax errors), which is not a failure here.
    """
    cmd = [
        executable,
        "-I",
        "-m",
        "compileall",
        "-q",
        "-f",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(site),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CpkError(f"{executable}: cannot run it to compile bytecode ({exc})") from None
    if proc.returncode not in (0, 1):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CpkError(f"{entry.dirname}: compiling with {executable} failed ({tail})")
    prefix = "*** Error compiling '"
    return [
        os.path.relpath(line[len(prefix) :].rsplit("'", 1)[0], site)
        for line in proc.stdout.splitlines()
        if line.startswith(prefix)
    ]


def _write_marker(entry: Entry, marker: Path, target: _Target, skipped: list[str]) -> None:
    """Record the cache tag as done, atomically (rename of a finished file)."""
    meta_dir = entry.path / META_DIR
    restore: list[tuple[Path, int]] = []
    try:
        _open_dir(meta_dir, restore)
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
        body = {"cache_tag": target.cache_tag, "skipped": sorted(skipped)}
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.chmod(tmp, 0o444)
        os.replace(tmp, marker)
    finally:
        for path, mode in restore:
            try:
                os.chmod(path, mode)
            except OSError:
                pass


def ensure_bytecode_many(
    store: Store, entries: Sequence[Entry], python: Any = None, jobs: int | None = None
) -> None:
    """:func:`ensure_bytecode` for many entries, on every core.

    Compiling is CPU-bound and holds the GIL, so the work is spread over
    worker processes (spawned, not forked: the caller may hold HTTP threads),
    largest entries first so no core idles at the end. Entries already done
    cost one stat each and never start a worker.
    """
    target = _target(python)
    if target is None:
        return
    todo = [
        e
        for e in entries
        if e.layer.writable and not os.path.exists(bytecode_marker(e, target.cache_tag))
    ]
    jobs = min(jobs or os.cpu_count() or 1, len(todo))
    if jobs <= 1:
        for entry in todo:
            ensure_bytecode(store, entry, python)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    todo.sort(key=lambda e: e.size, reverse=True)
    executable = getattr(python, "executable", None) if python is not None else None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        list(pool.map(_ensure_in_worker, [str(e.path) for e in todo], [executable] * len(todo)))


def _ensure_in_worker(entry_path: str, executable: str | None) -> bool:
    """Run in a worker process: find the entry again and compile it."""
    from contentpkg.store import Store

    store = Store.open(Path(entry_path))
    found = store.containing(Path(entry_path))
    if found is None:
        raise CpkError(f"{entry_path}: entry is no longer in the store")
    return ensure_bytecode(store, found[0], executable)
