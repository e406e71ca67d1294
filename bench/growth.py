"""Benchmark: how lock cost grows with the number of packages, cpk against uv.

Synthetic projects of 50, 200 and 1,000 packages are served from a
loopback index (tests/support/index.py) that waits ``--latency`` seconds
(20 ms by default) before every answer, as a distant index does. The
packages form a binary tree (package i depends on 2i+1 and 2i+2), so a
resolver learns each level only from the metadata of the one before: what
it fetches in parallel shows. The index offers no PEP 658 files and serves
ranges, like the PyPI mirror this project is measured against.

For each size, in the same run and interleaved: a cold lock (empty caches)
and a warm re-lock (caches kept, lock file deleted), ``cpk lock`` against
``uv lock``. Prints medians with min-max, the cpk/uv ratios, and the slope
of each column (milliseconds per package, least squares over the sizes).

Then, for the same sizes (``--env``, or ``--env-only`` without the lock
rows), what a locked project costs to use: the environment built from a
warm store (views deleted, store kept, then ``cpk run python -c pass``)
against ``uv sync`` into a fresh ``.venv`` from a warm cache; importing
every package with each environment's interpreter; and the overhead of
``cpk run`` / ``uv run python -c pass`` over that interpreter. cpk runs
as an installed tool would (bench/python_run.py's ``install_cpk``).

    python bench/growth.py [--runs 3] [--sizes 50 200 1000] [--latency 0.02] [--env]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.index import LocalIndex  # noqa: E402
from support.wheels import make_wheel  # noqa: E402


def build(dest: Path, count: int) -> None:
    for i in range(count):
        deps = [f"synth-{j:04d}" for j in (2 * i + 1, 2 * i + 2) if j < count]
        module = f"synth_{i:04d}"
        make_wheel(
            dest,
            f"synth-{i:04d}",
            "1.0",
            files={f"{module}/__init__.py": f"VALUE = {i}\n"},
            requires_dist=deps,
        )


def write_project(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "growth"\nversion = "0"\n'
        f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
        'dependencies = ["synth-0000"]\n\n[tool.uv]\npackage = false\n'
    )


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{done.stderr}")
    return elapsed


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def env_rows(args: argparse.Namespace, uv: str) -> None:
    """Environment build, import-all and run overhead by size, cpk against uv."""
    import resource

    from python_run import install_cpk

    from contentpkg.fs import remove_tree

    LAST_WALL = [0.0]  # the wall time of cpu_timed's last command

    def cpu_timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        LAST_WALL[0] = timed(cmd, cwd, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    keys = ("build", "buildcpu", "import", "overhead")
    rows: dict[int, dict[str, list[float]]] = {}
    for count in args.sizes:
        with tempfile.TemporaryDirectory(prefix="cpk-growth-env-") as tmp:
            work = Path(tmp)
            try:
                cpk = install_cpk(work / "cpk-tool")
                build(work / "dists", count)
                env = dict(os.environ)
                env.update(
                    CPK_HOME=str(work / "cpk-home"),
                    CPK_CACHE_DIR=str(work / "cpk-cache"),
                    UV_CACHE_DIR=str(work / "uv-cache"),
                    UV_PYTHON=sys.executable,
                    UV_PYTHON_DOWNLOADS="never",
                    UV_NO_PROGRESS="1",
                    PYTHONDONTWRITEBYTECODE="1",
                )
                env.pop("VIRTUAL_ENV", None)
                # The tools run their own copies: a PYTHONPATH naming the
                # checkout's src/ would run the checkout's code in both.
                env.pop("PYTHONPATH", None)
                with LocalIndex(work / "dists", formats=("json",)) as index:
                    env["UV_INDEX_URL"] = url = index.url
                    cpk_proj, uv_proj = work / "cpk", work / "uv"
                    write_project(cpk_proj)
                    write_project(uv_proj)
                    sync = [*cpk, "sync", "--index-url", index.url]
                    timed(sync, cpk_proj, env)
                    timed([uv, "sync", "--compile-bytecode"], uv_proj, env)
                script = work / "import_all.py"
                script.write_text("".join(f"import synth_{i:04d}\n" for i in range(count)))
                home = work / "cpk-home"
                # The lock's index (fingerprinted) but no request: the server is gone.
                run = [*cpk, "run", "--offline", "--index-url", url, "python", "-c", "pass"]
                timed(run, cpk_proj, env)
                base = base_env = None
                if args.baseline is not None:
                    base = install_cpk(work / "base-tool", args.baseline / "src" / "contentpkg")
                    base_env = {**env, "CPK_CACHE_DIR": str(work / "base-cache")}
                    timed([*base, *run[len(cpk) :]], cpk_proj, base_env)  # its memo, once
                cpk_py = str(Path(os.path.realpath(cpk_proj / ".venv")) / "bin" / "python")
                uv_py = str(uv_proj / ".venv" / "bin" / "python")
                found: dict[str, list[float]] = {}
                for _ in range(args.runs):
                    for name in ("views", "envs"):
                        if (home / name).exists():
                            remove_tree(home / name)
                    (cpk_proj / ".venv").unlink(missing_ok=True)
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    found.setdefault("cpk-build", []).append(timed(run, cpk_proj, env))
                    middle = resource.getrusage(resource.RUSAGE_CHILDREN)
                    shutil.rmtree(uv_proj / ".venv")
                    found.setdefault("uv-build", []).append(
                        timed([uv, "sync", "--offline"], uv_proj, env)
                    )
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    for tool, a, b in (("cpk", before, middle), ("uv", middle, after)):
                        cpu = (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
                        found.setdefault(f"{tool}-buildcpu", []).append(cpu)
                    # The same build without the run memo (in the cache): the full
                    # path, as for a project never run on this machine.
                    for name in ("views", "envs"):
                        remove_tree(home / name)
                    (cpk_proj / ".venv").unlink()
                    shutil.rmtree(work / "cpk-cache" / "run-memo")
                    found.setdefault("cpk-buildfullcpu", []).append(cpu_timed(run, cpk_proj, env))
                    found.setdefault("cpk-buildfull", []).append(LAST_WALL[0])
                    if base is not None:
                        # The baseline checkout's cpk, same rows, own cache, between.
                        base_run = [*base, *run[len(cpk) :]]
                        for memo in (True, False):
                            for name in ("views", "envs"):
                                remove_tree(home / name)
                            (cpk_proj / ".venv").unlink()
                            if not memo:
                                shutil.rmtree(work / "base-cache" / "run-memo")
                            key = "base-build" if memo else "base-buildfull"
                            found.setdefault(f"{key}cpu", []).append(
                                cpu_timed(base_run, cpk_proj, base_env)
                            )
                            found.setdefault(key, []).append(LAST_WALL[0])
                    cpk_py = str(Path(os.path.realpath(cpk_proj / ".venv")) / "bin" / "python")
                    # The build row's floor: the two interpreters it starts.
                    tool_python = str(Path(cpk[0]).parent / "python")
                    floor_cpu = cpu_timed([tool_python, "-c", "pass"], cpk_proj, env)
                    floor_wall = LAST_WALL[0]
                    floor_cpu += cpu_timed([cpk_py, "-c", "pass"], cpk_proj, env)
                    found.setdefault("cpk-floor", []).append(floor_wall + LAST_WALL[0])
                    found.setdefault("cpk-floorcpu", []).append(floor_cpu)
                    # The same with cpk's own start bare (no site, no .pth files).
                    bare_cpu = cpu_timed([tool_python, "-I", "-S", "-c", "pass"], cpk_proj, env)
                    bare_wall = LAST_WALL[0]
                    bare_cpu += cpu_timed([cpk_py, "-c", "pass"], cpk_proj, env)
                    found.setdefault("cpk-floorbare", []).append(bare_wall + LAST_WALL[0])
                    found.setdefault("cpk-floorbarecpu", []).append(bare_cpu)
                    for tool, python, proj, runner in (
                        ("cpk", cpk_py, cpk_proj, run),
                        ("uv", uv_py, uv_proj, [uv, "run", "--offline", "python", "-c", "pass"]),
                    ):
                        found.setdefault(f"{tool}-import", []).append(
                            cpu_timed([python, str(script)], work, env)
                        )
                        bare = cpu_timed([python, "-c", "pass"], proj, env)
                        found.setdefault(f"{tool}-overhead", []).append(
                            cpu_timed(runner, proj, env) - bare
                        )
                rows[count] = found
            finally:
                if (work / "cpk-home").exists():
                    remove_tree(work / "cpk-home")
    print("\nusing a locked project, by size: medians of", args.runs, "rounds")
    print("build = env from a warm store (wall; buildcpu: its CPU time, children included),")
    print("import = import every package (CPU),")
    print("overhead = `cpk run` / `uv run python -c pass` minus the env's python (CPU)")
    print(f"{'packages':>8} {'':>8} {'cpk':>9} {'uv':>9} {'cpk/uv':>7}   cpk min-max    uv min-max")
    for count, found in rows.items():
        for key in keys:
            c, u = found[f"cpk-{key}"], found[f"uv-{key}"]
            mc, mu = statistics.median(c), statistics.median(u)
            spread = "   ".join(f"{min(x) * 1000:.0f}-{max(x) * 1000:.0f}" for x in (c, u))
            print(
                f"{count:>8} {key:>8} {mc * 1000:>7.1f}ms {mu * 1000:>7.1f}ms {mc / mu:>6.2f}x"
                f"   {spread}"
            )
    print("build's floor: cpk's own interpreter start, then the env's python -c pass")
    for count, found in rows.items():
        floor, floor_cpu = (statistics.median(found[k]) for k in ("cpk-floor", "cpk-floorcpu"))
        built, built_cpu = (statistics.median(found[k]) for k in ("cpk-build", "cpk-buildcpu"))
        uv_built = statistics.median(found["uv-build"])
        print(
            f"{count:>8}    floor {floor * 1000:>7.1f}ms ({floor / uv_built:.2f}x uv's build),"
            f" CPU {floor_cpu * 1000:.1f}ms; cpk build above it {(built - floor) * 1000:+.1f}ms"
            f" wall, {(built_cpu - floor_cpu) * 1000:+.1f}ms CPU"
        )
    print("the same floor with cpk's own start bare (python -I -S): what no Python tool goes below")
    for count, found in rows.items():
        floor, floor_cpu = (
            statistics.median(found[k]) for k in ("cpk-floorbare", "cpk-floorbarecpu")
        )
        uv_built = statistics.median(found["uv-build"])
        uv_cpu = statistics.median(found["uv-buildcpu"])
        print(
            f"{count:>8}    floor {floor * 1000:>7.1f}ms ({floor / uv_built:.2f}x uv's build),"
            f" CPU {floor_cpu * 1000:.1f}ms ({floor_cpu / uv_cpu:.2f}x uv's CPU)"
        )
    print("build without the run memo (deleted with the views): the full path")
    for count, found in rows.items():
        samples = found["cpk-buildfull"]
        full, uv_built = statistics.median(samples), statistics.median(found["uv-build"])
        full_cpu = statistics.median(found["cpk-buildfullcpu"])
        uv_cpu = statistics.median(found["uv-buildcpu"])
        spread = f"{min(samples) * 1000:.0f}-{max(samples) * 1000:.0f}"
        print(
            f"{count:>8} buildfull {full * 1000:>7.1f}ms ({full / uv_built:.2f}x uv's build)"
            f"   {spread}; CPU {full_cpu * 1000:.1f}ms ({full_cpu / uv_cpu:.2f}x uv's)"
        )
    if args.baseline is not None:
        print(f"the baseline checkout's cpk ({args.baseline}), timed between: with / without memo")
        for count, found in rows.items():
            uv_built = statistics.median(found["uv-build"])
            uv_cpu = statistics.median(found["uv-buildcpu"])
            for key in ("build", "buildfull"):
                for tool in ("cpk", "base"):
                    wall = statistics.median(found[f"{tool}-{key}"])
                    cpu = statistics.median(found[f"{tool}-{key}cpu"])
                    spread = "-".join(f"{f(found[f'{tool}-{key}']) * 1000:.0f}" for f in (min, max))
                    print(
                        f"{count:>8} {tool:>4} {key:>9} {wall * 1000:>7.1f}ms"
                        f" ({wall / uv_built:.2f}x uv) {spread}; CPU {cpu * 1000:.1f}ms"
                        f" ({cpu / uv_cpu:.2f}x uv)"
                    )
    sizes = list(rows)
    for key in keys:
        for tool in ("cpk", "uv"):
            ys = [statistics.median(rows[n][f"{tool}-{key}"]) for n in sizes]
            print(f"slope {key:>8} {tool:>3}: {slope(sizes, ys) * 1000:.3f} ms per package")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--env", action="store_true", help="also the environment rows")
    parser.add_argument("--env-only", action="store_true", help="only the environment rows")
    parser.add_argument(
        "--baseline", type=Path, metavar="CHECKOUT",
        help="another checkout: its cpk's environment build rows timed between this one's",
    )  # fmt: skip
    args = parser.parse_args()
    # The binary itself, as bench/python_run.py finds it: a shim on PATH (as
    # pyenv makes) would add a shell's start-up to every uv sample.
    from python_run import uv_command

    (uv,) = uv_command()
    print(f"cpk's and uv's projects, stores and caches are all under {tempfile.gettempdir()}")
    if args.env_only:
        env_rows(args, uv)
        return
    cpk = [sys.executable, "-m", "contentpkg"]
    rows: dict[int, dict[str, list[float]]] = {}
    for count in args.sizes:
        with tempfile.TemporaryDirectory(prefix="cpk-growth-") as tmp:
            work = Path(tmp)
            build(work / "dists", count)
            with LocalIndex(work / "dists", metadata_files=False, formats=("json",)) as index:
                index.latency = args.latency
                results: dict[str, list[float]] = {
                    k: [] for k in ("cpk-cold", "uv-cold", "cpk-warm", "uv-warm")
                }
                for run in range(args.runs):
                    env = dict(os.environ)
                    env.update(
                        CPK_HOME=str(work / f"cpk-home{run}"),
                        CPK_CACHE_DIR=str(work / f"cpk-cache{run}"),
                        UV_CACHE_DIR=str(work / f"uv-cache{run}"),
                        UV_PYTHON=sys.executable,
                        UV_PYTHON_DOWNLOADS="never",
                        UV_NO_PROGRESS="1",
                        UV_INDEX_URL=index.url,
                    )
                    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cpk's own modules compile once
                    cpk_proj, uv_proj = work / f"cpk{run}", work / f"uv{run}"
                    write_project(cpk_proj)
                    write_project(uv_proj)
                    lock = [*cpk, "lock", "--index-url", index.url]
                    results["cpk-cold"].append(timed(lock, cpk_proj, env))
                    results["uv-cold"].append(timed([uv, "lock"], uv_proj, env))
                    (cpk_proj / "pylock.toml").unlink()
                    (uv_proj / "uv.lock").unlink()
                    results["cpk-warm"].append(timed(lock, cpk_proj, env))
                    results["uv-warm"].append(timed([uv, "lock"], uv_proj, env))
                rows[count] = results
    print(f"lock cost by size, {args.latency * 1000:.0f} ms per request, medians of {args.runs}")
    print(f"{'packages':>8} {'':>6} {'cpk':>8} {'uv':>8} {'cpk/uv':>7}   cpk min-max   uv min-max")
    for count, results in rows.items():
        for key in ("cold", "warm"):
            c, u = results[f"cpk-{key}"], results[f"uv-{key}"]
            mc, mu = statistics.median(c), statistics.median(u)
            print(
                f"{count:>8} {key:>6} {mc:>7.2f}s {mu:>7.2f}s {mc / mu:>6.2f}x"
                f"   {min(c):.2f}-{max(c):.2f}   {min(u):.2f}-{max(u):.2f}"
            )
    sizes = list(rows)
    for key in ("cold", "warm"):
        for tool in ("cpk", "uv"):
            ys = [statistics.median(rows[n][f"{tool}-{key}"]) for n in sizes]
            print(f"slope {key:>4} {tool:>3}: {slope(sizes, ys) * 1000:.2f} ms per package")
    if args.env:
        env_rows(args, uv)


if __name__ == "__main__":
    main()
