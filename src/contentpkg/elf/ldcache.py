"""Reading ``/etc/ld.so.cache`` and looking names up in it the way ld.so does.

Hand-written on ``struct`` because no library parses this file: it is
glibc's private format, written by ``ldconfig`` and read by ``ld.so``
(``elf/dl-cache.c``), and the only other reader is ``ldconfig -p``, whose
text output drops what the lookup needs (the flags as numbers, the ISA level
of glibc-hwcaps entries, the order the binary search walks).

Three layouts exist and all are read:

- the old format, magic ``ld.so-1.7.0``: 12-byte entries, strings counted
  from the end of the entry array;
- the new format, magic ``glibc-ld.so.cache1.1``: 24-byte entries with the
  OS version and a 64-bit ``hwcap`` word, strings counted from the start of
  the new header; what every ``ldconfig`` since glibc 2.32 writes;
- the old format followed by the new one (the "compat" layout of older
  ``ldconfig``); the loader then uses the new part only.

The new format may carry extensions (``extension_offset``); the one that
matters is the glibc-hwcaps table (glibc 2.33+): an entry whose ``hwcap`` word
has only bit 62 set in its upper half (ignoring the ISA-level bits) lives in
a ``glibc-hwcaps/<name>/`` subdirectory, and its lower 32 bits index the table
of subdirectory names.
"""

from __future__ import annotations

import os
import stat
import struct

from contentpkg.errors import CpkError

TYPE_CHECKING = False  # the idiom type checkers know; typing is not imported
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from typing import Any

#: Where ld.so reads its cache (glibc's LD_SO_CACHE).
DEFAULT_CACHE = "/etc/ld.so.cache"

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
_EXTENSION_MAGIC = 0xEAA42174
_TAG_GENERATOR = 0
_TAG_GLIBC_HWCAPS = 1

#: Bit of ``hwcap`` marking a glibc-hwcaps entry (DL_CACHE_HWCAP_EXTENSION).
HWCAP_EXTENSION = 1 << 62
#: The x86 ISA level of an entry sits in the low bits of the upper half.
ISA_LEVEL_MASK = (1 << 10) - 1
#: Legacy hwcap bits: TLS, and the platform bits (x86: _DL_FIRST_PLATFORM 48,
#: two platforms, haswell and xeon_phi).
HWCAP_TLS = 1 << 63
PLATFORM_MASK = 0b11 << 48

# Flag words (elf/ldconfig.h): the ELF type in the low byte, the ABI/arch in
# the second.
FLAG_ELF_LIBC6 = 0x0003
FLAG_X8664_LIB64 = 0x0300
FLAG_AARCH64_LIB64 = 0x0A00
FLAG_POWERPC_LIB64 = 0x0500
FLAG_S390_LIB64 = 0x0400
FLAG_RISCV_FLOAT_ABI_DOUBLE = 0x1000
FLAG_LARCH_FLOAT_ABI_DOUBLE = 0x1200

#: _DL_CACHE_DEFAULT_ID of each 64-bit port, by e_machine; these ports accept
#: only entries whose flags equal it exactly (sysdeps/.../dl-cache.h).
_DEFAULT_FLAGS = {
    62: FLAG_X8664_LIB64 | FLAG_ELF_LIBC6,
    183: FLAG_AARCH64_LIB64 | FLAG_ELF_LIBC6,
    21: FLAG_POWERPC_LIB64 | FLAG_ELF_LIBC6,
    22: FLAG_S390_LIB64 | FLAG_ELF_LIBC6,
    243: FLAG_RISCV_FLOAT_ABI_DOUBLE | FLAG_ELF_LIBC6,
    258: FLAG_LARCH_FLOAT_ABI_DOUBLE | FLAG_ELF_LIBC6,
}


class CacheError(CpkError):
    """The cache file exists but cannot be parsed."""


