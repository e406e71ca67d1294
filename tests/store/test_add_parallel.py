"""``cpk store add`` of a large tree: files copied on several threads.

Creating files is most of what adding a tree of small files costs, and the
kernel can create files in two directories at once, so the copy runs on one
thread per CPU the process may use. These tests watch the real command
under ``strace -f``: which threads created the entry's files, how often each
directory was listed, and that the entry is the one a single thread made
(the same content hash, fixed below, the same modes, verified).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import add_syscall_counts, run_cpk

from contentpkg.store.hashing import tree_hash

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")

#: The content hash of :func:`_golden_tree`, as contentpkg computed it before
#: the copy was split over threads: any change to what a tree hashes to
#: (record order, the executable bit, symlinks, derived directories) shows.
GOLDEN_HASH = "sha256:wffc6dzpgjnrf9sazdj20i55b9myi8cdbhjrlhvxjxy96b0n8r1h"


def _golden_tree(root: Path) -> Path:
    """640 files over 24 directories, some executable, some empty, a
    symlink, an empty directory and a derived directory the hash leaves out."""
    for i in range(640):
        d = root / f"d{i % 8}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        seed = hashlib.sha256(b"%d" % i).digest()
        (d / f"f{i}.dat").write_bytes(seed * (i % 97))
        if i % 11 == 0:
            (d / f"f{i}.dat").chmod(0o755)
    (root / "empty").mkdir()
    (root / "d0" / "link").symlink_to("sub0/f0.dat")
    (root / "d1" / "__pycache__").mkdir()
    (root / "d1" / "__pycache__" / "x.pyc").write_bytes(b"derived")
    return root


def _traced_add(
    tmp_path: Path, src: Path, label: str, preexec: Callable[[], None] | None = None
) -> tuple[Path, list[str]]:
    """One ``cpk store add`` of src under ``strace -f``: the entry and the
    trace's lines."""
    log = tmp_path / f"{label}.strace"
    env = dict(os.environ, CPK_HOME=os.fspath(tmp_path / f"home-{label}"))
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=openat,getdents64", "-o", os.fspath(log),
         sys.executable, "-m", "contentpkg", "store", "add", os.fspath(src),
         "--name", "t", "--version", "1"],
        env=env, check=True, capture_output=True, text=True, timeout=120, preexec_fn=preexec,
    )  # fmt: skip
    return Path(proc.stdout.strip().splitlines()[-1]), log.read_text().splitlines()


def _creators(lines: list[str], pattern: str) -> dict[str, int]:
    """Files created (``openat`` with ``O_CREAT``) whose name matches
    pattern, counted by the thread that created them."""
    found: dict[str, int] = {}
    for line in lines:
        if "O_CREAT" in line and re.search(pattern, line):
            pid = line.split(None, 1)[0]
            found[pid] = found.get(pid, 0) + 1
    return found


@needs_strace
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_large_tree_is_copied_on_several_threads(tmp_path: Path) -> None:
    """2,000 files in 40 directories: enough batches that every worker the
    pool starts gets some, however the machine schedules them."""
    src = tmp_path / "src"
    for i in range(2000):
        d = src / f"d{i % 40}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.dat").write_bytes(b"%d" % i * (1 + i % 50))
    entry, lines = _traced_add(tmp_path, src, "many")
    creators = _creators(lines, r'"f\d+\.dat"')
    assert sum(creators.values()) == 2000
    # The pool starts a thread per batch submitted while the others are
    # busy, up to one per CPU (at most 4).
    assert 2 <= len(creators) <= min(len(os.sched_getaffinity(0)), 4), creators
    assert tree_hash(entry) == tree_hash(src)


@needs_strace
def test_one_cpu_copies_on_one_thread(tmp_path: Path) -> None:
    """The workers follow the CPUs the process may run on, as ``taskset``
    or a container's cpuset narrows them."""
    src = _golden_tree(tmp_path / "src")
    cpu = min(os.sched_getaffinity(0))
    entry, lines = _traced_add(tmp_path, src, "one", preexec=lambda: os.sched_setaffinity(0, {cpu}))
    creators = _creators(lines, r'"f\d+\.dat"')
    assert sum(creators.values()) == 640
    assert len(creators) == 1, creators
    assert tree_hash(entry) == GOLDEN_HASH


def test_the_entry_is_the_one_a_single_thread_made(tmp_path: Path, cpk_home: Path) -> None:
    """The content hash is the one contentpkg gave this tree before the
    copy was split (a constant); every file and directory is sealed, the
    executable bit kept, the derived directory left out, and verify agrees."""
    src = _golden_tree(tmp_path / "src")
    assert tree_hash(src) == GOLDEN_HASH
    proc = run_cpk("store", "add", src, "--name", "g", "--version", "1", check=True)
    entry = Path(proc.stdout.strip().splitlines()[-1])
    assert entry.name == "g,1," + GOLDEN_HASH.split(":")[1][:32]
    assert tree_hash(entry) == GOLDEN_HASH
    assert not (entry / "d1" / "__pycache__").exists()
    assert os.readlink(entry / "d0" / "link") == "sub0/f0.dat"
    for dirpath, dirnames, filenames in os.walk(entry):
        for d in dirnames:
            assert stat.S_IMODE(os.lstat(os.path.join(dirpath, d)).st_mode) == 0o555, d
        for f in filenames:
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                continue
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            rel = os.path.relpath(path, entry)
            if rel.startswith(".cpk/"):
                assert mode == 0o444, rel
                continue
            wanted = 0o555 if os.stat(src / rel).st_mode & stat.S_IXUSR else 0o444
            assert mode == wanted, rel
    verified = run_cpk("store", "verify", check=True)
    assert "1 intact, 0 corrupt" in verified.stderr


def test_a_refusal_in_one_thread_leaves_the_store_unchanged(tmp_path: Path, cpk_home: Path) -> None:
    """A setuid file found by one of the copying threads: one line naming
    it, every thread stopped, the slot discarded, nothing published."""
    run_cpk("store", "add", _golden_tree(tmp_path / "good"), "--name", "g", "--version", "1",
            check=True)  # fmt: skip
    before = sorted(p.name for p in (cpk_home / "store").iterdir())
    src = _golden_tree(tmp_path / "bad")
    bad = src / "d5" / "sub2" / "f605.dat"
    bad.chmod(0o4755)
    proc = run_cpk("store", "add", src, "--name", "b", "--version", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"cpk: error: {bad}: has the setuid or setgid bit; the store refuses such files"
    ]
    assert sorted(p.name for p in (cpk_home / "store").iterdir()) == before
    assert os.listdir(cpk_home / "store" / ".staging") == []


@needs_strace
def test_each_source_directory_is_listed_once_and_the_entry_not_at_all(
    tmp_path: Path,
) -> None:
    """The check pass lists each source directory, and the copy makes the
    tree from that listing; sealing takes the copy's directories from its
    records instead of listing the entry's."""

    def tree(root: Path, dirs: int) -> Path:
        for i in range(dirs):
            (root / f"d{i}").mkdir(parents=True)
            (root / f"d{i}" / "f.txt").write_bytes(b"%d" % i)
        return root

    few, many = 10, 50
    _, small = _traced_add(tmp_path, tree(tmp_path / "few", few), "few")
    _, large = _traced_add(tmp_path, tree(tmp_path / "many", many), "many")

    def listed(lines: list[str]) -> int:
        # Each listing is a getdents64 that returns entries and one that
        # returns 0 at the end; count the ends.
        return sum(1 for line in lines if "getdents64(" in line and line.endswith("= 0"))

    assert (listed(large) - listed(small)) / (many - few) == 1


