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

A wheel being unpacked is compiled while it is unpacked (:class:`StagedCompile`):
its ``.py`` files go to the workers in small batches as they are written
into the entry's private staging directory, so one large wheel is spread over
every worker, its compile overlaps its own unpacking, and the entry is
published once, whole, with its bytecode and marker, under the one
``syncfs`` that publishing does anyway.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import importlib.util
import json
import logging
import marshal
import os
import py_compile
import selectors
import signal
import stat
import subprocess
import sys
import tempfile
import threading
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

_log = logging.getLogger(__name__)

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


#: PEP 552's flags word for "hash-based, source not checked".
_UNCHECKED_HASH_FLAGS = (0b01).to_bytes(4, "little")


def _compile_files(jobs: Sequence[Sequence[str]]) -> list[str | None]:
    """Compile each ``(source, cfile, dfile)`` into a new unchecked-hash ``.pyc``.

    Returns, in order, the sha256 of each ``.pyc`` written, or None for a
    source that does not compile (skipped, as pip skips it). For a staging
    directory only: each ``.pyc`` is created in place, read-only, with no
    temporary file and rename (the staging directory is private and is
    published whole, after one ``syncfs``), and its hash comes from the bytes
    in memory instead of reading the file back for the marker.

    ``dfile`` is the name compiled into the code objects. It is the path
    inside site-packages, not the staging path (which dies with the slot):
    the import system replaces it with the path it loaded the source from
    (``_imp._fix_co_filename``), and the bytes of a ``.pyc`` then depend only
    on its source, the same in every store.

    py_compile would write through a temporary file and rename, and
    re-derive what we already know; the format it writes is PEP 552's:
    magic number, flags, the source's hash, the marshalled code.
    """
    made: set[str] = set()
    digests: list[str | None] = []
    for source, cfile, dfile in jobs:
        with open(source, "rb") as f:
            data = f.read()
        try:
            code = compile(data, dfile, "exec", dont_inherit=True, optimize=0)
        except Exception:  # what py_compile reports as PyCompileError
            digests.append(None)
            continue
        pyc = b"".join(
            (
                importlib.util.MAGIC_NUMBER,
                _UNCHECKED_HASH_FLAGS,
                importlib.util.source_hash(data),
                marshal.dumps(code),
            )
        )
        parent = os.path.dirname(cfile)
        if parent not in made:
            with contextlib.suppress(FileExistsError):  # another worker made it
                os.mkdir(parent, 0o755)
            made.add(parent)
        fd = os.open(cfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            view = memoryview(pyc)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        digests.append(hashlib.sha256(pyc).hexdigest())
    return digests


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
    worker processes (see :class:`BytecodePipeline`), largest entries first
    so no core idles at the end. Entries already done cost two stats each
    and never start a worker; a single entry is compiled in this process,
    as a worker would only add its start-up.
    """
    target = _target(python)
    if target is None:
        return
    todo = [e for e in entries if e.layer.writable and not _is_done(e, target.cache_tag)]
    if not todo:
        return
    jobs = min(jobs or os.cpu_count() or 1, len(todo))
    with BytecodePipeline(store, python, jobs=jobs) as pipeline:
        pipeline.submit_many(todo)


#: A wheel's sources go to the workers in batches of about this much source,
#: or this many files: small enough that a large wheel is spread over every
#: worker while it is still being unpacked, large enough that a batch's round
#: trip over the pipes is noise beside compiling it.
_BATCH_BYTES = 64 << 10
_BATCH_FILES = 16


def _cores() -> int:
    """The cores this process may run on (its affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Batch:
    """Sources of one staged wheel, compiled together by one worker."""

    __slots__ = ("cancelled", "files", "names", "owner", "sent")

    def __init__(self, owner: StagedCompile, files: list[tuple[str, str, str]], names: list[str]):
        self.owner = owner
        self.files = files  # (source, cfile, dfile), as the worker takes them
        self.names = names  # each cfile's path inside the entry, for the marker
        self.cancelled = False
        self.sent = False


class StagedCompile:
    """One wheel's bytecode, compiled into its staging directory as it is unpacked.

    Made by :meth:`BytecodePipeline.staged`. The unpacker calls :meth:`add`
    for every ``.py`` it has written under site-packages, and :meth:`finish`
    before the entry is sealed and published: it waits for the last batch and
    writes the marker beside the entry's metadata, so the entry appears with
    its bytecode or not at all, and is never opened again to add it. After
    any failure in between, :meth:`abandon` withdraws the batches not yet
    sent and waits for those being compiled, so that no worker writes into a
    slot that is being removed.
    """

    def __init__(self, pipeline: BytecodePipeline, slot: Path, label: str, cache_tag: str):
        self._pipeline = pipeline
        self._slot = slot
        self._site = slot / SITE_PACKAGES
        self._label = label
        self._tag = cache_tag
        self._files: list[tuple[str, str, str]] = []
        self._names: list[str] = []
        self._bytes = 0
        self._waiting: list[_Batch] = []
        # Guarded by the pipeline's lock:
        self.outstanding = 0
        self.hashes: dict[str, str] = {}
        self.skipped: list[str] = []
        self.error: str | None = None
        #: Pids of the workers that compiled a batch of this wheel.
        self.workers: set[int] = set()

    def add(self, relative: str, size: int) -> None:
        """Queue site-packages/relative (a ``.py`` just written) for compiling."""
        folder, _, name = relative.rpartition("/")
        cache = f"{folder}/{PYCACHE}" if folder else PYCACHE
        cfile = f"{cache}/{name[:-3]}.{self._tag}.pyc"
        self._files.append((str(self._site / relative), str(self._site / cfile), relative))
        self._names.append(f"{SITE_PACKAGES}/{cfile}")
        self._bytes += size
        if self._bytes >= _BATCH_BYTES or len(self._files) >= _BATCH_FILES:
            self._send()

    def _send(self) -> None:
        if not self._files:
            return
        batch = _Batch(self, self._files, self._names)
        self._files, self._names, self._bytes = [], [], 0
        self._waiting.append(batch)
        self._pipeline._queue_batch(batch)

    def finish(self) -> None:
        """Wait for every batch, then write the marker into the staged entry."""
        self._send()
        self._pipeline._wait_for(self)
        if self.error is not None:
            raise CpkError(f"{self._label}: {self.error}")
        _log.debug(
            "%s: %d modules compiled while unpacking, in %d batches, by %d processes",
            self._label,
            sum(len(b.files) for b in self._waiting),
            len(self._waiting),
            len(self.workers),
        )
        body = {
            "cache_tag": self._tag,
            "skipped": sorted(self.skipped),
            "files": dict(sorted(self.hashes.items())),
        }
        meta = self._slot / META_DIR
        meta.mkdir(exist_ok=True)
        # Neither atomic nor durable on its own: the slot is private until it
        # is published, and publishing syncs the file system first.
        fd = os.open(
            meta / f"{_MARKER_PREFIX}{self._tag}",
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o444,
        )
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(body, indent=1) + "\n")

    def abandon(self) -> None:
        """Withdraw what is not sent and wait for what is (the add failed)."""
        self._files, self._names = [], []
        self._pipeline._withdraw(self)

    def _apply(self, batch: _Batch, reply: dict[str, Any], pid: int) -> None:
        """A worker's answer for batch (called with the pipeline's lock held)."""
        self.outstanding -= 1
        self.workers.add(pid)
        self._pipeline.compiled_by.setdefault(self._label, set()).add(pid)
        if "error" in reply:
            self.error = self.error or str(reply["error"])
            return
        for (_, _, relative), name, digest in zip(
            batch.files, batch.names, reply["digests"], strict=True
        ):
            if digest is None:
                self.skipped.append(relative)
            else:
                self.hashes[name] = digest
        self._pipeline.modules_compiled += len(batch.files)


class BytecodePipeline:
    """Compile entries as they are handed in, while the caller goes on.

    A fetch hands each entry in as soon as it is in the store, so compiling
    the first ones overlaps downloading the rest instead of waiting for the
    last download (on a cold sync the compile is most of the CPU time).
    Better still, a wheel being unpacked hands in its sources as it writes
    them (:meth:`staged`), in batches that every worker shares.
    Leaving the ``with`` block waits for every compile and raises the first
    error; leaving it by an exception kills the workers instead of waiting.

    :meth:`submit` may be called from any thread. The work goes to plain
    child processes fed over pipes, not a ``ProcessPoolExecutor``: its
    workers wait forever on a queue whose writer is gone, and its resource
    tracker outlives a killed parent, both holding the caller's stdout and
    stderr. Ours are started and reaped by one thread of this object, which
    lives until they are gone, and die with it (``PR_SET_PDEATHSIG`` fires
    when the thread that started a child exits). Workers are started only
    when there is work no running worker is free for, never more than
    ``jobs`` (default: one per core this process may use), and each serves
    many jobs, so its start is paid once. With ``jobs`` 1 (``contentpkg.use()``:
    a worker would re-run someone else's ``__main__``) everything is
    compiled in the calling thread.
    """

    def __init__(self, store: Store, python: Any = None, jobs: int | None = None) -> None:
        self._store = store
        self._python = python
        self._target = _target(python)
        self._jobs = jobs or _cores()
        # Only when asked: one worker still overlaps a fetch on one core.
        self._in_caller = jobs == 1
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seen: set[str] = set()
        #: (rank, -size, order, job): a heap. Batches of wheels being unpacked
        #: go first (an add is waiting for them), then whole entries, the
        #: largest first so no core idles at the end.
        self._pending: list[tuple[int, int, int, Any]] = []
        self._order = 0
        self._inline: list[Entry] = []  # jobs == 1: compiled at the end, here
        self._closed = False
        self._cancelled = False
        self._managed = False  # the managing thread has ended
        self._prestart = 0  # workers to start before any work: start_workers()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        #: Worker processes started, for tests and reports.
        self.workers_started = 0
        #: For tests and reports: the pids of the processes that compiled
        #: each staged wheel's batches, by wheel; and how many modules the
        #: batches held (each module is in exactly one batch).
        self.compiled_by: dict[str, set[int]] = {}
        self.modules_compiled = 0

    def __enter__(self) -> BytecodePipeline:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is not None:
            self._stop(cancel=True)
            return
        self._stop(cancel=False)
        for entry in self._inline:
            ensure_bytecode(self._store, entry, self._python)
        if self._error is not None:
            raise self._error

    def start_workers(self) -> None:
        """Start every worker now, before there is work for them.

        For a caller about to download what they will compile: their
        interpreters start while the network is the bottleneck, not when the
        first module is waiting. Not for when all may already be compiled.
        """
        if self._in_caller or self._target is None or self._target.executable is not None:
            return
        with self._lock:
            self._prestart = self._jobs
            self._start_locked()
        self._wake()

    def staged(self, slot: Path, label: str) -> StagedCompile | None:
        """A compile of the wheel being unpacked into slot, or None when its
        entry is to be compiled once published instead (for another
        interpreter, whose compileall runs per entry)."""
        target = self._target
        if target is None or target.executable is not None or self._error is not None:
            return None
        return StagedCompile(self, slot, label, target.cache_tag)

    def submit(self, entry: Entry) -> None:
        """Compile entry soon (at once when a worker is free); no-op when done."""
        self.submit_many([entry])

    def submit_many(self, entries: Sequence[Entry]) -> None:
        """:meth:`submit` for many, queued at once so the largest goes first."""
        target = self._target
        if target is None:
            return
        # Two stats each, in the caller's thread: done entries never reach a worker.
        todo = [e for e in entries if e.layer.writable and not _is_done(e, target.cache_tag)]
        with self._lock:
            todo = [e for e in todo if str(e.path) not in self._seen]
            self._seen.update(str(e.path) for e in todo)
            if not todo or self._error is not None:
                return
            if self._in_caller:
                self._inline.extend(todo)
                return
            for entry in todo:
                self._order += 1
                heapq.heappush(self._pending, (1, -entry.size, self._order, str(entry.path)))
            self._start_locked()
        self._wake()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._manage, name="cpk-bytecode", daemon=True)
            self._thread.start()

    def _queue_batch(self, batch: _Batch) -> None:
        if self._in_caller:
            # One process: compile now, in the unpacking thread.
            try:
                reply: dict[str, Any] = {"digests": _compile_files(batch.files)}
            except OSError as exc:
                reply = {"error": _write_error(exc)}
            with self._lock:
                batch.owner.outstanding += 1
                batch.owner._apply(batch, reply, os.getpid())
            return
        with self._lock:
            batch.owner.outstanding += 1
            if self._managed:  # the workers are gone: nothing will answer
                batch.owner.outstanding -= 1
                batch.owner.error = batch.owner.error or "compiling bytecode was stopped"
                return
            self._order += 1
            heapq.heappush(self._pending, (0, 0, self._order, batch))
            self._start_locked()
        self._wake()

    def _wait_for(self, owner: StagedCompile) -> None:
        with self._lock:
            while owner.outstanding and not self._managed:
                self._changed.wait()
            if owner.outstanding:
                error = self._error
                owner.error = owner.error or (
                    str(error) if error is not None else "compiling bytecode was stopped"
                )

    def _withdraw(self, owner: StagedCompile) -> None:
        with self._lock:
            for batch in owner._waiting:
                if not batch.sent and not batch.cancelled:
                    batch.cancelled = True
                    owner.outstanding -= 1
            while owner.outstanding and not self._managed:
                self._changed.wait()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is already due
                os.write(self._wake_w, b"x")

    def _stop(self, cancel: bool) -> None:
        with self._lock:
            self._closed = True
            self._cancelled = cancel
            thread = self._thread
        if thread is None:
            return
        self._wake()
        try:
            thread.join()
        except BaseException:  # interrupted while waiting: do not wait for the rest
            with self._lock:
                self._cancelled = True
            self._wake()
            thread.join()
            raise
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- the managing thread --------------------------------------------------

    def _manage(self) -> None:
        import contentpkg

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(contentpkg.__file__)))
        cmd = [sys.executable, "-c", _WORKER, package_parent, str(os.getpid())]
        executable = self._target.executable if self._target else None
        workers: list[subprocess.Popen[str]] = []
        idle: list[subprocess.Popen[str]] = []
        busy: dict[int, Any] = {}  # pid -> the job it is compiling
        failed = True
        with tempfile.TemporaryFile() as errors, selectors.DefaultSelector() as selector:

            def spawn() -> subprocess.Popen[str]:
                # The workers' stderr goes to a private temporary file (one
                # open file shared by all, so writes append), whose last line
                # explains a worker that died.
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
                )
                workers.append(proc)
                self.workers_started += 1
                selector.register(proc.stdout, selectors.EVENT_READ, proc)  # type: ignore[arg-type]
                return proc

            try:
                selector.register(self._wake_r, selectors.EVENT_READ, None)
                while True:
                    with self._lock:
                        if self._cancelled:
                            break
                        while len(workers) < min(self._prestart, self._jobs):
                            idle.append(spawn())
                        while self._pending and (idle or len(workers) < self._jobs):
                            job = heapq.heappop(self._pending)[-1]
                            if isinstance(job, _Batch):
                                if job.cancelled:
                                    continue
                                job.sent = True
                                message: Any = {"files": job.files}
                            else:
                                message = (job, executable)
                            proc = idle.pop() if idle else spawn()
                            busy[proc.pid] = job
                            _send(proc, message)
                        if self._closed and not self._pending and len(idle) == len(workers):
                            failed = False
                            break
                    for key, _ in selector.select():
                        proc = key.data
                        if proc is None:
                            with contextlib.suppress(BlockingIOError):
                                os.read(self._wake_r, 4096)
                            continue
                        line = key.fileobj.readline()  # type: ignore[union-attr]
                        if not line:
                            why = _last_line(proc, errors)
                            raise CpkError(f"compiling bytecode: a worker died ({why})")
                        reply = json.loads(line)
                        job = busy.pop(proc.pid)
                        if isinstance(job, _Batch):
                            with self._lock:
                                job.owner._apply(job, reply, proc.pid)
                                self._changed.notify_all()
                        elif "error" in reply:
                            raise CpkError(reply["error"])
                        idle.append(proc)
            except BaseException as exc:  # handed to the caller, raised there
                with self._lock:
                    self._error = exc
            finally:
                for proc in workers:
                    if proc.stdin is not None:
                        with contextlib.suppress(OSError):
                            proc.stdin.close()  # end of input: the worker exits
                    if failed:
                        proc.kill()  # failing or interrupted: do not wait for the rest
                    proc.wait()
                    if proc.stdout is not None:
                        proc.stdout.close()
                # Whoever waits for a batch learns that no answer will come.
                with self._lock:
                    self._managed = True
                    self._changed.notify_all()


# --- worker processes ------------------------------------------------------------

_WORKER = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from contentpkg.python.install.bytecode import _worker_main; _worker_main(int(sys.argv[2]))"
)
_PR_SET_PDEATHSIG = 1


def _send(proc: subprocess.Popen[str], job: Any) -> None:
    """Give proc one job: a JSON line; its answer is one JSON line too."""
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()


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
        job = json.loads(line)
        reply: dict[str, Any]
        if isinstance(job, dict):  # a batch of a wheel's sources, into its staging slot
            try:
                reply = {"digests": _compile_files(job["files"])}
            except OSError as exc:
                reply = {"error": _write_error(exc)}
        else:
            entry_path, executable = job
            try:
                reply = {"ok": _ensure_in_worker(entry_path, executable)}
            except CpkError as exc:
                reply = {"error": str(exc)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _write_error(exc: OSError) -> str:
    """What a batch that could not be written says (a full disk, a quota)."""
    return f"cannot write bytecode ({exc.strerror or exc})"


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
