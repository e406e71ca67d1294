"""Bytecode: compiled into an entry once per interpreter version, never at import.

Entries are immutable, so their ``.pyc`` files are unchecked-hash (PEP 552):
the interpreter trusts them without a stat of the source, and nothing needs
to be written at import time, which matters because entries are read-only
and ``PYTHONDONTWRITEBYTECODE`` is common. ``__pycache__`` is excluded from
the content hash, so compiling does not change what an entry *is*.

Each entry records the cache tags it has been compiled for as marker files
under its ``.cpk/`` directory, so asking again costs one ``stat``. A marker
also holds the sha256 of every ``.pyc`` it vouches for: the bytecode is
outside the content hash but it is what runs, so ``cpk store verify``
checks it against these hashes. Compilation runs under the entry's lock, so
concurrent callers (two views built at once) compile once; the directories
it must write into are made writable only for that time and then sealed to
the store's canonical modes, which also repairs what a killed compile left
open.

Many entries are compiled by worker processes that die with cpk: each asks
the kernel for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``) and none
holds the caller's stdout or stderr, so killing cpk (SIGKILL, SIGTERM, an
OOM kill) never leaves workers behind to keep ``cpk sync | tee`` waiting.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import py_compile
import selectors
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.fs import sync_filesystem, write_atomic
from contentpkg.store.add import seal
from contentpkg.store.entry import DERIVED_RECORD_PREFIX, Entry
from contentpkg.store.hashing import META_DIR
from contentpkg.store.layers import Store
from contentpkg.store.locks import collector_lock, entry_lock

if TYPE_CHECKING:
    from contentpkg.python.interpreter import InterpreterInfo

SITE_PACKAGES = "site-packages"
PYCACHE = "__pycache__"
_MARKER_PREFIX = DERIVED_RECORD_PREFIX


@dataclass(frozen=True)
class _Target:
    """The interpreter to compile for; executable None means this process."""

    cache_tag: str
    executable: str | None


def bytecode_marker(entry: Entry, cache_tag: str) -> Path:
    """The file whose presence says the entry is compiled for cache_tag."""
    return entry.path / META_DIR / f"{_MARKER_PREFIX}{cache_tag}"


def _is_done(entry: Entry, cache_tag: str) -> bool:
    """Marked as compiled, and the marker's directory sealed after it.

    The metadata directory is the last one a compile opens and closes, so
    finding it writable means a compile died between the two: the entry is
    then sealed again on this access (one extra ``stat`` on the fast path).
    """
    try:
        mode = os.lstat(entry.path / META_DIR).st_mode
    except OSError:
        return False
    return not mode & 0o222 and os.path.exists(bytecode_marker(entry, cache_tag))


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
    if _is_done(entry, target.cache_tag):
        return True
    if not entry.layer.writable:
        return os.path.exists(marker)
    root = store.user.root
    # Shared collector lock: gc must not sweep the entry while we write in it.
    with collector_lock(root), entry_lock(root, entry.dirname):
        if not entry.path.is_dir():
            raise CpkError(f"{entry.dirname}: entry is no longer in the store")
        try:
            if not os.path.exists(marker):  # else a concurrent caller did it
                skipped = _compile_entry(entry, target)
                _write_marker(entry, marker, target, skipped)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
                return False
            raise CpkError(f"{entry.dirname}: cannot write bytecode ({exc})") from None
        finally:
            # Canonical modes, not remembered ones: a directory a killed
            # compile left open would otherwise be "restored" to writable.
            # Errors are ignored so they never hide the one that got us here;
            # verify names anything left writable.
            with contextlib.suppress(OSError, CpkError):
                seal(entry.path)
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

    Every directory written into is made writable here; the caller seals
    the whole entry afterwards, whatever happens in between.
    """
    site = entry.path / SITE_PACKAGES
    if not site.is_dir():
        return []
    dirs = _source_dirs(site)
    for d in dirs:
        _open_dir(d)
        cache = d / PYCACHE
        if cache.is_dir() and not cache.is_symlink():
            # Left over by an interrupted run. Its read-only .pyc files are
            # no obstacle (the compilers replace files by rename), but the
            # temporary files a killed compiler was writing
            # (``mod.<tag>.pyc.<number>``) are debris nobody would vouch for.
            _open_dir(cache)
            for name in os.listdir(cache):
                if not name.endswith(".pyc") and not os.path.isdir(cache / name):
                    os.unlink(cache / name)
    if target.executable is None:
        skipped = _compile_here(site, dirs, target.cache_tag)
    else:
        skipped = _compile_with(target.executable, site, entry)
    # Durable before the marker claims it: an unchecked-hash .pyc is
    # trusted blindly, so a torn one must never be marked as done.
    sync_filesystem(entry.path)
    return skipped


