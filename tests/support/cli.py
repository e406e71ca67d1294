"""Run the real ``cpk`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cpk(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m contentpkg ARGS`` with the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "contentpkg", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cpk {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path below root with its mode, size and link target (for 'unchanged')."""
    snap = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            target = os.readlink(full) if os.path.islink(full) else ""
            size = st.st_size if not os.path.isdir(full) else 0
            snap[os.path.relpath(full, root)] = (st.st_mode, size, target)
    return snap


def add_syscall_counts(work: Path, src: Path, label: str) -> dict[str, int]:
    """System calls by name of one ``cpk store add`` of src into a new store
    under work, as ``strace -f -c`` counts them (threads included)."""
    log = work / f"{label}.strace"
    env = dict(os.environ, CPK_HOME=os.fspath(work / f"home-{label}"))
    subprocess.run(
        ["strace", "-f", "-c", "-o", os.fspath(log), sys.executable, "-m", "contentpkg",
         "store", "add", os.fspath(src), "--name", "t", "--version", "1"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts
