"""Races: eight cold ``cpk run`` in one project, sharing one store and one cache.

Every process resolves, downloads and stores the same wheels at once, so each
one reads archives that the others are writing into the download cache and
then forgetting (removing) once their entries are stored. All must succeed,
every trial, and leave one entry per wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.index import LocalIndex
from support.wheels import make_wheel

PROCESSES = 8
NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    for name in NAMES:
        # A few hundred kilobytes each, so reading one takes long enough for
        # another process to remove it meanwhile.
        files = {f"{name}/__init__.py": f"VALUE = {name!r}\n"}
        files.update({f"{name}/data{i}.txt": os.urandom(40_000).hex() for i in range(4)})
        make_wheel(root, name, "1.0", files=files)
    # No PEP 658 metadata: every process downloads each wheel into the shared
    # cache to read its METADATA, the path that raced with forget_archive.
    with LocalIndex(root, metadata_files=False) as served:
        yield served


def _cold_runs(tmp_path: Path, index: LocalIndex, trial: int) -> list[tuple[int, str, str]]:
    """Start PROCESSES cold runs at once in a fresh home and cache; their results."""
    base = tmp_path / f"trial{trial}"
    project = base / "proj"
    project.mkdir(parents=True)
    deps = "".join(f'"{n}", ' for n in NAMES)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "proj"\nversion = "0"\ndependencies = [{deps}]\n'
    )
    env = dict(os.environ, CPK_HOME=str(base / "home"), CPK_CACHE_DIR=str(base / "cache"))
    code = "import " + ", ".join(NAMES) + "; print(" + " + ".join(f"{n}.VALUE" for n in NAMES) + ")"
    command = [sys.executable, "-m", "contentpkg", "run", "--index-url", index.url]
    procs = [
        subprocess.Popen(
            [*command, "python", "-c", code],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)  # a hang guard, not a timing assert
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, 9)
                proc.wait()
    entries = [n for n in os.listdir(base / "home" / "store") if not n.startswith(".")]
    assert sorted(n.split(",")[0] for n in entries) == sorted(NAMES), entries
    return results


def _check_trials(tmp_path: Path, index: LocalIndex, trials: int) -> None:
    expected = "".join(NAMES)
    failures = []
    for trial in range(trials):
        for status, out, err in _cold_runs(tmp_path, index, trial):
            if status != 0 or out.strip() != expected:
                failures.append((trial, status, err.strip()))
    assert failures == [], failures


def test_eight_cold_runs_in_one_project_all_succeed(tmp_path: Path, index: LocalIndex) -> None:
    _check_trials(tmp_path, index, trials=3)


@pytest.mark.slow
def test_eight_cold_runs_in_one_project_all_succeed_many_trials(
    tmp_path: Path, index: LocalIndex
) -> None:
    _check_trials(tmp_path, index, trials=20)


def test_an_archive_read_by_one_client_survives_another_forgetting_it(
    tmp_path: Path, index: LocalIndex
) -> None:
    """The mechanism under the race, step by step: what a client fetched stays
    readable when another client (another process, in life) removes the cached
    copy, and its download then needs no second request."""
    from contentpkg.python.index.client import IndexClient

    cache = tmp_path / "cache"
    with (
        IndexClient([index.url], cache_dir=cache) as reader,
        IndexClient([index.url], cache_dir=cache) as other,
    ):
        (wheel,) = reader.project_files("alpha")
        path = reader.fetch_archive(wheel)
        other.forget_archive(wheel)
        assert path.is_file()
        index.clear_log()
        out = reader.download(wheel, tmp_path / "out")
        assert out.read_bytes() == (index.root / wheel.filename).read_bytes()
        assert index.paths() == []
    # Closed clients leave no pin directories behind.
    assert [p.name for p in (cache / "archives-v1").glob(".pins.*")] == []


def test_a_killed_clients_pins_are_swept_by_the_next(tmp_path: Path, index: LocalIndex) -> None:
    cache = tmp_path / "cache"
    code = (
        "import sys, time\n"
        "from contentpkg.python.index.client import IndexClient\n"
        "c = IndexClient([sys.argv[1]], cache_dir=sys.argv[2])\n"
        "c.fetch_archive(c.project_files('alpha')[0])\n"
        "print('pinned', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, index.url, str(cache)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "pinned"
        from contentpkg.python.index.client import IndexClient

        with IndexClient([index.url], cache_dir=cache) as live:
            live.fetch_archive(live.project_files("beta")[0])
            # Its owner is alive (holds the flock): kept.
            assert len(list((cache / "archives-v1").glob(".pins.*"))) == 2
    finally:
        os.kill(proc.pid, 9)
        proc.wait()
    with IndexClient([index.url], cache_dir=cache) as after:
        after.fetch_archive(after.project_files("gamma")[0])
        pins = list((cache / "archives-v1").glob(".pins.*"))
        assert len(pins) == 1, pins  # its own: the killed one's went