def _open_dir(path: Path) -> None:
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    if mode & 0o700 != 0o700:
        os.chmod(path, mode | 0o700)


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


#: compileall, run by another interpreter so that it dies with its caller, as
#: our own workers do (``PR_SET_PDEATHSIG``, then the check that the caller
#: did not die first); the rest of argv is compileall's.
_COMPILEALL = (
    "import ctypes, os, runpy, signal, sys; "
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0); "
    "os.getppid() == int(sys.argv[1]) or os._exit(1); "
    "sys.argv = ['compileall', *sys.argv[2:]]; "
    "runpy.run_module('compileall', run_name='__main__', alter_sys=True)"
)


def _compile_with(executable: str, site: Path, entry: Entry) -> list[str]:
    """Compile with another interpreter, which alone knows its bytecode.

    ``-I`` ignores PYTHONDONTWRITEBYTECODE and PYTHONPYCACHEPREFIX, so the
    files land in ``__pycache__`` inside the entry. compileall exits 1 when
    some files did not compile (syntax errors), which is not a failure here.
    """
    cmd = [
        executable,
        "-I",
        "-c",
        _COMPILEALL,
        str(os.getpid()),
        "-q",
        "-f",
        # One process: a pool of the other interpreter's would outlive a
        # killed compileall; entries are spread over our own workers instead.
        "-j",
        "1",
        "--invalidation-mode",
        "unchecked-hash",
        str(site),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
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


def _bytecode_hashes(entry: Entry, cache_tag: str) -> dict[str, str]:
    """The sha256 of every .pyc for cache_tag, by path inside the entry."""
    suffix = f".{cache_tag}.pyc"
    found = {}
    for dirpath, dirnames, filenames in os.walk(entry.path / SITE_PACKAGES):
        if os.path.basename(dirpath) != PYCACHE:
            continue
        dirnames.clear()
        for name in filenames:
            full = os.path.join(dirpath, name)
            if name.endswith(suffix) and not os.path.islink(full):
                with open(full, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                found[os.path.relpath(full, entry.path)] = digest
    return dict(sorted(found.items()))


def _write_marker(entry: Entry, marker: Path, target: _Target, skipped: list[str]) -> None:
    """Record the cache tag as done, with the bytecode's hashes, atomically."""
    _open_dir(entry.path / META_DIR)
    body = {
        "cache_tag": target.cache_tag,
        "skipped": sorted(skipped),
        "files": _bytecode_hashes(entry, target.cache_tag),
    }
    # Durable (fs's rule): the marker is part of a store entry, and says
    # the bytecode it vouches for is there.
    write_atomic(marker, json.dumps(body, indent=1) + "\n", durable=True, mode=0o444)


def ensure_bytecode_many(
    store: Store, entries: Sequence[Entry], python: Any = None, jobs: int | None = None
) -> None:
    """:func:`ensure_bytecode` for many entries, on every core.

    Compiling is CPU-bound and holds the GIL, so the work is spread over
    worker processes, largest entries first so no core idles at the end.
    Entries already done cost two stats each and never start a worker.

    The workers are plain child processes fed over pipes, not a
    ``ProcessPoolExecutor``: its workers wait forever on a queue whose
    writer is gone, and its resource tracker outlives a killed parent,
    both holding the caller's stdout and stderr. Ours die with this thread
    (``PR_SET_PDEATHSIG``), so call this from a thread that outlives the
    call (any caller does: it waits for the result).
    """
    target = _target(python)
    if target is None:
        return
    todo = [e for e in entries if e.layer.writable and not _is_done(e, target.cache_tag)]
    jobs = min(jobs or os.cpu_count() or 1, len(todo))
    if jobs <= 1:
        for entry in todo:
            ensure_bytecode(store, entry, python)
        return
    todo.sort(key=lambda e: e.size, reverse=True)
    _run_workers([(str(e.path), target.executable) for e in todo], jobs)


# --- worker processes ------------------------------------------------------------

_WORKER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from contentpkg.python.install.bytecode import _worker_main; _worker_main(int(sys.argv[2]))"
)
_PR_SET_PDEATHSIG = 1


def _run_workers(jobs_todo: list[tuple[str, str | None]], jobs: int) -> None:
    """Compile each (entry path, executable) in one of ``jobs`` workers.

    One job per worker at a time, the next sent when its answer arrives; an
    answer is one JSON line. The workers' stderr goes to a private temporary
    file (one open file shared by all, so writes append), whose last line
    explains a worker that died.
    """
    import contentpkg

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(contentpkg.__file__)))
    cmd = [sys.executable, "-c", _WORKER, package_parent, str(os.getpid())]
    pending = list(reversed(jobs_todo))  # pop() takes the largest first
    workers: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryFile() as errors, selectors.DefaultSelector() as selector:
        try:
            for _ in range(jobs):
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
                )
                workers.append(proc)
                assert proc.stdout is not None
                selector.register(proc.stdout, selectors.EVENT_READ, proc)
                _send_next(proc, pending)
            busy = len(workers)
            while busy:
                for key, _ in selector.select():
                    proc = key.data
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if not line:
                        why = _last_line(proc, errors)
                        raise CpkError(f"compiling bytecode: a worker died ({why})")
                    reply = json.loads(line)
                    if "error" in reply:
                        raise CpkError(reply["error"])
                    if not _send_next(proc, pending):
                        selector.unregister(key.fileobj)
                        busy -= 1
        finally:
            failing = sys.exc_info()[0] is not None
            for proc in workers:
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                if failing:
                    proc.kill()  # failing or interrupted: do not wait for the rest
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()


