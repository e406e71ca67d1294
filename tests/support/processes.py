"""Real cpk processes for the reliability tests: started, killed, and accounted for.

Each cpk under test runs in a session (so a process group) of its own, which
is how the tests can tell that nothing it started outlived it: a worker or a
helper that survives its parent stays in the group. Signals go to the main
process only, as an OOM kill, ``kill PID`` or a container stop sends them.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contentpkg.store.staging import STAGING


def cpk_argv(*args: str | os.PathLike[str]) -> list[str]:
    """The command line of a real ``cpk`` run by this interpreter."""
    return [sys.executable, "-m", "contentpkg", *map(str, args)]


def spawn(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start argv in a new session; its pid is its process group's id.

    stderr goes to an unlinked temporary file, not a pipe: a survivor that
    holds the pipe would make reading it hang (exactly what a log pipe
    does), where the tests want to count survivors, not wait on them.
    """
    err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _finish)
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    proc.stderr_file = err  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> Killed:
    """Wait for the main process, count its group's survivors, kill them."""
    proc.wait(timeout=120)
    orphans = survivors(proc.pid)
    reap_group(proc.pid)
    err = proc.stderr_file  # type: ignore[attr-defined]
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    return Killed(proc.returncode, orphans, text)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is pgid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses: split after the last ")".
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(name))
    return found


def survivors(pgid: int, grace: float = 5.0) -> list[int]:
    """Members of the group still alive after grace seconds (a hang guard,
    not a timing assert: a clean exit empties the group at once)."""
    deadline = time.monotonic() + grace
    members = group_members(pgid)
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = group_members(pgid)
    return members


def reap_group(pgid: int) -> None:
    """Kill what is left of a group this test started (after counting it)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Killed:
    """What one killed run left behind."""

    returncode: int
    orphans: list[int]  # pids of its process group alive after it died
    stderr: str


def run_and_kill(
    argv: list[str], env: dict[str, str], delay: float, sig: int, cwd: Path | None = None
) -> Killed:
    """Start argv, send sig to its main process after delay seconds, and
    report the exit status and whatever of its process group survived
    (those are then killed, so one trial cannot disturb the next)."""
    proc = spawn(argv, env, cwd)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    return _finish(proc)


def kill_when(
    argv: list[str],
    env: dict[str, str],
    ready: Callable[[int], bool],
    sig: int,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> Killed | None:
    """Start argv and send sig once ready(pid) says the moment has come.

    Returns None when the run ended before that moment (nothing was tested).
    """
    proc = spawn(argv, env, cwd)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready(proc.pid):
            proc.send_signal(sig)
            return _finish(proc)
        time.sleep(0.005)
    _finish(proc)
    return None


def children_running(pgid: int, marker: str) -> bool:
    """True when a process of the group other than its leader has marker in
    its command line (``multiprocessing`` for pool workers)."""
    for pid in group_members(pgid):
        if pid == pgid:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            return True
    return False


def entry_dirs(home: Path) -> list[Path]:
    """The published entries of the user store under home."""
    store = home / "store"
    try:
        names = sorted(os.listdir(store))
    except FileNotFoundError:
        return []
    return [store / n for n in names if not n.startswith(".")]


def partial_entries(home: Path) -> list[str]:
    """Entries without their metadata: an entry must appear whole or not at all."""
    return [p.name for p in entry_dirs(home) if not (p / ".cpk" / "entry.json").is_file()]


def writable_in_entries(home: Path) -> list[str]:
    """Files and directories (the entry's own top included) anyone may write."""
    found = []
    for entry in entry_dirs(home):
        for dirpath, dirnames, filenames in os.walk(entry):
            for name in [".", *dirnames, *filenames]:
                path = os.path.join(dirpath, name) if name != "." else dirpath
                st = os.lstat(path)
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o222:
                    found.append(os.path.relpath(path, home))
    return found


def staging_debris(home: Path) -> list[str]:
    """What is left in the store's staging area."""
    try:
        return sorted(os.listdir(home / "store" / STAGING))
    except FileNotFoundError:
        return []


def cpk_env(home: Path, cache: Path, **extra: str) -> dict[str, str]:
    """This process's environment with cpk pointed at home and cache."""
    env = dict(os.environ)
    env.update(CPK_HOME=str(home), CPK_CACHE_DIR=str(cache), **extra)
    return env


def userns_unavailable() -> str | None:
    """Why ``unshare -Urm`` cannot be used here, or None when it can."""
    try:
        proc = subprocess.run(
            ["unshare", "-Urm", "true"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return "util-linux's unshare is not installed"
    if proc.returncode != 0:
        return f"user namespaces are unavailable: unshare -Urm: {proc.stderr.strip()}"
    return None
