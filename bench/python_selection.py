"""Benchmark: switching ``--group`` from a universal lock, and a no-op ``cpk lock``.

A synthetic project (``--packages`` small wheels in its dependencies, and
two dependency groups of ``--packages`` more each) is served from a
loopback index that logs every request. After one cold run of each
selection, it prints medians of ``--runs`` samples of:

1. ``cpk run python -c pass``, warm (the default selection);
0. the environment's own ``.venv/bin/python -c pass``, for scale;
2. ``cpk run --group a|b python -c pass``, alternating groups (each
   selection is remembered by the run memo, so this is the hot path);
3. the same with the run memo removed before each sample: the full path
   (project read, lock read, markers evaluated, view found), no resolution;
4. ``cpk lock`` with nothing changed, without its memo (the full check)
   and with it, and the index requests it made;

with the ratios of 2 and 3 to 1 (the goal is under 2x).

Run from a checkout: ``python bench/python_selection.py [--packages 40] [--runs 15]``.
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

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from support.index import LocalIndex  # noqa: E402
from support.wheels import make_wheel  # noqa: E402


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=40)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpk-bench-selection-") as tmp:
        work = Path(tmp)
        dists = work / "dists"
        names = {"base": [], "a": [], "b": []}
        for kind in names:
            for i in range(args.packages):
                name = f"{kind}pkg{i}"
                make_wheel(dists, name, "1.0")
                names[kind].append(name)
        project = work / "proj"
        project.mkdir()
        listed = ", ".join(f'"{n}"' for n in names["base"])
        groups = "\n".join(
            f"{g} = [{', '.join(repr(n) for n in names[g])}]".replace("'", '"') for g in "ab"
        )
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.9"\n'
            f"dependencies = [{listed}]\n\n[dependency-groups]\n{groups}\n"
        )
        env = dict(os.environ)
        # cpk's own modules compiled once, as an installed cpk has them (its
        # bytecode goes to a private prefix: the checkout stays clean).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(work / "pycache"),
            PYTHONPATH=str(HERE / "src"),
            CPK_HOME=str(work / "home"),
            CPK_CACHE_DIR=str(work / "cache"),
        )
        with LocalIndex(dists) as index:
            cpk = [sys.executable, "-m", "contentpkg"]

            def run(*flags: str) -> list[str]:
                return [*cpk, "run", "--index-url", index.url, *flags, "python", "-c", "pass"]

            for flags in ((), ("--group", "a"), ("--group", "b")):
                timed(run(*flags), project, env)  # cold: lock, fetch, view, memo
            lock = project / "pylock.toml"
            stamp = (lock.read_bytes(), lock.stat().st_mtime_ns)
            warm, switch, missed, noop, bare, noop_full = [], [], [], [], [], []
            venv_python = [str(project / ".venv" / "bin" / "python"), "-c", "pass"]
            memo = work / "cache" / "run-memo"
            index.clear_log()
            for i in range(args.runs):  # every selection remembered by its memo
                bare.append(timed(venv_python, project, env))
                warm.append(timed(run(), project, env))
                switch.append(timed(run("--group", "ab"[i % 2]), project, env))
            for i in range(args.runs):  # no memo: the full path, without resolving
                shutil.rmtree(memo, ignore_errors=True)
                missed.append(timed(run("--group", "ab"[i % 2]), project, env))
                # Without its memo (the run's removal took it), then with it.
                noop_full.append(timed([*cpk, "lock", "--index-url", index.url], project, env))
                noop.append(timed([*cpk, "lock", "--index-url", index.url], project, env))
            requests = [p for p in index.paths()]
            assert (lock.read_bytes(), lock.stat().st_mtime_ns) == stamp, "the lock changed"
    w, s, m, n, b = (statistics.median(x) * 1000 for x in (warm, switch, missed, noop, bare))
    print(f"{3 * args.packages} packages locked ({args.packages} base, 2 groups), {args.runs} runs")
    print(f"`.venv/bin/python -c pass` (no cpk)       {b:8.1f} ms")
    print(f"warm `cpk run python -c pass`             {w:8.1f} ms")
    print(f"`cpk run --group a|b` (memo)              {s:8.1f} ms   {s / w:5.2f}x")
    print(f"`cpk run --group a|b` (no memo, no lock)  {m:8.1f} ms   {m / w:5.2f}x")
    print(f"no-op `cpk lock` (its memo)               {n:8.1f} ms")
    full = statistics.median(noop_full) * 1000
    print(f"no-op `cpk lock` (no memo: the full check) {full:7.1f} ms")
    print(f"index requests while switching and re-locking: {len(requests)}")


if __name__ == "__main__":
    main()
