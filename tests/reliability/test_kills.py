"""SIGKILL and SIGTERM at random points of cpk's writing commands.

Whatever moment a writer dies at, the store and the profiles must be as
DESIGN.md's first invariant says: every entry whole or absent, no entry file
writable, nothing the writer started still running, staging debris removed
by the next run, and the next run succeeds. Kills go to the main process
only, as an OOM kill, ``kill PID`` or a container stop sends them.

The moments are drawn from a seeded generator over a little more than one
uninterrupted run's duration (measured first, only to spread the kills: no
assert depends on time), so kills land before, during and after the work.
The default run makes 5 trials per command; the ``slow`` variants 24.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.elfbuild import build_exe, build_lib, needs_cc
from support.index import LocalIndex
from support.processes import (
    cpk_argv,
    cpk_env,
    group_members,
    partial_entries,
    reap_group,
    run_and_kill,
    staging_debris,
    writable_in_entries,
)
from support.wheels import make_wheel

TRIALS = [5, pytest.param(24, marks=pytest.mark.slow)]
SIGNALS = (signal.SIGKILL, signal.SIGTERM)

Homes = Callable[[], tuple[Path, Path]]


def _timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Run argv to completion (it must succeed) and return how long it took."""
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - start


def _ok(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{argv[3:]} after a kill: {proc.stderr}"
    return proc.stdout


def _assert_whole(home: Path, env: dict[str, str], what: str) -> None:
    """Every entry present is whole and verifies; none is writable."""
    assert partial_entries(home) == [], what
    assert writable_in_entries(home) == [], what
    verify = subprocess.run(
        cpk_argv("store", "verify"), env=env, capture_output=True, text=True, timeout=300
    )
    assert verify.returncode == 0, f"{what}: {verify.stdout}{verify.stderr}"


def _killed_ok(_returncode: int, stderr: str) -> bool:
    """A killed run ends by its signal or, when it caught SIGTERM, with an
    error line; never with a traceback."""
    return "Traceback" not in stderr


# --- store add ---------------------------------------------------------------------


def _tree(root: Path, files: int) -> Path:
    rng = random.Random(7)
    for i in range(files):
        sub = root / f"d{i % 13}" / f"e{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(rng.randbytes(rng.randint(0, 2000)))
    return root


@pytest.mark.parametrize("trials", TRIALS)
def test_store_add_killed_at_random_points(tmp_path: Path, fresh_home: Homes, trials: int) -> None:
    src = _tree(tmp_path / "tree", 600)
    home, cache = fresh_home()
    env = cpk_env(home, cache)
    duration = _timed(cpk_argv("store", "add", src, "--name", "calib", "--version", "1"), env)
    rng = random.Random(20240515 + trials)
    interrupted = 0
    for trial in range(trials):
        sig = SIGNALS[trial % 2]
        argv = cpk_argv("store", "add", src, "--name", "tree", "--version", str(trial))
        killed = run_and_kill(argv, env, rng.uniform(0, duration * 1.2), sig)
        what = f"trial {trial} ({sig.name}, exit {killed.returncode})"
        interrupted += killed.returncode != 0
        assert _killed_ok(killed.returncode, killed.stderr), f"{what}: {killed.stderr}"
        assert killed.orphans == [], f"{what}: left running: {killed.orphans}"
        _assert_whole(home, env, what)
    # The next run cleans what the killed ones left in staging, and succeeds.
    _ok(cpk_argv("store", "add", src, "--name", "tree", "--version", "next"), env)
    assert staging_debris(home) == []
    _assert_whole(home, env, "after the next run")
    assert interrupted > 0, "no kill landed during an add; the test proved nothing"


# --- sync ----------------------------------------------------------------------------


def _modules(name: str, count: int) -> dict[str, str]:
    """A package of count modules: enough bytecode to compile that the
    compilation (worker processes) is a real phase of the run."""
    files = {f"{name}/__init__.py": f"NAME = {name!r}\n"}
    for i in range(count):
        body = "".join(f"def f{j}(x):\n    return x * {j} + {i}\n" for j in range(10))
        files[f"{name}/m{i}.py"] = body
    return files


@pytest.fixture
def sync_project(tmp_path: Path) -> Iterator[tuple[LocalIndex, Path]]:
    with LocalIndex(tmp_path / "dists") as index:
        deps = ["alpha", "beta", "gamma"]
        for dep in deps:
            make_wheel(index.root, dep, "1.0", files=_modules(dep, 10))
        project = tmp_path / "proj"
        project.mkdir()
        listed = ", ".join(f'"{d}"' for d in deps)
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "proj"\nversion = "0.1"\ndependencies = [{listed}]\n'
        )
        yield index, project


