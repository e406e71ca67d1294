"""Reading what the loader reads from an ELF file: its dynamic section.

Hand-written on ``struct`` rather than pyelftools because the loader's view
needs only the ELF header, the program headers and the dynamic segment (never
the section headers, which ``strip`` may remove), and because ``cpk ldd`` and
``cpk store add`` read thousands of files: this reader touches a few KiB of
each and returns in tens of microseconds, where pyelftools builds section
objects for the whole file.

Addresses in the dynamic section (``DT_STRTAB``) are virtual; they are mapped
back to file offsets through the ``PT_LOAD`` segments, as the loader does.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct

from contentpkg.errors import CpkError

TYPE_CHECKING = False  # the idiom type checkers know; typing is not imported
if TYPE_CHECKING:
    from pathlib import Path

ELF_MAGIC = b"\x7fELF"

# e_type
ET_EXEC = 2
ET_DYN = 3

# p_type
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3

# d_tag
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_STRSZ = 10
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x800
DF_1_PIE = 0x08000000

#: e_machine values worth naming in messages (the ELF gABI numbers).
MACHINES = {
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}

#: What ``uname -m`` says, mapped to (ELF class, e_machine) of native code.
_HOST = {
    "x86_64": (64, 62),
    "aarch64": (64, 183),
    "arm64": (64, 183),
    "i686": (32, 3),
    "i386": (32, 3),
    "riscv64": (64, 243),
    "ppc64le": (64, 21),
    "s390x": (64, 22),
    "loongarch64": (64, 258),
}


class ElfError(CpkError):
    """An ELF file the store or the loader emulation cannot take."""


class NotElf(ElfError):
    """The file does not start with the ELF magic: a plain file."""


class ElfInfo:
    """The loader-relevant facts of one ELF file.

    A plain class with ``__slots__``, compared and hashed by its fields, not
    a dataclass: ``cpk ldd`` imports this module at every start, and each
    ``@dataclass`` generates its methods' code at import.
    """

    __slots__ = (
        "elf_class",
        "flags_1",
        "has_dynamic",
        "interpreter",
        "little_endian",
        "machine",
        "needed",
        "osabi",
        "rpath",
        "runpath",
        "soname",
        "type",
    )  # fmt: skip

    def __init__(
        self,
        elf_class: int,  # 32 or 64
        little_endian: bool,
        machine: int,
        osabi: int,
        type: int,
        interpreter: str | None = None,
        soname: str | None = None,
        needed: tuple[str, ...] = (),
        rpath: str | None = None,
        runpath: str | None = None,
        flags_1: int = 0,
        has_dynamic: bool = False,
    ) -> None:
        self.elf_class = elf_class
        self.little_endian = little_endian
        self.machine = machine
        self.osabi = osabi
        self.type = type
        self.interpreter = interpreter
        self.soname = soname
        self.needed = needed
        self.rpath = rpath
        self.runpath = runpath
        self.flags_1 = flags_1
        self.has_dynamic = has_dynamic

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ElfInfo):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ElfInfo({fields})"

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"machine {self.machine}")

    @property
    def is_executable(self) -> bool:
        """A program, not only a library.

        ET_EXEC, or a PIE (DF_1_PIE: static-pie programs have no
        interpreter), or an interpreter without a SONAME: libc.so.6 has an
        interpreter so it can be run, yet it is a library.
        """
        return (
            self.type == ET_EXEC
            or bool(self.flags_1 & DF_1_PIE)
            or (self.interpreter is not None and self.soname is None)
        )

    @property
    def is_static(self) -> bool:
        """A program the kernel starts without the loader (static or static-pie)."""
        return self.is_executable and self.interpreter is None

    @property
    def nodeflib(self) -> bool:
        return bool(self.flags_1 & DF_1_NODEFLIB)

    def facts(self) -> dict[str, object]:
        """What an entry records about the file (JSON-ready)."""
        return {
            "class": self.elf_class,
            "machine": self.machine_name,
            "type": "executable" if self.is_executable else "library",
            "interpreter": self.interpreter,
            "soname": self.soname,
            "needed": list(self.needed),
            "rpath": self.rpath,
            "runpath": self.runpath,
        }


def host_arch() -> tuple[int, int]:
    """(ELF class, e_machine) of code this machine runs natively."""
    machine = os.uname().machine
    try:
        return _HOST[machine]
    except KeyError:
        raise ElfError(f"this machine's architecture {machine!r} is not known to cpk") from None


#: Bounds on what a hostile file can make the reader do. Real objects have
#: tens of dynamic entries (a few hundred at most: DT_NEEDED lists) and
#: strings of at most a few KiB (long Nix RUNPATHs); PATH_MAX is 4 KiB. A
#: file past these is refused rather than walked for minutes.
MAX_DYNAMIC_ENTRIES = 1 << 16
MAX_STRING = 1 << 16

_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO"), for messages."""
    return _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | os.PathLike[str]) -> int:
    """Open a regular file for reading; ElfError naming anything else.

    A FIFO would block ``open`` until a writer comes and ``/dev/zero`` never
    ends, and merely opening some devices acts (a watchdog arms): so the
    type is checked with ``stat`` before opening, the open itself does not
    wait (O_NONBLOCK), and ``fstat`` confirms the file opened is the one
    checked.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError(f"{path}: not a regular file ({file_kind(st.st_mode)})")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ElfError(f"{path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
        os.close(fd)
        raise ElfError(f"{path}: not a regular file ({file_kind(st.st_mode)})")
    return fd


def is_elf(path: str | os.PathLike[str]) -> bool:
    """Whether a regular file starts with the ELF magic (cheap: reads 4 bytes)."""
    try:
        fd = open_regular(path)
    except ElfError:
        return False
    try:
        return os.pread(fd, 4, 0) == ELF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def read_elf(path: str | os.PathLike[str]) -> ElfInfo:
    """Read path's dynamic facts; NotElf for a non-ELF, ElfError if malformed.

    Only regular files are read (see :func:`open_regular`), and only as far
    as their size at the time of opening: what the headers point at past
    that is "past the end", whatever the file does later.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size < 4096:
            # pread of the size fstat gave: a bounded read, never "to EOF".
            return parse_elf(os.pread(fd, size, 0), str(path))
        # mmap: only the pages holding the headers, the dynamic segment and
        # the string table are read, whatever the file's size.
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as data:
            return parse_elf(data, str(path))
    except OSError as exc:
        raise ElfError(f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def parse_elf(data: bytes | mmap.mmap, name: str = "<bytes>") -> ElfInfo:
    """Parse an ELF image held in memory (see read_elf)."""
    if data[:4] != ELF_MAGIC:
        raise NotElf(f"{name}: not an ELF file")
    try:
        return _parse(data, name)
    except struct.error:
        raise ElfError(f"{name}: truncated ELF file") from None


def _fail(name: str, what: str) -> ElfError:
    return ElfError(f"{name}: malformed ELF file ({what})")


#: What :func:`_header` returns: is64, byte order, e_type, e_machine, osabi,
#: the dynamic entries' struct format, the PT_LOAD segments as (vaddr,
#: offset, filesz), and the PT_DYNAMIC and PT_INTERP segments as (offset, size).
_Header = tuple[
    bool,
    str,
    int,
    int,
    int,
    str,
    list[tuple[int, int, int]],
    tuple[int, int] | None,
    tuple[int, int] | None,
]


def _header(data: bytes | bytearray | mmap.mmap, name: str) -> _Header:
    """The ELF header's facts and the program headers' segments, checked."""
    if len(data) < 16:
        raise ElfError(f"{name}: truncated ELF file")
    ei_class, ei_data, ei_version, osabi = data[4], data[5], data[6], data[7]
    if ei_class not in (1, 2):
        raise _fail(name, f"class byte {ei_class}")
    if ei_data not in (1, 2):
        raise _fail(name, f"data encoding byte {ei_data}")
    if ei_version != 1:
        raise _fail(name, f"version {ei_version}")
    is64 = ei_class == 2
    end = "<" if ei_data == 1 else ">"
    if is64:
        (e_type, e_machine, _v, _entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize, e_phnum) = (
            struct.unpack_from(end + "HHIQQQIHHH", data, 16)
        )
        ph_fmt, dyn_fmt = end + "IIQQQQQQ", end + "qQ"
    else:
        (e_type, e_machine, _v, _entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize, e_phnum) = (
            struct.unpack_from(end + "HHIIIIIHHH", data, 16)
        )
        ph_fmt, dyn_fmt = end + "IIIIIIII", end + "iI"
    ph_size = struct.calcsize(ph_fmt)
    if e_phnum and e_phentsize < ph_size:
        raise _fail(name, f"program header size {e_phentsize}")
    if e_phoff + e_phnum * e_phentsize > len(data):
        raise ElfError(f"{name}: truncated ELF file (program headers past the end)")

    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    interp: tuple[int, int] | None = None
    for i in range(e_phnum):
        raw = struct.unpack_from(ph_fmt, data, e_phoff + i * e_phentsize)
        if is64:
            p_type, _pf, p_offset, p_vaddr, _pa, p_filesz, _memsz, _align = raw
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _memsz, _pf, _align = raw
        if p_offset + p_filesz > len(data) and p_type in (PT_LOAD, PT_DYNAMIC, PT_INTERP):
            raise ElfError(f"{name}: truncated ELF file (segment past the end)")
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            interp = (p_offset, p_filesz)
    return is64, end, e_type, e_machine, osabi, dyn_fmt, loads, dynamic, interp


def _parse(data: bytes | mmap.mmap, name: str) -> ElfInfo:
    is64, end, e_type, e_machine, osabi, dyn_fmt, loads, dynamic, interp_at = _header(data, name)
    interp: str | None = None
    if interp_at is not None:
        # The kernel refuses a PT_INTERP longer than PATH_MAX; reading at
        # most MAX_STRING of it keeps a hostile segment from being copied whole.
        p_offset, p_filesz = interp_at
        interp = (
            data[p_offset : p_offset + min(p_filesz, MAX_STRING)]
            .split(b"\0", 1)[0]
            .decode("utf-8", "surrogateescape")
        )

    base = dict(
        elf_class=64 if is64 else 32,
        little_endian=end == "<",
        machine=e_machine,
        osabi=osabi,
        type=e_type,
        interpreter=interp,
    )
    if dynamic is None:
        return ElfInfo(**base)  # type: ignore[arg-type]

    entries: list[tuple[int, int]] = []
    dyn_size = struct.calcsize(dyn_fmt)
    off, size = dynamic
    for pos in range(off, off + size - dyn_size + 1, dyn_size):
        tag, val = struct.unpack_from(dyn_fmt, data, pos)
        if tag == DT_NULL:
            break
        if len(entries) == MAX_DYNAMIC_ENTRIES:
            raise _fail(name, f"more than {MAX_DYNAMIC_ENTRIES} dynamic entries")
        entries.append((tag, val))

    strtab_addr = next((v for t, v in entries if t == DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == DT_STRSZ), None)
    if strtab_addr is None:
        raise _fail(name, "dynamic section without DT_STRTAB")
    str_off = _vaddr_to_offset(loads, strtab_addr)
    if str_off is None:
        raise _fail(name, "DT_STRTAB outside every loaded segment")
    str_end = len(data) if strsz is None else min(len(data), str_off + strsz)
    if strsz is not None and str_off + strsz > len(data):
        raise ElfError(f"{name}: truncated ELF file (string table past the end)")

    def string(index: int) -> str:
        start = str_off + index
        if start >= str_end:
            raise _fail(name, f"string index {index} outside the string table")
        stop = data.find(b"\0", start, min(str_end, start + MAX_STRING + 1))
        if stop < 0:
            if str_end > start + MAX_STRING:
                raise _fail(name, f"a dynamic string longer than {MAX_STRING} bytes")
            raise _fail(name, "unterminated string")
        return data[start:stop].decode("utf-8", "surrogateescape")

    needed: list[str] = []
    soname = rpath = runpath = None
    flags_1 = 0
    for tag, val in entries:
        if tag == DT_NEEDED:
            needed.append(string(val))
        elif tag == DT_SONAME:
            soname = string(val)
        elif tag == DT_RPATH:
            rpath = string(val)
        elif tag == DT_RUNPATH:
            runpath = string(val)
        elif tag == DT_FLAGS_1:
            flags_1 = val
    return ElfInfo(
        **base,  # type: ignore[arg-type]
        soname=soname,
        needed=tuple(needed),
        rpath=rpath,
        runpath=runpath,
        flags_1=flags_1,
        has_dynamic=True,
    )


def _vaddr_to_offset(loads: list[tuple[int, int, int]], addr: int) -> int | None:
    for vaddr, offset, filesz in loads:
        if vaddr <= addr < vaddr + filesz:
            return offset + (addr - vaddr)
    return None


def check_native(info: ElfInfo, name: str | Path) -> None:
    """Refuse an ELF this machine's loader would not run."""
    cls, machine = host_arch()
    if info.machine != machine or info.elf_class != cls:
        want = MACHINES.get(machine, str(machine))
        raise ElfError(
            f"{name}: ELF for {info.machine_name} ({info.elf_class}-bit), "
            f"this machine runs {want} ({cls}-bit)"
        )


# --- where things are, for editing in place and for scanning ------------------


class DynamicTable:
    """The dynamic segment as file offsets: what an in-place edit needs.

    ``entries`` are (file offset of the entry, tag, value) up to and not
    including the first DT_NULL; ``capacity`` is how many entries the
    segment has room for (spare DT_NULLs after the first count). A plain
    class for the reason ElfInfo is one.
    """

    __slots__ = (
        "capacity",
        "dynamic_offset",
        "entries",
        "fmt",
        "strtab_offset",
        "strtab_size",
    )  # fmt: skip

    def __init__(
        self,
        fmt: str,  # struct format of one entry (tag, value)
        entries: tuple[tuple[int, int, int], ...],
        capacity: int,
        dynamic_offset: int,
        strtab_offset: int,
        strtab_size: int,
    ) -> None:
        self.fmt = fmt
        self.entries = entries
        self.capacity = capacity
        self.dynamic_offset = dynamic_offset
        self.strtab_offset = strtab_offset
        self.strtab_size = strtab_size

    def __repr__(self) -> str:
        return (
            f"DynamicTable({self.fmt!r}, <{len(self.entries)} entries>, "
            f"capacity={self.capacity}, dynamic_offset={self.dynamic_offset})"
        )


def dynamic_table(data: bytes | bytearray | mmap.mmap) -> DynamicTable | None:
    """The dynamic segment's layout in data, or None for a file without one.

    Raises ElfError for what :func:`read_elf` would refuse too.
    """
    info = parse_elf(data)  # type: ignore[arg-type]
    if not info.has_dynamic:
        return None
    *_facts, dyn_fmt, loads, dynamic, _interp = _header(data, "")
    assert dynamic is not None  # parse_elf found it
    size = struct.calcsize(dyn_fmt)
    entries = []
    off, length = dynamic
    capacity = length // size
    for pos in range(off, off + capacity * size, size):
        tag, val = struct.unpack_from(dyn_fmt, data, pos)
        if tag == DT_NULL:
            break
        entries.append((pos, tag, val))
    strtab = next(v for _p, t, v in entries if t == DT_STRTAB)
    strsz = next((v for _p, t, v in entries if t == DT_STRSZ), 0)
    str_off = _vaddr_to_offset(loads, strtab)
    assert str_off is not None  # parse_elf checked it
    return DynamicTable(dyn_fmt, tuple(entries), capacity, off, str_off, strsz)


def section_spans(
    data: bytes | mmap.mmap, sections: tuple[str, ...] = (".rodata", ".dynstr")
) -> list[tuple[int, int]]:
    """(offset, size) of the named sections in data; the whole file without
    section headers.

    Read through the section headers (which ``strip`` keeps; only
    ``sstrip`` removes them): the compiled-in paths a program opens live in
    ``.rodata``, the search paths it hands the loader in ``.dynstr``.
    """
    spans: list[tuple[int, int]] = []
    try:
        is64 = data[4] == 2
        end = "<" if data[5] == 1 else ">"
        if is64:
            e_shoff = struct.unpack_from(end + "Q", data, 40)[0]
            e_shentsize, e_shnum, e_shstrndx = struct.unpack_from(end + "HHH", data, 58)
            sh_fmt = end + "IIQQQQIIQQ"
        else:
            e_shoff = struct.unpack_from(end + "I", data, 32)[0]
            e_shentsize, e_shnum, e_shstrndx = struct.unpack_from(end + "HHH", data, 46)
            sh_fmt = end + "IIIIIIIIII"
        headers = [
            struct.unpack_from(sh_fmt, data, e_shoff + i * e_shentsize) for i in range(e_shnum)
        ]
        if headers and e_shstrndx < len(headers):
            names_off = headers[e_shstrndx][4]
            for h in headers:
                start = names_off + h[0]
                name = bytes(data[start : data.find(b"\0", start)])
                if name.decode("ascii", "replace") in sections and h[1] != 8:  # not NOBITS
                    spans.append((h[4], min(h[5], len(data) - h[4])))
    except (struct.error, ValueError, IndexError):
        spans = []
    return spans or [(0, len(data))]
