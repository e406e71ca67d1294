"""Compile real ELF files with ``cc`` for the tests.

Every library built here exports ``const char *<func>(void)`` returning its
own identity string, and every executable prints, line by line, what each
library it calls answers, so a test can see which build the real loader
picked without parsing ``LD_DEBUG``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

CC = shutil.which("cc") or shutil.which("gcc")

needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (cc)")


def _cc(args: Sequence[str]) -> None:
    if CC is None:
        pytest.skip("needs a C compiler (cc)")
    proc = subprocess.run([CC, *args], capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"cc {' '.join(args)} failed:\n{proc.stderr}")


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
