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
naming an entry that does not exist, which readers skip and ``gc`` prunes;
:func:`rebuild` recreates both from the entries' metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.fs import flocked, replace_symlink

if TYPE_CHECKING:
    import sqlite3

SOURCES = ".sources"
FILES_DB = ".files.sqlite"

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


def find_source(store_root: Path, source_hash: str) -> Path | None:
    """The entry directory made from source_hash, if it still exists."""
    link = store_root / SOURCES / _source_key(source_hash)
    try:
        target = os.readlink(link)
    except OSError:
        return None
    path = store_root / SOURCES / target if not os.path.isabs(target) else Path(target)
    path = Path(os.path.normpath(path))
    return path if os.path.isdir(path) else None


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


def _connect(store_root: Path, writable: bool) -> sqlite3.Connection | None:
    import sqlite3  # not at module level: source lookups on the hot path need none

    path = store_root / FILES_DB
    if writable:
        conn = sqlite3.connect(path, timeout=120, isolation_level=None)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _enable_wal(store_root, conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn
    if not path.exists():
        return None
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=120, isolation_level=None)


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


def record_files(store_root: Path, dirname: str, rows: Iterable[tuple[str, str]]) -> None:
    """Record (sha256, path) rows for the entry dirname in one transaction."""
    conn = _connect(store_root, writable=True)
    assert conn is not None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO files (sha256, entry, path) VALUES (?, ?, ?)",
            ((sha, dirname, path) for sha, path in rows),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def find_files(store_root: Path, sha256: str, writable: bool) -> list[tuple[str, str]] | None:
    """(entry, path) pairs holding a file with this hash; None if no table."""
    import sqlite3

    try:
        conn = _connect(store_root, writable=writable)
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
    conn = _connect(store_root, writable=True)
    assert conn is not None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("DELETE FROM files WHERE entry = ?", ((d,) for d in dirnames))
        conn.execute("COMMIT")
    finally:
        conn.close()


def known_entries(store_root: Path) -> set[str]:
    """Entry names that have rows in the files table."""
    conn = _connect(store_root, writable=True)
    assert conn is not None
    try:
        return {row[0] for row in conn.execute("SELECT DISTINCT entry FROM files")}
    finally:
        conn.close()
