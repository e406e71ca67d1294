"""What a per-file command loads at start: only what its answer needs.

``cpk ldd FILE`` runs once per file in loops; its cost over the interpreter's
own start is mostly imports. These tests hold the mechanism (which modules
load), never a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
    "contentpkg.cli.options",
    "contentpkg.cli.elf",
    "contentpkg.cli.python",
    "contentpkg.cli.store",
    "contentpkg.cli.env",
    "contentpkg.elf.launchers",
    "contentpkg.store",
    "argparse",
    "dataclasses",
    "inspect",
    "enum",
    "re",
    "functools",
    "collections",
    "pathlib",
    "json",
    "hashlib",
    "logging",
    "shutil",
    "typing",
    "tempfile",
    "subprocess",
    "contentpkg.fs",
    "zlib",
}

#: Everything of contentpkg a warm ``cpk ldd FILE`` loads: its command, the
#: settings module (read without building a Context), the errors, the loader.
_LDD_OWN = {
    "contentpkg",
    "contentpkg.cli",
    "contentpkg.cli.ldd",
    "contentpkg.context",
    "contentpkg.errors",
    "contentpkg.elf",
    "contentpkg.elf.loader",
    "contentpkg.elf.reader",
    "contentpkg.elf.ldcache",
}
#: ... and of the standard library, beyond what a bare interpreter (``-S``)
#: starts with: what ``site`` loads anyway (os and its path module, stat),
#: and the loader's own (struct, mmap, errno).
_LDD_STDLIB = {
    "__future__",
    "os",
    "os.path",
    "posixpath",
    "genericpath",
    "_collections_abc",
    "stat",
    "_stat",
    "errno",
    "struct",
    "_struct",
    "mmap",
}

_CHILD = """
import sys
sys.path.insert(0, {src!r})
before = set(sys.modules)
sys.argv = ["cpk", *{argv!r}]
from contentpkg.cli import main
status = main()
from contentpkg import context
from contentpkg.elf import ldcache, loader, reader
generated = [
    f"{{m.__name__}}.{{n}}"
    for m in (ldcache, loader, reader, context)
    for n, v in vars(m).items()
    if hasattr(v, "__dataclass_fields__")
]
print("MODULES", *sorted(set(sys.modules) - before), file=sys.stderr)
print("DATACLASSES", *generated, file=sys.stderr)
sys.exit(status)
"""


def _ldd_in_bare_interpreter(
    program: str, cache: Path, *options: str, before: tuple[str, ...] = ()
) -> tuple[set[str], list[str], str]:
    """(modules ``cpk [before] ldd [options] program`` loaded, dataclasses in
    the loader's and the settings' modules, stdout), in an interpreter
    without ``site`` (whose ``.pth`` files may import anything)."""
    src = str(Path(contentpkg.__file__).resolve().parents[1])
    env = {**os.environ, "CPK_CACHE_DIR": str(cache)}
    argv = [*before, "ldd", *options, program]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _CHILD.format(src=src, argv=argv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(" ", 1)[0]: line.split()[1:] for line in proc.stderr.splitlines()}
    return set(lines["MODULES"]), lines["DATACLASSES"], proc.stdout


def test_ldd_loads_only_its_own_command_and_the_loader(tmp_path: Path) -> None:
    """``cpk ldd FILE`` reads its arguments without argparse and its two
    settings without a Context, sets up no logging, and on a warm cache reads
    the loader's configuration without starting ld.so, hashing or parsing
    JSON; the loader's and the settings' modules generate no code at import
    (no dataclasses, no enum)."""
    program = os.path.realpath(sys.executable)
    cold, _, first = _ldd_in_bare_interpreter(program, tmp_path)
    assert "subprocess" in cold  # the first run asks ld.so --help, and keeps the answer
    assert "contentpkg.fs" in cold
    warm, generated, again = _ldd_in_bare_interpreter(program, tmp_path)
    assert again == first and "=>" in again
    assert {m for m in warm if m.startswith("contentpkg")} == _LDD_OWN
    assert warm - _LDD_OWN <= _LDD_STDLIB
    assert warm & _NOT_FOR_LDD == set()
    assert generated == []


def test_ldd_with_global_options_stays_off_the_parser(tmp_path: Path) -> None:
    """-q, -v and --color before the command, --json after it: still the
    short path, and the same report as the parser's path gives."""
    program = os.path.realpath(sys.executable)
    _ldd_in_bare_interpreter(program, tmp_path)  # warm the loader's configuration
    warm, _, plain = _ldd_in_bare_interpreter(
        program, tmp_path, "--json", before=("-q", "-v", "--color", "never")
    )
    assert "argparse" not in warm
    # --json needs json (and the re it imports), nothing else of the list.
    assert warm & _NOT_FOR_LDD <= {"json", "re", "enum", "functools", "collections"}
    # --directory goes to the parser: its answer must be the same report.
    parsed, _, through_parser = _ldd_in_bare_interpreter(
        program, tmp_path, "--json", before=("--directory", str(tmp_path))
    )
    assert "argparse" in parsed
    assert through_parser == plain and '"objects"' in plain


