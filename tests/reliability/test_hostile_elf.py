"""Hostile ELF files and special files: each refused in one line, the store untouched.

Every case goes through the real command (``cpk store add``, ``cpk ldd``)
and checks the whole contract: a non-zero exit, one ``cpk: error:`` line
naming the file and the problem, no traceback, and the store byte-identical
before and after. The cases that could hang or eat memory on a broken build
(FIFOs, ``/dev/zero``) run ``cpk`` as a real subprocess under a memory limit
and a generous timeout that only guards against a hang.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.elfbuild import build_exe, build_lib, needs_cc
from support.hostile import DT_NEEDED, elf_image, program, tree_digest

from contentpkg.cli import main
from contentpkg.elf.reader import ElfError, parse_elf, read_elf

INTERP = "/lib64/ld-linux-x86-64.so.2"

#: The reader's bounds (``reader.MAX_DYNAMIC_ENTRIES``, ``MAX_STRING``),
#: written out so these tests also run, and fail, against a reader without them.
MAX_DYNAMIC_ENTRIES = 1 << 16
MAX_STRING = 1 << 16

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the hand-built images are x86_64 ELF files"
)


def cpk(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real command line in this process; (status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("cpk: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], err


def prime_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Give the store one entry, so its layout exists before the snapshot
    and "untouched" is checked against a store that holds something."""
    seed = tmp_path / "seed.txt"
    seed.write_text("an entry that was there before\n")
    status, _out, err = cpk(capsys, "store", "add", str(seed), "--version", "1")
    assert status == 0, err


def _limited() -> None:
    # A broken reader of /dev/zero grows until something stops it: 2 GiB of
    # address space stops it long before the machine notices.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def cpk_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """cpk as a real process, memory-limited, with a hang guard."""
    return subprocess.run(
        [sys.executable, "-m", "contentpkg", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
    )


# --- the hostile images -----------------------------------------------------------

LIB = elf_image(needed=["libc.so.6"], soname="libhostile.so.1")


def _patch(offset: int, fmt: str, value: int) -> Callable[[], bytes]:
    def make() -> bytes:
        data = bytearray(LIB)
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)

    return make


def _dyn_value(tag: int, value: int) -> Callable[[], bytes]:
    """LIB with the value of its first dynamic entry with tag replaced."""

    def make() -> bytes:
        data = bytearray(LIB)
        (dyn_off,) = struct.unpack_from("<Q", data, 64 + 56 + 8)  # PT_DYNAMIC p_offset
        pos = dyn_off
        while True:
            t, _ = struct.unpack_from("<qQ", data, pos)
            if t == tag:
                struct.pack_into("<Q", data, pos + 8, value)
                return bytes(data)
            pos += 16

    return make


def _without_strtab() -> bytes:
    data = bytearray(LIB)
    (dyn_off,) = struct.unpack_from("<Q", data, 64 + 56 + 8)
    pos = dyn_off
    while True:
        t, _ = struct.unpack_from("<qQ", data, pos)
        if t == 5:  # DT_STRTAB -> DT_DEBUG
            struct.pack_into("<q", data, pos, 21)
            return bytes(data)
        pos += 16


#: name -> (bytes, a fragment the one error line must hold)
CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "magic only": (lambda: b"\x7fELF", "truncated"),
    "header cut at 40 bytes": (lambda: LIB[:40], "truncated"),
    "program headers cut": (lambda: LIB[:100], "truncated"),
    "dynamic section cut": (lambda: LIB[: len(LIB) - 20], "truncated"),
    "class byte 3": (_patch(4, "B", 3), "class byte 3"),
    "32-bit class on a 64-bit layout": (_patch(4, "B", 1), "hostile"),
    "big-endian data on little-endian fields": (_patch(5, "B", 2), "hostile"),
    "data encoding byte 0": (_patch(5, "B", 0), "data encoding"),
    "ident version 0": (_patch(6, "B", 0), "version 0"),
    "e_phnum 65535": (_patch(56, "<H", 0xFFFF), "past the end"),
    "e_phoff 2**63": (_patch(32, "<Q", 1 << 63), "past the end"),
    "e_phentsize 1": (_patch(54, "<H", 1), "program header size"),
    "PT_LOAD size 2**62": (_patch(64 + 32, "<Q", 1 << 62), "past the end"),
    "PT_DYNAMIC offset 2**40": (_patch(64 + 56 + 8, "<Q", 1 << 40), "past the end"),
    "DT_STRTAB outside every segment": (_dyn_value(5, 1 << 40), "outside every loaded segment"),
    "DT_STRSZ 2**60": (_dyn_value(10, 1 << 60), "string table past the end"),
    "DT_NEEDED index past the strings": (_dyn_value(DT_NEEDED, 1 << 32), "outside the string"),
    "no DT_STRTAB": (_without_strtab, "without DT_STRTAB"),
    "more dynamic entries than any object": (
        lambda: elf_image(
            needed=["libc.so.6"], extra_dynamic=[(21, 0)] * (MAX_DYNAMIC_ENTRIES + 1)
        ),
        "dynamic entries",
    ),
    "a DT_NEEDED string of 100 KB": (
        lambda: elf_image(needed=["l" * 100_000]),
        f"longer than {MAX_STRING}",
    ),
    "another machine (aarch64)": (lambda: elf_image(soname="liba.so", machine=183), "aarch64"),
}


