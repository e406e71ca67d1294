"""Adding entries: validate, stage, hash, seal, publish with one rename.

Every kind of package (a plain tree, a wheel, an ELF file, a ``.deb``) comes
in through :func:`add_built`: a *populate* callback writes the content into a
private staging slot, and this module does the rest the same way for all:
check what was written, hash it, write the metadata, make it read-only, flush
it to disk, record it in the lookup tables, and ``rename(2)`` it into place.
A crash at any point leaves staging debris, never a partial entry.

Many entries added by one call (the ``.deb`` files of a closure) can share
the costs that do not depend on their number: inside
:func:`publishing_together` every entry is staged and sealed as usual, and
the flush, the files-table write and the publishing renames happen once for
all of them when the block ends (one ``syncfs``, one SQLite transaction on
one connection, one directory fsync), still in the order that keeps each
entry unpublished until it is durable.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError, write_failed
from contentpkg.fs import fsync_dir, sync_filesystem
from contentpkg.store import lookup
from contentpkg.store.entry import (
    ENTRY_JSON,
    FILES_JSON,
    METADATA_FORMAT,
    Entry,
    check_part,
    dump_files,
    dump_metadata,
    parse_dirname,
)
from contentpkg.store.hashing import (
    DERIVED_DIRS,
    META_DIR,
    FileRecord,
    content_hash,
    scan_tree,
    short_hash,
)
from contentpkg.store.locks import collector_lock
from contentpkg.store.staging import Slot, clean_stale

if TYPE_CHECKING:
    # The layered store calls into this module to add; a runtime import back
    # would be a cycle.
    from contentpkg.store.layers import Store

#: populate(slot_dir) writes the content; it may return the records it
#: computed while writing (saving a second read), or None to have them scanned.
Populate = Callable[[Path], "list[FileRecord] | None"]

_CHUNK = 1 << 20


class SealedFiles(list[FileRecord]):
    """Records from a writer that created every file with its sealed mode
    (0444, or 0555 when executable) and changed none afterwards, and that
    made no directory the records leave out. Sealing the entry then need
    neither stat each file again nor list each directory: it changes the
    recorded directories' modes, and lists only the metadata directory.
    A populate callback that alters files returns a plain list instead.
    """


@dataclass
class AddResult:
    """The entry an add made or found.

    Not frozen: inside :func:`publishing_together` ``created`` is settled
    only when the batch publishes (another writer may publish the same
    entry first).
    """

    entry: Entry
    created: bool  # False when an identical entry was already in the store
    #: True while the entry waits for its batch to publish it; a batch that
    #: fails partway leaves it True only for the entries not renamed in.
    pending: bool = False


@dataclass(frozen=True)
class _Request:
    """What one :func:`add_built` call asks for, carried whole through
    building and staging (see there for each field's meaning)."""

    name: str
    version: str
    kind: str
    populate: Populate
    source: str | None
    source_hash: str | None
    extra: dict[str, Any] | None
    references: Iterable[str]
    #: Read only after populate ran: a populate callback may fill it.
    extra_file_rows: Iterable[tuple[str, str]]
    describe: Callable[[list[FileRecord]], dict[str, Any]] | None


@dataclass
class _Staged:
    """A sealed entry in its slot, waiting to be made durable and published."""

    slot: Slot
    dirname: str
    rows: list[tuple[str, str]]
    source_hash: str | None
    result: AddResult | None = None


@dataclass
class _Batch:
    root: Path
    staged: list[_Staged] = field(default_factory=list)
    cleaned: bool = False  # staging debris already removed


#: The batch the current thread adds into, if any (threads start without one).
_BATCH: ContextVar[_Batch | None] = ContextVar("cpk_add_batch", default=None)


@contextlib.contextmanager
def publishing_together(store: Store) -> Iterator[None]:
    """Publish every entry added in this block (by this thread) at its end.

    Entries are staged and sealed as each add runs and returned at once
    with their final paths; they appear in the store when the block ends:
    one ``syncfs`` for all of them, their files-table rows in one
    transaction, then one rename each and one fsync of the store directory.
    An entry is never visible before it is durable. If the block raises,
    nothing staged in it is published. A failure to publish raises as
    :func:`add_built` would; entries renamed before it stay, each whole,
    and their results say so (``pending`` is False for exactly those).
    """
    if _BATCH.get() is not None:  # nested: the outer block publishes
        yield
        return
    root = store.user.root
    batch = _Batch(root)
    token = _BATCH.set(batch)
    try:
        try:
            yield
        finally:
            _BATCH.reset(token)
        if batch.staged:
            try:
                with collector_lock(root):  # as each add publishes: never beside gc
                    _publish(store, root, batch.staged)
            except OSError as exc:
                if exc.errno in _WRITE_ERRNOS:
                    raise write_failed(exc, root, "publishing the added entries") from None
                raise
    finally:
        for staged in batch.staged:
            staged.slot.close()


def add_built(
    store: Store,
    name: str,
    version: str,
    kind: str,
    populate: Populate,
    *,
    source: str | None = None,
    source_hash: str | None = None,
    extra: dict[str, Any] | None = None,
    references: Iterable[str] = (),
    extra_file_rows: Iterable[tuple[str, str]] = (),
    describe: Callable[[list[FileRecord]], dict[str, Any]] | None = None,
) -> AddResult:
    """Build an entry in staging with populate and publish it atomically.

    ``extra`` is merged into the metadata (dependencies, provides, per-file
    facts of a kind); ``references`` names other entries this one needs (gc
    keeps them alive with it); ``extra_file_rows`` are more (sha256, path)
    pairs for the lookup table, such as an ELF file's hash before patching.
    ``describe(records)`` runs after populate, for metadata that depends on
    what was written (what an unpacked package provides).
    """
    check_part("name", name)
    check_part("version", version)
    root = store.user.root
    batch = _BATCH.get()
    try:
        store.ensure()
        if batch is None or not batch.cleaned:
            # Once per batch: its own pending slots are locked, and asking
            # each of them again for every add would grow with the square.
            clean_stale(root)
            if batch is not None:
                batch.cleaned = True
        request = _Request(
            name=name,
            version=version,
            kind=kind,
            populate=populate,
            source=source,
            source_hash=source_hash,
            extra=extra,
            references=references,
            extra_file_rows=extra_file_rows,
            describe=describe,
        )
        return _build(store, root, request)
    except OSError as exc:
        # Out of room or a read-only store is the disk's state, not the
        # input's fault: say what ran out, where, doing what. Other errors
        # (an unreadable source file) keep their own message.
        if exc.errno in _WRITE_ERRNOS:
            raise write_failed(exc, root, f"adding {name} {version}") from None
        raise


#: errnos that only writing can cause.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _build(store: Store, root: Path, request: _Request) -> AddResult:
    """The staged build and publish of :func:`add_built`."""
    batch = _BATCH.get()
    with collector_lock(root):
        slot = Slot(root)
        try:
            staged = _stage(store, root, slot, request)
            if isinstance(staged, AddResult):
                slot.close()
                return staged
            if batch is not None and batch.root == root:
                # Published when the batch ends; the entry's path is final now.
                staged.result = AddResult(
                    _entry_at(store, root, staged.dirname), created=True, pending=True
                )
                batch.staged.append(staged)
                return staged.result
            _publish(store, root, [staged])
            assert staged.result is not None
            return staged.result
        except BaseException:
            slot.close()
            raise
        finally:
            if batch is None or batch.root != root:
                slot.close()


def _entry_at(store: Store, root: Path, dirname: str) -> Entry:
    parts = parse_dirname(dirname)
    assert parts is not None
    return Entry(root / dirname, *parts, layer=store.user)


def _stage(store: Store, root: Path, slot: Slot, request: _Request) -> _Staged | AddResult:
    """Populate, check, hash, describe and seal one entry in its slot.

    Returns the existing entry's result when an identical one is already
    in the store (nothing to publish).
    """
    records = request.populate(slot.path)
    if records is None:
        records = scan_tree(slot.path)
    _check_staged(slot.path, records)
    full_hash = content_hash(records)
    dirname = f"{request.name},{request.version},{short_hash(full_hash)}"
    source_hash = request.source_hash
    existing = store.entry(dirname)
    if existing is not None:
        if source_hash:
            lookup.link_source(root, source_hash, existing.path)
        return AddResult(existing, created=False)

    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "kind": request.kind,
        "name": request.name,
        "version": request.version,
        "content_hash": full_hash,
        "source": request.source,
        "source_hash": source_hash,
        "size": sum(r.size for r in records),
        "file_count": sum(1 for r in records if r.kind in "fx"),
        "dependencies": [],
        "provides": {},
        "references": sorted(set(request.references)),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    meta.update(request.extra or {})
    if request.describe is not None:
        meta.update(request.describe(records))
    # Consumed only now: a populate callback may have filled it. Kept in
    # the metadata so a rebuilt files table has these rows too.
    extra_rows = sorted({(str(sha), str(rel)) for sha, rel in request.extra_file_rows})
    if extra_rows:
        meta[lookup.EXTRA_ROWS_KEY] = [list(row) for row in extra_rows]
    stored = share_identical(slot.path, records)
    if stored != meta["size"]:
        meta["stored_size"] = stored
    meta_dir = slot.path / META_DIR
    meta_dir.mkdir(exist_ok=True)  # populate may have put derived records there (bytecode)
    (meta_dir / ENTRY_JSON).write_bytes(dump_metadata(meta))
    (meta_dir / FILES_JSON).write_bytes(dump_files(records))
    if isinstance(records, SealedFiles):
        seal(
            slot.path, top=False, files_sealed=True, dirs=[r.path for r in records if r.kind == "d"]
        )
    else:
        seal(slot.path, top=False)
    rows = [(r.value, r.path) for r in records if r.kind in "fx"]
    return _Staged(slot, dirname, [*rows, *extra_rows], source_hash)


def _publish(store: Store, root: Path, staged: list[_Staged]) -> None:
    """Make sealed entries durable, record them, and rename them into place.

    The order is the store's crash rule: content on stable storage (one
    ``syncfs`` for all, since every slot is on the store's file system),
    then the files-table rows (derived data, written before the entry
    exists so a crash leaves at worst rows that readers skip), then the
    renames, then one fsync of the store directory that holds them all.
    """
    sync_filesystem(root)
    tables: dict[str, list[tuple[str, str]]] = {}
    for s in staged:
        tables.setdefault(s.dirname, []).extend(s.rows)
    lookup.record_entries(root, tables)
    for s in staged:
        final = root / s.dirname
        created = s.slot.publish(final, durable=False)  # sealed as it appears
        if s.source_hash:
            lookup.link_source(root, s.source_hash, final)
        if s.result is None:
            s.result = AddResult(_entry_at(store, root, s.dirname), created)
        else:
            s.result.created = created
            s.result.pending = False  # in the store now, whatever fails next
    fsync_dir(root)


def share_identical(root: Path, records: list[FileRecord]) -> int:
    """Hard-link files with the same bytes and kind within one entry; return
    the bytes the entry then takes.

    Packages repeat files (a ``.deb``'s hard-link members, the same icon in
    several sizes' directories, identical translations), and patching a
    hard-linked ELF file writes each name anew. The content hash is
    defined by content, not by inodes, so linking changes no hash; an
    entry is sealed read-only after this, so the names can never diverge.
    Files differing in the executable bit stay apart: the mode is content.
    """
    first: dict[tuple[str, str], str] = {}
    stored = 0
    for r in sorted(records, key=lambda r: r.path):
        if r.kind not in "fx":
            continue
        key = (r.kind, r.value)
        keep = first.setdefault(key, r.path)
        if keep == r.path:
            stored += r.size
            continue
        src, dest = root / keep, root / r.path
        if os.path.samestat(os.stat(src), os.stat(dest)):
            continue
        # Unlink, then link: the slot is private, so no reader can see the
        # moment between. A rename over the copy would be atomic but costly:
        # ext4 flushes a file's unwritten data when it replaces another by
        # rename (auto_da_alloc), where an unlinked copy is never written.
        os.unlink(dest)
        try:
            os.link(src, dest)
        except OSError as exc:
            if exc.errno != errno.EMLINK:  # a file system's link limit: keep a copy
                raise
            shutil.copyfile(src, dest)
            os.chmod(dest, stat.S_IMODE(os.stat(src).st_mode))
            stored += r.size
    return stored


def _check_staged(root: Path, records: list[FileRecord]) -> None:
    """Refuse what an entry must never hold, whoever wrote the slot."""
    real_root = os.path.realpath(root)
    for r in records:
        if r.kind == "?":
            raise CpkError(f"{r.path}: special file; entries hold only files, dirs and symlinks")
        if r.kind == "l":
            target = r.value
            resolved = os.path.realpath(root / r.path)
            if os.path.isabs(target) or not (
                resolved == real_root or resolved.startswith(real_root + os.sep)
            ):
                raise CpkError(f"{r.path}: symlink to {target!r} points outside the tree")


def seal(
    root: Path, *, top: bool = True, files_sealed: bool = False, dirs: list[str] | None = None
) -> None:
    """Give everything below root the one mode an entry's content has.

    Files are 0444, or 0555 when their owner may execute them (the only mode
    information the content hash keeps); directories are 0555. The modes are
    canonical rather than remembered, so sealing again repairs whatever an
    interrupted writer (a killed bytecode compile) left open. ``top=False``
    leaves root itself alone: a staged entry's directory must stay writable
    until it has been renamed into place. Setuid and setgid are refused
    rather than silently dropped. ``files_sealed`` says every file below
    root already has its sealed mode (see :class:`SealedFiles`) and only the
    directories are sealed, sparing an lstat per file; ``dirs`` with it
    lists every directory below root except the metadata directory
    (relative paths), sparing the listing of each.
    """
    # Bottom-up, and the metadata directory last: a reader takes a sealed
    # metadata directory to mean the whole entry is sealed (bytecode's
    # ``_is_done``), so a kill during sealing must never leave it sealed
    # while something below the entry is still open.
    top_dir = os.fspath(root)
    last = os.path.join(top_dir, META_DIR)
    # Post-order with scandir: its entry types spare an lstat for every
    # directory and symlink; files are lstat'ed (through the entry, once)
    # because their mode is what is checked.
    if files_sealed and dirs is not None:
        # Deepest first, as the walk below would: a directory is closed
        # only after everything inside it.
        for rel in sorted(dirs, key=lambda d: -d.count("/")):
            os.chmod(os.path.join(top_dir, rel), 0o555)
    else:
        _seal_below(top_dir, top_dir, last, files_sealed)
    if os.path.isdir(last) and not os.path.islink(last):
        _seal_below(last, top_dir, last, False)  # written after the copy
        if stat.S_IMODE(os.lstat(last).st_mode) != 0o555:
            os.chmod(last, 0o555)
    if top and stat.S_IMODE(os.lstat(root).st_mode) != 0o555:
        os.chmod(root, 0o555)


def _seal_below(directory: str, root: str, last: str, files_sealed: bool) -> None:
    """Seal everything inside directory (not directory itself), deepest
    first; the root's metadata directory is left to the caller."""
    with os.scandir(directory) as it:
        items = list(it)
    dirs = []
    for item in items:
        if item.is_symlink():
            continue
        if item.is_dir(follow_symlinks=False):
            if item.path != last:
                dirs.append(item)
            continue
        if files_sealed:
            continue
        st = item.stat(follow_symlinks=False)
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            rel = os.path.relpath(item.path, root)
            raise CpkError(f"{rel}: setuid/setgid file refused")
        mode = 0o555 if st.st_mode & stat.S_IXUSR else 0o444
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(item.path, mode)
    for item in dirs:
        _seal_below(item.path, root, last, files_sealed)
        # The entry's stat is from the scan, before its contents were sealed;
        # a directory's own mode is not changed by sealing what it holds.
        if stat.S_IMODE(item.stat(follow_symlinks=False).st_mode) != 0o555:
            os.chmod(item.path, 0o555)


def add_path(store: Store, src: Path, name: str, version: str) -> AddResult:
    """Add a file or a directory tree as a generic entry.

    A file becomes an entry holding that one file under its own name; a
    directory becomes an entry holding the directory's contents.
    """
    check_part("name", name)
    check_part("version", version)
    try:
        st = os.stat(src)
    except OSError as exc:
        raise CpkError(f"{src}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise CpkError(f"{src}: not a regular file or directory")
    listing = check_source(src, st)  # before anything is written

    def populate(dest: Path) -> list[FileRecord]:
        if stat.S_ISDIR(st.st_mode):
            return copy_tree(src, dest, listing=listing)
        digest, size, mode = copy_file(src, dest / src.name)
        return [FileRecord(src.name, "x" if mode & stat.S_IXUSR else "f", digest, size)]

    # No source hash: for a tree it would equal the content hash, and a
    # single file's own hash is already in the files table.
    return add_built(store, name, version, "generic", populate, source=str(src.absolute()))


#: What :func:`check_source` saw of a tree, for :func:`copy_tree` to copy
#: without listing it again: per directory (its prefix, ``""`` or ending in
#: ``/``, parents before children), its entries as (name, kind, symlink
#: target), kind ``l``, ``d`` or ``f`` (anything else: the copy's fstat
#: refuses what is not a regular file), derived directories left out.
Listing = list[tuple[str, list[tuple[str, str, str]]]]


def check_source(src: Path, st: os.stat_result) -> Listing | None:
    """Walk the input once without writing, so bad input changes nothing;
    a directory's listing (see :data:`Listing`), None for a file."""
    if stat.S_ISREG(st.st_mode):
        _check_mode(src.name, st)
        return None
    real_root = os.path.realpath(src)
    # scandir's entry types need no system call: only symlinks (resolved)
    # and special files (named in the error) cost one. Regular files' setuid
    # and setgid bits are checked by the copy, on the descriptor it reads:
    # a refusal there discards the private staging slot, so the store is
    # unchanged all the same, and each file is stat'ed once, not twice.
    top = os.fspath(src)
    listing: Listing = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(os.path.join(top, prefix) if prefix else top) as it:
            items = list(it)
        seen: list[tuple[str, str, str]] = []
        listing.append((prefix, seen))
        for item in items:
            name = item.name
            if name in DERIVED_DIRS:
                continue  # not copied, so not checked
            if not prefix and name == META_DIR:
                raise CpkError(f"{src}/{META_DIR}: name reserved for entry metadata")
            rel = prefix + name
            if item.is_symlink():
                full = item.path
                target = os.readlink(full)
                resolved = os.path.realpath(full)
                inside = resolved == real_root or resolved.startswith(real_root + os.sep)
                if os.path.isabs(target) or not inside:
                    raise CpkError(f"{full}: symlink to {target!r} points outside the tree")
                # The copy makes the link the check saw, not whatever the
                # name may point to by then.
                seen.append((name, "l", target))
            elif item.is_dir(follow_symlinks=False):
                stack.append(rel + "/")
                seen.append((name, "d", ""))
            else:
                if not item.is_file(follow_symlinks=False):
                    _check_mode(rel, item.stat(follow_symlinks=False), item.path)
                seen.append((name, "f", ""))
    return listing


def _check_mode(rel: str, st: os.stat_result, shown: str | None = None) -> None:
    shown = shown or rel
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file"
        )
        raise CpkError(f"{shown}: is {kind}; entries hold only files, directories and symlinks")
    if mode & (stat.S_ISUID | stat.S_ISGID):
        raise CpkError(f"{shown}: has the setuid or setgid bit; the store refuses such files")


def copy_tree(
    src: Path, dest: Path, elf: list[str] | None = None, listing: Listing | None = None
) -> list[FileRecord]:
    """Copy a checked tree into dest, hashing each file as it is copied.

    ``elf``, when given, receives the relative path of every file that
    starts with the ELF magic: the copy has just read those bytes, so a
    caller that patches ELF files need not open every file again to find them.
    ``listing``, when given, is what :func:`check_source` saw of src, and
    the copy does not list the tree again.

    Two passes. The first, in this thread, lists the source directory by
    directory (or takes the check's listing) and makes every directory and
    symlink of the copy, so the second finds each file's directory already
    there. The second copies the
    files in batches of one directory's files each, on
    :func:`copy_workers` threads: creating a file is most of what the copy
    costs (the kernel allocating an inode, which on ext4 can run in two
    directories at once), and the system calls release the GIL while one
    thread hashes and another creates.

    Every name is opened relative to its directory's descriptor (``dir_fd``)
    and paths stay plain strings: for a tree of small files the per-file
    cost beyond creating the file is otherwise mostly pathlib objects and
    the kernel walking the same leading directories again for each name.
    """
    # Files are created with their sealed mode unless the umask takes bits
    # from it; only then does sealing have to look at each file again.
    mask = _umask()
    records: list[FileRecord] = SealedFiles() if mask is not None and not mask & 0o555 else []
    # The source itself may be a symlink to the tree (as the command line
    # names it); below it, nothing is followed.
    src_root = os.open(src, _DIR_FLAGS & ~os.O_NOFOLLOW)
    src_top = os.path.join(os.fspath(src), "")  # messages name the input's files
    try:
        dest_root = os.open(dest, _DIR_FLAGS)
        try:
            if listing is None:
                batches = _make_dirs(src_root, dest_root, records)
            else:
                batches = _make_listed(dest_root, listing, records)
            copied = _run_batches(src_root, dest_root, src_top, batches)
        finally:
            os.close(dest_root)
    finally:
        os.close(src_root)
    for batch_records, batch_elf in copied:
        records.extend(batch_records)
        if elf is not None:
            elf.extend(batch_elf)
    return records


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: Files per batch of the copy: a directory's files, split when there are
#: more, so one large directory still spreads over the workers.
_BATCH_FILES = 256

#: Fewer files than this are copied in the calling thread: starting threads
#: costs more than a small tree's creation could overlap.
_THREADED_FILES = 256

#: The most threads a copy uses: past two or three, they only queue for
#: the GIL and the file system's own locks.
_MAX_COPY_WORKERS = 4


def copy_workers(files: int) -> int:
    """Threads to copy files files with: one per CPU this process may run
    on (``sched_getaffinity``, which a container or ``taskset`` narrows),
    at most :data:`_MAX_COPY_WORKERS`, and one for a small tree."""
    if files < _THREADED_FILES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_COPY_WORKERS))


