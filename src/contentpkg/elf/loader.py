"""What glibc's ld.so will map for a program, and why: an emulation.

This follows glibc 2.33-2.36 (``elf/rtld.c``, ``elf/dl-deps.c``,
``elf/dl-load.c``, ``elf/dl-cache.c``) step by step rather than
approximating it, because ``cpk ldd`` must explain what a real run does:

- Objects are mapped breadth-first over DT_NEEDED (``_dl_map_object_deps``):
  the main object and the LD_PRELOAD objects first, then their needs in
  order, then the needs of those.
- A name already loaded satisfies every later request, whatever the
  requester's RUNPATH says: requests match the names an object was loaded
  under, its path, and its DT_SONAME; and a file found on disk that is
  already mapped (same device and inode) is not mapped twice. The main
  program and ld.so itself carry no file identity (the kernel mapped them),
  so another path to ld.so maps a second copy, as glibc does.
- A name without a slash is searched: the DT_RPATH of the requester and of
  each object up the chain that loaded it, then the executable's (only when
  the requester has no DT_RUNPATH; an object with a DT_RUNPATH has no DT_RPATH
  at all), LD_LIBRARY_PATH, the requester's own DT_RUNPATH, ``ld.so.cache``,
  then the system directories (these two skipped when the requester has
  DF_1_NODEFLIB; a cache hit inside a system directory is refused too).
  Each directory is tried in its glibc-hwcaps subdirectories and (glibc
  before 2.37) its legacy hwcap subdirectories first.
- ``$ORIGIN`` of the executable run by the kernel is its real directory
  (``/proc/self/exe``); of any other object, the directory of the path it was
  opened under, symlinks not resolved. ``$LIB`` and ``$PLATFORM`` are the
  loader's own.
- A candidate of the wrong ELF class or machine, or whose ABI note names
  another OS, is skipped; any other bad candidate (not ELF at all, too
  short, a directory, a relocatable object) stops the whole load with an
  error, as ld.so does. A name not found anywhere is reported as missing and
  the search goes on (what ``LD_TRACE_LOADED_OBJECTS`` does), so one report
  shows everything that is missing.

What the loader itself says about this machine (its system directories,
glibc-hwcaps subdirectories, legacy hwcap names, platform) is read once per
process from ``ld.so --help``, the loader's own authoritative account; only
where that is unavailable is it derived from the multiarch triplet and
``/proc/cpuinfo``.

Not emulated: secure (setuid) mode, LD_AUDIT, DT_AUXILIARY/DT_FILTER objects
(none on a stock Debian system), ``/etc/ld.so.preload`` contents beyond the
names it lists, and symbol-version checks (which never change what is mapped).
"""

from __future__ import annotations

import errno
import marshal
import os
import stat
import struct
import sys

from contentpkg.context import Bucket
from contentpkg.elf import ldcache
from contentpkg.elf.reader import (
    ELF_MAGIC,
    ET_DYN,
    ET_EXEC,
    MACHINES,
    ElfError,
    ElfInfo,
    NotElf,
    check_native,
    file_kind,
    host_arch,
    read_elf,
)
from contentpkg.errors import CpkError

# Names for annotations only: typing and collections.abc cost more at start
# than a whole ``cpk ldd`` resolve (see cli/ldd.py). For the same reason
# neither ``re`` (with enum, functools and collections) nor ``functools`` is
# imported at the top: the few patterns below are split by hand, and
# ``ld.so --help`` (read only when its answer is not cached) imports re.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Literal

    Mode = Literal["exec", "list"]

# Reasons an object was found (LoadedObject.reason).
MAIN = "main"
INTERPRETER = "interpreter"
RPATH = "rpath"
RUNPATH = "runpath"
LD_LIBRARY_PATH = "ld_library_path"
LD_SO_CACHE = "ld_so_cache"
DEFAULT_DIR = "default"
SLASH = "path"
LOADED = "loaded"
MISSING = "missing"

#: What the kernel names the vDSO on each machine (it is in the loader's
#: list of loaded objects, so a request for that name is satisfied).
_VDSO = {62: "linux-vdso.so.1", 183: "linux-vdso.so.1", 3: "linux-gate.so.1"}

#: The system loader of each machine, when no running program tells us.
_DEFAULT_INTERPRETERS = {
    62: "/lib64/ld-linux-x86-64.so.2",
    183: "/lib/ld-linux-aarch64.so.1",
    3: "/lib/ld-linux.so.2",
    21: "/lib64/ld64.so.2",
    22: "/lib/ld64.so.1",
    243: "/lib/ld-linux-riscv64-lp64d.so.1",
}

_DF_1_PIE = 0x08000000
_PT_NOTE = 4
_FILEBUF_SIZE = 832  # what open_verify reads first (64-bit)
_LIBC_ABI_MAX = 4


class LoaderError(CpkError):
    """The file cannot be examined as the loader would (not ELF, other arch)."""


# --- the loader's own configuration -------------------------------------------


