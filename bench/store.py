"""Benchmark: `cpk store add` against `sha256sum` over the same files.

Two trees: 10,000 small files, and a few large files. For each, it times
(medians of several runs, page cache warm for both sides):

* ``sha256sum``: the floor, reading and hashing every byte once;
* ``cpk hash``: contentpkg's content hash of the tree, in process;
* ``cpk store add``: the real command, a fresh store each run (copy, hash,
  seal, sync, publish), including the interpreter's start-up;
* with ``--baseline-src OTHER/src``, the same command run by another
  checkout's cpk in the same rounds: a change against what it changed,
  under the same load;
* its floors, in the same rounds: ``cp -r`` of the tree into the same parent
  directory as cpk's stores (creating the files, which on this disk costs
  far more than reading and hashing them), the same followed by one
  ``syncfs`` (``sync -f``: the copy made durable, as cpk makes an entry
  before publishing it), ``tar -x`` of the tree (made once, read from the
  page cache), and the interpreter's start
  both bare (``python3 -I -S -c pass``) and as cpk's command starts it,
  with the site packages' start-up files (``python3 -c pass``: whatever
  ``.pth`` files the machine's Python runs, cpk pays too).

and prints each as a ratio to ``sha256sum`` measured in the same run, with
the CPU time (user + system) beside the wall time, and cpk's ratio to each
floor taken round by round. The machines are noisy: read the ratios, not
the seconds.

    python bench/store.py [--runs 5] [--small 10000] [--large 4 --large-mib 64]
                          [--dir PARENT] [--baseline-src OTHER/src]

``--dir`` chooses the parent of the work directory (default: the system's
temporary directory). On a file system without a journal, ext4 skips inodes
freed in the last minute (five when their table block is still dirty) when
it allocates one, reading each such inode's block: creating a file near
many recent deletions costs ten times and more what it costs elsewhere. So
every side writes under one parent, printed with the figures, into
directories never used before, and nothing is deleted until the end.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its waited children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def interleaved(
    fns: list[Callable[[], object]], runs: int
) -> tuple[list[list[float]], list[list[float]]]:
    """Each function's wall and CPU times, run in turn round by round, the
    order turned every round, so a busy spell of the machine slows every
    side alike and no side always follows another's writes."""
    out: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for n in range(runs):
        order = list(range(len(fns)))
        order = order[n % len(order) :] + order[: n % len(order)]
        for i in order:
            # Untimed: write back what the previous side left dirty, or cpk's
            # syncfs (which flushes the whole file system) would pay for the
            # copy that ran before it.
            os.sync()
            before = _cpu()
            out[i].extend(times_of(fns[i], 1))
            cpu[i].append(_cpu() - before)
    return out, cpu


def cell(times: list[float], base: float | None = None) -> str:
    median = statistics.median(times)
    ratio = f" {median / base:4.2f}x" if base else ""
    return f"{median:6.3f}s [{min(times):.3f}-{max(times):.3f}]{ratio}"


def per_round(times: list[float], others: list[float]) -> str:
    """The median of the round-by-round ratios, with their range."""
    ratios = [a / b for a, b in zip(times, others, strict=True)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def sha256sum(tree: Path) -> None:
    """``find | xargs sha256sum``, as one would hash a tree from a shell: the
    listing in ``find``, not in this process (a Python ``rglob`` of 10,000
    files took some 0.2 s, more than the hashing, and made the floor look
    twice as slow as it is)."""
    subprocess.run(
        ["sh", "-c", 'find "$1" -type f -print0 | xargs -0 sha256sum', "sh", str(tree)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def cpk_hash(tree: Path) -> None:
    from contentpkg.store.hashing import tree_hash

    tree_hash(tree)


def copy_tree(tree: Path, work: Path, label: str = "copy") -> Callable[[], None]:
    """``cp -r`` of the tree to a new directory beside cpk's stores."""
    counter = iter(range(10**6))

    def run() -> None:
        dest = work / f"home-{tree.name}-{label}{next(counter)}"
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


def untar_tree(archive: Path, work: Path) -> Callable[[], None]:
    """``tar -x`` of the tree (archived once, read from the page cache) into
    a new directory beside cpk's stores: creating the same files from one
    stream, as a pull does."""
    counter = iter(range(10**6))

    def run() -> None:
        dest = work / f"home-{archive.stem}-untar{next(counter)}"
        dest.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True)

    return run


def python_start() -> None:
    subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)


def python_site_start() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def cpk_add(tree: Path, work: Path, src: str | None = None) -> Callable[[], None]:
    """``cpk store add`` of the tree into a new store; with src, the cpk
    whose package is there (another checkout's ``src/``)."""
    counter = iter(range(10**6))
    label = "base" if src else ""

    def run() -> None:
        home = work / f"home-{tree.name}-add{label}{next(counter)}"
        env = dict(os.environ, CPK_HOME=str(home))
        if src:
            env["PYTHONPATH"] = src
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
    parser.add_argument("--dir", help="parent of the work directory (default: the system's)")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also add with the cpk whose package is under DIR (a checkout's"
                        " src/), in the same rounds: a before/after under one load")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        sys.exit("bench/store.py needs sha256sum (coreutils)")

    with tempfile.TemporaryDirectory(prefix="cpk-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        trees = {
            f"{args.small} small files": work / "small",
            f"{args.large} x {args.large_mib} MiB": work / "large",
        }
        make_small_tree(trees[f"{args.small} small files"], args.small)
        make_large_tree(trees[f"{args.large} x {args.large_mib} MiB"], args.large, args.large_mib)
        print(f"stores, copies and unpacked tars under {work}")
        for label, tree in trees.items():
            archive = work / f"{tree.name}.tar"
            subprocess.run(["tar", "-cf", str(archive), "-C", str(tree), "."], check=True)
            sha256sum(tree)  # warm the page cache for both sides
            sides: dict[str, Callable[[], object]] = {
                "sha256sum": lambda t=tree: sha256sum(t),
                "cpk hash": lambda t=tree: cpk_hash(t),
                "cpk store add": cpk_add(tree, work),
            }
            if args.baseline_src:
                sides["baseline add"] = cpk_add(tree, work, args.baseline_src)
            sides.update({
                "floor: cp -r": copy_tree(tree, work),
                "floor: cp -r; sync -f": copy_tree_durably(tree, work),
                "floor: tar -x": untar_tree(archive, work),
                "floor: python -I -S": python_start,
                "floor: python (site)": python_site_start,
            })  # fmt: skip
            walls, cpus = interleaved(list(sides.values()), args.runs)
            wall = dict(zip(sides, walls, strict=True))
            cpu = dict(zip(sides, cpus, strict=True))
            floor = statistics.median(wall["sha256sum"])
            print(f"{label}:")
            print(f"  {'':<24} {'wall median [min-max] / sha256sum':<36} cpu median [min-max]")
            for what in sides:
                base = None if what == "sha256sum" else floor
                print(f"  {what:<24} {cell(wall[what], base):<36} {cell(cpu[what])}")
            added = wall["cpk store add"]
            others = [w for w in sides if w.startswith(("floor: cp", "floor: tar", "baseline"))]
            for what in ["sha256sum", *others]:
                print(
                    f"  per round, cpk store add / {what:<22}: {per_round(added, wall[what])} "
                    f"wall, {per_round(cpu['cpk store add'], cpu[what])} cpu"
                )
        for home in work.glob("home*"):
            remove_tree(home)
        print(
            f"medians of {args.runs} interleaved runs [min-max]; ratios are cpk time / "
            f"sha256sum time (goal for store add of the small files: <= 1.5x); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
