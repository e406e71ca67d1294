"""Benchmark: resolve and fetch a real project from PyPI, cpk against uv.

The project depends on flask, requests, rich, pydantic, httpx, sqlalchemy,
pytest, black, jinja2, click, attrs, numpy, pyyaml and boto3. For each tool,
in the same run and with the same interpreter:

* cold: empty store and caches, resolve and fetch everything
  (``cpk sync`` against ``uv sync``, which also links a venv); cpk's own
  summary lines split its time into resolving, fetching into the store,
  and the rest (compiling bytecode into the new entries, which uv does not);
* cold, like for like: the same ``cpk sync`` against
  ``uv sync --compile-bytecode`` from an empty cache of its own, as cpk
  always compiles (its entries are read-only and shared, so imports cannot);
* cold lock: empty caches again, resolve only (``cpk lock`` against
  ``uv lock``): the index traffic and the resolver, without the store;
* warm re-lock: caches warm, lock file deleted, resolve again
  (``cpk lock`` against ``uv lock``);
* no-op lock: nothing changed (``cpk lock`` against ``uv lock``), several
  samples per run, wall and CPU time, beside the interpreter's own start
  as its floor (``python3 -I -S -c pass``, and ``python3 -c pass`` with
  the site imports every ``cpk`` command pays), and cpk minus that floor;
* size: the store (``$CPK_HOME``) against uv's cache directory;
* floors of the cold sync, measured on what it stored, in the same run:
  compiling every module the store holds (in memory, nothing written) on as
  many processes as cpk uses, and ``cp -r`` of the store beside it (creating
  its files and directories). cpk cannot finish before either, whatever
  it overlaps; uv without ``--compile-bytecode`` pays neither in full.

Times are medians of ``--runs`` runs; the network and the machine are noisy,
so read the ratios. Needs network access to PyPI and ``uv`` on PATH (it is in
the test extras).

    python bench/python_fetch.py [--runs 3] [--work DIR] [--cold-only]

``--cold-only`` runs just the three cold syncs (cpk, uv, uv compiling;
and with ``--other-src DIR`` the ``cpk sync`` of another checkout's
``src``, for a before/after in the same run), in an order that rotates
from run to run, and prints wall and CPU time
(user + system of the command and every process it waited for) for each,
and for cpk the CPU of its main process beside its bytecode workers'
(from its ``-v`` log), so where a cold sync spends its CPU shows.

Both tools write under one parent directory (``--work``, default the
system's temporary directory), printed with the results: creating a file
costs several times more in some directory trees than in others on the same
disk, and the cold rows create tens of thousands.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contentpkg.fs import remove_tree  # entries are read-only
from contentpkg.store.gc import disk_usage

DEPENDENCIES = [
    "flask", "requests", "rich", "pydantic", "httpx", "sqlalchemy", "pytest",
    "black", "jinja2", "click", "attrs", "numpy", "pyyaml", "boto3",
]  # fmt: skip


def write_project(root: Path) -> None:
    root.mkdir(parents=True)
    deps = "".join(f'    "{d}",\n' for d in DEPENDENCIES)
    (root / "pyproject.toml").write_text(
        "[project]\n"
        'name = "bench-app"\n'
        'version = "0"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        f"dependencies = [\n{deps}]\n"
        "\n[tool.uv]\npackage = false\n"
    )


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    return timed_output(cmd, cwd, env)[0]


def timed_output(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    return time.perf_counter() - start, done.stderr


def cpu_timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of cmd: the CPU time (user + system of
    the child) is what a loaded machine's noise moves least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


#: The no-op lock's samples per run, and what each is timed beside.
NOOP_SAMPLES = 7
NOOP_ROWS = ("cpk lock", "uv lock", "python3 -I -S -c pass", "python3 -c pass")


def summary_seconds(stderr: str, word: str) -> float:
    """The duration on cpk's "<word> ... in 2.1s" summary line (0 when absent)."""
    found = re.search(rf"^{word} .* in ([0-9.]+)(ms|s)$", stderr, re.MULTILINE)
    if found is None:
        return 0.0
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


#: Compiles the files named on stdin, one per line, writing nothing.
_COMPILE_ONLY = (
    "import sys\n"
    "for path in sys.stdin.read().splitlines():\n"
    "    with open(path, 'rb') as f:\n"
    "        try:\n"
    "            compile(f.read(), path, 'exec', dont_inherit=True)\n"
    "        except Exception:\n"
    "            pass\n"
)


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def compile_floor(store: Path) -> float:
    """Seconds to compile every module under the store's site-packages in
    memory, spread by size over one process per core (as cpk's workers)."""
    sources = sorted(
        (os.path.getsize(os.path.join(d, f)), os.path.join(d, f))
        for entry in store.iterdir()
        for d, _, files in os.walk(entry / "site-packages")
        if not d.endswith("__pycache__")
        for f in files
        if f.endswith(".py")
    )
    shares: list[list[str]] = [[] for _ in range(_cores())]
    loads = [0] * len(shares)
    for size, path in reversed(sources):  # largest first, to the least loaded
        i = loads.index(min(loads))
        shares[i].append(path)
        loads[i] += size
    start = time.perf_counter()
    cmd = [sys.executable, "-I", "-S", "-c", _COMPILE_ONLY]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True) for _ in shares]
    for proc, share in zip(procs, shares, strict=True):
        assert proc.stdin is not None
        proc.stdin.write("\n".join(share))
        proc.stdin.close()
    for proc in procs:
        proc.wait()
    return time.perf_counter() - start


_CPU_LINE = re.compile(
    r"CPU so far: this process ([0-9.]+)s \(user ([0-9.]+)s, system ([0-9.]+)s\),"
    r" reaped workers ([0-9.]+)s"
)


def cpu_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall, CPU, stderr) of one run of cmd; CPU counts every process it reaped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


