"""Benchmark: the Debian archive source against dpkg-deb, apt-get and cp.

For one program with a large closure (default ``inkscape``, ~220 packages on
Debian 12), fetched once from the real archive into a scratch cache, it
times (medians of several runs) and prints ratios measured in the same run:

* ``cpk store add`` of every ``.deb`` of the closure (one call, parallel),
  each run into a fresh store, against ``dpkg-deb -x`` of the same files
  into fresh directories, as many at once as cpk runs (goal <= 1.5x);
* re-adding the same files to the populated store (goal <= 0.05x of
  ``dpkg-deb -x``): found by their sha256, nothing unpacked;
* dependency resolution, ``cpk fetch --deb --dry-run PROGRAM`` with warm
  indexes, against ``apt-get install --simulate PROGRAM`` (goal <= 2x);
  apt resolves against what the machine has installed, cpk against its
  base-system policy, so the package counts differ and are printed;
* the store's size against the unpacked size (``du``), and ``cpk install``
  from the warm store against ``cp -a`` of its result.

    python bench/debian.py [--program inkscape] [--runs 3]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpk(env: dict[str, str], *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        sys.exit(f"cpk {' '.join(map(str, args[:3]))} failed:\n{proc.stderr[-2000:]}")
    return proc


#: Every sample taken, by what median_time returned, for the min-max columns.
SAMPLES: dict[float, list[float]] = {}


def median_time(
    fn: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None
) -> float:
    times = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    SAMPLES.setdefault(median, []).extend(times)
    return median


def children_cpu() -> float:
    """CPU seconds used so far by every finished child (and their children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spread(value: float) -> str:
    """min-max of the samples behind a median (the machine's noise)."""
    samples = SAMPLES.get(value) or [value]
    return f"[{min(samples):.2f}-{max(samples):.2f}]"


def rm(path: Path) -> None:
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        shutil.rmtree(path)


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--program", default="inkscape")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--install-runs", type=int, default=7, help="rounds of cpk install vs cp -a (default 7)"
    )
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    args = ap.parse_args()
    for tool in ("dpkg-deb", "apt-get", "du"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/debian.py: needs {tool}")
    work = args.work or Path(tempfile.mkdtemp(prefix="cpk-bench-debian-"))
    base = dict(os.environ, PYTHONPATH=str(ROOT / "src"), CPK_CACHE_DIR=str(work / "cache"))
    env = dict(base, CPK_HOME=str(work / "home"))

    # Setup (not timed): fetch the closure once; its .debs land in the cache.
    print(f"fetching the closure of {args.program} ...", file=sys.stderr)
    cpk(dict(base, CPK_HOME=str(work / "setup-home")), "fetch", "--deb", args.program)
    debs = sorted((work / "cache" / "debian-v1" / "debs").glob("*.deb"))
    packed = sum(p.stat().st_size for p in debs)
    print(f"{args.program}: {len(debs)} packages, {packed / 2**20:.0f} MiB of .deb files")

    def dpkg_x() -> None:
        out = work / "dpkg-x"

        def one(deb: Path) -> None:
            (out / deb.stem).mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(out / deb.stem)], check=True)

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(one, debs))

    # Interleaved, one of each per round: a busy machine slows both sides alike.
    rounds: list[tuple[float, float, float]] = []
    cpus: list[tuple[float, float]] = []  # CPU seconds (user + system): dpkg-deb, cpk
    for _ in range(args.runs):
        rm(work / "dpkg-x")
        # Nothing left dirty from the step before: cpk's add ends with a
        # syncfs, which would otherwise write out dpkg-deb's output too.
        os.sync()
        cpu0 = children_cpu()
        t_dpkg = median_time(dpkg_x, 1)
        cpu1 = children_cpu()
        rm(work / "home")
        os.sync()
        cpu2 = children_cpu()
        t_add = median_time(lambda: cpk(env, "store", "add", "--jobs", str(args.jobs), *debs), 1)
        cpu3 = children_cpu()
        t_readd = median_time(lambda: cpk(env, "store", "add", *debs), 1)
        rounds.append((t_dpkg, t_add, t_readd))
        cpus.append((cpu1 - cpu0, cpu3 - cpu2))
    t_dpkg, t_add, t_readd = (statistics.median(r[i] for r in rounds) for i in range(3))
    for i, median in enumerate((t_dpkg, t_add, t_readd)):
        SAMPLES[median] = [r[i] for r in rounds]
    unpacked = du(work / "dpkg-x")
    store_size = du(work / "home" / "store")

    t_resolve = median_time(
        lambda: cpk(env, "fetch", "--deb", "--dry-run", args.program), args.runs
    )
    count_cpk = len(cpk(env, "fetch", "--deb", "--dry-run", args.program).stdout.split("\n")) - 1
    apt = ["apt-get", "install", "--simulate", "-o", "Debug::NoLocking=1", args.program]
    t_apt = median_time(lambda: subprocess.run(apt, capture_output=True, check=True), args.runs)
    apt_out = subprocess.run(apt, capture_output=True, text=True, check=True).stdout
    count_apt = sum(1 for line in apt_out.splitlines() if line.startswith("Inst "))

    # Interleaved, one of each per round, into the same parent directory:
    # cp -a's time swings with the machine's load and with where the disk
    # puts new directories, and both sides must meet the same swings.
    where = work / "where"
    installs: list[float] = []
    copies: list[float] = []
    installed = False
    install = [sys.executable, "-m", "contentpkg", "install", args.program, str(where)]
    for _ in range(args.install_runs):
        rm(where)
        rm(work / "where-copy")
        os.sync()
        installs.append(
            median_time(lambda: subprocess.run(install, env=env, capture_output=True), 1)
        )
        installed = where.exists() and (where / "bin").exists()
        if not installed:
            break
        rm(work / "where-copy")
        os.sync()
        copies.append(
            median_time(
                lambda: subprocess.run(
                    ["cp", "-a", str(where), str(work / "where-copy")], check=True
                ),
                1,
            )
        )
    t_install = statistics.median(installs)
    SAMPLES[t_install] = installs
    t_cp = statistics.median(copies) if copies else float("nan")
    if copies:
        SAMPLES[t_cp] = copies

    def per_round(label: str, ratios: list[float]) -> None:
        print(
            f"{label} median {statistics.median(ratios):.3f} "
            f"[{min(ratios):.3f}-{max(ratios):.3f}] over {len(ratios)} rounds"
        )

    def row(what: str, mine: float, theirs: float, ref: str, goal: str) -> None:
        print(
            f"{what:<34} {mine:8.2f}s {spread(mine):<14} {ref:<28} {theirs:8.2f}s "
            f"{spread(theirs):<14} ratio {mine / theirs:6.3f}  goal {goal}"
        )

    print(
        f"medians of {args.runs} runs ({args.install_runs} for install) [min-max], "
        f"{args.jobs} parallel jobs on both sides, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    # File creation costs differ by directory on some disks: both sides
    # write below one parent, named here.
    print(f"cpk's store, dpkg-deb's output, WHERE and its copy are all under {work}")
    row(f"cpk store add ({len(debs)} .debs)", t_add, t_dpkg, "dpkg-deb -x", "<= 1.5")
    cpu_dpkg, cpu_add = (statistics.median(c[i] for c in cpus) for i in range(2))
    print(
        f"{'  CPU time, user + system':<34} {cpu_add:8.2f}s {'':<14} {'':<28} {cpu_dpkg:8.2f}s "
        f"{'':<14} ratio {cpu_add / cpu_dpkg:6.3f}  (less noisy than wall time on a busy machine)"
    )
    # Each round ran both sides back to back: its own ratio shares its
    # moment's load, so the spread of ratios is narrower than of times.
    per_round(f"{'  ratio per round':<34}", [r[1] / r[0] for r in rounds])
    row("cpk store add again (re-add)", t_readd, t_dpkg, "dpkg-deb -x", "<= 0.05")
    row(
        f"resolution ({count_cpk} packages)",
        t_resolve,
        t_apt,
        f"apt-get --simulate ({count_apt})",
        "<= 2",
    )
    if installed:
        row("cpk install, warm store", t_install, t_cp, "cp -a of the result", "<= 0.5")
        ratios = [i / c for i, c in zip(installs, copies, strict=True)]
        per_round(f"{'  ratio per round':<34}", ratios)
    else:
        print(f"cpk install {args.program}: failed; no install figure")
    print(
        f"store size {store_size / 2**20:.0f} MiB vs unpacked {unpacked / 2**20:.0f} MiB: "
        f"ratio {store_size / unpacked:.3f}  goal <= 1.1"
    )
    if not args.work:
        rm(work)


if __name__ == "__main__":
    main()
