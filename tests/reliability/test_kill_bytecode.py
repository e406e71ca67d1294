"""Killing cpk while it compiles bytecode leaves no process behind.

A real ``cpk sync`` against a loopback index compiles a few thousand modules
in worker processes. The test kills the main process (SIGKILL, as an OOM
kill does; SIGTERM, as ``kill PID`` and a container stop do) at several
moments of the compile, then asserts what a user piping the output sees:
the pipe reaches end of file, and no process of cpk's session survives.
The next sync finishes the job and leaves every entry sealed and verified.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.index import LocalIndex
from support.wheels import make_wheel

from contentpkg.store import Store
from contentpkg.store.verify import verify

PACKAGES = ("alpha", "bravo", "charlie", "delta")
MODULES = 400  # per package: the compile lasts long enough to be hit mid-way
PIPE_EOF_GUARD = 60.0  # seconds; a hang guard, the pipe closes at once when all is well
GRACE = 10.0  # seconds for the kernel to deliver death signals and reap


def _module(i: int) -> str:
    return "".join(f"def f{i}_{k}(x):\n    return [x + {k} for _ in range(3)]\n" for k in range(15))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    root = tmp_path_factory.mktemp("dists")
    for name in PACKAGES:
        files = {f"{name}/__init__.py": ""}
        files.update({f"{name}/m{i:04}.py": _module(i) for i in range(MODULES)})
        make_wheel(root, name, "1.0", files=files)
    with LocalIndex(root) as served:
        yield served


@pytest.fixture
def project(tmp_path: Path, index: LocalIndex) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    deps = "".join(f'"{name}", ' for name in PACKAGES)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0.1"\ndependencies = [{deps}]\n'
    )
    return root


def _session(sid: int) -> list[int]:
    """Pids of live (not zombie) processes whose session id is sid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(name))
    return found


def _pyc_count(home: Path) -> int:
    """Bytecode written so far: in published entries, and in the staging
    slots where a wheel is compiled while it is unpacked."""
    count = 0
    store = home / "store"
    dirs = []
    for parent in (store, store / ".staging"):
        try:
            dirs += [parent / name for name in os.listdir(parent)]
        except OSError:
            continue
    for entry in dirs:
        for name in PACKAGES:
            try:
                count += len(os.listdir(entry / "site-packages" / name / "__pycache__"))
            except OSError:
                continue
    return count


def _sync(project: Path, index: LocalIndex, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CPK_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "contentpkg", "sync", "--index-url", index.url],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its session id is its pid: every descendant is found
    )


def _kill_trial(project: Path, index: LocalIndex, home: Path, sig: int, after_pycs: int) -> None:
    proc = _sync(project, index, home)
    sid = proc.pid
    assert proc.stdout is not None
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120  # hang guard for the compile to start
        while _pyc_count(home) < after_pycs:
            assert proc.poll() is None, b"".join(output).decode(errors="replace")
            assert time.monotonic() < deadline, "the compile never started"
            time.sleep(0.005)
        workers = [p for p in _session(sid) if p != proc.pid]
        assert workers, "no worker processes were running at the kill"
        os.kill(proc.pid, sig)
        proc.wait(timeout=PIPE_EOF_GUARD)
        assert proc.returncode == -sig
        # What `cpk sync | tee` needs: every writer of the pipe is gone.
        reader.join(timeout=PIPE_EOF_GUARD)
        assert not reader.is_alive(), f"pipe still open; holders: {_session(sid)}"
        deadline = time.monotonic() + GRACE
        while _session(sid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session(sid) == [], "processes outlived cpk"
    finally:
        for pid in _session(sid):  # only what this test started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _next_sync_finishes_the_job(project: Path, index: LocalIndex, home: Path) -> None:
    proc = _sync(project, index, home)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode(errors="replace")
    entries = [e for e in Store.open(project).entries() if e.layer.root == home / "store"]
    assert sorted(e.name for e in entries) == sorted(PACKAGES)
    assert [(p.entry.dirname, p.message) for p in verify(entries)] == []


def _lock(project: Path, index: LocalIndex, tmp_path: Path) -> None:
    env = {**os.environ, "CPK_HOME": str(tmp_path / "lock-home")}
    subprocess.run(
        [sys.executable, "-m", "contentpkg", "lock", "--index-url", index.url],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


# Moments: as soon as the first bytecode appears, a third of the way in, and
# two thirds in (of 4 x 401 files; later, the sync may end between two polls).
MOMENTS = (1, 500, 1100)


@pytest.mark.parametrize("after_pycs", MOMENTS)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_kill_during_compile_leaves_no_process_and_closes_the_pipe(
    tmp_path: Path,
    project: Path,
    index: LocalIndex,
    monkeypatch: pytest.MonkeyPatch,
    sig: int,
    after_pycs: int,
) -> None:
    _lock(project, index, tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("CPK_HOME", str(home))
    _kill_trial(project, index, home, sig, after_pycs)
    if after_pycs == MOMENTS[1]:
        _next_sync_finishes_the_job(project, index, home)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_many_kills_during_compile(
    tmp_path: Path,
    project: Path,
    index: LocalIndex,
    monkeypatch: pytest.MonkeyPatch,
    sig: int,
) -> None:
    _lock(project, index, tmp_path)
    for trial in range(20):
        home = tmp_path / f"home-{trial}"
        monkeypatch.setenv("CPK_HOME", str(home))
        _kill_trial(project, index, home, sig, 1 + trial * 55)
        _next_sync_finishes_the_job(project, index, home)
