"""Concurrent writers and killed writers: one whole entry or none, never half."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.cli import run_cpk

from contentpkg.store import Store
from contentpkg.store.staging import STAGING, Slot, clean_stale
from contentpkg.store.verify import verify


def make_tree(root: Path, seed: int, files: int = 200) -> Path:
    rng = random.Random(seed)
    for i in range(files):
        sub = root / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(rng.randbytes(rng.randint(0, 3000)))
    return root


def entries(home: Path) -> list[str]:
    return sorted(n for n in os.listdir(home / "store") if not n.startswith("."))


def test_eight_processes_adding_overlapping_entries(tmp_path: Path, cpk_home: Path) -> None:
    trees = [make_tree(tmp_path / f"t{i}", seed=i) for i in range(4)]
    # Each process adds all four trees in its own order: every tree is added
    # by all eight at about the same time.
    script = (
        "import sys, random\n"
        "from pathlib import Path\n"
        "from contentpkg.store import Store\n"
        "from contentpkg.store.add import add_path\n"
        "trees = sys.argv[2:]\n"
        "random.Random(int(sys.argv[1])).shuffle(trees)\n"
        "store = Store.open()\n"
        "for i, t in enumerate(trees):\n"
        "    add_path(store, Path(t), 'tree' + t[-1], '1')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(n), *map(str, trees)]) for n in range(8)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    names = entries(cpk_home)
    assert len(names) == 4
    assert sorted(n.split(",")[0] for n in names) == ["tree0", "tree1", "tree2", "tree3"]
    store = Store.open()
    assert verify(store.entries()) == []
    assert os.listdir(cpk_home / "store" / STAGING) == []
    # The lookup table holds one row per file per entry, no duplicates.
    sample = next(iter((trees[0] / "d0").iterdir()))
    _, found = store.identify(sample)
    assert [e.name for e, _ in found].count("tree0") == 1


def test_sigkill_at_random_moments_never_leaves_a_partial_entry(
    tmp_path: Path, cpk_home: Path
) -> None:
    src = make_tree(tmp_path / "big", seed=99, files=1500)
    rng = random.Random(1234)
    # How long one add takes here, so kills land before, during and after.
    start = time.monotonic()
    run_cpk("store", "add", src, "--name", "probe", "--version", "1", check=True)
    duration = time.monotonic() - start
    survived = debris_seen = 0
    for trial in range(24):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contentpkg",
                "store",
                "add",
                str(src),
                "--name",
                "big",
                "--version",
                str(trial),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, duration * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        survived += proc.returncode == 0
        debris_seen += bool(os.listdir(cpk_home / "store" / STAGING))
        # Whatever moment it died at, every entry present is whole.
        store = Store.open()
        assert verify(store.entries()) == [], f"trial {trial}"
        for name in entries(cpk_home):
            assert (cpk_home / "store" / name / ".cpk" / "entry.json").is_file()
    # The next run removes what the killed ones left in staging.
    run_cpk("store", "add", src, "--name", "big", "--version", "final", check=True)
    assert os.listdir(cpk_home / "store" / STAGING) == []
    assert verify(Store.open().entries()) == []
    assert survived < 24, "no kill landed during an add; the test proved nothing"
    assert debris_seen > 0, "no kill interrupted a staged add; the test proved nothing"


def test_cleanup_spares_a_live_writer(tmp_path: Path) -> None:
    store = Store.open()
    store.ensure()
    root = store.user.root
    # Hold a slot in another process, then clean from this one.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from contentpkg.store.staging import Slot\n"
            "s = Slot(Path(sys.argv[1]))\n(s.path / 'work').write_text('x')\n"
            "print(s.path, flush=True)\ntime.sleep(60)\n",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    live = Path(holder.stdout.readline().strip())
    # Debris: a slot whose owner is gone (closed without cleanup = crash).
    dead = Slot(root)
    (dead.path / "junk").write_text("x")
    os.close(dead.lock_fd)  # the owner "dies": its flock is released
    dead.lock_fd = None
    orphan = root / STAGING / "no-lock-dir"
    orphan.mkdir()
    try:
        removed = clean_stale(root)
        assert live.exists() and (live / "work").read_text() == "x"
        assert not dead.path.exists() and not orphan.exists()
        assert set(removed) == {dead.path.name, orphan.name}
    finally:
        holder.kill()
        holder.wait()
    clean_stale(root)
    assert os.listdir(root / STAGING) == []


def test_threads_opening_a_fresh_lookup_table_at_once(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL is not covered by its busy timeout."""
    import threading

    from contentpkg.store import lookup

    for trial in range(30):
        root = tmp_path / f"s{trial}"
        root.mkdir()
        errors: list[BaseException] = []

        def record(i: int, root: Path = root, errors: list = errors) -> None:
            try:
                lookup.record_files(root, f"e{i},1,{'0' * 32}", [("ab" * 32, f"f{i}")])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=record, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], errors
        assert len(lookup.known_entries(root)) == 3
