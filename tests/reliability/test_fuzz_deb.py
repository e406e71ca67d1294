"""Fuzzing the ``.deb`` reader: the ar layer, the compressed tars, extraction.

For every input, ``read_deb`` and ``extract_data`` either succeed or raise
``CpkError``; nothing else escapes, no example passes its deadline (a hang
guard), the peak allocation stays bounded, and nothing is ever written
outside the destination directory (a sibling sentinel tree is checked).

Inputs: valid packages with bytes overwritten, cut or grown (each layer:
ar headers, the gzip stream, the tar headers inside), and packages whose
tar members are drawn from hostile names, types and link targets. The
default run keeps to a few seconds; the ``slow`` variants run many more.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hostile import deb_bytes, tar_member, tar_stream, tree_digest

from contentpkg.elf.deb import extract_data, read_deb
from contentpkg.errors import CpkError

MEMORY_BOUND = 64 << 20

FAST = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=5_000)

ROOT = tar_member("./", tarfile.DIRTYPE, mode=0o755)


def _seed(comp: str) -> bytes:
    members = [
        ROOT,
        tar_member("./usr/", tarfile.DIRTYPE, mode=0o755),
        tar_member("./usr/bin/", tarfile.DIRTYPE, mode=0o755),
        tar_member("./usr/bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755),
        tar_member("./usr/bin/alias", tarfile.SYMTYPE, link="tool"),
        tar_member("./bin/tool", tarfile.LNKTYPE, link="./usr/bin/tool"),
    ]
    raw = tar_stream(members)
    if comp == "gz":
        return deb_bytes(gzip.compress(raw, mtime=0), data_name="data.tar.gz")
    return deb_bytes(raw, data_name="data.tar")


SEEDS = [_seed("gz"), _seed("")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        data[at : at + len(chunk)] = chunk
    cut = draw(st.integers(0, len(data)) | st.just(len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=32))


_NAMES = st.sampled_from(
    [
        "./usr/bin/x",
        "./usr/bin/",
        "usr/lib/y",
        "../x",
        "/etc/x",
        "./usr/../..",
        ".",
        "./",
        "./.cpk/meta",
        "./bin/x",
        "./usr/bin/x/z",
        "a" * 300,
    ]
)
_TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
        b"7",
        b"x",
    ]
)
_LINKS = st.sampled_from(
    [
        "",
        "x",
        "../x",
        "../../../../etc",
        "/etc/passwd",
        "./usr/bin/x",
        "usr/bin/x",
        "/usr/bin/x",
        ".",
        "..",
    ]
)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    members = [ROOT]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(_TYPES)
        data = draw(st.binary(max_size=64)) if kind == tarfile.REGTYPE else b""
        mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o7777, 0o000]))
        members.append(tar_member(draw(_NAMES), kind, data=data, mode=mode, link=draw(_LINKS)))
    return deb_bytes(gzip.compress(tar_stream(members), mtime=0), data_name="data.tar.gz")


def _check(content: bytes) -> None:
    work = Path(tempfile.mkdtemp(prefix="cpk-fuzz-deb-"))
    try:
        (work / "sentinel").mkdir()
        (work / "sentinel" / "file").write_text("untouched\n")
        before = tree_digest(work / "sentinel")
        path = work / "in.deb"
        path.write_bytes(content)
        dest = work / "dest"
        dest.mkdir()
        tracemalloc.start()
        try:
            try:
                extract_data(read_deb(path), dest)
            except CpkError:
                pass
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, peak
        assert tree_digest(work / "sentinel") == before
        assert sorted(p.name for p in work.iterdir()) == ["dest", "in.deb", "sentinel"]
    finally:
        shutil.rmtree(work)


deb_inputs = mutated() | structured()


@FAST
@given(deb_inputs)
def test_fuzz_deb(content: bytes) -> None:
    _check(content)


@pytest.mark.slow
@SLOW
@given(deb_inputs)
def test_fuzz_deb_long(content: bytes) -> None:
    _check(content)