class LoaderConfig:
    """What this machine's ld.so searches, as the loader itself reports it.

    This module's classes are plain ones with ``__slots__``, not dataclasses:
    ``cpk ldd`` imports the module at every start, and each ``@dataclass``
    generates its methods' code then (together more than a resolve costs).
    """

    __slots__ = (
        "cache_path",
        "elf_class",
        "hwcaps",
        "interpreter",
        "legacy",
        "lib",
        "machine",
        "platform",
        "supported_hwcaps",
        "system_dirs",
    )  # fmt: skip

    def __init__(
        self,
        interpreter: str,  # the system loader (default PT_INTERP)
        system_dirs: tuple[str, ...],  # without trailing slash, in search order
        hwcaps: tuple[str, ...],  # glibc-hwcaps subdirectories searched, best first
        supported_hwcaps: tuple[str, ...],  # ... and those the CPU supports at all
        legacy: tuple[str, ...],  # legacy hwcap names, lowest bit first (glibc < 2.37)
        platform: str | None,  # $PLATFORM (AT_PLATFORM)
        lib: str,  # $LIB
        elf_class: int,
        machine: int,
        cache_path: str = ldcache.DEFAULT_CACHE,
    ) -> None:
        self.interpreter = interpreter
        self.system_dirs = system_dirs
        self.hwcaps = hwcaps
        self.supported_hwcaps = supported_hwcaps
        self.legacy = legacy
        self.platform = platform
        self.lib = lib
        self.elf_class = elf_class
        self.machine = machine
        self.cache_path = cache_path

    def fields(self) -> dict[str, object]:
        """Every field by name (what the cache between processes stores)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoaderConfig):
            return NotImplemented
        return self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(tuple(self.fields().values()))

    def __repr__(self) -> str:
        return "LoaderConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.fields().items()) + ")"

    @property
    def subdirs(self) -> tuple[str, ...]:
        """Every subdirectory tried in each search directory, in order ("" last).

        The legacy combinations are glibc's: every subset of the legacy names
        (the hwcap names, the platform, "tls"), largest first, each written
        with "tls" first (_dl_important_hwcaps before 2.37).
        """
        out = [f"glibc-hwcaps/{h}" for h in self.hwcaps]
        temp = list(self.legacy)
        if temp:
            count = len(temp)
            for mask in range((1 << count) - 1, 0, -1):
                out.append("/".join(temp[n] for n in range(count - 1, -1, -1) if mask >> n & 1))
        out.append("")
        return tuple(out)

    @property
    def isa_level(self) -> int:
        """Highest x86-64 ISA level the CPU supports (0 baseline .. 3 v4)."""
        best = 0
        for name in self.supported_hwcaps:
            level = name.removeprefix("x86-64-v")
            if level != name and len(level) == 1 and level in "0123456789":
                best = max(best, int(level) - 1)
        return best

    @property
    def hwcaps_priority(self) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(self.hwcaps)}

    @property
    def legacy_hwcap_ok(self) -> int:
        """Legacy hwcap bits a cache entry may carry (TLS, platform, x86 hwcaps)."""
        ok = ldcache.HWCAP_TLS | ldcache.PLATFORM_MASK
        if self.machine == 62:
            for bit, name in enumerate(("sse2", "x86_64", "avx512_1")):
                if name in self.legacy:
                    ok |= 1 << bit
        return ok

    @property
    def platform_bit(self) -> int | None:
        """The cache's platform bit for $PLATFORM (x86: haswell, xeon_phi)."""
        if self.machine == 62 and self.platform in ("haswell", "xeon_phi"):
            return 1 << (48 + ("haswell", "xeon_phi").index(self.platform))
        return None


def _default_interpreter(machine: int) -> str:
    """The PT_INTERP of this Python, when it is a native dynamic program."""
    try:
        info = read_elf(os.path.realpath(sys.executable))
        if info.interpreter and info.machine == machine:
            return info.interpreter
    except (ElfError, OSError):
        pass
    return _DEFAULT_INTERPRETERS.get(machine, "/lib64/ld-linux-x86-64.so.2")


def parse_loader_help(text: str) -> dict[str, object]:
    """The search facts in ``ld.so --help`` output (glibc 2.33+)."""
    import re  # only here: a cached answer (the common case) needs none

    section = None
    dirs: list[str] = []
    hwcaps: list[str] = []
    supported: list[str] = []
    legacy_printed: list[str] = []
    platform = None
    for line in text.splitlines():
        if not line.startswith("  "):
            section = line.strip().rstrip(":")
            continue
        item = line.strip()
        m = re.fullmatch(r"(\S+)(?: \((.*)\))?", item)
        if not m:
            continue
        word, notes = m.group(1), (m.group(2) or "")
        if section == "Shared library search path" and notes == "system search path":
            dirs.append(word)
        elif section and section.startswith("Subdirectories of glibc-hwcaps"):
            if "supported" in notes:
                supported.append(word)
            if "searched" in notes:
                hwcaps.append(word)
        elif section and section.startswith("Legacy HWCAP subdirectories"):
            if "AT_PLATFORM" in notes:
                platform = word
            elif word != "tls" and "searched" in notes:
                legacy_printed.append(word)
    # --help prints the hwcap names from the highest bit down; the loader
    # combines them lowest bit first, then the platform, then "tls".
    legacy = list(reversed(legacy_printed))
    if platform is not None:
        legacy.append(platform)
    has_legacy = any(line.startswith("Legacy HWCAP subdirectories") for line in text.splitlines())
    if has_legacy:
        legacy.append("tls")
    return {
        "system_dirs": dirs,
        "hwcaps": hwcaps,
        "supported_hwcaps": supported,
        "legacy": legacy,
        "platform": platform,
    }


