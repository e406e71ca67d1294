"""Hostile ``.deb`` files: each refused in one line, the store byte-identical.

Every case is a package built byte by byte (``support.hostile``) and given
to the real command, ``cpk store add``: a non-zero exit, one ``cpk: error:``
line naming the file and the problem, no traceback, and the store exactly
as it was (every path, mode and byte). setuid bits are the one hostile
thing that is not refused: they are dropped, and a note says so.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.hostile import deb_bytes, tar_member, tar_stream, tree_digest

from contentpkg.cli import main
from contentpkg.elf.deb import extract_data, read_deb
from contentpkg.errors import CpkError

ROOT = tar_member("./", tarfile.DIRTYPE, mode=0o755)
USR = tar_member("./usr/", tarfile.DIRTYPE, mode=0o755)
BIN = tar_member("./usr/bin/", tarfile.DIRTYPE, mode=0o755)
TOOL = tar_member("./usr/bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755)


def cpk(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def prime_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One entry in the store before the snapshot (its layout exists)."""
    seed = tmp_path / "seed.txt"
    seed.write_text("an entry that was there before\n")
    status, _out, err = cpk(capsys, "store", "add", str(seed), "--version", "1")
    assert status == 0, err


def refused(path: Path, home: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Add path; check the one-line refusal and the untouched store."""
    before = tree_digest(home)
    status, out, err = cpk(capsys, "store", "add", str(path))
    assert status == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cpk: error: {path}"), err
    for fragment in fragments:
        assert fragment in lines[0], err
    assert out == ""
    assert tree_digest(home) == before
    return lines[0]


def data_deb(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    return deb_bytes(
        gzip.compress(tar_stream([ROOT, USR, BIN, *members]), mtime=0), data_name="data.tar.gz"
    )


def _ar_size_text(size: bytes) -> bytes:
    good = bytearray(data_deb(TOOL))
    good[8 + 48 : 8 + 58] = size  # the first member's size field
    return bytes(good)


def _size_past_end() -> bytes:
    good = bytearray(data_deb(TOOL))
    # The last member (data.tar.gz) claims a GiB the file does not hold.
    at = good.rfind(b"data.tar.gz")
    good[at + 48 : at + 58] = b"1073741824"
    return bytes(good)


def _cut_member(index: int, keep: float) -> bytes:
    """A .deb whose member index is cut (its declared size kept honest)."""
    import support.hostile as h

    control = gzip.compress(
        tar_stream([ROOT, tar_member("./control", data=h.CONTROL.encode())]), mtime=0
    )
    data = gzip.compress(tar_stream([ROOT, USR, BIN, TOOL]), mtime=0)
    members = [("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]
    name, body = members[index]
    members[index] = (name, body[: int(len(body) * keep)])
    return h.ar_archive(members)


def _cut_data(keep: float) -> bytes:
    return _cut_member(2, keep)


def _tar_without_end(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """Headers and data, padded to blocks, without the two zero blocks."""
    out = b""
    for info, data in members:
        out += info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)
    return out


def _bad_checksum() -> bytes:
    raw = bytearray(tar_stream([ROOT, USR, BIN, TOOL]))
    raw[512 * 3 + 148 : 512 * 3 + 156] = b"0000000\0"  # the file's header checksum
    return bytes(raw)


def _debian_binary(text: bytes) -> bytes:
    return data_deb(TOOL).replace(b"2.0\n", text, 1)  # same length: sizes stay right


#: name -> (the .deb's bytes, fragments of the one error line)
CASES: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    "member escaping with ..": (
        lambda: data_deb(tar_member("./usr/../../evil", data=b"x")),
        ("contains '..'",),
    ),
    "absolute member": (lambda: data_deb(tar_member("/etc/evil", data=b"x")), ("absolute name",)),
    "symlink out of the package": (
        lambda: data_deb(tar_member("./usr/bin/out", tarfile.SYMTYPE, link="../../../../etc")),
        ("outside the package",),
    ),
    "symlink in place of the root": (
        lambda: data_deb(tar_member("./usr", tarfile.SYMTYPE, link="/etc")),
        ("in place of the package root",),
    ),
    "file below a symlink": (
        lambda: data_deb(
            tar_member("./usr/lib", tarfile.SYMTYPE, link="bin"),
            tar_member("./usr/lib/x", data=b"x"),
        ),
        ("not a directory",),
    ),
    "hard link to an absolute path": (
        lambda: data_deb(tar_member("./usr/bin/pw", tarfile.LNKTYPE, link="/etc/passwd")),
        ("hard link",),
    ),
    "hard link out with ..": (
        lambda: data_deb(tar_member("./usr/bin/pw", tarfile.LNKTYPE, link="../../etc/passwd")),
        ("hard link",),
    ),
    "hard link to a later member": (
        lambda: data_deb(tar_member("./usr/bin/a", tarfile.LNKTYPE, link="./usr/bin/tool"), TOOL),
        ("not a file extracted before it",),
    ),
    "character device": (
        lambda: data_deb(tar_member("./usr/bin/null", tarfile.CHRTYPE)),
        ("device node",),
    ),
    "block device": (
        lambda: data_deb(tar_member("./usr/bin/sda", tarfile.BLKTYPE)),
        ("device node",),
    ),
    "FIFO member": (lambda: data_deb(tar_member("./usr/bin/p", tarfile.FIFOTYPE)), ("FIFO",)),
    "two members, one path, different bytes": (
        lambda: data_deb(TOOL, tar_member("./bin/tool", data=b"other\n")),
        ("both map to",),
    ),
    "empty file named .deb": (lambda: b"", ("not a Debian package", "empty")),
    "garbage named .deb": (
        lambda: b"<html>404 Not Found</html>\n" * 10,
        ("not a Debian package", "no ar archive header"),
    ),
    "ar magic only": (lambda: b"!<arch>\n", ("empty ar archive",)),
    "ar header cut short": (lambda: data_deb(TOOL)[:40], ("ar member header cut short",)),
    "ar member size past the end": (_size_past_end, ("declares",)),
    "ar member size not a number": (lambda: _ar_size_text(b"12x4      "), ("corrupt ar member",)),
    "ar member size negative": (lambda: _ar_size_text(b"-5        "), ("declares",)),
    "data.tar cut inside the compressed stream": (
        lambda: _cut_data(0.5),
        ("truncated",),
    ),
    "data.tar without its end-of-archive block": (
        lambda: deb_bytes(
            gzip.compress(_tar_without_end(ROOT, USR, BIN, TOOL), mtime=0), data_name="data.tar.gz"
        ),
        ("end-of-archive",),
    ),
    "data.tar header with a bad checksum": (
        lambda: deb_bytes(_bad_checksum(), data_name="data.tar"),
        ("truncated or corrupt",),
    ),
    "control.tar cut": (lambda: _cut_member(1, 0.5), ("control.tar.gz",)),
    "debian-binary says 3.0": (lambda: _debian_binary(b"3.0\n"), ("format '3.0'",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_deb_is_refused_in_one_line(
    case: str, tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, fragments = CASES[case]
    path = tmp_path / "hostile.deb"
    path.write_bytes(make())
    prime_store(tmp_path, capsys)
    refused(path, cpk_home, capsys, *fragments)


def test_setuid_bits_are_dropped_with_a_note(
    tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "suid.deb"
    path.write_bytes(data_deb(tar_member("./usr/bin/su", data=b"#!/bin/sh\n", mode=0o6755)))
    status, out, err = cpk(capsys, "store", "add", str(path))
    assert status == 0, err
    assert "dropped setuid/setgid bits" in err and "bin/su" in err
    mode = os.stat(Path(out.strip()) / "bin" / "su").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID)


# --- defect 13: what a file that is no package is told ------------------------------


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 100], ids=["empty", "garbage"])
def test_a_non_package_named_deb_is_not_asked_for_a_version(
    content: bytes, tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to say "--version is needed", as if it were a plain file."""
    path = tmp_path / "tool_1.0_amd64.deb"
    path.write_bytes(content)
    prime_store(tmp_path, capsys)
    line = refused(path, cpk_home, capsys, "not a Debian package")
    assert "--version" not in line
    # Not even with a version does it become a plain-file entry.
    before = tree_digest(cpk_home)
    status, _out, err = cpk(capsys, "store", "add", str(path), "--version", "1")
    assert status == 1 and "not a Debian package" in err
    assert tree_digest(cpk_home) == before


def test_identify_of_a_missing_file_says_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to say "not a regular file", sending the user to look at it."""
    missing = tmp_path / "nowhere" / "jq"
    status, out, err = cpk(capsys, "identify", str(missing))
    assert status == 1
    assert err == f"cpk: error: {missing}: No such file or directory\n"
    assert out == ""


# --- truncation at every byte ---------------------------------------------------------


def test_every_truncation_of_a_deb_is_refused(tmp_path: Path) -> None:
    """Cut a small package at every byte: read_deb or the extraction refuses
    it with the project's error, and nothing else escapes."""
    good = data_deb(TOOL, tar_member("./usr/bin/helper", data=b"x" * 3000))
    path = tmp_path / "cut.deb"
    # ar pads an odd-sized last member with one newline; without it the
    # package is still whole, and read whole.
    whole = len(good) - 1 if good.endswith(b"\n") and len(good) % 2 == 0 else len(good)
    for n in range(whole):
        path.write_bytes(good[:n])
        dest = tmp_path / f"dest{n}"
        dest.mkdir()
        with pytest.raises(CpkError):
            extract_data(read_deb(path), dest)


# --- decompression bombs ------------------------------------------------------------------

_ZEROS = 16 << 20


def _bomb(comp: str, declared: int) -> tuple[bytes, str]:
    """A data.tar holding one file of declared zero bytes, as concatenated
    compressed streams (every format here reads them), so building it costs
    one compression of 16 MiB however large it claims to be."""
    info = tarfile.TarInfo("./usr/share/bomb")
    info.size = declared
    head = tar_stream([ROOT, USR])[:-1024] + tarfile.TarInfo.tobuf(info, tarfile.GNU_FORMAT)
    tail = b"\0" * 1024
    if comp == "xz":
        pack: Callable[[bytes], bytes] = lzma.compress
    elif comp == "bz2":
        pack = bz2.compress
    else:
        zstandard = pytest.importorskip("zstandard")
        pack = zstandard.ZstdCompressor(level=19).compress
    zeros = pack(b"\0" * _ZEROS)
    body = pack(head) + zeros * (declared // _ZEROS) + pack(tail)
    return body, f"data.tar.{comp if comp != 'zstd' else 'zst'}"


@pytest.mark.parametrize("comp", ["xz", "bz2", "zstd"])
def test_a_decompression_bomb_in_data_tar_is_bounded(
    comp: str, tmp_path: Path, cpk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """16 GiB of zeros in a few KB: refused after a bounded number of bytes,
    with the store (and its staging area) as it was."""
    body, name = _bomb(comp, 16 << 30)
    path = tmp_path / "bomb.deb"
    path.write_bytes(deb_bytes(body, data_name=name))
    assert path.stat().st_size < 4 << 20
    prime_store(tmp_path, capsys)
    refused(path, cpk_home, capsys, name, "decompression bomb")


def test_a_decompression_bomb_in_control_tar_is_bounded(tmp_path: Path) -> None:
    import support.hostile as h

    info = tarfile.TarInfo("./md5sums")
    info.size = 16 << 30
    head = tar_stream([ROOT])[:-1024] + tarfile.TarInfo.tobuf(info, tarfile.GNU_FORMAT)
    # bzip2: the cheapest format to expand here (xz zeros take seconds per 64 MiB).
    control = bz2.compress(head) + bz2.compress(b"\0" * _ZEROS) * 1024
    data = gzip.compress(tar_stream([ROOT]), mtime=0)
    path = tmp_path / "bomb.deb"
    path.write_bytes(
        h.ar_archive(
            [("debian-binary", b"2.0\n"), ("control.tar.bz2", control), ("data.tar.gz", data)]
        )
    )
    with pytest.raises(CpkError, match="decompression bomb"):
        read_deb(path)