def _sync_argv(index: LocalIndex) -> list[str]:
    return cpk_argv("sync", "--index-url", index.url)


def _fresh_project(project: Path, dest: Path) -> Path:
    dest.mkdir()
    (dest / "pyproject.toml").write_bytes((project / "pyproject.toml").read_bytes())
    return dest


def test_warm_sync_sweeps_the_lock_of_a_slot_killed_after_publishing(
    fresh_home: Homes, sync_project: tuple[LocalIndex, Path]
) -> None:
    """A kill between an entry's rename into place and its slot's close
    leaves only the slot's lock file; the next sync finds every entry
    present and adds nothing, yet must still sweep it (the window a random
    kill hit once in CI)."""
    index, project = sync_project
    home, cache = fresh_home()
    env = cpk_env(home, cache)
    _ok(_sync_argv(index), env, project)
    entries_before = sorted(p.name for p in (home / "store").iterdir())
    staging = home / "store" / ".staging"
    staging.mkdir(exist_ok=True)
    (staging / "999999-0123456789ab.lock").touch()  # its owner is gone: the lock is free
    _ok(_sync_argv(index), env, project)
    assert staging_debris(home) == []
    assert sorted(p.name for p in (home / "store").iterdir()) == entries_before


@pytest.mark.parametrize("trials", TRIALS)
def test_sync_killed_at_random_points(
    tmp_path: Path, fresh_home: Homes, sync_project: tuple[LocalIndex, Path], trials: int
) -> None:
    """Orphaned compile workers and entries left writable by an interrupted
    compile show only when a kill lands inside the compile: the trials
    record every one seen and the test fails naming them all, after checking
    everything else (so one report shows every trial's outcome)."""
    index, project = sync_project
    home, cache = fresh_home()
    duration = _timed(_sync_argv(index), cpk_env(home, cache), cwd=project)
    rng = random.Random(1517 + trials)
    interrupted = 0
    seen: list[str] = []  # orphans and writable entries, by trial
    for trial in range(trials):
        home, cache = fresh_home()  # cold each time: every phase can be hit
        env = cpk_env(home, cache)
        root = _fresh_project(project, tmp_path / f"p{trial}")
        sig = SIGNALS[trial % 2]
        killed = run_and_kill(_sync_argv(index), env, rng.uniform(0, duration * 1.2), sig, root)
        what = f"trial {trial} ({sig.name}, exit {killed.returncode})"
        interrupted += killed.returncode != 0
        assert _killed_ok(killed.returncode, killed.stderr), f"{what}: {killed.stderr}"
        assert partial_entries(home) == [], what
        if killed.orphans:
            seen.append(f"{what}: {len(killed.orphans)} processes outlived cpk")
        # No half-written lock: absent, or the whole file the next run reads.
        _ok(_sync_argv(index), env, root)
        assert staging_debris(home) == [], what
        assert partial_entries(home) == [], what
        verify = subprocess.run(cpk_argv("store", "verify"), env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert verify.returncode == 0, f"{what}: {verify.stdout}{verify.stderr}"
        if writable_in_entries(home):
            seen.append(f"{what}: entries left writable after the next run")
    assert interrupted > 0, "no kill landed during a sync; the test proved nothing"
    assert seen == []


# --- install and profile switches -------------------------------------------------


def _package(tmp_path: Path, name: str, version: str) -> Path:
    """bin/<name> printing its version through its own library."""
    tree = tmp_path / f"{name}-{version}"
    lib = build_lib(
        tree / "lib" / f"lib{name}.so.1", f"f_{name}", f"{name} {version}",
        soname=f"lib{name}.so.1",
    )  # fmt: skip
    build_exe(tree / "bin" / name, [f"f_{name}"], libs=[lib])
    for c in tree.rglob("*.c"):
        c.unlink()
    return tree


def _profile_sound(home: Path) -> str | None:
    """The alias, if any, names a whole generation; returns what it prints."""
    alias = home / "profiles" / "default"
    if not os.path.lexists(alias):
        return None
    assert alias.is_symlink()
    gen = alias.resolve()
    assert (gen / ".cpk" / "generation.json").is_file(), f"alias names a partial {gen}"
    out = subprocess.run([str(alias / "bin" / "hello")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _profile_debris(home: Path) -> list[str]:
    gens = home / "profiles" / "default.gens"
    names = os.listdir(gens) if gens.is_dir() else []
    links = os.listdir(home / "profiles") if (home / "profiles").is_dir() else []
    return [n for n in names if n.startswith((".staging-", ".delete-"))] + [
        n for n in links if n.startswith(".tmp-")
    ]


@needs_cc
@pytest.mark.parametrize("trials", TRIALS)
def test_install_and_profile_switches_killed_at_random_points(
    tmp_path: Path, fresh_home: Homes, trials: int
) -> None:
    trees = {v: _package(tmp_path, "hello", v) for v in ("1.0", "2.0")}
    rng = random.Random(4242 + trials)

    def prepared() -> tuple[Path, dict[str, str]]:
        home, cache = fresh_home()
        env = cpk_env(home, cache)
        for version, tree in trees.items():
            _ok(cpk_argv("store", "add", tree, "--name", "hello", "--version", version), env)
        return home, env

    home, env = prepared()
    durations = {
        "install": _timed(cpk_argv("install", "hello,1.0"), env),
        "switch": _timed(cpk_argv("install", "hello,2.0"), env),
    }
    durations["rollback"] = _timed(cpk_argv("profile", "rollback"), env)
    interrupted = 0
    for trial in range(trials):
        home, env = prepared()
        sig = SIGNALS[trial % 2]
        step = ("install", "switch", "rollback")[trial % 3]
        if step != "install":
            _ok(cpk_argv("install", "hello,1.0"), env)
        if step == "rollback":
            _ok(cpk_argv("install", "hello,2.0"), env)
        argv = {
            "install": cpk_argv("install", "hello,1.0"),
            "switch": cpk_argv("install", "hello,2.0"),
            "rollback": cpk_argv("profile", "rollback"),
        }[step]
        killed = run_and_kill(argv, env, rng.uniform(0, durations[step] * 1.2), sig)
        what = f"trial {trial}: {step} ({sig.name}, exit {killed.returncode})"
        interrupted += killed.returncode != 0
        assert _killed_ok(killed.returncode, killed.stderr), f"{what}: {killed.stderr}"
        assert killed.orphans == [], f"{what}: left running: {killed.orphans}"
        # Old generation or new, never a mix, never a dangling alias.
        before = {"install": None, "switch": "hello 1.0", "rollback": "hello 2.0"}[step]
        after = {"install": "hello 1.0", "switch": "hello 2.0", "rollback": "hello 1.0"}[step]
        assert _profile_sound(home) in (before, after), what
        _assert_whole(home, env, what)
        # The next change cleans up after the killed one, and works.
        _ok(cpk_argv("install", "hello,2.0"), env)
        assert _profile_sound(home) == "hello 2.0", what
        assert _profile_debris(home) == [], what
        assert staging_debris(home) == [], what
    assert interrupted > 0, "no kill landed during a change; the test proved nothing"


def test_a_killed_runs_group_is_visible_to_the_check(tmp_path: Path) -> None:
    """The orphan check itself: a child that outlives its killed parent is seen."""
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    from support.processes import spawn, survivors

    proc = spawn([sys.executable, "-c", script], dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=30)
        assert len(survivors(proc.pid, grace=0.2)) == 1
    finally:
        reap_group(proc.pid)
    assert survivors(proc.pid) == []