class CacheEntry:
    """One line of the cache: a name, the file it points at, and its tags.

    Plain classes here, not dataclasses: ``cpk ldd`` imports this module
    at every start and makes one entry per cache line (hundreds), and a
    dataclass costs both its generated code at import and a slower
    ``__init__`` for a frozen one.
    """

    __slots__ = ("flags", "hwcap", "hwcaps", "osversion", "path", "soname")

    def __init__(
        self,
        soname: str,
        path: str,
        flags: int,
        hwcap: int = 0,
        osversion: int = 0,
        hwcaps: str | None = None,  # glibc-hwcaps subdirectory, for extension entries
    ) -> None:
        self.soname = soname
        self.path = path
        self.flags = flags
        self.hwcap = hwcap
        self.osversion = osversion
        self.hwcaps = hwcaps

    def _key(self) -> tuple[str, str, int, int, int, str | None]:
        return (self.soname, self.path, self.flags, self.hwcap, self.osversion, self.hwcaps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheEntry):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"CacheEntry({', '.join(map(repr, self._key()))})"

    @property
    def is_hwcaps(self) -> bool:
        """Whether this entry lives in a glibc-hwcaps subdirectory."""
        return is_hwcaps_extension(self.hwcap)

    @property
    def isa_level(self) -> int:
        """The x86 ISA level (0 baseline, 1 v2, 2 v3, 3 v4) an hwcaps entry needs."""
        return (self.hwcap >> 32) & ISA_LEVEL_MASK


class LdCache:
    """A parsed cache: the entries the loader searches, in the file's order."""

    __slots__ = ("_index", "entries", "generator", "layout", "path")

    def __init__(
        self,
        path: str,
        layout: str,  # "new", "old" or "old+new"
        entries: Sequence[CacheEntry],
        generator: str | None = None,
    ) -> None:
        self.path = path
        self.layout = layout
        self.entries = entries
        self.generator = generator
        self._index: dict[str, list[CacheEntry]] = {}

    def __repr__(self) -> str:
        return f"LdCache({self.path!r}, {self.layout!r}, <{len(self.entries)} entries>)"

    def by_soname(self) -> Mapping[str, list[CacheEntry]]:
        """soname -> its entries, in the cache's order."""
        if not self._index and self.entries:
            for e in self.entries:
                self._index.setdefault(e.soname, []).append(e)
        return self._index

    def lookup(
        self,
        name: str,
        *,
        flags_ok: Iterable[int] | None = None,
        hwcaps_priority: Mapping[str, int] | None = None,
        isa_level: int = 0,
        legacy_hwcap_ok: int = 0,
        platform: int | None = None,
        osversion: int = 0,
    ) -> CacheEntry | None:
        """The entry ld.so picks for name, or None (see search_cache)."""
        return search_cache(
            self.entries,
            name,
            flags_ok=frozenset(flags_ok) if flags_ok is not None else accepted_flags(),
            default_flags=native_flags(),
            hwcaps_priority=hwcaps_priority or {},
            isa_level=isa_level,
            legacy_hwcap_ok=legacy_hwcap_ok,
            platform=platform,
            osversion=osversion,
        )


def is_hwcaps_extension(hwcap: int) -> bool:
    """Only the extension bit set in the upper half, ISA level bits aside."""
    return ((hwcap >> 32) & ~ISA_LEVEL_MASK) == (HWCAP_EXTENSION >> 32)


def native_flags(machine: int | None = None) -> int:
    """The flags word of this machine's native libraries (_DL_CACHE_DEFAULT_ID)."""
    if machine is None:
        from contentpkg.elf.reader import host_arch

        machine = host_arch()[1]
    return _DEFAULT_FLAGS.get(machine, FLAG_ELF_LIBC6)