def cold_only(
    runs: int, work_parent: Path | None, cpk: list[str], uv: str, other: Path | None = None
) -> None:
    """The three cold syncs, interleaved, with their CPU time; with ``other``
    (a checkout's ``src`` directory), that version's ``cpk sync`` as a
    fourth row, for a before/after in one run."""
    rows: tuple[str, ...] = ("cpk sync", "uv sync", "uv sync --compile-bytecode")
    if other is not None:
        rows = (*rows, "cpk sync (other)")
    walls: dict[str, list[float]] = {k: [] for k in rows}
    cpus: dict[str, list[float]] = {k: [] for k in rows}
    main_cpu: dict[str, list[float]] = {k: [] for k in rows if k.startswith("cpk")}
    floors: dict[str, list[float]] = {"compile": [], "cp": []}
    worker_cpu: dict[str, list[float]] = {k: [] for k in rows if k.startswith("cpk")}
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="cpk-bench-", dir=work_parent) as tmp:
            work = Path(tmp)
            env = dict(os.environ)
            env.update(
                CPK_HOME=str(work / "cpk-home"),
                CPK_CACHE_DIR=str(work / "cpk-cache"),
                UV_PYTHON=sys.executable,
                UV_PYTHON_DOWNLOADS="never",
                UV_NO_PROGRESS="1",
            )
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            commands = {
                "cpk sync": ([*cpk, "-v", "sync"], "cpk-proj", "cpk-cache"),
                "uv sync": ([uv, "sync"], "uv-proj", "uv-cache"),
                "uv sync --compile-bytecode": (
                    [uv, "sync", "--compile-bytecode"], "uvc-proj", "uvc-cache",
                ),
                "cpk sync (other)": ([*cpk, "-v", "sync"], "other-proj", "other-cache"),
            }  # fmt: skip
            shift = run % len(rows)
            for name in rows[shift:] + rows[:shift]:  # rotates: none always first
                cmd, proj, cache = commands[name]
                write_project(work / proj)
                subprocess.run(["sync", "-f", str(work)], check=True)
                run_env = dict(env, UV_CACHE_DIR=str(work / cache))
                if name == "cpk sync (other)":
                    run_env.update(
                        PYTHONPATH=str(other),
                        CPK_HOME=str(work / "other-home"),
                        CPK_CACHE_DIR=str(work / "other-cache"),
                    )
                wall, cpu, said = cpu_run(cmd, work / proj, run_env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name in main_cpu:
                    found = _CPU_LINE.search(said)
                    if found is not None:
                        main_cpu[name].append(float(found.group(1)))
                        worker_cpu[name].append(float(found.group(4)))
            # Floors, on what cpk stored, in the same run: compiling every
            # module (in memory) on as many processes as cpk's workers, and
            # creating the store's files again (cp -r, then sync).
            floors["compile"].append(compile_floor(work / "cpk-home" / "store"))
            subprocess.run(["sync", "-f", str(work)], check=True)
            start = time.perf_counter()
            subprocess.run(["cp", "-r", str(work / "cpk-home" / "store"), str(work / "cp-floor")],
                           check=True)  # fmt: skip
            subprocess.run(["sync", "-f", str(work)], check=True)
            floors["cp"].append(time.perf_counter() - start)
            for home in ("cpk-home", "other-home", "cp-floor"):
                if (work / home).exists():
                    remove_tree(work / home)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):6.2f}s [{min(values):.2f}-{max(values):.2f}]"

    print(f"{'cold sync, ' + str(runs) + ' runs':<28} {'wall':>21} {'CPU':>21}")
    for name in rows:
        print(f"  {name:<26} {cell(walls[name]):>21} {cell(cpus[name]):>21}")
    for name in main_cpu:
        if main_cpu[name]:
            print(f"  {name}: main process {'':>10} {cell(main_cpu[name]):>21}")
            print(f"  {name}: bytecode workers {'':>6} {cell(worker_cpu[name]):>21}")
    print(f"  floor: compiling every stored module, {_cores()} processes {cell(floors['compile'])}")
    print(f"  floor: cp -r of the store, then sync -f           {cell(floors['cp'])}")
    cpk_wall = statistics.median(walls["cpk sync"])
    for name in rows[1:]:
        ratios = [c / u for c, u in zip(walls["cpk sync"], walls[name], strict=True)]
        print(
            f"  cpk / {name}: {cpk_wall / statistics.median(walls[name]):.2f}x"
            f" (per run {min(ratios):.2f}-{max(ratios):.2f}),"
            f" CPU {statistics.median(cpus['cpk sync']) / statistics.median(cpus[name]):.2f}x"
        )
    parent = work_parent or tempfile.gettempdir()
    print(f"every tool's store, caches and project were under {parent}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--work", type=Path, default=None, help="parent directory of every tool's outputs"
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold syncs, with their CPU time"
    )
    parser.add_argument(
        "--other-src",
        type=Path,
        default=None,
        help="with --cold-only: another checkout's src directory, run as a fourth row",
    )
    args = parser.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("bench/python_fetch.py needs uv on PATH (pip install uv)")
    cpk = [sys.executable, "-m", "contentpkg"]
    if args.cold_only:
        cold_only(args.runs, args.work, cpk, uv, args.other_src)
        return

    results: dict[str, list[float]] = {
        k: []
        for k in (
            *("cpk-cold", "uv-cold", "uvc-cold", "cpk-lock", "uv-lock"),
            *("cpk-warm", "uv-warm", "cpk-noop", "uv-noop"),
            *("cpk-resolved", "cpk-fetched", "floor-compile", "floor-cp"),
        )
    }
    sizes: dict[str, int] = {}
    noop: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in NOOP_ROWS}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cpk-bench-", dir=args.work) as tmp:
            work = Path(tmp)
            env = dict(os.environ)
            env.update(
                CPK_HOME=str(work / "cpk-home"),
                CPK_CACHE_DIR=str(work / "cpk-cache"),
                UV_CACHE_DIR=str(work / "uv-cache"),
                UV_PYTHON=sys.executable,
                UV_PYTHON_DOWNLOADS="never",
                UV_NO_PROGRESS="1",
            )
            # cpk's own modules compile once, as in any install, not per process.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            write_project(work / "cpk-proj")
            write_project(work / "uv-proj")
            took, said = timed_output([*cpk, "sync"], work / "cpk-proj", env)
            results["cpk-cold"].append(took)
            results["cpk-resolved"].append(summary_seconds(said, "Resolved"))
            results["cpk-fetched"].append(summary_seconds(said, "Fetched"))
            results["uv-cold"].append(timed([uv, "sync"], work / "uv-proj", env))
            compiling = dict(env, UV_CACHE_DIR=str(work / "uv-cache-compile"))
            write_project(work / "uv-proj-compile")
            results["uvc-cold"].append(
                timed([uv, "sync", "--compile-bytecode"], work / "uv-proj-compile", compiling)
            )
            # A cold lock alone, from caches of its own.
            alone = dict(env)
            alone.update(
                CPK_HOME=str(work / "cpk-home-lock"),
                CPK_CACHE_DIR=str(work / "cpk-cache-lock"),
                UV_CACHE_DIR=str(work / "uv-cache-lock"),
            )
            write_project(work / "cpk-lock")
            write_project(work / "uv-lock")
            results["cpk-lock"].append(timed([*cpk, "lock"], work / "cpk-lock", alone))
            results["uv-lock"].append(timed([uv, "lock"], work / "uv-lock", alone))
            (work / "cpk-proj" / "pylock.toml").unlink()
            (work / "uv-proj" / "uv.lock").unlink()
            results["cpk-warm"].append(timed([*cpk, "lock"], work / "cpk-proj", env))
            results["uv-warm"].append(timed([uv, "lock"], work / "uv-proj", env))
            results["cpk-noop"].append(timed([*cpk, "lock"], work / "cpk-proj", env))
            results["uv-noop"].append(timed([uv, "lock"], work / "uv-proj", env))
            commands = {
                "cpk lock": ([*cpk, "lock"], work / "cpk-proj"),
                "uv lock": ([uv, "lock"], work / "uv-proj"),
                "python3 -I -S -c pass": ([sys.executable, "-I", "-S", "-c", "pass"], work),
                "python3 -c pass": ([sys.executable, "-c", "pass"], work),
            }
            for _ in range(NOOP_SAMPLES):
                for name, (cmd, cwd) in commands.items():  # interleaved
                    wall, cpu = cpu_timed(cmd, cwd, env)
                    noop[name][0].append(wall)
                    noop[name][1].append(cpu)
            sizes["cpk store"] = disk_usage(work / "cpk-home")
            sizes["cpk cache"] = disk_usage(work / "cpk-cache")
            sizes["uv cache"] = disk_usage(work / "uv-cache")
            results["floor-compile"].append(compile_floor(work / "cpk-home" / "store"))
            start = time.perf_counter()
            subprocess.run(["cp", "-r", str(work / "cpk-home" / "store"), str(work / "cp-floor")],
                           check=True)  # fmt: skip
            results["floor-cp"].append(time.perf_counter() - start)
            remove_tree(work / "cp-floor")
            remove_tree(work / "cpk-home")

    med = {k: statistics.median(v) for k, v in results.items()}

    def spread(key: str) -> str:
        return f"{min(results[key]):.2f}-{max(results[key]):.2f}"

    print(f"{'measure':<22} {'cpk':>8} {'uv':>8} {'cpk/uv':>7}   cpk min-max  uv min-max")
    for label, key, other in (
        ("cold resolve+fetch", "cold", "uv-cold"),
        ("cold, uv compiling too", "cold", "uvc-cold"),
        ("cold lock", "lock", "uv-lock"),
        ("warm re-lock", "warm", "uv-warm"),
        ("no-op lock", "noop", "uv-noop"),
    ):
        c, u = med[f"cpk-{key}"], med[other]
        print(
            f"{label:<22} {c:>7.2f}s {u:>7.2f}s {c / u:>6.2f}x"
            f"   {spread('cpk-' + key):>11}  {spread(other):>10}"
        )
    resolved, fetched = med["cpk-resolved"], med["cpk-fetched"]
    print(
        f"  cpk sync, cold: resolving {resolved:.2f}s, fetching into the store {fetched:.2f}s,"
        f" the rest {med['cpk-cold'] - resolved - fetched:.2f}s"
        " (start-up, lock file, bytecode not done by the end of the fetch)"
    )
    for label, key in (
        (f"compiling every stored module, in memory, {_cores()} processes", "floor-compile"),
        ("cp -r of the store, beside it", "floor-cp"),
    ):
        print(f"  floor: {label}: {med[key]:.2f}s ({spread(key)})")
    print(
        f"\nno-op lock, {len(noop['cpk lock'][0])} samples: {'wall ms':>9} {'min-max':>9}"
        f" {'CPU ms':>7} {'min-max':>9}"
    )
    for name, (walls, cpus) in noop.items():
        print(
            f"  {name:<27} {statistics.median(walls) * 1000:>7.1f}"
            f" {min(walls) * 1000:>4.0f}-{max(walls) * 1000:<4.0f}"
            f" {statistics.median(cpus) * 1000:>7.1f}"
            f" {min(cpus) * 1000:>4.0f}-{max(cpus) * 1000:<4.0f}"
        )
    cpk_cpu = statistics.median(noop["cpk lock"][1])
    floor_cpu = statistics.median(noop["python3 -c pass"][1])
    print(
        f"  cpk lock - python3 -c pass: {(cpk_cpu - floor_cpu) * 1000:.1f} ms CPU"
        f" (the floor, with this machine's site imports, is {floor_cpu * 1000:.1f} ms);"
        f" cpk/uv {cpk_cpu / statistics.median(noop['uv lock'][1]):.2f}x CPU"
    )
    mib = 1 << 20
    cpk_total = sizes["cpk store"] + sizes["cpk cache"]
    uv_total = sizes["uv cache"]
    print(f"{'store+cache vs uv cache':<26} {cpk_total / mib:>7.1f}M {uv_total / mib:>7.1f}M "
          f"{cpk_total / uv_total:>6.2f}x")  # fmt: skip
    print(
        f"  (cpk store {sizes['cpk store'] / mib:.1f} MiB, cpk http cache "
        f"{sizes['cpk cache'] / mib:.1f} MiB)"
    )
    print(f"medians of {args.runs} runs; ratios are cpk / uv")
    parent = args.work or tempfile.gettempdir()
    print(f"every tool's stores, caches and projects were under {parent}")


if __name__ == "__main__":
    main()