def _make_dirs(src_root: int, dest_root: int, records: list[FileRecord]) -> list[_FileBatch]:
    """The first pass of :func:`copy_tree`: list every source directory,
    make the copy's directories and symlinks (their records appended), and
    return the files to copy in batches of (directory prefix, names)."""
    append = records.append
    batches: list[_FileBatch] = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        # One directory's pair of descriptors at a time: a deep tree never
        # holds more than four open.
        src_fd = _open_below(src_root, prefix) if prefix else src_root
        try:
            dest_fd = os.open(prefix, _DIR_FLAGS, dir_fd=dest_root) if prefix else dest_root
            try:
                with os.scandir(src_fd) as it:
                    items = list(it)
                files: list[str] = []
                for item in items:
                    name = item.name
                    if name in DERIVED_DIRS:
                        continue
                    rel = prefix + name
                    if item.is_symlink():
                        link = os.readlink(name, dir_fd=src_fd)
                        os.symlink(link, name, dir_fd=dest_fd)
                        append(FileRecord(rel, "l", link))
                    elif item.is_dir(follow_symlinks=False):
                        os.mkdir(name, 0o755, dir_fd=dest_fd)
                        append(FileRecord(rel, "d", ""))
                        stack.append(rel + "/")
                    else:
                        files.append(name)
                for i in range(0, len(files), _BATCH_FILES):
                    batches.append((prefix, files[i : i + _BATCH_FILES]))
            finally:
                if dest_fd != dest_root:
                    os.close(dest_fd)
        finally:
            if src_fd != src_root:
                os.close(src_fd)
    return batches