@needs_strace
def test_the_threaded_copy_costs_no_more_system_calls_per_file(tmp_path: Path) -> None:
    """On threads, each file still costs one open, read, write and close of
    the source and of the copy, one fstat and no chmod: the threads add
    per batch of files, not per file."""

    def tree(root: Path, files: int) -> Path:
        for i in range(files):
            d = root / f"d{i % 5}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i}.txt").write_bytes(os.urandom(100 + i % 900))
        return root

    # Both above the threshold, in as many directories, each under a batch.
    few, many = 300, 900
    small, large = (
        add_syscall_counts(tmp_path, tree(tmp_path / "few", few), "few"),
        add_syscall_counts(tmp_path, tree(tmp_path / "many", many), "many"),
    )

    def per_file(*names: str) -> float:
        return sum(large.get(n, 0) - small.get(n, 0) for n in names) / (many - few)

    assert per_file("openat", "open") == 2
    assert per_file("close") == 2
    assert per_file("read") == 1
    assert per_file("write") == 1
    assert per_file("fstat", "newfstatat", "statx") == 1
    assert per_file("chmod", "fchmod", "fchmodat") == 0


def _checked(src: Path) -> object:
    from contentpkg.store.add import check_source

    return check_source(src, os.lstat(src))


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(
    tmp_path: Path,
) -> None:
    """The copy opens each source directory one name at a time without
    following links: a directory replaced by a symlink to elsewhere between
    the check and the copy fails the copy instead of copying elsewhere's bytes."""
    from contentpkg.store.add import copy_tree

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f").write_text("mine\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("SECRET\n")
    listing = _checked(src)
    shutil.rmtree(src / "a")
    (src / "a").symlink_to(tmp_path / "outside")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(OSError) as caught:
        copy_tree(src, dest, listing=listing)  # type: ignore[arg-type]
    assert caught.value.filename == f"{src}/a"
    assert not any(p.read_text() == "SECRET\n" for p in dest.rglob("*") if p.is_file())


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_at_once(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: the copy opens
    without blocking, so the one-line refusal comes instead of a hang."""
    from contentpkg.errors import CpkError
    from contentpkg.store.add import copy_tree

    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):  # enough for the threaded copy
        (src / f"f{i}").write_text(f"{i}\n")
    listing = _checked(src)
    (src / "f7").unlink()
    os.mkfifo(src / "f7")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CpkError, match=r"src/f7: is a FIFO; entries hold only"):
        copy_tree(src, dest, listing=listing)  # type: ignore[arg-type]


_INTERRUPTED_COPY = r"""
import os, signal, sys, threading, time
from pathlib import Path

from contentpkg.store import add

# A test runner may ignore SIGINT, and an ignored signal stays ignored
# across exec: take it back, as an interactive shell's child has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
main = threading.get_ident()
real = add._copy_at
calls = []

def slow_copy(*args, **kwargs):
    calls.append(1)
    if len(calls) == 5:
        signal.pthread_kill(main, signal.SIGINT)  # as a terminal's ^C does
    time.sleep(0.002)
    return real(*args, **kwargs)

add._copy_at = slow_copy
listing = add.check_source(src, os.lstat(src))
try:
    add.copy_tree(src, dest, listing=listing)
except KeyboardInterrupt:
    alive = [t for t in threading.enumerate() if t.name.startswith("cpk-copy")]
    copied = len(calls)
    time.sleep(0.05)
    print(len(alive), copied, len(calls))
else:
    print("not interrupted")
"""


def test_an_interrupted_copy_waits_for_its_threads(tmp_path: Path) -> None:
    """^C while the copy's threads work: they stop at their next file and
    have ended when the interrupt reaches the caller, which then discards a
    slot nothing writes into any more. In a process of its own, whose main
    thread gets the signal (a test runner's may not be the one running the
    test)."""
    src = tmp_path / "src"
    for d in range(8):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(100):
            (src / f"d{d}" / f"f{i}").write_text(f"{i}\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_COPY, src, dest],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    alive, copied, later = map(int, done.stdout.split())
    assert alive == 0
    assert later == copied < 800  # nothing copied after the caller got control
