"""Benchmark: `cpk store add` against `sha256sum` over the same files.

Two trees: 10,000 small files, and a few large files. For each, it times
(medians of several runs, page cache warm for both sides):

* ``sha256sum``: the floor, reading and hashing every byte once;
* ``cpk hash``: contentpkg's content hash of the tree, in process;
* ``cpk store add``: the real command, a fresh store each run (copy, hash,
  seal, sync, publish), including the interpreter's start-up;
* its floors, in the same rounds: ``cp -r`` of the tree into the same parent
  directory as cpk's stores (creating the files, which on this disk costs
  far more than reading and hashing them), the same followed by one
  ``syncfs`` (``sync -f``: the copy made durable, as cpk makes an entry
  before publishing it), and the interpreter's start
  both bare (``python3 -I -S -c pass``) and as cpk's command starts it,
  with the site packages' start-up files (``python3 -c pass``: whatever
  ``.pth`` files the machine's Python runs, cpk pays too).

and prints each as a ratio to ``sha256sum`` measured in the same run. The
machines are noisy: read the ratios, not the seconds.

    python bench/store.py [--runs 5] [--small 10000] [--large 4 --large-mib 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from contentpkg.fs import remove_tree  # entries are read-only


def make_small_tree(root: Path, count: int) -> None:
    rng = __import__("random").Random(0)
    for i in range(count):
        d = root / f"d{i % 100:02d}" / f"e{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.txt").write_bytes(rng.randbytes(rng.randint(100, 4000)))


def make_large_tree(root: Path, count: int, mib: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        with open(root / f"blob{i}.bin", "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))


def times_of(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(fns: list[Callable[[], object]], runs: int) -> list[list[float]]:
    """Each function's times, run in turn round by round, so a busy spell of
    the machine slows every side alike."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            # Untimed: write back what the previous side left dirty, or cpk's
            # syncfs (which flushes the whole file system) would pay for the
            # copy that ran before it.
            os.sync()
            out[i].extend(times_of(fn, 1))
    return out


def cell(times: list[float], base: float | None = None) -> str:
    median = statistics.median(times)
    ratio = f" {median / base:4.2f}x" if base else ""
    return f"{median:6.3f}s [{min(times):.3f}-{max(times):.3f}]{ratio}"


def sha256sum(tree: Path) -> None:
    files = [str(p) for p in tree.rglob("*") if p.is_file()]
    # xargs-style batches keep the command line within limits.
    for i in range(0, len(files), 2000):
        subprocess.run(["sha256sum", *files[i : i + 2000]], check=True, stdout=subprocess.DEVNULL)


def cpk_hash(tree: Path) -> None:
    from contentpkg.store.hashing import tree_hash

    tree_hash(tree)


def copy_tree(tree: Path, work: Path, label: str = "copy") -> Callable[[], None]:
    """``cp -r`` of the tree to a new directory beside cpk's stores."""
    counter = iter(range(10**6))

    def run() -> None:
        dest = work / f"home-{label}{next(counter)}"
        subprocess.run(["cp", "-r", str(tree), str(dest)], check=True)

    return run


def copy_tree_durably(tree: Path, work: Path) -> Callable[[], None]:
    """``cp -r`` then ``sync -f`` (one syncfs): the copy made durable, as a
    store entry must be before it is published."""
    copy = copy_tree(tree, work, "synced-copy")

    def run() -> None:
        copy()
        subprocess.run(["sync", "-f", str(work)], check=True)

    return run


def python_start() -> None:
    subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)


def python_site_start() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def cpk_add(tree: Path, work: Path) -> Callable[[], None]:
    counter = iter(range(10**6))

    def run() -> None:
        home = work / f"home{next(counter)}"
        env = dict(os.environ, CPK_HOME=str(home))
        # cpk's own modules compile once, as in any install, not per process.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "contentpkg",
                "store",
                "add",
                str(tree),
                "--name",
                "bench",
                "--version",
                "1",
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        sys.exit("bench/store.py needs sha256sum (coreutils)")

    with tempfile.TemporaryDirectory(prefix="cpk-bench-") as tmp:
        work = Path(tmp)
        trees = {
            f"{args.small} small files": work / "small",
            f"{args.large} x {args.large_mib} MiB": work / "large",
        }
        make_small_tree(trees[f"{args.small} small files"], args.small)
        make_large_tree(trees[f"{args.large} x {args.large_mib} MiB"], args.large, args.large_mib)
        print(f"stores and copies under {work}")
        print(
            f"{'tree':<20} {'sha256sum':<24} {'cpk hash':<30} {'cpk store add':<30} "
            f"{'floor: cp -r':<30} {'floor: cp -r; sync -f':<30} {'floor: python -I -S':<30} "
            f"{'floor: python (site)':<30}"
        )
        for label, tree in trees.items():
            sha256sum(tree)  # warm the page cache for both sides
            base, hashed, added, copied, synced, started, site_started = interleaved(
                [
                    lambda t=tree: sha256sum(t),
                    lambda t=tree: cpk_hash(t),
                    cpk_add(tree, work),
                    copy_tree(tree, work),
                    copy_tree_durably(tree, work),
                    python_start,
                    python_site_start,
                ],
                args.runs,
            )
            for home in work.glob("home*"):
                remove_tree(home)
            floor = statistics.median(base)
            print(
                f"{label:<20} {cell(base):<24} {cell(hashed, floor):<30} {cell(added, floor):<30} "
                f"{cell(copied, floor):<30} {cell(synced, floor):<30} {cell(started, floor):<30} "
                f"{cell(site_started, floor)}"
            )
            for what, times in (("cp -r", copied), ("cp -r; sync -f", synced)):
                above = statistics.median(added) - statistics.median(times)
                print(
                    f"{'':<20} cpk store add - {what}: {above:+.3f}s "
                    f"({statistics.median(added) / statistics.median(times):.2f}x {what})"
                )
        print(
            f"medians of {args.runs} interleaved runs [min-max]; ratios are cpk time / "
            f"sha256sum time (goal for store add of the small files: <= 1.5x); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
