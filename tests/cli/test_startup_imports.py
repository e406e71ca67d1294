"""What a per-file command loads at start: only what its answer needs.

``cpk ldd FILE`` runs once per file in loops; its cost over the interpreter's
own start is mostly imports. These tests hold the mechanism (which modules
load), never a time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from support.cli import run_cpk


def _imported(stderr: str) -> set[str]:
    lines = stderr.splitlines()
    return {line.rsplit("|", 1)[1].strip() for line in lines if "import time:" in line}


def test_ldd_of_a_program_loads_no_launcher_code(tmp_path: Path) -> None:
    """An ELF file is not a cpk launcher: telling so takes ten bytes, not
    the launcher module (with the Debian and TOML code it brings)."""
    program = os.path.realpath(sys.executable)
    proc = run_cpk("ldd", program, cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "objects mapped" in proc.stdout + proc.stderr
    imported = _imported(proc.stderr)
    assert "contentpkg.elf.loader" in imported  # (the import log is real)
    assert not imported & {"contentpkg.elf.launchers", "contentpkg.elf.deb", "tomllib"}


def test_ldd_of_a_shell_script_still_asks_whether_it_is_a_launcher(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\nexec true\n")
    script.chmod(0o755)
    proc = run_cpk("ldd", script, cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "contentpkg.elf.launchers" in _imported(proc.stderr)
    assert "a cpk launcher" not in proc.stderr  # a plain script is not one
