"""Fuzzing the ELF reader, the loader's header checks and the ld.so.cache parser.

The property, for every input: the parser returns, or raises the project's
error type (``CpkError``: ``ElfError``, ``LoaderError``, ``CacheError``);
nothing else escapes, no example runs past its deadline (a hang guard, far
above the microseconds each takes), and no example allocates more than a
bound far below what a runaway read would (measured with tracemalloc).

Inputs are valid files with bytes overwritten, cut or grown, which reach
far deeper than random bytes would (random bytes mostly stop at the magic),
plus fully random bytes behind the magic. The default run keeps to a few
seconds; the ``slow`` variants run many more examples.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hostile import elf_image, program

from contentpkg.elf import ldcache
from contentpkg.elf.loader import resolve
from contentpkg.elf.reader import parse_elf
from contentpkg.errors import CpkError

#: Peak Python allocation allowed for one example: inputs are a few KB, so
#: anything near this is a read that followed a header's size.
MEMORY_BOUND = 32 << 20

DEADLINE = timedelta(seconds=5)
FAST = settings(
    max_examples=300,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=20_000)

SEEDS = [
    elf_image(needed=["libc.so.6", "libm.so.6"], soname="libseed.so.1", runpath="$ORIGIN/../lib"),
    program("/lib64/ld-linux-x86-64.so.2", needed=["libseed.so.1"], rpath="/opt/x:$ORIGIN"),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with some bytes overwritten (headers most often), maybe cut or grown."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        # Half of the writes land in the first 256 bytes, where the headers are.
        limit = min(len(data), 256) if draw(st.booleans()) else len(data)
        at = draw(st.integers(0, max(limit - 1, 0)))
        width = draw(st.sampled_from([1, 2, 4, 8]))
        value = draw(st.sampled_from([0, 1, 0xFF, 0x7F, 0x80]) | st.integers(0, 255))
        if draw(st.booleans()):
            chunk = draw(st.binary(min_size=width, max_size=width))
        else:
            chunk = bytes([value]) * width
        data[at : at + width] = chunk
    cut = draw(st.integers(0, len(data)) | st.just(len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


def within_bounds(check: Callable[[], object]) -> None:
    """Run check: only CpkError may escape, and the peak stays bounded."""
    tracemalloc.start()
    try:
        try:
            check()
        except CpkError:
            pass
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, peak


# --- the ELF reader -----------------------------------------------------------------


def _reader(data: bytes) -> None:
    within_bounds(lambda: parse_elf(data, "fuzz"))


elf_inputs = mutated(SEEDS) | st.binary(max_size=512).map(lambda b: b"\x7fELF" + b)


@FAST
@given(elf_inputs)
def test_fuzz_elf_reader(data: bytes) -> None:
    _reader(data)


@pytest.mark.slow
@SLOW
@given(elf_inputs)
def test_fuzz_elf_reader_long(data: bytes) -> None:
    _reader(data)


# --- the loader, on a hostile candidate and a hostile program ----------------------------


def _loader(data: bytes, as_program: bool) -> None:
    """A program needing libfuzz.so.1 beside it, one of the two fuzzed."""
    work = Path(tempfile.mkdtemp(prefix="cpk-fuzz-"))
    try:
        lib = work / "libfuzz.so.1"
        prog = work / "prog"
        good_prog = program(
            "/lib64/ld-linux-x86-64.so.2", needed=["libfuzz.so.1"], runpath="$ORIGIN"
        )
        prog.write_bytes(data if as_program else good_prog)
        lib.write_bytes(elf_image(soname="libfuzz.so.1") if as_program else data)
        within_bounds(lambda: resolve(prog, {}, explain=True))
    finally:
        shutil.rmtree(work)


needs_x86_64 = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the seed images are x86_64 ELF files"
)


@needs_x86_64
@settings(FAST, max_examples=150)
@given(mutated(SEEDS), st.booleans())
def test_fuzz_loader(data: bytes, as_program: bool) -> None:
    _loader(data, as_program)


@pytest.mark.slow
@needs_x86_64
@settings(SLOW, max_examples=5_000)
@given(mutated(SEEDS), st.booleans())
def test_fuzz_loader_long(data: bytes, as_program: bool) -> None:
    _loader(data, as_program)


# --- ld.so.cache ------------------------------------------------------------------------


def _cache_seeds() -> list[bytes]:
    """This machine's cache (cut to its first KiBs, to keep examples small),
    and a hand-made one of each format."""
    import struct

    seeds = []
    try:
        with open(ldcache.DEFAULT_CACHE, "rb") as f:
            real = f.read(1 << 16)
        seeds.append(real[:4096])
    except OSError:
        pass
    strings = b"libfuzz.so.1\0/lib/libfuzz.so.1\0"
    new = bytearray(ldcache.NEW_MAGIC)
    new += struct.pack("<IIB3xI12x", 1, len(strings), 2, 0)
    str_at = len(new) + 24
    new += struct.pack("<iIIIQ", 0x303, str_at, str_at + 13, 0, 0)
    seeds.append(bytes(new + strings))
    old = bytearray(ldcache.OLD_MAGIC.ljust(12, b"\0"))
    old += struct.pack("<I", 1) + struct.pack("<iII", 0x303, 0, 13)
    seeds.append(bytes(old + strings))
    return seeds


CACHE_SEEDS = _cache_seeds()


def _cache(data: bytes) -> None:
    def check() -> None:
        parsed = ldcache.parse_cache(data, "fuzz")
        parsed.lookup("libfuzz.so.1")
        parsed.by_soname()

    within_bounds(check)


cache_inputs = mutated(CACHE_SEEDS) | st.binary(max_size=256).map(lambda b: ldcache.NEW_MAGIC + b)


@FAST
@given(cache_inputs)
def test_fuzz_ld_so_cache(data: bytes) -> None:
    _cache(data)


@pytest.mark.slow
@SLOW
@given(cache_inputs)
def test_fuzz_ld_so_cache_long(data: bytes) -> None:
    _cache(data)
