"""The loader emulation agrees with the real loader on this machine's own files.

A sample of what ``tests/elf/system_compare.py`` checks in full: the programs
of /usr/bin whose names start with a few letters, and a slice of the
multiarch library directory.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.isdir("/usr/bin"),
    reason="compares with this machine's glibc loader",
)


def _script() -> ModuleType:
    path = Path(__file__).with_name("system_compare.py")
    spec = importlib.util.spec_from_file_location("cpk_system_compare", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _sample(compare: ModuleType) -> list[str]:
    bindir, libdir = compare.default_dirs()
    programs = [
        os.path.join(bindir, n) for n in sorted(os.listdir(bindir)) if n[:1] in "abcglmpstx"
    ]
    libs = [p for p in compare.walk([libdir]) if ".so" in os.path.basename(p)]
    return programs + libs[::3]


def test_sample_of_system_files_agrees() -> None:
    compare = _script()
    summary = compare.compare(_sample(compare))
    details = "\n".join(
        f"{d.file}:\n  predicted:\n{d.predicted}\n  real:\n{d.real}" for d in summary.disagreements
    )
    assert summary.compared > 0
    assert not summary.disagreements, details


def test_listing_parser() -> None:
    compare = _script()
    text = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibfoo.so.1 => /x/libfoo.so.1 (0x00007f01)\n"
        "\tlibbar.so.2 => not found\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f02)\n"
    )
    listing, static = compare.parse_listing(text)
    assert listing == [
        ("libfoo.so.1", "/x/libfoo.so.1"),
        ("libbar.so.2", None),
        ("/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
    ]
    assert not static
    assert compare.parse_listing("\tstatically linked\n") == ([], True)
