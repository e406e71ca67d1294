"""Benchmark: a git dependency under ``cpk run`` and ``uv run``, in the same run.

A local repository (reached as ``git+file://``, so no network is involved)
holds a small project built by an in-tree PEP 517 backend; a project depends
on it at ``@main``. Each round starts from empty caches and stores and
measures, for cpk and for uv alike:

1. cold: the first ``run python -c 'import gitpkg'`` (clone, resolve the
   branch to a commit, build, lock, make the environment, run);
2. warm: the same command again (nothing to do);
3. relock after upstream moved: a new commit on ``main`` and a changed
   ``pyproject.toml``, then ``lock``: the locked commit is kept, so nothing
   is fetched or built (uv keeps it too);
4. fresh environment from the warm store/cache: the environment removed
   (cpk: ``views/``, ``envs/`` and ``.venv``; uv: ``.venv``), then run.

Prints the medians of ``--runs`` rounds and the ratios cpk / uv. The
machines are noisy: read the ratios. cpk runs as an installed tool would,
byte-compiled (``python_run.install_cpk``), so PYTHONDONTWRITEBYTECODE does
not make every start compile cpk's sources.

    PYTHONPATH=src python bench/git_deps.py [--runs 5]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from python_run import install_cpk  # noqa: E402
from support.wheels import INLINE_BACKEND, metadata_text  # noqa: E402

PROBE = "import gitpkg; print(gitpkg.__version__)"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.org", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


def write_version(repo: Path, version: str) -> None:
    (repo / "PKG-INFO").write_text(metadata_text("gitpkg", version, (), None))
    (repo / "src" / "gitpkg").mkdir(parents=True, exist_ok=True)
    (repo / "src" / "gitpkg" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", version)


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "inline_backend"\nbackend-path = ["."]\n'
    )
    (repo / "inline_backend.py").write_text(INLINE_BACKEND)
    (repo / "build-requires.txt").write_text("")
    write_version(repo, "1.0")
    return repo


def make_project(root: Path, repo: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\nrequires-python = ">=3.11"\n'
        f'dependencies = ["gitpkg @ git+{repo.as_uri()}@main"{extra}]\n'
    )
    return root


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return took


def one_round(base: Path, uv: str, cpk: list[str]) -> dict[str, dict[str, float]]:
    repo = make_repo(base)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    cpk_env = {
        **env,
        "CPK_HOME": str(base / "cpk-home"),
        "CPK_CACHE_DIR": str(base / "cpk-cache"),
    }
    cpk_env.pop("PYTHONPATH", None)
    uv_env = {**env, "UV_CACHE_DIR": str(base / "uv-cache"), "UV_PYTHON": sys.executable}
    tools = {
        "cpk": (cpk, cpk_env, make_project(base / "c", repo)),
        "uv": ([uv], uv_env, make_project(base / "u", repo)),
    }
    out: dict[str, dict[str, float]] = {"cpk": {}, "uv": {}}
    for name, (cmd, tool_env, project) in tools.items():
        run = [*cmd, "run", "python", "-c", PROBE]
        out[name]["cold"] = timed(run, project, tool_env)
        out[name]["warm"] = timed(run, project, tool_env)
    write_version(repo, "2.0")
    for name, (cmd, tool_env, project) in tools.items():
        make_project(project, repo, ', "gitpkg>=1"')
        out[name]["relock (upstream moved)"] = timed([*cmd, "lock"], project, tool_env)
        if name == "cpk":
            for sub in ("views", "envs"):
                shutil.rmtree(base / "cpk-home" / sub, ignore_errors=True)
            venv = project / ".venv"
            if venv.is_symlink():
                venv.unlink()
        else:
            shutil.rmtree(project / ".venv")
        run = [*cmd, "run", "python", "-c", PROBE]
        out[name]["fresh env, warm store"] = timed(run, project, tool_env)
        check = subprocess.run(run, cwd=project, env=tool_env, capture_output=True, text=True)
        assert check.stdout.strip() == "1.0", (name, check.stdout, check.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if uv is None or shutil.which("git") is None:
        raise SystemExit("needs uv and git")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="cpk-bench-tool-") as tool:
        cpk = install_cpk(Path(tool) / "cpk")
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="cpk-bench-git-") as tmp:
                rounds.append(one_round(Path(tmp), uv, cpk))
    print(f"git dependency from a local repository, medians of {args.runs} rounds")
    print(f"{'step':<26}{'cpk (s)':>10}{'uv (s)':>10}{'cpk/uv':>9}")
    for step in rounds[0]["cpk"]:
        c = statistics.median(r["cpk"][step] for r in rounds)
        u = statistics.median(r["uv"][step] for r in rounds)
        print(f"{step:<26}{c:>10.3f}{u:>10.3f}{c / u:>9.2f}")


if __name__ == "__main__":
    main()
