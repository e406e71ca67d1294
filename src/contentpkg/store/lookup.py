"""Lookup tables: from a source hash, or any file's own hash, to entries.

Two tables, each tuned to its reader:

* **sources** (``<store>/.sources/<algo>-<hex>`` → ``../<entry>``): one
  symlink per source hash. Finding the entries of a lock file is one
  ``readlink`` each, with nothing imported, which keeps ``cpk run`` fast;
  ``symlink(2)`` is atomic, so concurrent writers need no lock.
* **files** (``<store>/.files.sqlite``): every stored file's sha256 with its
  entry and path, for ``cpk identify`` and for finding which entry provides a
  library. Tens of thousands of rows per entry would be as many symlinks;
  SQLite (WAL, busy timeout) takes them in one transaction.

Both are derived data: rows are written before the entry is published and
checked against the store on the way out, so a crash leaves at worst a row
naming an entry that does not exist, which readers skip and ``gc`` prunes.
A files table that SQLite cannot read (not a database, truncated, malformed)
is rebuilt from the entries' ``files.json`` and recorded extra rows by the
first writer that meets it, which says so in one log line (the CLI shows
it); one locked past the busy timeout is one error line, not a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from contentpkg.errors import CpkError
from contentpkg.fs import flocked, replace_symlink

if TYPE_CHECKING:
    import sqlite3

SOURCES = ".sources"
FILES_DB = ".files.sqlite"
#: Seconds a writer waits for another one's transaction: generous, since
#: recording a big entry's rows is one transaction of tens of thousands.
BUSY_TIMEOUT = 120.0
#: The metadata key of rows an entry adds to the files table beyond its own
#: files (an ELF file's hash before patching), kept so a rebuild has them.
EXTRA_ROWS_KEY = "extra_file_rows"

_T = TypeVar("_T")


def _warn(message: str, *args: object) -> None:
    """Log a repair as a warning. ``logging`` (with threading, traceback and
    string) is imported here, not at the top: a view rebuilt from the run
    memo looks sources up through this module and logs nothing."""
    import logging

    logging.getLogger(__name__).warning(message, *args)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL,
    entry TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (sha256, entry, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_entry ON files (entry);
"""


def _source_key(source_hash: str) -> str:
    algo, _, value = source_hash.partition(":")
    return f"{algo}-{value}" if value else algo


def link_source(store_root: Path, source_hash: str, entry_path: Path) -> None:
    """Point source_hash at an entry unless a live link is already there.

    An entry of this store is linked relatively (``../name,version,hash``) so
    the store can move; an identical entry found in a read-only layer is
    linked by absolute path, so the user store still finds it next time
    instead of unpacking the source again.
    """
    area = store_root / SOURCES
    area.mkdir(exist_ok=True)
    link = area / _source_key(source_hash)
    same_store = entry_path.parent == store_root
    target = f"../{entry_path.name}" if same_store else os.fspath(entry_path)
    try:
        os.symlink(target, link)
    except FileExistsError:
        if os.path.exists(link):
            return
        # The old target was collected: replace the dangling link atomically.
        # Not durable: the table is derived data that rebuild() recreates.
        replace_symlink(link, target, durable=False)


def _spellings(source_hash: str) -> list[str]:
    """The keys source_hash may be recorded under: ``.deb`` and ELF entries
    made before sources were always ``sha256:<hex>`` recorded bare hex."""
    keys = [_source_key(source_hash)]
    value = source_hash.removeprefix("sha256:")
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        keys.append(value if value != source_hash else f"sha256-{value}")
    return keys


def find_source(store_root: Path, source_hash: str) -> Path | None:
    """The entry directory made from source_hash, if it still exists."""
    # Strings, not pathlib, until the answer: a sync asks this once per
    # locked package, and each Path built costs microseconds there.
    area = f"{os.fspath(store_root)}/{SOURCES}/"
    for key in _spellings(source_hash):
        try:
            target = os.readlink(area + key)
        except OSError:
            continue
        break
    else:
        return None
    if target.startswith("../") and "/" not in target[3:]:
        # This store's own entry, linked as link_source() does it: the path
        # is the root's plus the name, with nothing to normalise.
        name = target[3:]
        path = f"{os.fspath(store_root)}/{name}" if name not in ("", ".", "..") else None
    else:
        path = None
    if path is None:
        path = os.path.normpath(target if os.path.isabs(target) else area + target)
    return Path(path) if os.path.isdir(path) else None


