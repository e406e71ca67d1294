"""Adding many entries in one call: shared flush, one files-table transaction,
nothing published before it is durable, and no file hashed twice."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from support.debs import Deb
from support.elfbuild import build_lib

from contentpkg.context import Context
from contentpkg.elf import package
from contentpkg.errors import CpkError
from contentpkg.store import Store, add, hashing, lookup
from contentpkg.store.entry import parse_dirname
from contentpkg.store.staging import STAGING


def _debs(tmp_path: Path, count: int) -> list[Path]:
    out = []
    for i in range(count):
        deb = Deb(f"pkg{i}", files={f"usr/share/pkg{i}/data": f"data {i}\n".encode()})
        out.append(deb.build(tmp_path / f"pkg{i}.deb"))
    return out


def _published(root: Path) -> set[str]:
    try:
        return {n for n in os.listdir(root) if parse_dirname(n)}
    except FileNotFoundError:
        return set()


class _Counter:
    """Counts what a store add does at the seams the batch shares."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.root = root
        self.syncs: list[set[str]] = []  # entries visible at each flush
        self.records: list[set[str]] = []  # ... and when rows are written
        self.connections = 0
        self.commits = 0
        real_sync = add.sync_filesystem
        real_connect = lookup._connect
        real_record = lookup.record_entries

        def sync(path: str | os.PathLike[str]) -> None:
            self.syncs.append(_published(root))
            real_sync(path)

        def connect(store_root: Path, writable: bool, timeout: float = 1.0):  # type: ignore[no-untyped-def]
            conn = real_connect(store_root, writable, timeout)
            if writable and conn is not None:
                self.connections += 1
                conn.set_trace_callback(self._trace)
            return conn

        def record(store_root: Path, rows: dict, timeout: float = lookup.BUSY_TIMEOUT) -> None:  # type: ignore[type-arg]
            assert self.syncs, "rows recorded before the content was flushed"
            self.records.append(_published(root))
            real_record(store_root, rows, timeout)

        monkeypatch.setattr(add, "sync_filesystem", sync)
        monkeypatch.setattr(lookup, "_connect", connect)
        monkeypatch.setattr(lookup, "record_entries", record)

    def _trace(self, statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            self.commits += 1


def test_many_debs_share_one_flush_one_connection_and_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Context.from_environ()
    root = Store.open(ctx=ctx).user.root
    counter = _Counter(monkeypatch, root)
    debs = _debs(tmp_path, 6)
    added = package.add_packages(ctx, debs, jobs=1)
    assert [a.error for a in added] == [None] * 6
    assert all(a.result is not None and a.result.created for a in added)
    assert all(a.result is not None and a.result.entry.path.is_dir() for a in added)
    # One flush, before any of the six was visible; rows written after the
    # flush and still before any rename.
    assert counter.syncs == [set()]
    assert counter.records == [set()]
    assert counter.connections == 1
    assert counter.commits == 1
    assert len(_published(root)) == 6
    conn = sqlite3.connect(root / lookup.FILES_DB)
    entries = {row[0] for row in conn.execute("SELECT DISTINCT entry FROM files")}
    conn.close()
    assert entries == _published(root)
    assert not [n for n in os.listdir(root / STAGING) if not n.endswith(".lock")]


def test_a_bad_deb_in_a_batch_leaves_the_others_added(tmp_path: Path) -> None:
    ctx = Context.from_environ()
    debs = _debs(tmp_path, 3)
    bad = tmp_path / "broken.deb"
    bad.write_bytes(debs[1].read_bytes()[:200])
    added = package.add_packages(ctx, [debs[0], bad, debs[2]], jobs=1)
    assert added[0].error is None and added[2].error is None
    assert added[1].error is not None and "broken.deb" in added[1].error
    assert {a.result.entry.name for a in added if a.result} == {"pkg0", "pkg2"}
    root = Store.open(ctx=ctx).user.root
    assert {parse_dirname(n)[0] for n in _published(root)} == {"pkg0", "pkg2"}  # type: ignore[index]


def test_a_batch_that_fails_publishes_nothing_and_leaves_no_slot(tmp_path: Path) -> None:
    ctx = Context.from_environ()
    store = Store.open(ctx=ctx)
    debs = _debs(tmp_path, 2)
    with pytest.raises(RuntimeError), add.publishing_together(store):
        for deb in debs:
            package.add_package(store, deb)
        assert _published(store.user.root) == set()  # staged, not yet visible
        raise RuntimeError("interrupted")
    assert _published(store.user.root) == set()
    assert os.listdir(store.user.root / STAGING) == []
    # The same adds afterwards work as if nothing had happened.
    assert all(not a.error for a in package.add_packages(ctx, debs, jobs=1))


def test_the_same_deb_twice_in_one_batch_is_one_entry(tmp_path: Path) -> None:
    ctx = Context.from_environ()
    store = Store.open(ctx=ctx)
    deb = _debs(tmp_path, 1)[0]
    with add.publishing_together(store):
        first, _ = package.add_package(store, deb)
        second, _ = package.add_package(store, deb)
    assert first.entry.path == second.entry.path
    assert sorted([first.created, second.created]) == [False, True]
    assert len(_published(store.user.root)) == 1


def test_a_deb_is_read_once_no_file_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unpacking hashes every file; only what patching rewrote is hashed
    once more (its new bytes), and the tree is never scanned."""
    lib = build_lib(tmp_path / "build" / "libfoo.so.1", "foo", "foo-1", soname="libfoo.so.1")
    files: dict[str, bytes | str] = {
        "usr/lib/x86_64-linux-gnu/libfoo.so.1": lib.read_bytes(),
        "usr/share/doc/foo/README": b"docs\n",
        "usr/share/foo/a": b"same\n",
        "usr/share/foo/b": b"same\n",
    }
    deb = Deb("foo", files=files).build(tmp_path / "foo.deb")
    hashed: list[str] = []
    real = hashing.hash_file

    def counting(path: str | os.PathLike[str]) -> tuple[str, int]:
        hashed.append(os.path.basename(path))
        return real(path)

    def no_scan(root: str | os.PathLike[str]) -> list[hashing.FileRecord]:
        raise AssertionError("the staged tree was scanned again")

    monkeypatch.setattr(package, "hash_file", counting)
    monkeypatch.setattr(add, "scan_tree", no_scan)
    result, _ = package.add_package(Store.open(ctx=Context.from_environ()), deb)
    assert hashed == ["libfoo.so.1"]
    # And what was recorded is what is there.
    assert hashing.tree_hash(result.entry.path) == result.entry.content_hash
    facts = result.entry.metadata["elf"]["lib/x86_64-linux-gnu/libfoo.so.1"]
    assert facts["original_sha256"] == hashing.hash_file(lib)[0]
    assert facts["sha256"] != facts["original_sha256"]


def test_publish_failure_is_one_line_per_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(path: str | os.PathLike[str]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(add, "sync_filesystem", full)
    ctx = Context.from_environ()
    added = package.add_packages(ctx, _debs(tmp_path, 2), jobs=1)
    assert all(a.result is None and a.error and "no space left" in a.error for a in added)
    root = Store.open(ctx=ctx).user.root
    assert _published(root) == set()
    assert [n for n in os.listdir(root / STAGING)] == []
    # Alone (no batch), the same failure is the command's one error line.
    (tmp_path / "x").mkdir()
    with pytest.raises(CpkError, match="no space left"):
        package.add_package(Store.open(ctx=ctx), _debs(tmp_path / "x", 1)[0])


def test_parallel_chunks_balance_by_size_and_keep_the_order(tmp_path: Path) -> None:
    """Workers take chunks balanced by size; results come back in input order."""
    paths = []
    for i in range(7):
        body = os.urandom(1000 * (7 - i) ** 3)  # sizes far apart
        deb = Deb(f"big{i}", files={f"usr/share/big{i}/blob": body})
        paths.append(deb.build(tmp_path / f"big{i}.deb"))
    bad = tmp_path / "empty.deb"
    bad.write_bytes(b"")
    paths.insert(3, bad)
    added = package.add_packages(Context.from_environ(), paths, jobs=2)
    assert [a.path for a in added] == paths
    names = [a.result.entry.name if a.result else None for a in added]
    assert names == ["big0", "big1", "big2", None, "big3", "big4", "big5", "big6"]
    assert added[3].error is not None and "empty.deb" in added[3].error


def test_a_small_file_is_copied_with_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read that would only say "end of file" is skipped once fstat's
    size is reached; what was written is what was hashed."""
    src = tmp_path / "small.txt"
    src.write_bytes(b"x" * 3000)
    reads: list[int] = []
    real = os.read

    def counting(fd: int, n: int) -> bytes:
        data = real(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting)
    digest, size, mode = add.copy_file(src, tmp_path / "copy.txt")
    monkeypatch.undo()
    assert reads == [3000]
    assert (digest, size) == hashing.hash_file(tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_bytes() == src.read_bytes()
    assert mode == 0o444


def test_a_publish_that_fails_partway_reports_exactly_what_was_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rename of a batch fails (the store's directory out of room):
    the first entry is in the store and reported added; only the rest fail."""
    import errno

    from contentpkg.store import staging

    real = staging.Slot.publish
    calls: list[Path] = []

    def publish(self: staging.Slot, final: Path, *, durable: bool = True) -> bool:
        calls.append(final)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, final, durable=durable)

    monkeypatch.setattr(staging.Slot, "publish", publish)
    ctx = Context.from_environ()
    debs = _debs(tmp_path, 3)
    added = package.add_packages(ctx, debs, jobs=1)
    root = Store.open(ctx=ctx).user.root
    published = {parse_dirname(n)[0] for n in _published(root)}  # type: ignore[index]
    assert len(calls) == 2 and len(published) == 1
    ok = [a for a in added if a.result is not None]
    failed = [a for a in added if a.result is None]
    assert [a.result.entry.name for a in ok] == sorted(published)  # type: ignore[union-attr]
    assert ok[0].result.created and not ok[0].result.pending and ok[0].error is None  # type: ignore[union-attr]
    assert ok[0].result.entry.path.is_dir()  # type: ignore[union-attr]
    assert len(failed) == 2 and all("no space left" in (a.error or "") for a in failed)
    assert os.listdir(root / STAGING) == []
    # Adding again puts in what failed and finds what was published.
    monkeypatch.setattr(staging.Slot, "publish", real)
    again = package.add_packages(ctx, debs, jobs=1)
    assert all(a.error is None for a in again)
    assert sorted(a.result.created for a in again) == [False, True, True]  # type: ignore[union-attr]


def test_repeated_small_files_of_a_deb_are_linked_as_unpacked_never_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same icon in three directories, and the same bytes once executable:
    the copies are hard links made while unpacking (no second file created,
    none unlinked afterwards), the executable one stays apart, and the entry
    hashes and verifies as if each had been written."""
    icon = b"\x89PNG same icon bytes\n" * 50
    files: dict[str, bytes | str] = {
        "usr/share/icons/16/app.png": icon,
        "usr/share/icons/32/app.png": icon,
        "usr/share/icons/48/app.png": icon,
        "usr/bin/app-icon": icon,  # the Deb helper makes usr/bin/ files executable
        "usr/share/doc/app/README": b"other\n",
    }
    deb = Deb("app", files=files).build(tmp_path / "app.deb")
    created: list[str] = []
    unlinked: list[str] = []
    real_open, real_unlink = os.open, os.unlink

    def counting_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & os.O_CREAT and "app.png" in str(path):
            created.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    def counting_unlink(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        unlinked.append(str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "unlink", counting_unlink)
    result, _ = package.add_package(Store.open(ctx=Context.from_environ()), deb)
    monkeypatch.undo()
    entry = result.entry.path
    assert len(created) == 1
    assert not [p for p in unlinked if "app.png" in p or "app-icon" in p]
    inodes = {os.stat(entry / "share/icons" / d / "app.png").st_ino for d in ("16", "32", "48")}
    assert len(inodes) == 1
    assert os.stat(entry / "bin/app-icon").st_ino not in inodes
    assert os.access(entry / "bin/app-icon", os.X_OK)
    assert hashing.tree_hash(entry) == result.entry.content_hash
    assert result.entry.metadata["stored_size"] == result.entry.metadata["size"] - 2 * len(icon)
