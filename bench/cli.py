"""Benchmark: the command line itself, against uv, in the same run.

What a user pays before any work starts, with ratios cpk / uv (medians of
``--runs`` samples, the commands interleaved):

1. ``cpk --version`` against ``uv --version`` (interpreter start-up and
   the CLI package's import);
2. ``cpk help add`` against ``uv help add`` (the whole parser built);
3. ``cpk completion bash`` against ``uv generate-shell-completion bash``;
4. a warm ``cpk run python -c pass`` in a project with no dependencies,
   bare and as ``cpk -q --no-progress run ...``: the global options before
   ``run`` are read without the parser, so both should take the memo's
   path (ratio near 1), against ``uv run python -c pass``.

cpk runs from this checkout (``python -m contentpkg``); uv is the binary
beside this interpreter, or the one on PATH.

    python bench/cli.py [--runs 15]
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


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def _medians(pairs: dict[str, list[str]], runs: int, cwd: Path, env: dict[str, str]) -> dict:
    samples: dict[str, list[float]] = {name: [] for name in pairs}
    for _ in range(runs):
        for name, argv in pairs.items():  # interleaved: drift hits both sides
            samples[name].append(_time(argv, cwd, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    uv = _uv()
    if uv is None:
        sys.exit("bench/cli.py: uv is not installed (pip install uv)")
    cpk = [sys.executable, "-m", "contentpkg"]
    with tempfile.TemporaryDirectory(prefix="cpk-bench-cli-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(ROOT / "src"),
            CPK_HOME=str(work / "home"),
            CPK_CACHE_DIR=str(work / "cache"),
            UV_CACHE_DIR=str(work / "uv-cache"),
            UV_PYTHON=sys.executable,
        )
        project = work / "proj"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.11"\n'
            "dependencies = []\n"
        )
        # Warm both: lock and environment made once, outside the timings.
        for argv in ([*cpk, "run", "python", "-c", "pass"], [uv, "run", "python", "-c", "pass"]):
            subprocess.run(argv, cwd=project, env=env, check=True, capture_output=True)
        rows = [
            ("--version", [*cpk, "--version"], [uv, "--version"]),
            ("help add", [*cpk, "help", "add"], [uv, "help", "add"]),
            ("completion bash", [*cpk, "completion", "bash"],
             [uv, "generate-shell-completion", "bash"]),
            ("run (warm)", [*cpk, "run", "python", "-c", "pass"],
             [uv, "run", "python", "-c", "pass"]),
            ("-q --no-progress run (warm)",
             [*cpk, "-q", "--no-progress", "run", "python", "-c", "pass"],
             [uv, "-q", "--no-progress", "run", "python", "-c", "pass"]),
        ]  # fmt: skip
        print(f"{'command':<30} {'cpk':>9} {'uv':>9} {'cpk/uv':>7}")
        results = {}
        for label, ours, theirs in rows:
            m = _medians({"cpk": ours, "uv": theirs}, args.runs, project, env)
            results[label] = m["cpk"]
            print(
                f"{label:<30} {m['cpk'] * 1000:>7.1f}ms {m['uv'] * 1000:>7.1f}ms "
                f"{m['cpk'] / m['uv']:>7.2f}"
            )
        prefix = results["-q --no-progress run (warm)"] / results["run (warm)"]
        print(f"global options before run / bare run (cpk): {prefix:.2f}")


if __name__ == "__main__":
    main()