def accepted_flags(machine: int | None = None) -> frozenset[int]:
    """Flag words _dl_cache_check_flags accepts on this machine.

    The 64-bit ports above want their exact id; the generic rule (i386, arm,
    ...) also takes plain ELF entries (flags 1).
    """
    if machine is None:
        from contentpkg.elf.reader import host_arch

        machine = host_arch()[1]
    if machine in _DEFAULT_FLAGS:
        return frozenset({_DEFAULT_FLAGS[machine]})
    return frozenset({1, FLAG_ELF_LIBC6})


# --- parsing -------------------------------------------------------------------


def parse_cache(data: bytes, name: str = DEFAULT_CACHE) -> LdCache:
    """Parse the bytes of a cache file; CacheError when it is not one."""
    try:
        if data.startswith(NEW_MAGIC):
            entries, generator = _parse_new(data, 0, name)
            return LdCache(name, "new", entries, generator)
        if data.startswith(OLD_MAGIC):
            return _parse_old(data, name)
    except struct.error:
        raise CacheError(f"{name}: truncated ld.so cache") from None
    raise CacheError(f"{name}: not an ld.so cache (unknown magic)")


def _string(data: bytes, offset: int, name: str) -> str:
    if not 0 <= offset < len(data):
        raise CacheError(f"{name}: ld.so cache string offset {offset} out of range")
    end = data.find(b"\0", offset)
    if end < 0:
        raise CacheError(f"{name}: unterminated string in ld.so cache")
    return data[offset:end].decode("utf-8", "surrogateescape")


def _parse_old(data: bytes, name: str) -> LdCache:
    # struct cache_file: magic[11], padding to 4, uint32 nlibs, 12-byte entries.
    (nlibs,) = struct.unpack_from("<I", data, 12)
    if (len(data) - 16) // 12 < nlibs:
        raise CacheError(f"{name}: truncated ld.so cache ({nlibs} entries announced)")
    strings = 16 + nlibs * 12
    # The loader prefers a new-format cache placed after the old entries,
    # aligned like struct cache_file_new (8 bytes).
    new_at = (strings + 7) & ~7
    if data[new_at : new_at + len(NEW_MAGIC)] == NEW_MAGIC:
        entries, generator = _parse_new(data, new_at, name)
        return LdCache(name, "old+new", entries, generator)
    out = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from("<iII", data, 16 + i * 12)
        out.append(
            CacheEntry(
                soname=_string(data, strings + key, name),
                path=_string(data, strings + value, name),
                flags=flags,
            )
        )
    return LdCache(name, "old", tuple(out))