def _make_listed(dest_root: int, listing: Listing, records: list[FileRecord]) -> list[_FileBatch]:
    """:func:`_make_dirs` from the check's listing: the source is not listed
    again, and its directories not opened (symlink targets are known)."""
    append = records.append
    batches: list[_FileBatch] = []
    for prefix, items in listing:
        dest_fd = os.open(prefix, _DIR_FLAGS, dir_fd=dest_root) if prefix else dest_root
        try:
            files: list[str] = []
            for name, kind, link in items:
                if kind == "f":
                    files.append(name)
                elif kind == "d":
                    os.mkdir(name, 0o755, dir_fd=dest_fd)
                    append(FileRecord(prefix + name, "d", ""))
                else:
                    os.symlink(link, name, dir_fd=dest_fd)
                    append(FileRecord(prefix + name, "l", link))
            for i in range(0, len(files), _BATCH_FILES):
                batches.append((prefix, files[i : i + _BATCH_FILES]))
        finally:
            if dest_fd != dest_root:
                os.close(dest_fd)
    return batches


def _open_below(root: int, prefix: str, shown: str = "") -> int:
    """The source directory ``prefix`` (``"a/b/"``) below the descriptor
    root, opened one name at a time, each with ``O_NOFOLLOW``: a path with
    several names (or a trailing slash) follows symlinks on the way, so a
    directory replaced by a symlink since the check listed it would be
    copied from wherever it points. This way it fails (ELOOP, ENOTDIR)."""
    fd = root
    try:
        for name in prefix.rstrip("/").split("/"):
            below = os.open(name, _DIR_FLAGS, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = below
    except OSError as exc:
        if fd != root:
            os.close(fd)
        exc.filename = shown + prefix.rstrip("/")
        raise
    return fd


#: A batch of the copy: a directory's prefix (``""`` or ending in ``/``)
#: and names of files in it.
_FileBatch = tuple[str, list[str]]


def _run_batches(
    src_root: int, dest_root: int, src_top: str, batches: list[_FileBatch]
) -> list[tuple[list[FileRecord], list[str]]]:
    """The second pass of :func:`copy_tree`: copy every batch's files, on
    threads when the tree is large enough; each batch's records and ELF
    files, in the batches' order.

    A failure stops the other threads at their next file and is raised once
    all have stopped: nothing writes into the slot after the copy returns
    or raises (the caller discards the slot). With several failures, the
    one of the earliest batch is raised.
    """
    files = sum(len(names) for _, names in batches)
    workers = min(copy_workers(files), len(batches))
    failed = threading.Event()

    def copy_batch(batch: _FileBatch) -> tuple[list[FileRecord], list[str]]:
        prefix, names = batch
        out: list[FileRecord] = []
        elf: list[str] = []
        src_fd = dest_fd = -1
        try:
            src_fd = _open_below(src_root, prefix, src_top) if prefix else src_root
            dest_fd = os.open(prefix, _DIR_FLAGS, dir_fd=dest_root) if prefix else dest_root
            for name in names:
                if failed.is_set():
                    break
                rel = prefix + name
                digest, size, mode, head = _copy_at(src_fd, dest_fd, name, src_top + rel)
                if head == _ELF_MAGIC:
                    elf.append(rel)
                out.append(FileRecord(rel, "x" if mode & stat.S_IXUSR else "f", digest, size))
        except BaseException:
            failed.set()
            raise
        finally:
            for fd, root in ((dest_fd, dest_root), (src_fd, src_root)):
                if fd not in (-1, root):
                    os.close(fd)
        return out, elf

    if workers <= 1:
        return [copy_batch(b) for b in batches]
    # Imported here: most adds (a wheel, a .deb) never copy a tree.
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cpk-copy")
    try:
        futures = [pool.submit(copy_batch, b) for b in batches]
        wait(futures)
    except BaseException:
        # Interrupted while waiting (^C): the other threads stop at their
        # next file, and are waited for, so that nothing writes on into the
        # slot the caller is about to discard.
        failed.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    # Every thread has ended here.
    for future in futures:
        if future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]


