"""What a per-file command loads at start: only what its answer needs.

``cpk ldd FILE`` runs once per file in loops; its cost over the interpreter's
own start is mostly imports. These tests hold the mechanism (which modules
load), never a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.cli import run_cpk

import contentpkg


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


#: What ``cpk ldd FILE`` must not load: other commands' modules, the
#: parser of every command, and standard-library modules its answer does
#: not need (each costs more at start than the resolve itself).
_NOT_FOR_LDD = {
    "contentpkg.cli.parser",
    "contentpkg.cli.elf",
    "contentpkg.cli.python",
    "contentpkg.cli.store",
    "contentpkg.cli.env",
    "contentpkg.elf.launchers",
    "contentpkg.store",
    "json",
    "hashlib",
    "logging",
    "shutil",
    "typing",
    "tempfile",
}

_CHILD = """
import sys
sys.path.insert(0, {src!r})
before = set(sys.modules)
sys.argv = ["cpk", "ldd", {program!r}]
from contentpkg.cli import main
status = main()
from contentpkg.elf import ldcache, loader, reader
generated = [
    f"{{m.__name__}}.{{n}}"
    for m in (ldcache, loader, reader)
    for n, v in vars(m).items()
    if hasattr(v, "__dataclass_fields__")
]
print("MODULES", *sorted(set(sys.modules) - before), file=sys.stderr)
print("DATACLASSES", *generated, file=sys.stderr)
sys.exit(status)
"""


def _ldd_in_bare_interpreter(program: str, cache: Path) -> tuple[set[str], list[str], str]:
    """(modules ``cpk ldd`` loaded, dataclasses in the loader's modules, stdout),
    in an interpreter without ``site`` (whose ``.pth`` files may import anything)."""
    src = str(Path(contentpkg.__file__).resolve().parents[1])
    env = {**os.environ, "CPK_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _CHILD.format(src=src, program=program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(" ", 1)[0]: line.split()[1:] for line in proc.stderr.splitlines()}
    return set(lines["MODULES"]), lines["DATACLASSES"], proc.stdout


def test_ldd_loads_only_its_own_command_and_the_loader(tmp_path: Path) -> None:
    """``cpk ldd FILE`` builds its parser alone, sets up no logging, and on a
    warm cache reads the loader's configuration without starting ld.so,
    hashing or parsing JSON; the loader's modules generate no code at import
    (no dataclasses)."""
    program = os.path.realpath(sys.executable)
    cold, _, first = _ldd_in_bare_interpreter(program, tmp_path)
    assert "subprocess" in cold  # the first run asks ld.so --help, and keeps the answer
    assert "contentpkg.fs" in cold
    warm, generated, again = _ldd_in_bare_interpreter(program, tmp_path)
    assert again == first and "=>" in again
    assert {"contentpkg.cli.ldd", "contentpkg.elf.loader", "argparse"} <= warm
    assert warm & _NOT_FOR_LDD == set()
    assert "subprocess" not in warm and "contentpkg.fs" not in warm
    assert generated == []
