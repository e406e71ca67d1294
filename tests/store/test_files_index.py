"""The files table is derived data: damage is repaired, not a traceback.

``store/.files.sqlite`` is rebuilt from the entries when SQLite cannot read
it (garbage, truncated) or it was emptied (zero bytes), with one line
saying so; a table locked by another process is one error line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.cli import run_cpk

from contentpkg.errors import CpkError
from contentpkg.store import lookup
from contentpkg.store.lookup import FILES_DB


def _tree(tmp_path: Path, name: str, files: int) -> Path:
    root = tmp_path / name
    (root / "share").mkdir(parents=True)
    for i in range(files):
        (root / "share" / f"{name}-{i}.txt").write_text(f"{name} file {i}\n" * 20)
    return root


def _db(home: Path) -> Path:
    return home / "store" / FILES_DB


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database, whatever its name says\n" * 100)


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def _zero_length(db: Path) -> None:
    db.write_bytes(b"")


@pytest.mark.parametrize("damage", [_garbage, _truncated, _zero_length])
def test_damaged_index_is_rebuilt_with_one_line(tmp_path: Path, cpk_home: Path, damage) -> None:
    # Enough rows that the table spans many pages, so truncation cuts data.
    run_cpk("store", "add", _tree(tmp_path, "first", 300), "--version", "1", check=True)
    db = _db(cpk_home)
    # Fold the WAL into the file, then drop it: the damage is to the table itself.
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    damage(db)

    added = run_cpk("store", "add", _tree(tmp_path, "second", 3), "--version", "1")
    assert added.returncode == 0, added.stderr
    assert "Traceback" not in added.stderr
    notes = [line for line in added.stderr.splitlines() if FILES_DB in line]
    assert len(notes) == 1, added.stderr
    assert notes[0].startswith("cpk: warning: ") and "rebuilt it from" in notes[0]
    # Both the old entry's files and the new one's are found again.
    first = tmp_path / "first" / "share" / "first-7.txt"
    second = tmp_path / "second" / "share" / "second-2.txt"
    for path, name in ((first, "first"), (second, "second")):
        found = run_cpk("identify", path)
        assert found.returncode == 0, found.stdout + found.stderr
        assert f": {name} 1 " in found.stdout
    # Repaired once: the next write says nothing.
    again = run_cpk("store", "add", _tree(tmp_path, "third", 1), "--version", "1", check=True)
    assert FILES_DB not in again.stderr
    assert run_cpk("store", "verify", check=True).returncode == 0


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.read()  # held until the test closes our stdin
    """
)


def test_locked_index_is_one_error_line(tmp_path: Path, cpk_home: Path) -> None:
    run_cpk("store", "add", _tree(tmp_path, "first", 2), "--version", "1", check=True)
    root = cpk_home / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root / FILES_DB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(CpkError) as caught:
            lookup.record_files(root, "x,1,abc", [("0" * 64, "f")], timeout=0.5)
        message = str(caught.value)
        assert message == f"{root / FILES_DB}: locked by another process for over 0.5 s; " + (
            "try again when it has finished"
        )
        assert os.path.getsize(root / FILES_DB) > 0  # a lock is no damage: nothing rebuilt
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    lookup.record_files(root, "x,1,abc", [("0" * 64, "f")], timeout=0.5)
