"""What ``cpk store add`` of a tree costs per file, counted in system calls.

Creating a file is the floor (``cp -r`` pays it too); everything beyond
open, read, write and close once per file is overhead that grows with the
tree. Two trees that differ only in their number of files are added under
``strace -c``: the difference, divided by the files added, is the cost of
one file, whatever the interpreter's start-up and the store's fixed work.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import add_syscall_counts, run_cpk

from contentpkg.store.hashing import tree_hash

_STATS = ("stat", "lstat", "fstat", "newfstatat", "statx", "fstatat64")
_CHMODS = ("chmod", "fchmod", "fchmodat", "fchmodat2")
_FSYNCS = ("fsync", "fdatasync", "sync_file_range")


def _tree(root: Path, files: int) -> Path:
    """files small files spread over the same five directories."""
    for d in range(5):
        (root / f"d{d}").mkdir(parents=True)
    for i in range(files):
        mode = 0o755 if i % 10 == 0 else 0o644
        path = root / f"d{i % 5}" / f"f{i}.txt"
        path.write_bytes(os.urandom(100 + 37 * i))
        path.chmod(mode)
    return root


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_each_file_costs_one_open_read_write_and_stat_and_no_chmod_or_fsync(
    tmp_path: Path,
) -> None:
    few, many = 40, 120
    small = add_syscall_counts(tmp_path, _tree(tmp_path / "few", few), "few")
    large = add_syscall_counts(tmp_path, _tree(tmp_path / "many", many), "many")
    added = many - few

    def per_file(*names: str) -> float:
        return sum(large.get(n, 0) - small.get(n, 0) for n in names) / added

    # The source and the copy: opened once each, closed once each.
    assert per_file("openat", "open") == 2
    assert per_file("close") == 2
    # A small file is read in one call (the size from fstat, plus one byte
    # to see the end) and written in one: no second read to hash it.
    assert per_file("read") == 1
    assert per_file("write") == 1
    # One fstat of the source (its size and mode); the check pass and the
    # seal learn what they need from the directory listing.
    assert per_file(*_STATS) == 1
    # Created with the sealed mode: no chmod per file. Durable by one
    # syncfs for the whole entry: the fsyncs (the store's own files and
    # directories, the files table) do not grow with the tree.
    assert per_file(*_CHMODS) == 0
    assert per_file(*_FSYNCS) == 0
    assert large.get("syncfs", 0) == small.get("syncfs", 0) == 1


def test_files_sealed_even_when_the_umask_takes_bits_from_their_mode(tmp_path: Path) -> None:
    """The copy creates files with their sealed mode, which a umask can
    narrow; the seal then looks at each file again and repairs it."""
    src = _tree(tmp_path / "src", 12)
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", "store", "add", os.fspath(src),
         "--name", "t", "--version", "1"],
        env=dict(os.environ, CPK_HOME=os.fspath(home)), capture_output=True, text=True,
        check=True, timeout=120, preexec_fn=lambda: os.umask(0o077),
    )  # fmt: skip
    entry = Path(proc.stdout.strip().splitlines()[-1])
    assert tree_hash(entry) == tree_hash(src)
    for dirpath, dirnames, filenames in os.walk(entry):
        for d in dirnames:
            assert stat.S_IMODE(os.lstat(os.path.join(dirpath, d)).st_mode) == 0o555
        for f in filenames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, f)).st_mode)
            assert mode in (0o444, 0o555), (f, oct(mode))
    executable = [p for p in src.rglob("*.txt") if p.stat().st_mode & stat.S_IXUSR]
    assert executable
    for p in executable:
        copy = entry / p.relative_to(src)
        assert stat.S_IMODE(copy.lstat().st_mode) == 0o555


def test_a_setuid_file_found_by_the_copy_leaves_the_store_unchanged(
    tmp_path: Path, cpk_home: Path
) -> None:
    """The check pass no longer stats regular files: their setuid bit is
    refused by the copy, from the descriptor it reads, and the private slot
    goes with the error."""
    run_cpk("store", "add", _tree(tmp_path / "good", 3), "--name", "g", "--version", "1",
            check=True)  # fmt: skip
    before = sorted(p.name for p in (cpk_home / "store").iterdir())
    src = _tree(tmp_path / "bad", 6)
    (src / "d3" / "f3.txt").chmod(0o4755)
    proc = run_cpk("store", "add", src, "--name", "b", "--version", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"cpk: error: {src}/d3/f3.txt: has the setuid or setgid bit; the store refuses such files"
    ]
    assert sorted(p.name for p in (cpk_home / "store").iterdir()) == before
    assert os.listdir(cpk_home / "store" / ".staging") == []


def test_a_tree_named_through_a_symlink_is_added_as_the_tree(
    tmp_path: Path, cpk_home: Path
) -> None:
    """Only names below the source are opened without following links;
    the source as the command line names it may be a link to the tree."""
    src = _tree(tmp_path / "src", 4)
    os.symlink(src, tmp_path / "link")
    proc = run_cpk("store", "add", tmp_path / "link", "--name", "l", "--version", "1", check=True)
    entry = Path(proc.stdout.strip().splitlines()[-1])
    assert tree_hash(entry) == tree_hash(src)


def test_an_unreadable_file_is_named_by_its_path(tmp_path: Path, cpk_home: Path) -> None:
    """Files are opened by name in their directory; the error still names
    the input file in full."""
    src = _tree(tmp_path / "src", 4)
    bad = src / "d2" / "f2.txt"
    bad.chmod(0)
    proc = run_cpk("store", "add", src, "--name", "u", "--version", "1")
    bad.chmod(0o644)
    if os.geteuid() == 0 and proc.returncode == 0:
        pytest.skip("root reads any file")
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert str(bad) in line and "Permission denied" in line
