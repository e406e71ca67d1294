"""cpk run --with-elf: a Python process finds native libraries from the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.cli import run_cpk
from support.elfbuild import build_lib, needs_cc

pytestmark = needs_cc

PROBE = """
import ctypes
lib = ctypes.CDLL("libgreet.so.7")
lib.greet.restype = ctypes.c_char_p
print(lib.greet().decode())
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libgreet" in l]
print(sorted(set(maps))[0])
"""


def test_ctypes_loads_the_library_from_the_store(tmp_path: Path, cpk_home: Path) -> None:
    tree = tmp_path / "greet"
    build_lib(
        tree / "lib" / "libgreet.so.7.1", "greet", "hello from the store", soname="libgreet.so.7"
    )
    (tree / "lib" / "libgreet.so.7.1.c").unlink()
    run_cpk("store", "add", tree, "--version", "7.1", check=True)
    work = tmp_path / "nowhere"  # no project: --with-elf alone makes the environment
    work.mkdir()
    proc = run_cpk("run", "--with-elf", "greet", "python", "-c", PROBE, cwd=work, check=True)
    answer, mapped = proc.stdout.splitlines()
    assert answer == "hello from the store"
    store = (cpk_home / "store").resolve()
    assert Path(mapped).is_relative_to(store) and Path(mapped).name == "libgreet.so.7.1"


def test_without_with_elf_the_library_is_not_found(tmp_path: Path) -> None:
    """The control: the same interpreter alone cannot find the library."""
    proc = subprocess.run(
        [sys.executable, "-c", "import ctypes; ctypes.CDLL('libgreet.so.7')"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "libgreet.so.7" in proc.stderr