def _umask() -> int | None:
    """The process's umask, read without changing it (``os.umask`` can only
    set it, a race with any thread creating files); None where unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return None


def copy_file(src: Path, dst: Path) -> tuple[str, int, int]:
    """Copy one file, hashing the bytes that were written; (hex, size, mode).

    The file is created with its final read-only mode: permissions are
    checked at open, so writing through the descriptor still works, and the
    seal pass has nothing left to change.
    """
    return _copy_at(None, None, os.fspath(src), os.fspath(src), os.fspath(dst))[:3]


_ELF_MAGIC = b"\x7fELF"


def _copy_at(
    src_dir: int | None, dest_dir: int | None, name: str, shown: str, dest_name: str | None = None
) -> tuple[str, int, int, bytes]:
    """Copy name from the directory src_dir to dest_dir (descriptors, or None
    for paths), hashing as it goes: (hex, size, mode, first four bytes).
    ``shown`` is the source's path as errors name it.

    One read for a small file: the first read asks for one byte more than
    fstat's size (a small buffer for a small file: a 1 MiB one costs an
    mmap, mremap and munmap each time), and a short read that reaches that
    size is the end, which spares the read that would return nothing. The
    bytes are hashed as they pass, never read a second time. read/write
    rather than ``copy_file_range``/``sendfile``: the bytes must pass
    through this process to be hashed anyway, and for files of a few KiB the
    extra system call costs more than it saves.
    """
    try:
        # O_NONBLOCK: a FIFO put in a file's place since the check would
        # block this open for ever; opened at once, fstat refuses it.
        fd_in = os.open(
            name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir
        )
    except OSError as exc:
        # Opened by its name in its directory: say which input file it was.
        exc.filename = shown
        raise
    try:
        st = os.fstat(fd_in)
        _check_mode(shown, st)  # it may have changed since the check pass
        mode = 0o555 if st.st_mode & stat.S_IXUSR else 0o444
        fd_out = os.open(
            dest_name or name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            mode,
            dir_fd=dest_dir,
        )
        size = 0
        head = b""
        want = min(_CHUNK, st.st_size + 1)
        try:
            chunk = os.read(fd_in, want)
            if len(chunk) <= st.st_size and len(chunk) < want:
                # The whole file in one read (the common case): one digest
                # call, one write, no loop.
                h = hashlib.sha256(chunk)
                head = chunk[:4]
                size = len(chunk)
                _write_all(fd_out, chunk)
                if size != st.st_size:  # a short read: copy what is left
                    size = _copy_rest(fd_in, fd_out, h, size)
            else:
                h = hashlib.sha256()
                head = chunk[:4]
                h.update(chunk)
                size = len(chunk)
                _write_all(fd_out, chunk)
                if chunk:
                    size = _copy_rest(fd_in, fd_out, h, size)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return h.hexdigest(), size, mode, head


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_rest(fd_in: int, fd_out: int, h: Any, size: int) -> int:
    """Copy and hash until end of file, in large chunks; the size copied."""
    while chunk := os.read(fd_in, _CHUNK):
        h.update(chunk)
        size += len(chunk)
        _write_all(fd_out, chunk)
    return size
