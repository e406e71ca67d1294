"""Faults made for real: a full disk, too few file descriptors, a read-only home.

A full disk is a small tmpfs mounted inside ``unshare -Urm`` (the mount dies
with the namespace, so the checks of what was left run inside it too); a
read-only home is a read-only bind mount there, which root cannot write
through either (permission bits would not stop root, and CI runs as root).
Each fault must end in one ``cpk: error:`` line naming the problem, no
traceback, and nothing partial.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.elfbuild import build_exe, build_lib, needs_cc
from support.processes import cpk_argv, partial_entries, staging_debris, userns_unavailable

#: Runs inside the namespace after cpk: what the store and profile hold.
INSPECT = textwrap.dedent(
    """
    import json, os, sys
    home = sys.argv[1]
    store = os.path.join(home, "store")
    names = sorted(os.listdir(store)) if os.path.isdir(store) else []
    gens = os.path.join(home, "profiles", "default.gens")
    print(json.dumps({
        "entries": [n for n in names if not n.startswith(".")],
        "partial": [n for n in names if not n.startswith(".")
                    and not os.path.isfile(os.path.join(store, n, ".cpk", "entry.json"))],
        "staging": sorted(os.listdir(os.path.join(store, ".staging")))
                   if os.path.isdir(os.path.join(store, ".staging")) else [],
        "generations": sorted(os.listdir(gens)) if os.path.isdir(gens) else [],
        "alias": os.path.lexists(os.path.join(home, "profiles", "default")),
    }))
    """
)


def _in_namespace(
    setup: str, steps: list[list[str]], home: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Run setup (shell, as root of a new user+mount namespace), then each step
    in turn, then INSPECT; return one result per step plus INSPECT's."""
    why = userns_unavailable()
    if why is not None:
        pytest.skip(why)
    marker = "@@cpk-step@@"
    script = [f"{setup} || exit 99"]
    for step in [*steps, [sys.executable, "-c", INSPECT, str(home)]]:
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in step)
        script.append(f'{quoted}; echo "{marker} $?" >&2; echo "{marker}"')
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", "\n".join(script)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "CPK_HOME": str(home)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outs = proc.stdout.split(f"{marker}\n")
    errs = proc.stderr.split(marker)
    results = []
    for i, step in enumerate([*steps, ["inspect"]]):
        status_and_rest = errs[i + 1].split("\n", 1)
        status = int(status_and_rest[0])
        err = errs[i] if i == 0 else errs[i].split("\n", 1)[1]
        results.append(subprocess.CompletedProcess(step, status, outs[i], err))
    return results


def _one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpk: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _big_tree(root: Path, mib: int) -> Path:
    for i in range(mib * 4):
        sub = root / f"d{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(os.urandom(256 * 1024))
    return root


# --- ENOSPC ------------------------------------------------------------------------


def test_full_disk_during_store_add(tmp_path: Path) -> None:
    """Issue 15, defect 6: the line says what ran out, where, doing what."""
    home = tmp_path / "home"
    home.mkdir()
    src = _big_tree(tmp_path / "tree", 3)
    add, inspect = _in_namespace(
        f"mount -t tmpfs -o size=1m cpk-full '{home}'",
        [cpk_argv("store", "add", src, "--name", "big", "--version", "1")],
        home,
    )
    line = _one_error_line(add, "no space left on device")
    state = json.loads(inspect.stdout)
    assert state["entries"] == [] and state["partial"] == []
    assert [n for n in state["staging"] if not n.endswith(".lock")] == []
    assert str(home) in line, f"the line does not say where: {line}"
    assert "adding big 1" in line, f"the line does not say doing what: {line}"


@needs_cc
def test_full_disk_during_install(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tree = tmp_path / "hello"
    lib = build_lib(tree / "lib" / "libhello.so.1", "f_hello", "hello 1", soname="libhello.so.1")
    build_exe(tree / "bin" / "hello", ["f_hello"], libs=[lib])
    for c in tree.rglob("*.c"):
        c.unlink()
    # Fill what the entry left free, so the install has no room for its generation.
    fill = (
        "import os, sys\n"
        "try:\n"
        "    with open(os.path.join(sys.argv[1], 'filler'), 'wb') as f:\n"
        "        while True:\n"
        "            f.write(b'x' * 4096); f.flush()\n"
        "except OSError:\n"
        "    pass\n"
    )
    add, _fill, install, inspect = _in_namespace(
        f"mount -t tmpfs -o size=2m,nr_inodes=400 cpk-full '{home}'",
        [
            cpk_argv("store", "add", tree, "--name", "hello", "--version", "1"),
            [sys.executable, "-c", fill, str(home)],
            cpk_argv("install", "hello"),
        ],
        home,
    )
    assert add.returncode == 0, add.stderr
    _one_error_line(install, "No space left on device")
    state = json.loads(inspect.stdout)
    assert state["partial"] == []
    assert state["alias"] is False, "a profile appeared from a failed install"
    assert [g for g in state["generations"] if not g.startswith(".")] == []


# --- EMFILE --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [12, 16, 24, 32])
def test_too_few_file_descriptors(tmp_path: Path, cpk_home: Path, limit: int) -> None:
    """Either the add succeeds or it says in one line that it ran out."""
    src = tmp_path / "tree"
    for i in range(300):
        (src / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 10}" / f"f{i}").write_text(f"{i}\n")

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.run(
        cpk_argv("store", "add", src, "--name", "fds", "--version", "1"),
        capture_output=True, text=True, timeout=120, preexec_fn=low,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode != 0:
        _one_error_line(proc, "Too many open files")
    assert partial_entries(cpk_home) == []
    check = subprocess.run(cpk_argv("store", "add", src, "--name", "fds", "--version", "1"),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert staging_debris(cpk_home) == []


# --- read-only home --------------------------------------------------------------------


def test_read_only_home_stops_writers_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    src = tmp_path / "file.txt"
    src.write_text("hello\n")
    add, install, inspect = _in_namespace(
        f"mount --bind '{home}' '{home}' && mount -o remount,bind,ro '{home}'",
        [cpk_argv("store", "add", src, "--name", "f", "--version", "1"),
         cpk_argv("install", "f")],
        home,
    )  # fmt: skip
    _one_error_line(add, "read-only file system writing", str(home), "(adding f 1)")
    _one_error_line(install)
    assert json.loads(inspect.stdout)["entries"] == []
