"""Benchmark: env dirs of a real Debian closure, per link mode, and the store's size.

One run, with a private CPK_HOME in a temporary directory (never the
user's store):

1. The closure of a program with many dependencies (default: graphviz) is
   downloaded with ``apt-get download`` (the dependencies as ``apt-cache
   depends --recurse`` lists them; ``--debs DIR`` uses .deb files already
   there), unpacked once with ``dpkg-deb -x`` for reference, and added with
   ``cpk store add``. The store's size (``du``: blocks, hard links counted
   once) is compared with the unpacked packages' (goal: at most 1.1x).
2. ``cpk install PROG WHERE --link-mode MODE`` from the warm store into a
   fresh WHERE, for every mode, against ``cp -a`` of the resulting env dir
   (goal: at most 0.5x); and the disk each WHERE adds beside the store
   (``du`` of store and WHERE together, minus the store's).

Times are medians of ``--repeat`` rounds, page cache warm, cpk byte-compiled
once (a pycache outside the checkout). The machines are noisy: read the
ratios, and the load average printed with them.

    python bench/envdir.py [--program graphviz] [--debs DIR] [--repeat 5]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("auto", "reflink", "hardlink", "copy", "symlink")


def log(text: str) -> None:
    print(text, flush=True)


def cpk(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CPK_HOME=str(home), CPK_CACHE_DIR=str(home / "cache"))
    env["PYTHONPATH"] = str(ROOT / "src")
    # Byte-compiled once, outside the checkout, as an installed cpk would be:
    # otherwise every run compiles cpk's modules again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(home.parent / "pycache")
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"cpk {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return proc


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def du(*paths: Path) -> int:
    """Bytes of disk blocks under paths, each inode counted once (du -s -B1 -c)."""
    out = subprocess.run(
        ["du", "-s", "-c", "-B1", *map(str, paths)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def download(program: str, dest: Path) -> list[Path]:
    listed = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", program],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = sorted({line for line in listed.splitlines() if line and line[0] not in " <"})
    subprocess.run(["apt-get", "download", *names], cwd=dest, capture_output=True, check=True)
    return sorted(dest.glob("*.deb"))


def rm(path: Path) -> None:
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--program", default="graphviz")
    parser.add_argument("--debs", type=Path, help="a directory of the closure's .deb files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cpk-bench-envdir-"))
    try:
        home = work / "home"
        if args.debs:
            debs = sorted(args.debs.glob("*.deb"))
        else:
            (work / "debs").mkdir()
            debs = download(args.program, work / "debs")
        log(f"{args.program}: {len(debs)} packages; load average {os.getloadavg()[0]:.1f}")

        unpacked = work / "unpacked"
        unpacked.mkdir()

        def extract() -> None:
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked / deb.stem)], check=True)

        t_extract = timed(extract)

        def add() -> None:
            for deb in debs:
                cpk(home, "store", "add", deb)

        t_add = timed(add)
        store = home / "store"
        size_unpacked, size_store = du(unpacked), du(store)
        log(f"store add, one .deb per call: {t_add:.1f} s; dpkg-deb -x: {t_extract:.1f} s "
            f"({t_add / t_extract:.1f}x)")  # fmt: skip
        log(f"store size {size_store / 1e6:.1f} MB vs unpacked {size_unpacked / 1e6:.1f} MB: "
            f"{size_store / size_unpacked:.3f}x (goal <= 1.1x)")  # fmt: skip

        results = {}
        spans: dict[str, str] = {}
        for mode in MODES:
            times = []
            for i in range(args.repeat):
                where = work / f"W-{mode}-{i}"
                times.append(timed(
                    lambda w=where, m=mode: cpk(home, "install", args.program, w, "--link-mode", m)
                ))  # fmt: skip
            where = work / f"W-{mode}-0"
            added = du(store, where) - du(store)
            results[mode] = (statistics.median(times), added, where)
            spans[mode] = f"[{min(times) * 1000:.0f}-{max(times) * 1000:.0f}]"
            for i in range(1, args.repeat):
                rm(work / f"W-{mode}-{i}")

        reference = results["auto"][2]
        copies = []
        for i in range(args.repeat):
            dest = work / f"copy-{i}"
            copies.append(timed(lambda d=dest: subprocess.run(
                ["cp", "-a", str(reference), str(d)], check=True)))  # fmt: skip
            rm(dest)
        t_cp = statistics.median(copies)
        log(f"load average {os.getloadavg()[0]:.1f}")
        files = sum(len(f) for _, _, f in os.walk(reference))
        log(f"cp -a of the env dir ({files} files, {du(reference) / 1e6:.1f} MB alone): "
            f"{t_cp * 1000:.0f} ms [{min(copies) * 1000:.0f}-"
            f"{max(copies) * 1000:.0f}]")  # fmt: skip
        for mode, (t, added, _where) in results.items():
            log(f"cpk install --link-mode {mode:8}: {t * 1000:6.0f} ms {spans[mode]:<13}, "
                f"{t / t_cp:.2f}x cp -a (goal <= 0.5x); adds {added / 1e6:7.1f} MB beside "
                "the store")  # fmt: skip
    finally:
        rm(work)


if __name__ == "__main__":
    main()
