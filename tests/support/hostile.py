"""Inputs built byte by byte for the reliability tests: ELF images and ``.deb``s.

The compiler and dpkg-deb only write well-formed files; a hostile input is
one whose every field the test chooses. These builders write the smallest
files the readers accept (so a test can break exactly one thing) and the
raw layers (ar members, tar streams) to break the rest.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path

DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
ET_DYN = 3
EM_X86_64 = 62


def elf_image(
    *,
    needed: Sequence[str] = (),
    soname: str | None = None,
    runpath: str | None = None,
    rpath: str | None = None,
    interp: str | None = None,
    machine: int = EM_X86_64,
    extra_dynamic: Sequence[tuple[int, int]] = (),
) -> bytes:
    """A minimal 64-bit little-endian ET_DYN: headers, one PT_LOAD over the
    whole file, PT_DYNAMIC, PT_INTERP when asked, and a string table.

    With ``interp`` and no ``soname`` it is a program to the reader (and to
    ``cpk ldd``); without ``interp`` a library. Virtual addresses equal file
    offsets, so the dynamic section's addresses map one to one.
    """
    strings = bytearray(b"\0")
    index: dict[str, int] = {}

    def intern(text: str) -> int:
        if text not in index:
            index[text] = len(strings)
            strings.extend(text.encode() + b"\0")
        return index[text]

    dyn: list[tuple[int, int]] = [(DT_NEEDED, intern(n)) for n in needed]
    if soname is not None:
        dyn.append((DT_SONAME, intern(soname)))
    if runpath is not None:
        dyn.append((DT_RUNPATH, intern(runpath)))
    if rpath is not None:
        dyn.append((DT_RPATH, intern(rpath)))
    dyn.extend(extra_dynamic)
    interp_bytes = interp.encode() + b"\0" if interp is not None else b""

    phnum = 2 + (1 if interp is not None else 0)
    ph_at = 64
    interp_at = ph_at + 56 * phnum
    str_at = interp_at + len(interp_bytes)
    dyn_at = (str_at + len(strings) + 7) & ~7
    dyn.extend([(DT_STRTAB, str_at), (DT_STRSZ, len(strings)), (DT_NULL, 0)])
    total = dyn_at + 16 * len(dyn)

    out = bytearray(total)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    out[0:64] = ident + struct.pack(
        "<HHIQQQIHHHHHH", ET_DYN, machine, 1, 0, ph_at, 0, 0, 64, 56, phnum, 64, 0, 0
    )
    phdrs = [
        (PT_LOAD, 5, 0, 0, 0, total, total, 0x1000),
        (PT_DYNAMIC, 6, dyn_at, dyn_at, dyn_at, 16 * len(dyn), 16 * len(dyn), 8),
    ]
    if interp is not None:
        phdrs.insert(
            0,
            (
                PT_INTERP,
                4,
                interp_at,
                interp_at,
                interp_at,
                len(interp_bytes),
                len(interp_bytes),
                1,
            ),
        )
    for i, ph in enumerate(phdrs):
        struct.pack_into("<IIQQQQQQ", out, ph_at + 56 * i, *ph)
    out[interp_at:str_at] = interp_bytes
    out[str_at : str_at + len(strings)] = strings
    for i, (tag, val) in enumerate(dyn):
        struct.pack_into("<qQ", out, dyn_at + 16 * i, tag, val)
    return bytes(out)


def program(interp: str, **kwargs: object) -> bytes:
    """An ELF program image (it has an interpreter and no SONAME)."""
    return elf_image(interp=interp, **kwargs)  # type: ignore[arg-type]


# --- .deb layers ------------------------------------------------------------------


def ar_archive(
    members: Sequence[tuple[str, bytes]], *, sizes: Sequence[int] | None = None
) -> bytes:
    """An ar archive as dpkg writes it; ``sizes`` overrides the declared sizes."""
    out = bytearray(b"!<arch>\n")
    for i, (name, data) in enumerate(members):
        size = len(data) if sizes is None else sizes[i]
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{size:<10}`\n"
        out += header.encode("ascii") + data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


def tar_member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    data: bytes = b"",
    mode: int = 0o644,
    link: str = "",
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_stream(members: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """An uncompressed GNU tar of members (compress it as the test needs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


CONTROL = "Package: hostile\nVersion: 1.0\nArchitecture: all\nDescription: a test input\n"


def deb_bytes(
    data_tar: bytes,
    *,
    data_name: str = "data.tar",
    control: str = CONTROL,
    sizes: Sequence[int] | None = None,
) -> bytes:
    """A .deb from an already compressed data.tar (named to match)."""
    import gzip

    control_tar = gzip.compress(
        tar_stream(
            [
                tar_member("./", tarfile.DIRTYPE, mode=0o755),
                tar_member("./control", data=control.encode()),
            ]
        ),
        mtime=0,
    )
    return ar_archive(
        [("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar), (data_name, data_tar)],
        sizes=sizes,
    )


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Every path below root with its mode and content (sha256 or link target).

    Stricter than ``support.cli.tree_snapshot``: equal digests mean the tree
    is byte-identical, not only the same shape.
    """
    out: dict[str, tuple[int, str]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.islink(full):
                what = "-> " + os.readlink(full)
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = ""
            out[os.path.relpath(full, root)] = (st.st_mode, what)
    return out
