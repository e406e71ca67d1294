"""Compile real ELF files with ``cc`` for the tests.

Every library built here exports ``const char *<func>(void)`` returning its
own identity string, and every executable prints, line by line, what each
library it calls answers, so a test can see which build the real loader
picked without parsing ``LD_DEBUG``.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

CC = shutil.which("cc") or shutil.which("gcc")

needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (cc)")


# Compiled outputs of this test process, by what decides their bytes (see
# _output_key): many tests build the same small library or program, and cc
# costs far more than a copy. Each test still gets its own file (a copy), so
# a test that patches or deletes it changes nothing for the next.
_COMPILED: Path | None = None
# The SONAME each shared library built here was given (None: none), by its
# content hash: a library with a SONAME is recorded in DT_NEEDED by that
# name, one without by the path the link editor was given.
_SONAMES: dict[str, str | None] = {}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _output_key(args: Sequence[str]) -> str | None:
    """What the output of ``cc args`` depends on: the flags, and each input
    file by its content and base name (cc records the source's base name in
    the symbol table, never its directory); ``-rpath-link`` only guides the
    link editor. None when the output cannot be told from these alone (an
    input that is not a file)."""
    parts = [str(CC)]
    it = iter(args)
    for arg in it:
        if arg == "-o":
            next(it)  # the output's own name is not recorded in it
            continue
        if arg.startswith("-Wl,-rpath-link,"):
            continue
        if arg.startswith("-"):
            parts.append(arg)
            continue
        path = Path(arg)
        if not path.is_file():
            return None
        digest = _digest(path)
        if arg.endswith(".c"):
            parts.append(f"source {path.name} {digest}")
        elif _SONAMES.get(digest):
            parts.append(f"library {digest}")
        else:  # linked by its path, which DT_NEEDED keeps as given
            parts.append(f"library {arg} {digest}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _cc(args: Sequence[str]) -> None:
    global _COMPILED
    if CC is None:
        pytest.skip("needs a C compiler (cc)")
    args = list(args)
    out = Path(args[args.index("-o") + 1]) if "-o" in args else None
    key = _output_key(args) if out is not None else None
    if _COMPILED is None:
        _COMPILED = Path(tempfile.mkdtemp(prefix="cpk-test-cc-"))
        atexit.register(shutil.rmtree, _COMPILED, True)
    kept = _COMPILED / key if key is not None else None
    if out is not None and kept is not None and kept.is_file():
        # A new file with a fresh mtime, as the link editor writes one: tests
        # that rebuild in place and expect the change to be noticed still see it.
        out.unlink(missing_ok=True)
        shutil.copyfile(kept, out)
        shutil.copymode(kept, out)
    else:
        proc = subprocess.run([CC, *args], capture_output=True, text=True)
        if proc.returncode:
            raise AssertionError(f"cc {' '.join(args)} failed:\n{proc.stderr}")
        if kept is not None and out is not None:
            shutil.copy2(out, kept)
    if out is not None and "-shared" in args:
        soname = next((a.split(",", 2)[2] for a in args if a.startswith("-Wl,-soname,")), None)
        _SONAMES[_digest(out)] = soname


def _link_flags(libs: Sequence[Path | str], rpath: str | None, runpath: str | None) -> list[str]:
    flags: list[str] = []
    for lib in libs:
        lib = Path(lib)
        # Link against the file itself; DT_NEEDED records its SONAME.
        flags += [str(lib), f"-Wl,-rpath-link,{lib.parent}"]
    if rpath is not None:
        flags += [f"-Wl,-rpath,{rpath}", "-Wl,--disable-new-dtags"]
    if runpath is not None:
        flags += [f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags"]
    return flags


def build_lib(
    out: Path,
    func: str,
    answer: str,
    *,
    soname: str | None = None,
    calls: Sequence[str] = (),
    libs: Sequence[Path | str] = (),
    rpath: str | None = None,
    runpath: str | None = None,
) -> Path:
    """Build a shared library at out exporting ``func`` returning ``answer``.

    ``calls`` are functions of ``libs`` whose answers are appended (joined by
    ``>``), so a chain shows every library on the way.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    decls = "".join(f"const char *{c}(void);\n" for c in calls)
    body = (
        f"static char buf[4096];\nconst char *{func}(void) {{\n"
        f'  snprintf(buf, sizeof buf, "%s", "{answer}");\n'
    )
    for c in calls:
        body += '  strncat(buf, ">", sizeof buf - strlen(buf) - 1);\n'
        body += f"  strncat(buf, {c}(), sizeof buf - strlen(buf) - 1);\n"
    body += "  return buf;\n}\n"
    src = out.with_suffix(out.suffix + ".c")
    src.write_text("#include <stdio.h>\n#include <string.h>\n" + decls + body)
    args = ["-shared", "-fPIC", "-o", str(out), str(src)]
    if soname:
        args.append(f"-Wl,-soname,{soname}")
    _cc(args + _link_flags(libs, rpath, runpath))
    return out


def build_exe(
    out: Path,
    calls: Sequence[str] = (),
    *,
    libs: Sequence[Path | str] = (),
    rpath: str | None = None,
    runpath: str | None = None,
    extra_source: str = "",
) -> Path:
    """Build an executable printing one line per function in ``calls``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    decls = "".join(f"const char *{c}(void);\n" for c in calls)
    prints = "".join(f'  printf("%s\\n", {c}());\n' for c in calls)
    src = out.with_suffix(".c")
    src.write_text(
        "#include <stdio.h>\n"
        + decls
        + extra_source
        + "int main(void) {\n"
        + prints
        + "  return 0;\n}\n"
    )
    # The libraries' own dependencies are the loader's business at run time
    # (tests place them where RUNPATH says), not the link editor's.
    _cc(
        [
            "-o",
            str(out),
            str(src),
            "-Wl,--allow-shlib-undefined",
            *_link_flags(libs, rpath, runpath),
        ]
    )
    return out