def _name(case: str) -> str:
    return case.replace(" ", "-").replace("*", "")


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_elf_is_refused_by_store_add_and_ldd(
    case: str, tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, fragment = CASES[case]
    path = tmp_path / "libhostile.so.1"
    path.write_bytes(make())
    fragment = fragment if fragment != "hostile" else str(path)
    prime_store(tmp_path, capsys)
    before = tree_digest(cpk_home)

    status, _out, err = cpk(capsys, "store", "add", str(path), "--version", "1")
    assert status == 1, err
    assert_one_error_line(err, str(path) if "cut" not in case else "", fragment)
    assert tree_digest(cpk_home) == before

    status, out, err = cpk(capsys, "ldd", str(path))
    assert status == 1, err
    assert out == ""
    assert_one_error_line(err, str(path), fragment)
    assert tree_digest(cpk_home) == before


@needs_cc
def test_every_truncation_of_a_real_library_is_an_error_or_a_whole_read(tmp_path: Path) -> None:
    """Cut a compiled library at every byte: the reader says "truncated" or
    reads everything it needs; nothing else escapes."""
    lib = build_lib(tmp_path / "libcut.so.1", "cut", "cut", soname="libcut.so.1", runpath="$ORIGIN")
    whole = read_elf(lib)
    data = lib.read_bytes()
    refused = 0
    # In memory: read_elf hands parse_elf exactly the bytes of the file.
    for n in range(len(data)):
        try:
            info = parse_elf(data[:n], "cut")
        except ElfError:
            refused += 1
            continue
        # What survives a cut past the dynamic data reads exactly as whole.
        assert (info.needed, info.soname, info.runpath) == (
            whole.needed,
            whole.soname,
            whole.runpath,
        ), n
    assert refused > 0


# --- special files (issue 15, defect 8) ---------------------------------------------


def test_ldd_refuses_dev_zero_in_one_line() -> None:
    """It used to read /dev/zero to its end: 4 GB in seconds, never done."""
    proc = cpk_process("ldd", "/dev/zero")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr == "cpk: error: /dev/zero: not a regular file (a character device)\n"


def test_ldd_refuses_a_fifo_in_one_line(tmp_path: Path) -> None:
    """It used to block in open() for ever, waiting for a writer."""
    fifo = tmp_path / "libfifo.so"
    os.mkfifo(fifo)
    proc = cpk_process("ldd", fifo)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr == f"cpk: error: {fifo}: not a regular file (a FIFO)\n"


def test_store_add_refuses_a_fifo_and_a_device(
    tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "tool"
    os.mkfifo(fifo)
    prime_store(tmp_path, capsys)
    before = tree_digest(cpk_home)
    for path in (str(fifo), "/dev/zero", "/dev/null"):
        status, _out, err = cpk(capsys, "store", "add", path, "--version", "1")
        assert status == 1
        assert_one_error_line(err, path, "not a regular file")
    assert tree_digest(cpk_home) == before


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-null"])
def test_ldd_stops_at_a_special_file_met_in_the_search(tmp_path: Path, kind: str) -> None:
    """A DT_NEEDED found as a FIFO or a device in a RUNPATH directory.

    glibc opens it and reads its header (blocking for ever on a FIFO,
    "invalid ELF header" for /dev/zero, "file too short" for /dev/null):
    the load never goes past it. cpk stops there too, names the file, and
    does not open it.
    """
    libs = tmp_path / "libs"
    libs.mkdir()
    special = libs / "libspecial.so.1"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to("/dev/" + kind.removeprefix("dev-"))
    prog = tmp_path / "prog"
    prog.write_bytes(program(INTERP, needed=["libspecial.so.1"], runpath=str(libs)))
    proc = cpk_process("ldd", prog)
    assert proc.returncode == 1, proc.stderr[-2000:]
    what = "a FIFO" if kind == "fifo" else "a character device"
    assert f"cpk: error: the loader stops: {special}: {what}, not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_ldd_stops_at_a_special_file_named_by_a_dt_needed_path(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        target = str(tmp_path / "libfifo.so")
        os.mkfifo(target)
    prog = tmp_path / "prog"
    prog.write_bytes(program(INTERP, needed=[target]))
    proc = cpk_process("ldd", prog)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"cpk: error: the loader stops: {target}: a " in proc.stderr
    assert "not a regular file" in proc.stderr


@needs_cc
def test_a_special_candidate_stops_the_real_loader_too(tmp_path: Path) -> None:
    """The decision above, checked against glibc: a device where a library
    should be ends a real run with an error naming it, as the report says."""
    lib = build_lib(tmp_path / "build" / "libdev.so.1", "dev", "dev", soname="libdev.so.1")
    libs = tmp_path / "libs"
    libs.mkdir()
    exe = build_exe(tmp_path / "prog", ["dev"], libs=[lib], runpath=str(libs))
    (libs / "libdev.so.1").symlink_to("/dev/null")
    real = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert real.returncode == 127
    assert str(libs / "libdev.so.1") in real.stderr
    proc = cpk_process("ldd", exe)
    assert proc.returncode == 1
    assert f"the loader stops: {libs / 'libdev.so.1'}: a character device" in proc.stderr


def test_ldd_candidate_with_a_huge_note_is_a_load_error(tmp_path: Path) -> None:
    """A PT_NOTE whose size says 2**40: read only inside the file.

    It used to become a 1 TiB read request (MemoryError, a traceback)."""
    libs = tmp_path / "libs"
    libs.mkdir()
    lib = bytearray(elf_image(soname="libnote.so.1"))
    # Turn PT_DYNAMIC's slot into a PT_NOTE: type 4, align 4, size 2**40.
    ph = 64 + 56
    struct.pack_into("<I", lib, ph, 4)
    struct.pack_into("<Q", lib, ph + 32, 1 << 40)
    struct.pack_into("<Q", lib, ph + 48, 4)
    (libs / "libnote.so.1").write_bytes(lib)
    prog = tmp_path / "prog"
    prog.write_bytes(program(INTERP, needed=["libnote.so.1"], runpath=str(libs)))
    proc = cpk_process("ldd", prog)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"the loader stops: {libs / 'libnote.so.1'}: cannot read file data" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dt_needed_loop_ends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """liba needs libb needs liba: each is mapped once, and the report ends."""
    (tmp_path / "liba.so").write_bytes(
        elf_image(needed=["libb.so"], soname="liba.so", runpath="$ORIGIN")
    )
    (tmp_path / "libb.so").write_bytes(
        elf_image(needed=["liba.so", "libb.so"], soname="libb.so", runpath="$ORIGIN")
    )
    prog = tmp_path / "prog"
    prog.write_bytes(program(INTERP, needed=["liba.so"], runpath="$ORIGIN"))
    status, out, err = cpk(capsys, "ldd", str(prog))
    assert status == 0, err
    assert out.count("liba.so =>") == 1 and out.count("libb.so =>") == 1


def test_a_long_but_legal_needed_name_is_reported_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 5,000-byte soname (past NAME_MAX, under the reader's bound): not found."""
    name = "l" * 5000
    prog = tmp_path / "prog"
    prog.write_bytes(program(INTERP, needed=[name], runpath=str(tmp_path)))
    status, out, err = cpk(capsys, "ldd", str(prog))
    assert status == 1
    assert f"{name} => not found" in out
    assert "Traceback" not in err


def test_hostile_elf_inside_a_prefix_tree_is_refused(
    tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "pkg"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "libok.txt").write_text("fine\n")
    bad = bytearray(LIB)
    struct.pack_into("<H", bad, 56, 0xFFFF)
    (tree / "lib" / "libbad.so").write_bytes(bad)
    prime_store(tmp_path, capsys)
    before = tree_digest(cpk_home)
    status, _out, err = cpk(capsys, "store", "add", str(tree), "--version", "1")
    assert status == 1
    assert_one_error_line(err, "lib/libbad.so", "past the end")
    assert tree_digest(cpk_home) == before
    assert shutil.which("true")  # the machine is still fine
