"""ld.so.cache parsing and lookup, checked against ldconfig's own reading."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from support.elfbuild import build_lib, needs_cc

from contentpkg.elf import ldcache
from contentpkg.elf.ldcache import CacheEntry, CacheError, libcmp, parse_cache, search_cache

LDCONFIG = shutil.which("ldconfig") or (
    "/sbin/ldconfig" if Path("/sbin/ldconfig").exists() else None
)
needs_ldconfig = pytest.mark.skipif(LDCONFIG is None, reason="needs ldconfig")

_LINE = re.compile(r"^\t(\S+) \((.*)\) => (.*)$")


def ldconfig_p(cache: str | None = None) -> tuple[int, list[tuple[str, str, str | None]]]:
    """(count, [(name, path, hwcaps)]) as ``ldconfig -p`` prints them."""
    assert LDCONFIG is not None
    cmd = [LDCONFIG, "-p"] + (["-C", cache] if cache else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    count = int(out[0].split()[0])
    rows = []
    for line in out[1:]:
        m = _LINE.match(line)
        if m:
            hw = re.search(r'hwcap: "([^"]*)"', m.group(2))
            rows.append((m.group(1), m.group(3), hw.group(1) if hw else None))
    return count, rows


def ours(parsed: ldcache.LdCache) -> list[tuple[str, str, str | None]]:
    return [(e.soname, e.path, e.hwcaps) for e in parsed.entries]


@needs_ldconfig
def test_system_cache_matches_ldconfig() -> None:
    parsed = ldcache.read_cache()
    if parsed is None:
        pytest.skip("no /etc/ld.so.cache here")
    count, rows = ldconfig_p()
    assert len(parsed.entries) == count
    assert ours(parsed) == rows
    table = ldcache.entries_by_soname()
    for name, path, hw in rows:
        assert (path, ldcache.native_flags(), hw) in table[name]


def test_read_cache_is_parsed_once_per_version(tmp_path: Path) -> None:
    assert ldcache.read_cache(str(tmp_path / "none")) is None
    assert ldcache.entries_by_soname(str(tmp_path / "none")) == {}
    if ldcache.read_cache() is not None:
        assert ldcache.read_cache() is ldcache.read_cache()


@pytest.fixture
def made_caches(tmp_path: Path) -> dict[str, str]:
    """Caches written by the real ldconfig, in all three layouts, with an hwcaps entry."""
    if LDCONFIG is None:
        pytest.skip("needs ldconfig")
    libdir = tmp_path / "lib"
    build_lib(libdir / "libcpkt.so.1", "t", "plain", soname="libcpkt.so.1")
    build_lib(
        libdir / "glibc-hwcaps" / "x86-64-v2" / "libcpkt.so.1", "t", "v2", soname="libcpkt.so.1"
    )
    build_lib(libdir / "libcpkother.so.7", "o", "o", soname="libcpkother.so.7")
    conf = tmp_path / "ld.so.conf"
    conf.write_text(f"{libdir}\n")
    out = {}
    for layout in ("new", "compat", "old"):
        cache = tmp_path / f"cache.{layout}"
        subprocess.run(
            [LDCONFIG, "-X", "-c", layout, "-C", str(cache), "-f", str(conf)],
            check=True,
            capture_output=True,
        )
        out[layout] = str(cache)
    return out


@needs_cc
@needs_ldconfig
@pytest.mark.parametrize("layout", ["new", "compat", "old"])
def test_made_caches_match_ldconfig(made_caches: dict[str, str], layout: str) -> None:
    path = made_caches[layout]
    parsed = parse_cache(Path(path).read_bytes(), path)
    assert parsed.layout == {"new": "new", "compat": "old+new", "old": "old"}[layout]
    count, rows = ldconfig_p(path)
    assert len(parsed.entries) == count
    # In the compat layout glibc reads the hwcaps names from the wrong base
    # (ldconfig -p prints garbage there too, and ld.so never matches them):
    # we read them exactly as both do.
    assert ours(parsed) == rows
    names = [e.soname for e in parsed.entries]
    assert "libcpkt.so.1" in names and "libcpkother.so.7" in names


@needs_cc
@needs_ldconfig
def test_hwcaps_entry_lookup(made_caches: dict[str, str]) -> None:
    parsed = parse_cache(Path(made_caches["new"]).read_bytes())
    entries = parsed.by_soname()["libcpkt.so.1"]
    if not any(e.is_hwcaps for e in entries):
        pytest.skip("this ldconfig writes no glibc-hwcaps entries")
    assert entries[0].hwcaps == "x86-64-v2" and entries[0].is_hwcaps
    assert entries[1].hwcaps is None and not entries[1].is_hwcaps
    prio = {"x86-64-v4": 1, "x86-64-v3": 2, "x86-64-v2": 3}
    got = parsed.lookup("libcpkt.so.1", hwcaps_priority=prio, isa_level=3)
    assert got is not None and got.hwcaps == "x86-64-v2"
    # Not an active subdirectory (or no hwcaps at all): the plain entry.
    plain = parsed.lookup("libcpkt.so.1", hwcaps_priority={"x86-64-v3": 1}, isa_level=3)
    assert plain is not None and plain.hwcaps is None
    assert parsed.lookup("libcpkt.so.1").hwcaps is None  # type: ignore[union-attr]
    # The compat layout's hwcaps names are unreadable to ld.so: plain entry.
    compat = parse_cache(Path(made_caches["compat"]).read_bytes())
    got = compat.lookup("libcpkt.so.1", hwcaps_priority=prio, isa_level=3)
    assert got is not None and got.hwcaps is None
    assert parsed.lookup("libcpknothere.so.1") is None


# --- synthetic caches: the format's corners -------------------------------------------


def _new_cache(rows: list[tuple[str, str, int, int]], hwcaps: list[str]) -> bytes:
    """A new-format cache of (name, path, flags, hwcap) rows, with an hwcaps table."""
    strings = bytearray()
    offsets: dict[str, int] = {}
    header = 48 + 24 * len(rows)

    def s(text: str) -> int:
        if text not in offsets:
            offsets[text] = header + len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    body = b"".join(
        struct.pack("<iIIIQ", flags, s(name), s(path), 0, hw) for name, path, flags, hw in rows
    )
    table = [s(h) for h in hwcaps]
    ext_at = (header + len(strings) + 7) & ~7
    pad = b"\0" * (ext_at - header - len(strings))
    section_at = ext_at + 8 + 16
    ext = struct.pack("<II", 0xEAA42174, 1) + struct.pack("<IIII", 1, 0, section_at, 4 * len(table))
    ext += b"".join(struct.pack("<I", t) for t in table)
    head = ldcache.NEW_MAGIC + struct.pack("<IIB3xI12x", len(rows), len(strings), 2, ext_at)
    return head + body + bytes(strings) + pad + ext


def test_search_cache_rules() -> None:
    x86 = 0x0303
    ext = ldcache.HWCAP_EXTENSION
    rows = [
        ("libz.so.1", "/l/v3/libz.so.1", x86, ext | 1 | (2 << 32)),  # x86-64-v3, ISA level 2
        ("libz.so.1", "/l/v2/libz.so.1", x86, ext | 0 | (1 << 32)),  # x86-64-v2, ISA level 1
        ("libz.so.1", "/l32/libz.so.1", 0x0003, 0),  # another ABI's flags
        ("libz.so.1", "/l/libz.so.1", x86, 0),
        ("liba.so.2", "/l/liba.so.2", x86, 0),
    ]
    parsed = parse_cache(_new_cache(rows, ["x86-64-v2", "x86-64-v3"]))
    assert [e.hwcaps for e in parsed.entries[:2]] == ["x86-64-v3", "x86-64-v2"]
    prio = {"x86-64-v4": 1, "x86-64-v3": 2, "x86-64-v2": 3}

    def look(name: str, **kw: object) -> str | None:
        args: dict[str, object] = {
            "flags_ok": frozenset({x86}),
            "default_flags": x86,
            "hwcaps_priority": prio,
            "isa_level": 3,
        }
        args.update(kw)
        got = search_cache(parsed.entries, name, **args)  # type: ignore[arg-type]
        return got.path if got else None

    assert look("libz.so.1") == "/l/v3/libz.so.1"
    assert look("libz.so.1", isa_level=1) == "/l/v2/libz.so.1"  # v3 needs a better CPU
    assert look("libz.so.1", isa_level=0) == "/l/libz.so.1"
    assert look("libz.so.1", hwcaps_priority={}) == "/l/libz.so.1"
    assert look("libz.so.01") == "/l/v3/libz.so.1"  # digits compare as numbers
    assert look("liba.so.2") == "/l/liba.so.2"
    assert look("libb.so.2") is None
    assert look("libz.so.1", flags_ok=frozenset({0x0003}), default_flags=0x0003) == (
        "/l32/libz.so.1"
    )


def test_libcmp_is_glibcs_order() -> None:
    assert libcmp("libz.so.01", "libz.so.1") == 0
    assert libcmp("libz.so.10", "libz.so.9") > 0
    assert libcmp("libz3.so", "libzstd.so") > 0  # a digit sorts after a letter
    assert libcmp("liba.so", "liba.so.1") < 0
    assert libcmp("liba.so.1", "liba.so") > 0


def test_binary_search_over_a_sorted_cache() -> None:
    names = sorted(
        {f"lib{c}{n}.so.{v}" for c in "abcxyz" for n in range(12) for v in (0, 1, 12)},
        key=__import__("functools").cmp_to_key(lambda a, b: -libcmp(a, b)),
    )
    entries = tuple(CacheEntry(n, f"/l/{n}", 0x0303) for n in names)
    for name in names:
        got = search_cache(
            entries,
            name,
            flags_ok=frozenset({0x0303}),
            default_flags=0x0303,
            hwcaps_priority={},
            isa_level=0,
        )
        assert got is not None and got.soname == name


def test_bad_caches_are_one_error() -> None:
    with pytest.raises(CacheError, match=r"not an ld\.so cache"):
        parse_cache(b"garbage" * 10)
    with pytest.raises(CacheError, match="truncated"):
        parse_cache(ldcache.NEW_MAGIC + struct.pack("<IIB3xI12x", 1000, 0, 2, 0))
    with pytest.raises(CacheError, match="truncated"):
        parse_cache(ldcache.OLD_MAGIC + b"\0" + struct.pack("<I", 50))


def test_a_bad_string_anywhere_is_an_error_when_the_cache_is_read() -> None:
    """Entries are decoded as a lookup reaches them, but every string is
    checked when the cache is read: a broken last entry is refused at once,
    not in the middle of some later search."""
    x86 = 0x0303
    rows = [(f"libt{i}.so.1", f"/l/libt{i}.so.1", x86, 0) for i in range(9, 0, -1)]
    good = _new_cache(rows, [])
    parsed = parse_cache(good)
    assert len(parsed.entries) == 9 and parsed.entries[-1].soname == "libt1.so.1"
    assert [e.soname for e in parsed.entries[:2]] == ["libt9.so.1", "libt8.so.1"]
    # The last entry's path pointed past the end of the file.
    last = 48 + 24 * 8
    broken = bytearray(good)
    struct.pack_into("<I", broken, last + 8, len(good) + 100)
    with pytest.raises(CacheError, match="out of range"):
        parse_cache(bytes(broken))
    # No NUL after the last string: its end is unknown.
    strings_end = good.index(b"/l/libt1.so.1\0") + len("/l/libt1.so.1")
    with pytest.raises(CacheError, match="unterminated"):
        parse_cache(good[:strings_end])