def _parse_new(data: bytes, base: int, name: str) -> tuple[Sequence[CacheEntry], str | None]:
    # struct cache_file_new: magic+version[20], nlibs, len_strings, flags (u8),
    # padding[3], extension_offset, unused[3], then 24-byte entries.
    nlibs, _len_strings, endian, ext_offset = struct.unpack_from("<IIB3xI", data, base + 20)
    # flags: 0 unknown (old ldconfig), 1 invalid, 2 little-endian, 3 big-endian.
    if endian == 1 or endian == 3:
        raise CacheError(f"{name}: ld.so cache is not little-endian")
    if (len(data) - base - 48) // 24 < nlibs:
        raise CacheError(f"{name}: truncated ld.so cache ({nlibs} entries announced)")
    hwcaps_names: dict[int, str] = {}
    generator = None
    if ext_offset and ext_offset + 8 <= len(data):
        magic, count = struct.unpack_from("<II", data, ext_offset)
        if magic == _EXTENSION_MAGIC:
            for i in range(count):
                tag, _flags, offset, size = struct.unpack_from(
                    "<IIII", data, ext_offset + 8 + i * 16
                )
                if offset + size > len(data):
                    raise CacheError(f"{name}: ld.so cache extension past the end")
                if tag == _TAG_GLIBC_HWCAPS:
                    for j in range(size // 4):
                        (string_at,) = struct.unpack_from("<I", data, offset + 4 * j)
                        hwcaps_names[j] = _string(data, string_at, name)
                elif tag == _TAG_GENERATOR:
                    generator = data[offset : offset + size].decode("utf-8", "replace")
    start = base + 48
    rows = list(struct.iter_unpack("<iIIIQ", data[start : start + nlibs * 24]))
    entries = _Entries(data, base, name, rows, hwcaps_names)
    if rows:
        # Every string is checked now, as a full parse would: a string
        # offset past the end, or no NUL after the last string, is an error
        # when the cache is read, not in the middle of a search. (The lowest
        # offset needs no check: a NUL after the highest ends every string.)
        top = base + max(max(row[1], row[2]) for row in rows)
        if top >= len(data) or data.find(b"\0", top) < 0:
            tuple(entries)  # raises the error naming the first bad string
    return entries, generator


class _Entries:
    """A new-format cache's entries, each decoded when first read.

    ld.so finds a name by binary search, so a lookup reads a dozen entries;
    decoding all of a desktop's thousand-odd cost more than a whole ``cpk
    ldd`` resolve (which runs once per process). A sequence like the tuple
    it stands for: indexing, slices, ``len`` and iteration.
    """

    __slots__ = ("_base", "_data", "_decoded", "_hwcaps_names", "_name", "_rows")

    def __init__(
        self,
        data: bytes,
        base: int,
        name: str,
        rows: list[tuple[int, int, int, int, int]],
        hwcaps_names: dict[int, str],
    ) -> None:
        self._data = data
        self._base = base
        self._name = name
        self._rows = rows
        self._hwcaps_names = hwcaps_names
        self._decoded: list[CacheEntry | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self._entry(i) for i in range(*index.indices(len(self._rows))))
        if index < 0:
            index += len(self._rows)
        if not 0 <= index < len(self._rows):
            raise IndexError("cache entry index out of range")
        return self._entry(index)

    def __iter__(self) -> Iterator[CacheEntry]:
        return (self._entry(i) for i in range(len(self._rows)))

    def __repr__(self) -> str:
        return f"<{len(self._rows)} ld.so cache entries>"

    def _entry(self, i: int) -> CacheEntry:
        entry = self._decoded[i]
        if entry is None:
            flags, key, value, osversion, hwcap = self._rows[i]
            hwcaps = None
            if is_hwcaps_extension(hwcap):
                hwcaps = self._hwcaps_names.get(hwcap & 0xFFFFFFFF)
            data, base, name = self._data, self._base, self._name
            entry = self._decoded[i] = CacheEntry(
                soname=_string(data, base + key, name),
                path=_string(data, base + value, name),
                flags=flags,
                hwcap=hwcap,
                osversion=osversion,
                hwcaps=hwcaps,
            )
        return entry


#: Caches parsed in this process, by path and identity (a dict, not
#: functools.cache, whose import brings collections: ``cpk ldd`` starts
#: once per file).
_PARSED: dict[tuple[str, tuple[int, int, int, int]], LdCache] = {}


def _read_cached(path: str, identity: tuple[int, int, int, int]) -> LdCache:
    parsed = _PARSED.get((path, identity))
    if parsed is None:
        with open(path, "rb") as f:
            # The size stat gave, not "to EOF": a bounded read.
            parsed = _PARSED[path, identity] = parse_cache(f.read(identity[2]), path)
    return parsed


def read_cache(path: str = DEFAULT_CACHE) -> LdCache | None:
    """The parsed cache at path, or None when there is none (the loader skips it).

    Parsed once per process for each version of the file (keyed by inode,
    size and mtime, so an ``ldconfig`` run in between is seen).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        # ld.so maps the file by its fstat size: a FIFO or a device (size 0)
        # is no cache to it, and reading one here could block or never end.
        return None
    return _read_cached(path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def entries_by_soname(path: str = DEFAULT_CACHE) -> dict[str, list[tuple[str, int, str | None]]]:
    """soname -> [(path, flags, hwcaps subdirectory or None)], in the cache's order."""
    parsed = read_cache(path)
    if parsed is None:
        return {}
    return {
        soname: [(e.path, e.flags, e.hwcaps) for e in entries]
        for soname, entries in parsed.by_soname().items()
    }


# --- lookup --------------------------------------------------------------------


def libcmp(p1: str, p2: str) -> int:
    """glibc's _dl_cache_libcmp: digit runs compare as numbers.

    So ``libz.so.01`` and ``libz.so.1`` are the same name to the loader, and
    the cache is sorted by this order (descending), which the binary search in
    search_cache relies on.
    """
    i = j = 0
    n1, n2 = len(p1), len(p2)
    while i < n1:
        c1 = p1[i]
        c2 = p2[j] if j < n2 else ""
        if c1.isdigit() and c1.isascii():
            if c2.isdigit() and c2.isascii():
                a = i
                while i < n1 and p1[i].isdigit() and p1[i].isascii():
                    i += 1
                b = j
                while j < n2 and p2[j].isdigit() and p2[j].isascii():
                    j += 1
                v1, v2 = int(p1[a:i]), int(p2[b:j])
                if v1 != v2:
                    return v1 - v2
            else:
                return 1
        elif c2.isdigit() and c2.isascii():
            return -1
        elif c1 != c2:
            return ord(c1) - (ord(c2) if c2 else 0)
        else:
            i += 1
            j += 1
    return 0 - (ord(p2[j]) if j < n2 else 0)


def search_cache(
    entries: Sequence[CacheEntry],
    name: str,
    *,
    flags_ok: frozenset[int],
    default_flags: int,
    hwcaps_priority: Mapping[str, int],
    isa_level: int,
    legacy_hwcap_ok: int = 0,
    platform: int | None = None,
    osversion: int = 0,
) -> CacheEntry | None:
    """Emulate glibc 2.33-2.36 ``search_cache`` on the parsed entries.

    Binary search (the cache is sorted by libcmp, descending) to a matching
    entry, back up to the first entry with that name, then walk forward:
    glibc-hwcaps entries come first and the one with the best priority among
    the active subdirectories wins; otherwise the first plain entry with
    acceptable flags does. ``hwcaps_priority`` maps the active subdirectory
    names to their rank (1 is best); ``isa_level`` is the highest x86 ISA level
    the CPU supports; ``legacy_hwcap_ok`` the legacy hwcap bits (TLS, platform,
    important hwcaps) an old-style entry may carry, and ``platform`` the
    platform bit of this CPU (None when the loader's platform has none), which
    an entry tagged with a platform must match.
    """
    left, right = 0, len(entries) - 1
    while left <= right:
        middle = (left + right) // 2
        cmpres = libcmp(name, entries[middle].soname)
        if cmpres == 0:
            left = middle
            while middle > 0 and libcmp(name, entries[middle - 1].soname) == 0:
                middle -= 1
            best: CacheEntry | None = None
            best_priority = 0
            while middle <= right:
                lib = entries[middle]
                if middle > left and libcmp(name, lib.soname) != 0:
                    break
                middle += 1
                if lib.flags not in flags_ok:
                    continue
                named = is_hwcaps_extension(lib.hwcap)
                if named and lib.isa_level > isa_level:
                    continue
                if not named and best is not None:
                    break  # the hwcaps entries (listed first) are exhausted
                if not named and lib.hwcap & ~legacy_hwcap_ok:
                    continue
                if osversion and lib.osversion > osversion:
                    continue
                tagged = lib.hwcap & PLATFORM_MASK
                if not named and tagged and tagged != (platform or 0):
                    continue
                if named:
                    priority = hwcaps_priority.get(lib.hwcaps or "", 0)
                    if priority == 0:
                        continue
                    if best is None or priority < best_priority:
                        best_priority = priority
                    else:
                        continue
                best = lib
                if not named and lib.flags == default_flags:
                    break  # nothing later can be a better match
            return best
        if cmpres < 0:
            left = middle + 1
        else:
            right = middle - 1
    return None