def test_ldd_help_and_usage_errors_are_the_parser_s(tmp_path: Path) -> None:
    """What the short path does not read goes to ldd's parser, whose
    messages are argparse's: --help, a second file, an unknown option."""
    program = os.path.realpath(sys.executable)
    helped = run_cpk("ldd", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "usage: cpk ldd" in helped.stdout
    assert "--json" in helped.stdout
    two = run_cpk("ldd", program, program, cwd=tmp_path)
    assert two.returncode == 2 and "unrecognized arguments" in two.stderr
    unknown = run_cpk("ldd", "--jsn", program, cwd=tmp_path)
    assert unknown.returncode == 2 and "--jsn" in unknown.stderr
    missing = run_cpk("ldd", cwd=tmp_path)
    assert missing.returncode == 2 and "FILE" in missing.stderr
    bad = run_cpk("ldd", program, cwd=tmp_path, env={"CPK_HTTP_TIMEOUT": "soon"})
    assert bad.returncode == 2 and "CPK_HTTP_TIMEOUT" in bad.stderr


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_warm_ldd_starts_nothing_and_writes_nothing(tmp_path: Path) -> None:
    """On a warm cache, ``cpk ldd FILE`` runs no process (ld.so's answer is
    read from the cache), reads /etc/ld.so.cache once, and opens nothing
    for writing: the system calls of a real run, through strace."""
    program = os.path.realpath(sys.executable)
    _ldd_in_bare_interpreter(program, tmp_path)  # the cold run keeps ld.so's answer
    src = str(Path(contentpkg.__file__).resolve().parents[1])
    log = tmp_path / "ldd.strace"
    child = _CHILD.format(src=src, argv=["ldd", program])
    done = subprocess.run(
        ["strace", "-f", "-qq", "-o", os.fspath(log),
         "-e", "trace=%process,openat,open,creat,rename,renameat,renameat2,mkdir,unlink",
         sys.executable, "-S", "-c", child],
        env={**os.environ, "CPK_CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    if done.returncode != 0 and not log.exists():
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    started = [c for c in calls if re.search(r"\b(execve|clone3?|fork|vfork)\(", c)]
    assert len(started) == 1 and "execve(" in started[0]  # the interpreter itself
    # The interpreter's own loader reads the cache at its start; cpk, once.
    ours = calls[next(i for i, c in enumerate(calls) if "contentpkg" in c) :]
    assert sum('"/etc/ld.so.cache"' in c for c in ours) == 1
    writes = [c for c in calls if re.search(r"O_WRONLY|O_RDWR|O_CREAT|rename|mkdir|unlink", c)]
    assert writes == []
    assert any('.marshal"' in c for c in calls)  # the loader's answer, read from the cache