def _send_next(proc: subprocess.Popen[str], pending: list[tuple[str, str | None]]) -> bool:
    """Give proc the next job; False (and its stdin closed) when none is left."""
    assert proc.stdin is not None
    if not pending:
        proc.stdin.close()
        return False
    proc.stdin.write(json.dumps(pending.pop()) + "\n")
    proc.stdin.flush()
    return True


def _last_line(proc: subprocess.Popen[str], errors: Any) -> str:
    status = proc.wait()
    errors.seek(0)
    lines = errors.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {status}"


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies.

    The check after the request closes the race where the parent died
    before it was made (the process is then already an orphan).
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(parent: int) -> None:
    """A worker's loop: one JSON job per line on stdin, one answer each on stdout.

    Ends at end of input. A :class:`CpkError` is an answer; anything else
    is a bug and ends the worker with its traceback on stderr.
    """
    _die_with_parent(parent)
    for line in sys.stdin:
        entry_path, executable = json.loads(line)
        try:
            reply: dict[str, Any] = {"ok": _ensure_in_worker(entry_path, executable)}
        except CpkError as exc:
            reply = {"error": str(exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _ensure_in_worker(entry_path: str, executable: str | None) -> bool:
    """Run in a worker process: find the entry again and compile it.

    Only writable (user-layer) entries are sent, so the store is that layer
    alone, named by the entry's own path: the worker reads no settings.
    """
    from contentpkg.store.layers import LocalStore, Store

    root = Path(entry_path).parent
    store = Store(root.parent, [LocalStore(root)])
    found = store.containing(Path(entry_path))
    if found is None:
        raise CpkError(f"{entry_path}: entry is no longer in the store")
    return ensure_bytecode(store, found[0], executable)