def unlink_sources(store_root: Path, dirnames: set[str]) -> None:
    """Remove source links that point at any of dirnames (after gc)."""
    area = store_root / SOURCES
    try:
        names = os.listdir(area)
    except FileNotFoundError:
        return
    for name in names:
        try:
            target = os.readlink(area / name)
            if not os.path.isabs(target) and target.rsplit("/", 1)[-1] in dirnames:
                os.unlink(area / name)
        except OSError:
            continue


def _connect(
    store_root: Path, writable: bool, timeout: float = BUSY_TIMEOUT
) -> sqlite3.Connection | None:
    import sqlite3  # not at module level: source lookups on the hot path need none

    path = store_root / FILES_DB
    if writable:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                _enable_wal(store_root, conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn
    if not path.exists():
        return None
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def _writing(
    store_root: Path, work: Callable[[sqlite3.Connection], _T], timeout: float = BUSY_TIMEOUT
) -> _T:
    """Run work on a writable connection, rebuilding a table SQLite cannot read.

    The table is derived data, so a damaged one is no reason to fail a
    store write: it is rebuilt once and the work is done again. A table
    locked for longer than ``timeout`` is reported in one line.
    """
    import sqlite3

    path = store_root / FILES_DB
    for attempt in (1, 2):
        seen = _ino(path)
        conn = None
        try:
            conn = _connect(store_root, writable=True, timeout=timeout)
            assert conn is not None
            if conn.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None:
                _refill_if_lost(store_root, conn)
            return work(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CpkError(
                    f"{path}: locked by another process for over {timeout:g} s; "
                    "try again when it has finished"
                ) from None
            if attempt == 2:
                raise CpkError(f"{path}: unusable even after a rebuild ({exc})") from None
            reason = str(exc)
        except sqlite3.DatabaseError as exc:
            if attempt == 2:
                raise CpkError(f"{path}: unusable even after a rebuild ({exc})") from None
            reason = str(exc)
        finally:
            if conn is not None:
                conn.close()
        count = rebuild_files(store_root, broken_ino=seen)
        if count is not None:
            _warn("%s: %s; rebuilt it from %d entries", path, reason, count)
    raise AssertionError("unreachable")


def _ino(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def rebuild_files(store_root: Path, broken_ino: int | None = None) -> int | None:
    """Recreate the files table from the entries; the number of entries read.

    Built beside the old table and renamed over it, under the lock that
    orders WAL switches, so concurrent writers that met the same damage
    rebuild once: a later one sees the inode changed (``broken_ino`` is the
    one it found broken) and returns None without rebuilding again.
    """
    import sqlite3

    from contentpkg.store.locks import LOCKS

    path = store_root / FILES_DB
    with flocked(store_root / LOCKS / "files-db.lock"):
        if broken_ino is not None and _ino(path) != broken_ino:
            return None
        tmp = store_root / f".tmp-{FILES_DB}.{os.getpid()}"
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            count, _ = _fill(store_root, conn)
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last close checkpoints and removes tmp's WAL
        # The damaged table's journal must not be replayed into the new one.
        for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        os.replace(tmp, path)
    return count


def _fill(store_root: Path, conn: sqlite3.Connection) -> tuple[int, int]:
    """Insert every entry's rows (in the caller's transaction); (entries, rows)."""
    from contentpkg.store.entry import ENTRY_JSON, FILES_JSON, parse_dirname
    from contentpkg.store.hashing import META_DIR

    entries = total = 0
    for name in sorted(os.listdir(store_root)):
        if parse_dirname(name) is None:
            continue
        meta_dir = store_root / name / META_DIR
        try:
            with open(meta_dir / FILES_JSON, "rb") as f:
                rows = [(r[1], r[3]) for r in json.load(f) if r[0] in ("f", "x")]
            with open(meta_dir / ENTRY_JSON, "rb") as f:
                extra = json.load(f).get(EXTRA_ROWS_KEY) or []
            rows += [(str(sha), str(rel)) for sha, rel in extra]
        except (OSError, ValueError, TypeError, AttributeError, IndexError):
            continue  # an entry verify will name; nothing to index
        conn.executemany(
            "INSERT OR IGNORE INTO files (sha256, entry, path) VALUES (?, ?, ?)",
            ((sha, name, rel) for sha, rel in rows),
        )
        entries += 1
        total += len(rows)
    return entries, total


def _refill_if_lost(store_root: Path, conn: sqlite3.Connection) -> None:
    """Refill an empty table when the store holds entries with files.

    Rows are committed before their entry is published and dropped after it
    is removed, so an empty table beside such entries was lost (a file
    truncated to zero bytes reads as a new, empty database). Refilled in
    place, inside one write transaction, so concurrent writers lose nothing.
    """
    from contentpkg.store.entry import parse_dirname

    if not any(parse_dirname(n) for n in os.listdir(store_root)):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None:
            conn.execute("ROLLBACK")  # another writer got here first
            return
        entries, rows = _fill(store_root, conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if rows:
        path = store_root / FILES_DB
        _warn("%s: empty beside %d entries; rebuilt it from them", path, entries)


def _enable_wal(store_root: Path, conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL, once, whoever gets there first.

    Changing the journal mode takes an exclusive lock that SQLite's busy
    handler does not wait for, so two processes opening a fresh store at
    once would see "database is locked". A file lock orders them; the mode
    is stored in the database, so later connections skip this.
    """
    import sqlite3
    import time

    from contentpkg.store.locks import LOCKS

    with flocked(store_root / LOCKS / "files-db.lock"):
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                # A reader still in rollback mode from before the switch.
                time.sleep(0.02 * (attempt + 1))
        conn.execute("PRAGMA journal_mode=WAL")


def record_files(
    store_root: Path,
    dirname: str,
    rows: Iterable[tuple[str, str]],
    timeout: float = BUSY_TIMEOUT,
) -> None:
    """Record (sha256, path) rows for the entry dirname in one transaction."""
    rows = sorted(rows)  # in key order: see record_entries

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO files (sha256, entry, path) VALUES (?, ?, ?)",
            ((sha, dirname, path) for sha, path in rows),
        )
        conn.execute("COMMIT")

    _writing(store_root, work, timeout)


def record_entries(
    store_root: Path,
    rows: dict[str, list[tuple[str, str]]],
    timeout: float = BUSY_TIMEOUT,
) -> None:
    """:func:`record_files` for several entries in one transaction (a batch of pulls).

    Rows go in in the table's key order (sha256, entry, path): the hashes
    are random, so in the order a tree was walked every insert lands on a
    different page of the B-tree, and sorted ones append. Measured for
    10,000 rows: about half the insert time.
    """
    ordered = sorted((sha, dirname, path) for dirname, pairs in rows.items() for sha, path in pairs)

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO files (sha256, entry, path) VALUES (?, ?, ?)", ordered
        )
        conn.execute("COMMIT")

    _writing(store_root, work, timeout)


def find_files(store_root: Path, sha256: str, writable: bool) -> list[tuple[str, str]] | None:
    """(entry, path) pairs holding a file with this hash; None if no table."""
    import sqlite3

    if not store_root.is_dir():
        return []  # a store not made yet holds nothing: no table to build or repair
    if writable:
        try:
            rows = _writing(
                store_root,
                lambda conn: conn.execute(
                    "SELECT entry, path FROM files WHERE sha256 = ? ORDER BY entry, path",
                    (sha256,),
                ).fetchall(),
            )
        except CpkError:
            return None
        return [(e, p) for e, p in rows if os.path.isdir(store_root / e)]
    try:
        conn = _connect(store_root, writable=False)
    except sqlite3.Error:
        return None
    if conn is None:
        return None
    try:
        rows = conn.execute(
            "SELECT entry, path FROM files WHERE sha256 = ? ORDER BY entry, path", (sha256,)
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return [(e, p) for e, p in rows if os.path.isdir(store_root / e)]


def forget(store_root: Path, dirnames: Iterable[str]) -> None:
    """Drop the rows of removed entries."""
    names = list(dirnames)

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("DELETE FROM files WHERE entry = ?", ((d,) for d in names))
        conn.execute("COMMIT")

    _writing(store_root, work)


def known_entries(store_root: Path) -> set[str]:
    """Entry names that have rows in the files table."""
    return _writing(
        store_root,
        lambda conn: {row[0] for row in conn.execute("SELECT DISTINCT entry FROM files")},
    )
