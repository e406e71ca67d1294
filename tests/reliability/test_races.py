"""Races across commands: many writers at once, with the collector beside them.

What may happen is fixed by the locks (``store/locks.py``, ``store/gc.py``):
a writer holds the collector lock shared while it builds and publishes, gc
holds it exclusively while it sweeps. So gc never sees an entry half
published, and never removes one while its writer works; once the writer
has released the lock, an entry that no root reaches is garbage, and gc may
remove it (an unrooted ``store add`` is exactly that). The expectation is
therefore: every add succeeds; every gc succeeds; at the end each entry
present is whole, is one that was added and verifies, and a last gc leaves
no entry (none is rooted) and an empty staging area.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from support.elfbuild import build_exe, build_lib, needs_cc
from support.processes import cpk_argv, partial_entries, staging_debris

WRITERS = [16, pytest.param(48, marks=pytest.mark.slow)]

GC_LOOP = """
import subprocess, sys, os
stop = sys.argv[1]
argv = sys.argv[2:]
runs = failures = 0
while not os.path.exists(stop):
    proc = subprocess.run(argv, capture_output=True, text=True)
    runs += 1
    if proc.returncode != 0:
        failures += 1
        sys.stderr.write(proc.stderr)
print(runs, failures)
"""


def _tree(root: Path, seed: int, files: int = 60) -> Path:
    rng = random.Random(seed)
    for i in range(files):
        sub = root / f"d{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(rng.randbytes(rng.randint(0, 4000)))
    return root


@pytest.mark.parametrize("writers", WRITERS)
@pytest.mark.parametrize("shape", ["one tree", "different trees"])
def test_concurrent_adds_with_gc_looping(
    tmp_path: Path, cpk_home: Path, writers: int, shape: str
) -> None:
    count = 1 if shape == "one tree" else writers
    trees = [_tree(tmp_path / f"t{i}", seed=i) for i in range(count)]
    stop = tmp_path / "stop"
    gc = subprocess.Popen(
        [sys.executable, "-c", GC_LOOP, str(stop), *cpk_argv("store", "gc")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        adds = [
            subprocess.Popen(
                cpk_argv(
                    "store", "add", trees[i % count], "--name", f"t{i % count}", "--version", "1"
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(writers)
        ]
        results = [p.communicate(timeout=300) for p in adds]
    finally:
        stop.touch()
        gc_out, gc_err = gc.communicate(timeout=300)
    for proc, (_out, err) in zip(adds, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    runs, failures = map(int, gc_out.split())
    assert runs >= 1 and failures == 0, gc_err
    names = [p for p in os.listdir(cpk_home / "store") if not p.startswith(".")]
    assert {n.split(",")[0] for n in names} <= {f"t{i}" for i in range(count)}
    assert partial_entries(cpk_home) == []
    verify = subprocess.run(cpk_argv("store", "verify"), capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    final = subprocess.run(cpk_argv("store", "gc"), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert [n for n in os.listdir(cpk_home / "store") if not n.startswith(".")] == []
    assert staging_debris(cpk_home) == []


@needs_cc
def test_eight_concurrent_profile_installs_lose_no_generation(
    tmp_path: Path, cpk_home: Path
) -> None:
    names = [f"p{i}" for i in range(8)]
    lib = build_lib(tmp_path / "common" / "libp.so.1", "f_p", "p", soname="libp.so.1")
    exe = build_exe(tmp_path / "common" / "prog", ["f_p"], libs=[lib])
    for name in names:
        tree = tmp_path / name
        (tree / "bin").mkdir(parents=True)
        (tree / "lib").mkdir()
        (tree / "bin" / name).write_bytes(exe.read_bytes())
        os.chmod(tree / "bin" / name, 0o755)
        (tree / "lib" / "libp.so.1").write_bytes(lib.read_bytes())
        add = subprocess.run(cpk_argv("store", "add", tree, "--name", name, "--version", "1"),
                             capture_output=True, text=True)  # fmt: skip
        assert add.returncode == 0, add.stderr
    installs = [
        subprocess.Popen(
            cpk_argv("install", name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in names
    ]
    for proc in installs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    gens = sorted(int(n) for n in os.listdir(cpk_home / "profiles" / "default.gens") if n.isdigit())
    assert gens == list(range(1, 9)), "a generation was lost or doubled"
    current = (cpk_home / "profiles" / "default").resolve()
    assert current.name == "8"
    for name in names:
        run = subprocess.run([str(current / "bin" / name)], capture_output=True, text=True)
        assert run.stdout == "p\n", f"{name} lost from the last generation: {run.stderr}"