_X86_LEVELS = (
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ("x86-64-v2", {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
)


def _cpu_hwcaps() -> list[str]:
    """glibc-hwcaps levels from /proc/cpuinfo (fallback when ld.so cannot tell)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return []
    except OSError:
        return []
    out: list[str] = []
    need: set[str] = set()
    for name, extra in reversed(_X86_LEVELS):
        need |= extra
        if not need <= flags:
            break
        out.insert(0, name)
    return out


#: :func:`system_config`'s answers in this process, by tunables (a dict, not
#: functools.cache: see the note on imports at the top).
_SYSTEM_CONFIGS: dict[str, LoaderConfig] = {}


def system_config(tunables: str = "") -> LoaderConfig:
    """This machine's loader configuration (asked once per process).

    ``tunables`` is the ``GLIBC_TUNABLES`` the programs will run with: the
    one setting outside ``LD_*`` that changes which hwcaps the loader
    supports. The loader is asked with nothing else in its environment, so
    the answer is the machine's, not the caller's ``LD_*`` settings.
    """
    known = _SYSTEM_CONFIGS.get(tunables)
    if known is None:
        known = _SYSTEM_CONFIGS[tunables] = _ask_loader(tunables)
    return known


def forget_system_config() -> None:
    """Ask the loader again on the next :func:`system_config` (benchmarks, tests)."""
    _SYSTEM_CONFIGS.clear()


def _ask_loader(tunables: str) -> LoaderConfig:
    elf_class, machine = host_arch()
    interpreter = _default_interpreter(machine)
    facts: dict[str, object] = {}
    import subprocess  # only when asking: a cached answer needs no process

    try:
        env = {"GLIBC_TUNABLES": tunables} if tunables else {}
        proc = subprocess.run(
            [interpreter, "--help"], capture_output=True, text=True, env=env, timeout=30
        )
        if proc.returncode == 0:
            facts = parse_loader_help(proc.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    dirs = [d.rstrip("/") or "/" for d in facts.get("system_dirs") or []]  # type: ignore[attr-defined]
    if not dirs:
        triplet = getattr(sys.implementation, "_multiarch", None)
        dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
        dirs += ["/lib64", "/usr/lib64"] if elf_class == 64 and not triplet else []
        dirs += ["/lib", "/usr/lib"]
    if facts:
        hwcaps = list(facts["hwcaps"])  # type: ignore[call-overload]
        supported = list(facts["supported_hwcaps"])  # type: ignore[call-overload]
        legacy = list(facts["legacy"])  # type: ignore[call-overload]
        platform = facts["platform"]
    else:
        hwcaps = supported = _cpu_hwcaps() if machine == 62 else []
        legacy = []
        platform = os.uname().machine
    # $LIB is the loader's own library directory, relative to the root: the
    # first system directory ("lib/x86_64-linux-gnu" on Debian, "lib64" on
    # Fedora), which is what DL_DST_LIB is built from.
    lib = dirs[0].lstrip("/")
    if lib.startswith("usr/"):
        lib = lib[4:]
    return LoaderConfig(
        interpreter=interpreter,
        system_dirs=tuple(dirs),
        hwcaps=tuple(hwcaps),
        supported_hwcaps=tuple(supported),
        legacy=tuple(legacy),
        platform=platform if isinstance(platform, str) else None,
        lib=lib,
        elf_class=elf_class,
        machine=machine,
    )


def cached_system_config(cache_dir: str | os.PathLike[str], tunables: str = "") -> LoaderConfig:
    """:func:`system_config`, kept in the cache between processes.

    Asking the loader (``ld.so --help``) costs a process start, most of what
    a ``cpk ldd`` of one file takes. Its answer changes only with the loader
    file (its stat), the tunables, and the machine and kernel it runs on
    (hwcaps follow the CPU: the host name and kernel release stand for it,
    so a home shared between machines keeps one answer per machine).
    """
    _elf_class, machine = host_arch()
    interpreter = _default_interpreter(machine)
    try:
        st = os.stat(interpreter)
    except OSError:
        return system_config(tunables)
    host = os.uname()
    identity = (
        interpreter, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
        tunables, host.nodename, host.release, host.machine,
    )  # fmt: skip
    # marshal, not json, and a checksum for the file name, not sha256: json
    # and hashlib (OpenSSL) would cost more at start than reading the answer,
    # and so would zlib's CRC where zlib is a shared library (it loads
    # libz). The bytes read as one integer, modulo the largest 32-bit prime,
    # spread names as well, in one C call. The identity is stored in the
    # file and compared whole, so two identities sharing a name only take
    # turns in one file.
    raw = marshal.dumps(identity)
    name = f"{int.from_bytes(raw, 'little') % 4294967291:08x}-{len(raw)}.marshal"
    path = os.path.join(cache_dir, Bucket.LOADER.value, name[:2], name)
    try:
        with open(path, "rb") as f:
            stored, fields = marshal.loads(f.read())
        if stored == identity:
            return LoaderConfig(**fields)
    except (OSError, ValueError, EOFError, TypeError):
        pass  # absent, or written by another version: ask the loader
    config = system_config(tunables)
    from contentpkg.fs import write_cache  # only when writing: pathlib, typing

    write_cache(path, marshal.dumps((identity, config.fields())))
    return config


# --- the report ----------------------------------------------------------------


class SearchDir:
    """One directory of a search list, and where it came from.

    A plain class, not a dataclass: each ``@dataclass`` generates its code
    when the module is imported, which costs ``cpk ldd`` more than a resolve.
    """

    __slots__ = ("directory", "element", "owner", "source")

    def __init__(
        self, directory: str, source: str, owner: str | None = None, element: str | None = None
    ) -> None:
        self.directory = directory  # as searched: expanded, no trailing slash ("" = the cwd)
        self.source = source  # RPATH, RUNPATH, LD_LIBRARY_PATH, system search path
        self.owner = owner  # path of the object whose RPATH/RUNPATH it is
        self.element = element  # the text of the element before expansion

    def __repr__(self) -> str:
        return (
            f"SearchDir({self.directory!r}, {self.source!r}, owner={self.owner!r}, "
            f"element={self.element!r})"
        )

    def describe(self) -> str:
        where = f" of {self.owner}" if self.owner else ""
        shown = self.directory or "."
        if self.element is not None and self.element.rstrip("/") != self.directory:
            return f"{self.source}{where}: {self.element} = {shown}"
        return f"{self.source}{where}: {shown}"


class LoadedObject:
    """One object the loader maps (or would have, when missing)."""

    __slots__ = (
        "also_requested_by",
        "detail",
        "hwcaps",
        "name",
        "path",
        "reason",
        "requested_by",
        "search",
        "searched",
        "skipped",
        "soname",
    )  # fmt: skip

    def __init__(
        self,
        name: str,  # the name first requested (DT_NEEDED, LD_PRELOAD, PT_INTERP)
        path: str | None,  # the path it is opened under; None when missing
        requested_by: str | None,  # the requester's path, "LD_PRELOAD"; None: interpreter
        reason: str,  # one of the reason constants above
        detail: str,  # what found it, in words
        soname: str | None = None,
        hwcaps: str | None = None,  # subdirectory (glibc-hwcaps/x86-64-v3, tls, ...)
        search: SearchDir | None = None,  # the directory that found it
        searched: tuple[str, ...] = (),  # for a missing object: what was searched
        skipped: tuple[str, ...] = (),  # candidates passed over (wrong class/machine/OS)
        also_requested_by: list[str] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.requested_by = requested_by
        self.reason = reason
        self.detail = detail
        self.soname = soname
        self.hwcaps = hwcaps
        self.search = search
        self.searched = searched
        self.skipped = skipped
        self.also_requested_by = [] if also_requested_by is None else also_requested_by

    def __repr__(self) -> str:
        return f"LoadedObject({self.name!r}, {self.path!r}, reason={self.reason!r})"

    @property
    def missing(self) -> bool:
        return self.path is None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "real_path": os.path.realpath(self.path) if self.path else None,
            "soname": self.soname,
            "requested_by": self.requested_by,
            "also_requested_by": self.also_requested_by,
            "reason": self.reason,
            "detail": self.detail,
            "hwcaps": self.hwcaps,
            "directory": self.search.directory if self.search else None,
            "element": self.search.element if self.search else None,
            "owner": self.search.owner if self.search else None,
            "searched": list(self.searched),
            "skipped": list(self.skipped),
        }


class Request:
    """A request satisfied by an object already loaded (a plain class: see SearchDir)."""

    __slots__ = ("name", "path", "requested_by", "would_find", "would_reason")

    def __init__(
        self,
        name: str,
        requested_by: str,
        path: str,
        would_find: str | None = None,
        would_reason: str | None = None,
    ) -> None:
        self.name = name
        self.requested_by = requested_by
        self.path = path  # the loaded object's path
        self.would_find = would_find  # what the requester's own search finds instead
        self.would_reason = would_reason

    def __repr__(self) -> str:
        return f"Request({self.name!r}, {self.requested_by!r}, {self.path!r})"


class LoadReport:
    """Everything the loader maps for one file, in its order."""

    __slots__ = (
        "error",
        "file",
        "interpreter",
        "mode",
        "objects",
        "origin",
        "shared",
        "soname",
        "static",
        "warnings",
    )  # fmt: skip

    def __init__(
        self,
        file: str,
        mode: Mode,
        origin: str | None,  # $ORIGIN of the main object
        interpreter: str | None,
        soname: str | None,
        objects: list[LoadedObject],  # load order, missing ones in place (as ldd lists)
        shared: list[Request] | None = None,  # "already loaded" requests
        error: str | None = None,  # a fatal loader error; loading stopped there
        warnings: list[str] | None = None,
        static: bool = False,
    ) -> None:
        self.file = file
        self.mode = mode
        self.origin = origin
        self.interpreter = interpreter
        self.soname = soname
        self.objects = objects
        self.shared = [] if shared is None else shared
        self.error = error
        self.warnings = [] if warnings is None else warnings
        self.static = static

    def __repr__(self) -> str:
        return f"LoadReport({self.file!r}, {self.mode!r}, <{len(self.objects)} objects>)"

    @property
    def missing(self) -> list[LoadedObject]:
        return [o for o in self.objects if o.path is None]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "mode": self.mode,
            "origin": self.origin,
            "interpreter": self.interpreter,
            "soname": self.soname,
            "static": self.static,
            "objects": [o.to_json() for o in self.objects],
            "missing": [o.name for o in self.missing],
            "already_loaded": [
                {
                    "name": r.name,
                    "requested_by": r.requested_by,
                    "path": r.path,
                    "would_find": r.would_find,
                    "would_reason": r.would_reason,
                }
                for r in self.shared
            ],
            "error": self.error,
            "warnings": self.warnings,
        }


# --- filesystem probes, shared by the searches of one or many resolves ----------


class Probe:
    """Caches what the loader learns about the filesystem.

    Like ld.so, which remembers per directory and subdirectory whether it
    exists, a Probe remembers directory existence and the ELF facts of files
    by identity; pass one Probe to many resolve() calls over an unchanging
    tree (as the system comparison does) to skip repeated work.
    """

    def __init__(self) -> None:
        self.dirs: dict[str, bool] = {}
        self.elf: dict[tuple[int, int, int, int], ElfInfo | ElfError] = {}

    def isdir(self, path: str) -> bool:
        known = self.dirs.get(path)
        if known is None:
            known = self.dirs[path] = os.path.isdir(path)
        return known

    def info(self, path: str, st: os.stat_result) -> ElfInfo:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        got = self.elf.get(key)
        if got is None:
            try:
                got = read_elf(path)
            except ElfError as exc:
                got = exc
            self.elf[key] = got
        if isinstance(got, ElfError):
            raise got
        return got


class _Fatal(Exception):
    """ld.so gives up the whole load (what _dl_signal_error does)."""


def _special(path: str, mode: int) -> str:
    """The load error for a candidate that is a FIFO, a device or a socket.

    glibc's open_verify opens any candidate and reads its ELF header: a
    FIFO blocks the program there until a writer comes, ``/dev/zero`` ends
    the load with "invalid ELF header", ``/dev/null`` with "file too
    short". Either way the load does not go on past it, so the emulation
    stops there too; but it never opens the file, since reading a FIFO
    would hang ``cpk ldd`` and opening some devices has effects.
    """
    what = file_kind(mode)
    blocks = "blocks opening it" if stat.S_ISFIFO(mode) else "stops at it"
    return f"{path}: {what}, not a regular file (ld.so {blocks}; cpk does not open it)"


class _Candidate:
    __slots__ = ("info", "path", "st")

    def __init__(self, path: str, st: os.stat_result, info: ElfInfo) -> None:
        self.path = path
        self.st = st
        self.info = info


# --- link maps -----------------------------------------------------------------


class _Map:
    """One link map (glibc's struct link_map), as much as the search needs."""

    __slots__ = (
        "file_id",
        "info",
        "kind",
        "loader",
        "name",
        "names",
        "origin",
        "realname",
        "report",
        "reserved",
        "rpath",
        "runpath",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        realname: str,
        info: ElfInfo | None,
        origin: str | None,
        loader: _Map | None,
        file_id: tuple[int, int] | None,
        kind: str,  # main, rtld, vdso, lib, faked
        names: list[str],
    ) -> None:
        self.name = name
        self.realname = realname
        self.info = info
        self.origin = origin
        self.loader = loader
        self.file_id = file_id
        self.kind = kind
        self.names = names
        self.report: LoadedObject | None = None
        self.reserved = False
        self.rpath: list[SearchDir] | None = None
        self.runpath: list[SearchDir] | None = None

    @property
    def soname(self) -> str | None:
        return self.info.soname if self.info else None

    @property
    def has_runpath(self) -> bool:
        return bool(self.info and self.info.runpath is not None)

    @property
    def nodeflib(self) -> bool:
        return bool(self.info and self.info.nodeflib)


def _origin_of(realname: str) -> str | None:
    """l_origin of an object opened as realname (_dl_new_object): textual."""
    if not realname:
        return None
    if realname.startswith("/"):
        full = realname
    else:
        try:
            cwd = os.getcwd()
        except OSError:
            return None
        full = (cwd if cwd.endswith("/") else cwd + "/") + realname
    cut = full.rfind("/")
    return full[:cut] if cut > 0 else "/"


# --- dynamic string tokens -----------------------------------------------------


def _is_dst(text: str, at: int, ref: str) -> int:
    """Length of DST ref at text[at:] (after the '$'), braces counted; 0 if none."""
    curly = at < len(text) and text[at] == "{"
    start = at + 1 if curly else at
    end = start + len(ref)
    if text[start:end] != ref:
        return 0
    nxt = text[end] if end < len(text) else ""
    if curly:
        return len(ref) + 2 if nxt == "}" else 0
    if nxt and (nxt.isascii() and (nxt.isalnum() or nxt == "_")):
        return 0
    return len(ref)


def expand_dst(text: str, origin: str | None, config: LoaderConfig) -> str:
    """_dl_dst_substitute: "" when a known token has no value (element dropped)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        i += 1
        for ref, value in (("ORIGIN", origin), ("PLATFORM", config.platform), ("LIB", config.lib)):
            n = _is_dst(text, i, ref)
            if n:
                if value is None:
                    return ""
                out.append(value)
                i += n
                break
        else:
            out.append("$")
    return "".join(out)


def _describe_list(dirs: list[SearchDir]) -> list[str]:
    """One line per owner of a search list: "RUNPATH of X: a, b"."""
    out: list[str] = []
    last: tuple[str, str | None] | None = None
    for d in dirs:
        shown = d.directory or "."
        if d.element is not None and d.element.rstrip("/") != d.directory:
            shown = f"{d.element} = {shown}"
        key = (d.source, d.owner)
        if key == last:
            out[-1] += f", {shown}"
        else:
            out.append(f"{d.source}{f' of {d.owner}' if d.owner else ''}: {shown}")
            last = key
    return out


def _split_path(text: str, seps: str) -> list[str]:
    """strsep over every separator: empty elements are kept (they mean the cwd)."""
    for sep in seps[1:]:
        text = text.replace(sep, seps[0])
    return text.split(seps[0])


# --- the emulation -------------------------------------------------------------


class _Loader:
    def __init__(
        self,
        config: LoaderConfig,
        env: Mapping[str, str],
        probe: Probe,
        explain: bool,
    ) -> None:
        self.config = config
        self.probe = probe
        self.explain = explain
        self.cache_problem: str | None = None
        try:
            self.cache = ldcache.read_cache(config.cache_path)
        except ldcache.CacheError as exc:
            # ld.so ignores a cache it cannot read; so do we, but say so.
            self.cache, self.cache_problem = None, str(exc)
        self.chain: list[_Map] = []
        #: The first object of the chain each name or file identity matches.
        self.named: dict[str, _Map] = {}
        self.by_file: dict[tuple[int, int], _Map] = {}
        self.main: _Map | None = None
        self.env_dirs: list[SearchDir] = []
        self.llp = env.get("LD_LIBRARY_PATH")
        self.preload = env.get("LD_PRELOAD")
        self.shared: list[Request] = []
        #: own_search's answers, by name and whose search lists apply.
        self.own_searches: dict[tuple[object, ...], tuple[_Candidate | None, str]] = {}
        # ld.so keeps, per directory and subdirectory, whether it exists.
        self.status: dict[str, bool] = {}
        self.osversion = _kernel_version()
        self.subdirs = config.subdirs
        self.cache_args = {
            "flags_ok": ldcache.accepted_flags(config.machine),
            "hwcaps_priority": config.hwcaps_priority,
            "isa_level": config.isa_level,
            "legacy_hwcap_ok": config.legacy_hwcap_ok,
            "platform": config.platform_bit,
        }
        self.system_prefixes = tuple(d.rstrip("/") + "/" for d in config.system_dirs)
        self.report_file = ""

    # -- search lists --

    def decompose(self, text: str, owner: _Map, source: str, seps: str = ":") -> list[SearchDir]:
        """fillin_rpath: expand, normalise the trailing slash, drop duplicates."""
        if text == "":
            return []
        out: list[SearchDir] = []
        seen: set[str] = set()
        where = None if source == "LD_LIBRARY_PATH" else self.requester_name(owner)
        for element in _split_path(text, seps):
            directory = element
            if element:
                directory = expand_dst(element, owner.origin, self.config)
                if not directory:
                    continue
                directory = directory.rstrip("/") or "/"
            if directory in seen:
                continue
            seen.add(directory)
            out.append(SearchDir(directory, source, where, element))
        return out

    def rpath_of(self, m: _Map) -> list[SearchDir]:
        if m.rpath is None:
            text = None
            if m.info is not None and m.info.runpath is None:
                text = m.info.rpath
            m.rpath = self.decompose(text, m, "RPATH") if text is not None else []
        return m.rpath

    def runpath_of(self, m: _Map) -> list[SearchDir]:
        if m.runpath is None:
            text = m.info.runpath if m.info is not None else None
            m.runpath = self.decompose(text, m, "RUNPATH") if text is not None else []
        return m.runpath

    def system_dirs(self) -> list[SearchDir]:
        return [SearchDir(d, "system search path") for d in self.config.system_dirs]

    # -- opening candidates --

    def open_verify(self, path: str, skipped: list[str]) -> _Candidate | int:
        """Open a candidate as ld.so's open_verify does.

        Returns the candidate, or the errno the loader is left with (ENOENT
        for a file it passes over); raises _Fatal for a file it refuses.
        """
        try:
            st = os.stat(path)
        except OSError as exc:
            return exc.errno or errno.ENOENT
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise _Fatal(_special(path, st.st_mode))
        try:
            # O_NONBLOCK: should a FIFO take the file's place after the
            # stat, opening it still does not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return exc.errno or errno.ENOENT
        try:
            opened = os.fstat(fd)
            if not (stat.S_ISREG(opened.st_mode) or stat.S_ISDIR(opened.st_mode)):
                raise _Fatal(_special(path, opened.st_mode))
            try:
                head = os.read(fd, _FILEBUF_SIZE)
            except OSError as exc:
                why = os.strerror(exc.errno or 0)
                raise _Fatal(f"{path}: cannot read file data: {why}") from None
            verdict = _verify_header(head, fd, self.config, self.osversion)
            if verdict is not None:
                if verdict.startswith("skip:"):
                    skipped.append(f"{path} ({verdict[5:]})")
                    return errno.ENOENT
                raise _Fatal(f"{path}: {verdict}")
            st = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            info = self.probe.info(path, st)
        except ElfError as exc:
            raise _Fatal(str(exc)) from None
        return _Candidate(path, st, info)

    def open_path(
        self, name: str, dirs: list[SearchDir], skipped: list[str]
    ) -> tuple[_Candidate, SearchDir, str] | None:
        """open_path: every subdirectory of every directory, in order."""
        subdirs = self.subdirs
        for sd in dirs:
            base = sd.directory if sd.directory in ("", "/") else sd.directory + "/"
            here_any = False
            last = errno.ENOENT
            for sub in subdirs:
                subdir = base + (sub + "/" if sub else "")
                # Relative directories are never marked missing (the cwd may
                # change); absolute ones are checked once.
                exists = self.status.get(subdir)
                if exists is False:
                    continue
                got = self.open_verify(subdir + name, skipped)
                if isinstance(got, _Candidate):
                    self.status[subdir] = True
                    return got, sd, sub
                last = got
                if exists is None:
                    if not subdir or not subdir.startswith("/"):
                        exists = True
                    else:
                        try:
                            exists = self.probe.isdir(subdir.rstrip("/") or "/")
                        except OSError:
                            exists = False
                        if not exists:
                            last = errno.ENOENT
                    self.status[subdir] = exists
                here_any |= exists
            if here_any and last not in (errno.ENOENT, errno.EACCES):
                # "The file exists and is readable, but something went
                # wrong": ld.so gives up this list (not the whole search).
                return None
        return None

    def search(
        self, loader: _Map, name: str
    ) -> tuple[_Candidate | None, str, str, SearchDir | None, str | None, list[str], list[str]]:
        """_dl_map_object's search for a name without a slash.

        Returns (candidate, reason, detail, dir, hwcaps, searched, skipped).
        """
        assert self.main is not None
        searched: list[str] = []
        skipped: list[str] = []
        found = None

        def attempt(dirs: list[SearchDir], reason: str) -> bool:
            nonlocal found
            if not dirs:
                return False
            searched.extend(_describe_list(dirs))
            hit = self.open_path(name, dirs, skipped)
            if hit is None:
                return False
            cand, sd, sub = hit
            found = (cand, reason, sd.describe(), sd, sub or None)
            return True

        if not loader.has_runpath:
            did_main = False
            m: _Map | None = loader
            while m is not None:
                dirs = self.rpath_of(m)
                if dirs:
                    if attempt(dirs, RPATH):
                        break
                    did_main |= m is self.main
                m = m.loader
            if found is None and not did_main:
                attempt(self.rpath_of(self.main), RPATH)
        if found is None:
            attempt(self.env_dirs, LD_LIBRARY_PATH)
        if found is None:
            attempt(self.runpath_of(loader), RUNPATH)
        if found is None and self.cache is not None:
            searched.append(f"ld.so cache {self.config.cache_path}")
            entry = self.cache.lookup(name, **self.cache_args)  # type: ignore[arg-type]
            if (
                entry is not None
                and loader.nodeflib
                and entry.path.startswith(self.system_prefixes)
            ):
                # DF_1_NODEFLIB refuses cache hits inside the system directories.
                skipped.append(f"{entry.path} (ld.so cache, in a system directory: NODEFLIB)")
                entry = None
            if entry is not None:
                got = self.open_verify(entry.path, skipped)
                if isinstance(got, _Candidate):
                    hw = f"glibc-hwcaps/{entry.hwcaps}" if entry.hwcaps else None
                    found = (got, LD_SO_CACHE, f"ld.so cache {self.config.cache_path}", None, hw)
        if found is None:
            if loader.nodeflib:
                searched.append("system search path: skipped (NODEFLIB)")
            else:
                attempt(self.system_dirs(), DEFAULT_DIR)
        if found is None:
            return None, MISSING, "not found", None, None, searched, skipped
        cand, reason, detail, sd, sub = found
        return cand, reason, detail, sd, sub, searched, skipped

    # -- mapping --

    def requester_name(self, m: _Map) -> str:
        return self.report_file if m.kind == "main" else m.realname

    def map_object(self, loader: _Map, name: str, requester: str, trace: bool = True) -> _Map:
        """_dl_map_object: an already loaded object, a new one, or a faked one."""
        m = self.named.get(name)
        if m is not None:
            if m.soname == name and name not in m.names:
                m.names.append(name)
            self.note_shared(loader, name, requester, m)
            return m
        skipped: list[str] = []
        searched: list[str] = []
        search_dir = None
        sub = None
        if "/" not in name:
            cand, reason, detail, search_dir, sub, searched, skipped = self.search(loader, name)
        else:
            realname = expand_dst(name, loader.origin, self.config) if loader else name
            got = self.open_verify(realname, skipped) if realname else errno.ENOENT
            cand = got if isinstance(got, _Candidate) else None
            reason, detail = SLASH, "the name is a path"
            searched = [realname]
        if cand is None:
            if not trace:
                raise _Fatal(f"{name}: cannot open shared object file")
            faked = _Map(name, name, None, None, loader, None, "faked", [name])
            faked.report = LoadedObject(
                name=name,
                path=None,
                requested_by=requester,
                reason=MISSING,
                detail="not found",
                searched=tuple(searched),
                skipped=tuple(skipped),
            )
            self.add(faked)
            return faked
        # _dl_map_object_from_fd: the same file already mapped is reused.
        file_id = (cand.st.st_dev, cand.st.st_ino)
        m = self.by_file.get(file_id)
        if m is not None:
            if name not in m.names:
                m.names.append(name)
                self.named.setdefault(name, m)
            self.note_shared(loader, name, requester, m)
            return m
        info = cand.info
        if info.type != ET_DYN:
            raise _Fatal(f"{cand.path}: cannot dynamically load executable")
        if not info.has_dynamic:
            raise _Fatal(f"{cand.path}: object file has no dynamic section")
        if info.flags_1 & _DF_1_PIE:
            raise _Fatal(f"{cand.path}: cannot dynamically load position-independent executable")
        new = _Map(name, cand.path, info, _origin_of(cand.path), loader, file_id, "lib", [name])
        new.report = LoadedObject(
            name=name,
            path=cand.path,
            requested_by=requester,
            reason=reason,
            detail=detail,
            soname=info.soname,
            hwcaps=sub,
            search=search_dir,
            skipped=tuple(skipped),
        )
        self.add(new)
        return new

    def add(self, m: _Map) -> None:
        """Append m to the loader's list, and index it by what a request
        matches (its names, real name and DT_SONAME; its file): the first
        object in the list that matches wins, as ld.so's walk of the list
        finds it, without walking it for every request."""
        self.chain.append(m)
        if m.kind == "faked":
            return  # never matched: a later request searches again
        for key in (*m.names, m.realname, m.soname):
            if key is not None:
                self.named.setdefault(key, m)
        if m.file_id is not None:
            self.by_file.setdefault(m.file_id, m)

    def note_shared(self, loader: _Map, name: str, requester: str, m: _Map) -> None:
        """Record a request that an already loaded object satisfied."""
        path = m.report.path if m.report and m.report.path else self.requester_name(m)
        if m.report is not None and m.report.requested_by is None:
            m.report.requested_by = requester  # the interpreter, first needed here
        elif m.report is not None:
            m.report.also_requested_by.append(requester)
        would = would_reason = None
        if self.explain and "/" not in name and m.kind in ("lib", "rtld"):
            cand, detail = self.own_search(loader, name)
            # Only a different file is worth telling: the same one reached by
            # another path changes nothing.
            if (
                cand is not None
                and (m.file_id is None or (cand.st.st_dev, cand.st.st_ino) != m.file_id)
                and os.path.realpath(cand.path) != os.path.realpath(path)
            ):
                would, would_reason = cand.path, detail
        self.shared.append(Request(name, requester, path, would, would_reason))

    def own_search(self, loader: _Map, name: str) -> tuple[_Candidate | None, str]:
        """(what loader's own search finds for name, and why), for the report.

        Every library asks for libc and its like again, and most search the
        same lists (no RPATH or RUNPATH of their own): a program with fifty
        libraries would search a thousand times for sixty names. The answer
        depends only on the name and whose search lists apply (the RPATH
        owners up the chain, the RUNPATH owner, DF_1_NODEFLIB), so it is
        searched once per such key.
        """
        owners: tuple[int, ...] = ()
        if not loader.has_runpath:
            chain = []
            m: _Map | None = loader
            while m is not None:
                if self.rpath_of(m):
                    chain.append(id(m))
                m = m.loader
            owners = tuple(chain)
        runpath = id(loader) if self.runpath_of(loader) else None
        key = (name, owners, runpath, loader.nodeflib)
        known = self.own_searches.get(key)
        if known is None:
            try:
                cand, _reason, detail, *_ = self.search(loader, name)
            except _Fatal:
                cand, detail = None, ""
            known = self.own_searches[key] = (cand, detail)
        return known

    # -- the whole load --

    def run(self, path: str, mode: Mode, info: ElfInfo) -> LoadReport:
        config = self.config
        if mode == "exec":
            origin = os.path.dirname(os.path.realpath(path)) or "/"
        else:
            origin = _origin_of(path)
        self.report_file = path
        # The main object is known by no name but its DT_SONAME: ld.so calls
        # it "" even when it was named on its command line (_dl_new_object).
        main = _Map(path, "", info, origin, None, None, "main", [""])
        self.main = main
        interp = info.interpreter if mode == "exec" else config.interpreter
        report = LoadReport(
            file=path,
            mode=mode,
            origin=origin,
            interpreter=interp,
            soname=info.soname,
            objects=[],
        )
        if self.cache_problem:
            report.warnings.append(f"{self.cache_problem}: searched without it, as ld.so does")
        if interp is not None and not _same_file(interp, config.interpreter):
            report.warnings.append(
                f"{path} asks for the interpreter {interp}; this report follows the rules "
                f"of the system loader {config.interpreter}"
            )
        if interp is None:
            report.static = True  # the kernel runs it without any loader
            return report
        rtld_info = None
        try:
            rtld_info = read_elf(config.interpreter)
        except (ElfError, OSError):
            report.warnings.append(f"cannot read the loader {config.interpreter}")
        rtld_name = info.interpreter if info.interpreter else config.interpreter
        rtld = _Map(
            rtld_name,
            interp,
            rtld_info,
            _origin_of(interp),
            None,
            None,
            "rtld",
            [rtld_name] + ([rtld_info.soname] if rtld_info and rtld_info.soname else []),
        )
        rtld.report = LoadedObject(
            name=rtld_name,
            path=interp,
            requested_by=None,
            reason=INTERPRETER,
            detail="the program interpreter (PT_INTERP)"
            if mode == "exec"
            else "the loader itself (ld.so)",
            soname=rtld_info.soname if rtld_info else None,
        )
        vdso_name = _VDSO.get(config.machine)
        # The loader's list starts as: the program, ld.so, the vDSO (rtld.c).
        self.chain, self.named, self.by_file = [], {}, {}
        self.add(main)
        self.add(rtld)
        if vdso_name:
            self.add(_Map(vdso_name, vdso_name, None, None, None, None, "vdso", []))
        if self.llp:
            self.env_dirs = self.decompose(self.llp, main, "LD_LIBRARY_PATH", ":;")
        known = [main]
        main.reserved = True
        try:
            for pre in self.preloads():
                before = len(self.chain)
                try:
                    m = self.map_object(main, pre, "LD_PRELOAD", trace=False)
                except _Fatal as exc:
                    # rtld.c's do_preload: reported and ignored.
                    report.warnings.append(
                        f"object '{pre}' from LD_PRELOAD cannot be preloaded ({exc}): ignored"
                    )
                    continue
                if len(self.chain) > before and not m.reserved:
                    m.reserved = True
                    known.append(m)
            # _dl_map_object_deps: breadth-first over DT_NEEDED.
            i = 0
            while i < len(known):
                m = known[i]
                i += 1
                if m.info is None or m.kind == "faked":
                    continue
                for needed in m.info.needed:
                    name = expand_dst(needed, m.origin, config) if "$" in needed else needed
                    if not name:
                        continue
                    dep = self.map_object(m, name, self.requester_name(m))
                    if not dep.reserved:
                        dep.reserved = True
                        known.append(dep)
        except _Fatal as exc:
            report.error = str(exc)
            known = []  # ld.so stops here; list what it had mapped
        report.objects = self.ordered(known, rtld)
        report.shared = self.shared
        # What ldd calls "statically linked": no DT_NEEDED in the main object.
        report.static = not info.needed
        return report

    def preloads(self) -> Iterator[str]:
        if self.preload:
            for word in _split_path(self.preload, " :"):
                if word:
                    yield word

    def ordered(self, known: list[_Map], rtld: _Map) -> list[LoadedObject]:
        """The loader's list once ld.so is moved to its place in the search list.

        rtld.c takes ld.so out of the list and, when some DT_NEEDED named it,
        puts it back right after the object before it in the breadth-first
        search list; otherwise it stays mapped but unlisted, and is shown
        last here.
        """
        chain = [m for m in self.chain if m.kind not in ("main", "rtld")]
        searchlist = [m for m in known if m.kind != "faked"]
        if rtld in searchlist:
            before = searchlist[searchlist.index(rtld) - 1]
            chain.insert(0 if before.kind == "main" else chain.index(before) + 1, rtld)
        else:
            chain.append(rtld)
        return [m.report for m in chain if m.report is not None]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def _kernel_version() -> int:
    """The running kernel as ld.so's dl_osversion (major << 16 | minor << 8 | patch)."""
    # The first three runs of digits ("6.1.0-18-amd64" -> 6, 1, 0).
    release = os.uname().release
    spaced = "".join(c if c in "0123456789" else " " for c in release)
    parts = spaced.split()[:3]
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (min(nums[0], 255) << 16) | (min(nums[1], 255) << 8) | min(nums[2], 255)


def _verify_header(head: bytes, fd: int, config: LoaderConfig, osversion: int) -> str | None:
    """open_verify's checks: None to use the file, "skip:why" to pass over it,
    or the loader's error message for a file that stops the load."""
    is64 = config.elf_class == 64
    ehdr_size = 64 if is64 else 52
    if len(head) < ehdr_size:
        return "file too short"
    if head[:4] != ELF_MAGIC:
        return "invalid ELF header"
    if head[4] != (2 if is64 else 1):
        return f"skip:ELF class {32 if head[4] == 1 else 64 if head[4] == 2 else head[4]}"
    little = sys.byteorder == "little"
    if head[5] != (1 if little else 2):
        return f"ELF file data encoding not {'little' if little else 'big'}-endian"
    if head[6] != 1:
        return "ELF file version ident does not match current one"
    osabi, abiversion = head[7], head[8]
    if osabi not in (0, 3):
        return "ELF file OS ABI invalid"
    if not (abiversion == 0 or (osabi == 3 and abiversion < _LIBC_ABI_MAX)):
        return "ELF file ABI version invalid"
    if any(head[9:16]):
        return "nonzero padding in e_ident"
    end = "<" if little else ">"
    if is64:
        e_type, e_machine, e_version = struct.unpack_from(end + "HHI", head, 16)
        e_phoff, e_phentsize, e_phnum = (
            struct.unpack_from(end + "Q", head, 32)[0],
            *struct.unpack_from(end + "HH", head, 54),
        )
        ph_fmt, ph_size = end + "IIQQQQQQ", 56
    else:
        e_type, e_machine, e_version = struct.unpack_from(end + "HHI", head, 16)
        e_phoff, e_phentsize, e_phnum = (
            struct.unpack_from(end + "I", head, 28)[0],
            *struct.unpack_from(end + "HH", head, 42),
        )
        ph_fmt, ph_size = end + "IIIIIIII", 32
    if e_version != 1:
        return "ELF file version does not match current one"
    if e_machine != config.machine:
        return f"skip:machine {MACHINES.get(e_machine, e_machine)}"
    if e_type not in (ET_DYN, ET_EXEC):
        return "only ET_DYN and ET_EXEC can be loaded"
    if e_phentsize != ph_size:
        return "ELF file's phentsize not the expected size"
    length = e_phnum * ph_size
    # What the header points at is read only inside the file: a hostile
    # offset or size (up to 2**64) must not become a huge allocation.
    size = os.fstat(fd).st_size
    phdrs = _read_at(fd, head, size, e_phoff, length)
    if phdrs is None:
        return "cannot read file data"
    for i in range(e_phnum):
        raw = struct.unpack_from(ph_fmt, phdrs, i * ph_size)
        if is64:
            p_type, _flags, p_offset, _va, _pa, p_filesz, _memsz, p_align = raw
        else:
            p_type, p_offset, _va, _pa, p_filesz, _memsz, _flags, p_align = raw
        if p_type != _PT_NOTE or p_filesz < 32 or p_align not in (4, 8):
            continue
        note = _read_at(fd, head, size, p_offset, p_filesz)
        if note is None:
            return "cannot read file data"
        verdict = _abi_note(note, p_align, end, osversion)
        if verdict is None:
            continue
        return verdict or None
    return None


def _read_at(fd: int, head: bytes, size: int, offset: int, length: int) -> bytes | None:
    """length bytes at offset: from the head already read, else from the file;
    None past the file's end (size) or on a short read, as ld.so fails."""
    data = head[offset : offset + length]
    if len(data) < length:
        if offset + length > size:
            return None
        data = os.pread(fd, length, offset)
        if len(data) != length:
            return None
    return data


def _abi_note(note: bytes, align: int, end: str, osversion: int) -> str | None:
    """The NT_GNU_ABI_TAG verdict of one PT_NOTE: None if it has none,
    "" to accept, "skip:..." to pass over the file."""
    expected = struct.pack(end + "III", 4, 16, 1) + b"GNU\0"
    pos, size = 0, len(note)
    while True:
        if pos + 32 > len(note):
            return None
        if note[pos : pos + 16] == expected:
            break
        namesz, descsz = struct.unpack_from(end + "II", note, pos)
        step = ((((12 + namesz) + align - 1) & -align) + descsz + align - 1) & -align
        if size - 32 < step:
            return None
        size -= step
        pos += step
    os_, major, minor, patch = struct.unpack_from(end + "IIII", note, pos + 16)
    version = (major & 0xFF) << 16 | (minor & 0xFF) << 8 | (patch & 0xFF)
    if os_ != 0:
        return f"skip:ABI note for OS {os_}"
    if osversion and osversion < version:
        return f"skip:needs kernel {major}.{minor}.{patch}"
    return ""


# --- the public entry point ----------------------------------------------------


def resolve(
    path: str | os.PathLike[str],
    env: Mapping[str, str],
    *,
    mode: Mode | None = None,
    explain: bool = False,
    probe: Probe | None = None,
    config: LoaderConfig | None = None,
) -> LoadReport:
    """Predict every object ld.so maps for path, in its order, and why.

    env supplies LD_LIBRARY_PATH, LD_PRELOAD and GLIBC_TUNABLES (the
    environment the program would start with: the caller's context's).
    mode "exec" is a program started by the kernel (its
    $ORIGIN is its real directory); "list" is a file handed to the loader as
    ``ld.so --list FILE`` does, which is how a library is examined ($ORIGIN is
    the directory of the path given). The default is "exec" for programs (an
    interpreter, ET_EXEC or a static PIE) and "list" for the rest. explain adds, for each request an
    already loaded object satisfied, what the requester's own search would have
    found instead. Raises LoaderError for a file the loader cannot take at all
    (not ELF, malformed, another architecture); everything else, including
    missing libraries and fatal loader errors, is in the report.
    """
    name = os.fspath(path)
    config = config or system_config(env.get("GLIBC_TUNABLES", ""))
    try:
        info = read_elf(name)
    except NotElf:
        raise LoaderError(f"{name}: not an ELF file") from None
    except ElfError as exc:
        raise LoaderError(str(exc)) from None
    try:
        check_native(info, name)
    except ElfError as exc:
        raise LoaderError(str(exc)) from None
    if mode is None:
        # Programs (an interpreter, ET_EXEC, or a static PIE) are started by
        # the kernel; anything else can only be handed to the loader.
        program = info.is_executable or bool(info.flags_1 & _DF_1_PIE)
        mode = "exec" if program else "list"
    if mode == "list" and info.type not in (ET_DYN, ET_EXEC):
        raise LoaderError(f"{name}: not an executable or shared library (ELF type {info.type})")
    loader = _Loader(config, env, probe or Probe(), explain)
    return loader.run(name, mode, info)


def resolve_many(
    paths: Iterable[str | os.PathLike[str]],
    env: Mapping[str, str],
    **kwargs: object,
) -> Iterator[tuple[str, LoadReport | LoaderError]]:
    """resolve() over many files sharing one Probe; errors are yielded, not raised."""
    probe = Probe()
    for p in paths:
        try:
            yield os.fspath(p), resolve(p, env, probe=probe, **kwargs)  # type: ignore[arg-type]
        except LoaderError as exc:
            yield os.fspath(p), exc
