"""A read-only ``CPK_HOME``: commands that write nothing must still work.

A home on a read-only mount (a shared or image-baked store, a locked-down CI
runner) is readable by everyone; only writers need write access. Root in CI
bypasses directory modes, so the home is made read-only the way root cannot
bypass: a read-only bind mount inside a private user and mount namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.index import LocalIndex
from support.wheels import make_wheel

# Binds $1 read-only over itself, then runs the rest of the arguments.
_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def _namespaces_work(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", _READ_ONLY + " 2>/dev/null", "sh", str(tmp), "true"],
        capture_output=True,
    )
    return probe.returncode == 0


def _cpk(*args: str) -> list[str]:
    return [sys.executable, "-m", "contentpkg", *args]


def cpk_in_read_only(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cpk ARGS`` with home mounted read-only (for root too)."""
    return subprocess.run(
        ["unshare", "-Urm", "sh", "-c", _READ_ONLY, "sh", str(home), *_cpk(*args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def populated(tmp_path: Path, cpk_home: Path):
    """A home with a project's environment made, and the project."""
    if not _namespaces_work(tmp_path):
        pytest.skip("no unprivileged user and mount namespaces: cannot make a read-only mount")
    dists = tmp_path / "dists"
    make_wheel(dists, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 'alpha'\n"})
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["alpha"]\n'
    )
    with LocalIndex(dists) as index:
        made = run_cpk("run", "--index-url", index.url, "python", "-c", "pass", cwd=project)
        assert made.returncode == 0, made.stderr
        yield cpk_home, project, index


def test_read_only_commands_work_in_a_read_only_home(populated) -> None:
    home, project, index = populated
    before = tree_snapshot(home)
    ls = cpk_in_read_only(home, "store", "ls", cwd=project)
    assert ls.returncode == 0 and "alpha" in ls.stdout, ls.stderr
    verify = cpk_in_read_only(home, "store", "verify", cwd=project)
    assert verify.returncode == 0, verify.stderr
    dry = cpk_in_read_only(home, "store", "gc", "--dry-run", cwd=project)
    assert dry.returncode == 0, dry.stderr
    command = ["run", "--index-url", index.url, "python", "-c", "import alpha; print(alpha.VALUE)"]
    # Warm from the memo (the cache is not in the home, and stays writable)...
    warm = cpk_in_read_only(home, *command, cwd=project)
    assert (warm.returncode, warm.stdout.strip()) == (0, "alpha"), warm.stderr
    # ...and warm without it: the full path finds the environment made.
    shutil.rmtree(Path(os.environ["CPK_CACHE_DIR"]) / "run-memo")
    full = cpk_in_read_only(home, *command, cwd=project)
    assert (full.returncode, full.stdout.strip()) == (0, "alpha"), full.stderr
    assert tree_snapshot(home) == before


def test_writers_in_a_read_only_home_fail_in_one_line(populated) -> None:
    home, project, _ = populated
    before = tree_snapshot(home)
    gc = cpk_in_read_only(home, "store", "gc", cwd=project)
    assert gc.returncode == 1
    assert gc.stderr.startswith("cpk: error: ") and gc.stderr.count("\n") == 1, gc.stderr
    assert "Read-only file system" in gc.stderr
    assert tree_snapshot(home) == before
