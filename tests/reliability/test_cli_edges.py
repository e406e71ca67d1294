"""The command line's small edges: closed pipes, exit statuses, a home that is
a file, counts in words, and hints said once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.index import LocalIndex
from support.wheels import make_wheel


def _two_tool_entry(tmp_path: Path) -> None:
    prefix = tmp_path / "pfx" / "bin"
    prefix.mkdir(parents=True)
    for name in ("tool-a", "tool-b"):
        (prefix / name).write_text(f"#!/bin/sh\necho {name}\n")
        (prefix / name).chmod(0o755)
    run_cpk("store", "add", prefix.parent, "--name", "twotools", "--version", "1.0", check=True)


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    """``cpk store ls | head -0``: the reader is gone before cpk writes. As
    coreutils do, cpk stops with SIGPIPE's status and says nothing."""
    _two_tool_entry(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before cpk writes: no race with the reader
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "contentpkg", "store", "ls"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


@pytest.fixture
def project(tmp_path: Path):
    dists = tmp_path / "dists"
    make_wheel(dists, "gamma", "1.0")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\ndependencies = ["gamma"]\n'
    )
    (root / "not-executable").write_text("#!/bin/sh\n")
    with LocalIndex(dists) as index:
        yield root, index


def test_run_exits_as_exec_does_when_a_command_cannot_start(project) -> None:
    """127 for a command not found, 126 for one not executable: a shell's
    statuses, as ``cpk exec`` gives them, on the full path and from the memo
    (``-q``: the cold run's summary lines are not what is checked here)."""
    root, index = project

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return run_cpk("-q", "run", "--index-url", index.url, *command, cwd=root)

    cold = run("no-such-command-here")  # the full path: no memo yet
    assert cold.returncode == 127, cold.stderr
    assert cold.stderr == (
        "cpk: error: no-such-command-here: command not found in the environment or on PATH\n"
    )
    assert run("python", "-c", "pass").returncode == 0
    warm = run("no-such-command-here")  # the memo's path
    assert (warm.returncode, warm.stderr) == (127, cold.stderr)
    denied = run("./not-executable")
    assert denied.returncode == 126, denied.stderr
    assert denied.stderr == "cpk: error: ./not-executable: permission denied\n"


def test_a_home_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "home-file"
    home.write_text("")
    for command in (("store", "ls"), ("store", "verify"), ("store", "gc", "--dry-run")):
        proc = run_cpk(*command, env={"CPK_HOME": str(home)})
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        expected = f"cpk: error: {home}: not a directory (cpk's home is set by CPK_HOME)\n"
        assert proc.stderr == expected


def test_counts_agree_with_their_nouns(tmp_path: Path, project) -> None:
    root, index = project
    locked = run_cpk("lock", "--index-url", index.url, cwd=root, check=True)
    assert "locked 1 package into pylock.toml" in locked.stderr, locked.stderr
    _two_tool_entry(tmp_path)
    verify = run_cpk("store", "verify", check=True)
    assert "verified 1 entry: 1 intact, 0 corrupt" in verify.stderr
    gc = run_cpk("store", "gc", "--dry-run", check=True)
    assert "would remove 1 entry," in gc.stderr and "0 entries reachable" in gc.stderr, gc.stderr
    info = run_cpk("store", "info", "twotools", check=True)
    assert "in 2 files" in info.stdout


def test_the_not_on_path_hint_is_said_once(tmp_path: Path) -> None:
    _two_tool_entry(tmp_path)
    proc = run_cpk("install", "twotools", env={"PATH": os.defpath}, check=True)
    assert proc.stderr.count("installed ") == 2
    assert proc.stderr.count("is not on PATH") == 1, proc.stderr
