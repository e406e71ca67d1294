"""Reading Debian binary packages (``.deb``) without dpkg.

Hand-written rather than calling ``dpkg-deb``: cpk must read ``.deb`` files
on machines without dpkg, and the format is small. A ``.deb`` is an ``ar``
archive (a 60-byte text header per member; trivial to parse with ``struct``
-free slicing) holding ``debian-binary`` (the format version, ``2.0``), a
compressed ``control.tar`` (the ``control`` file and maintainer scripts) and
a compressed ``data.tar`` (the files). Python's :mod:`tarfile` reads the tar
archives and their gzip, xz, bzip2 and lzma compression; zstd (Ubuntu's
default) comes from the ``zstandard`` module when installed, else the
``zstd`` command.

Extraction is ours, not :meth:`tarfile.TarFile.extractall`, because paths
are mapped into a prefix layout (``./usr/bin/jq`` becomes ``bin/jq``, as do
pre-usrmerge ``./bin`` paths) and symlink targets are rewritten to match;
the checks that keep every write inside the destination are done on the
mapped paths, where they matter.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from contentpkg.errors import CpkError, InvalidInputError
from contentpkg.store.hashing import META_DIR, FileRecord

AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
_CHUNK = 1 << 20
_ELF = b"\x7fELF"

#: The compressions dpkg writes (or once wrote), by member-name suffix.
#: ".lzma" is LZMA-alone, which lzma's automatic format detection reads.
_COMPRESSIONS = frozenset({"", ".gz", ".xz", ".lzma", ".bz2", ".zst"})

#: The control file of a binary package is one paragraph and small; a
#: larger one is not a control file (and is not read whole into memory).
_MAX_CONTROL = 4 << 20

_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.\-]*")
_VERSION = re.compile(r"[A-Za-z0-9.+~:\-]+")
_RELATION = re.compile(
    r"""\s*(?P<name>[A-Za-z0-9][A-Za-z0-9+.\-]*)
        (?::[A-Za-z0-9\-]+)?                      # :any, :amd64, :native
        \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[A-Za-z0-9][^()\s]*)\s*\))?
        \s*(?:\[[^\]]*\])?                        # architecture restriction
        \s*(?:<[^<>]*>\s*)*$                      # build profiles
    """,
    re.VERBOSE,
)

#: A dependency on one package, with its version constraint (``">= 2.34"``).
Relation = tuple[str, "str | None"]

#: Bounds on what one compressed tar member may expand to, counted on the
#: bytes actually decompressed (headers can lie). Real packages stay far
#: below the ratio: of 1,647 Debian 12 packages the highest was 178:1
#: (libjs-moment-timezone, 1.2 MB of xz holding 223 MB of tar), most under
#: 10:1; xz, bzip2 and zstd bombs reach thousands to one. Small members
#: may expand up to the floor whatever their ratio (a few KB of headers
#: compress to almost nothing), and nothing past the ceiling, which is the
#: same bound a wheel has.
MAX_RATIO = 1000
EXPANSION_FLOOR = 64 << 20
MAX_SIZE = 16 << 30


def expansion_limit(packed: int) -> int:
    """How many bytes a tar member of ``packed`` compressed bytes may give."""
    return min(MAX_SIZE, max(EXPANSION_FLOOR, MAX_RATIO * packed))


#: Scripts dpkg would run around unpacking; cpk does not run them.
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")


@dataclass(frozen=True)
class ArMember:
    """One member of the ``ar`` archive: its name and where its bytes are."""

    name: str
    offset: int
    size: int

    @property
    def compression(self) -> str:
        """The suffix after ``.tar`` (``.xz``, ``.zst``, ...; empty if none)."""
        return self.name.partition(".tar")[2]


@dataclass(frozen=True)
class DebPackage:
    """What a ``.deb`` says about itself, and where its data archive is."""

    path: Path
    sha256: str
    name: str
    version: str
    architecture: str
    #: Each group lists alternatives (``a | b``); arch qualifiers stripped.
    depends: list[list[Relation]]
    pre_depends: list[list[Relation]]
    provides: list[Relation]
    description: str  # the synopsis (first line)
    multi_arch: str | None
    source: str  # the source package's name (the package's own when absent)
    #: Every field of the control file as written; continuation lines joined
    #: with newlines, field names in their original case.
    control: dict[str, str] = field(repr=False)
    #: Names of the files in control.tar (``control``, ``md5sums``, scripts).
    control_files: list[str] = field(repr=False)
    data: ArMember = field(repr=False)

    @property
    def maintainer_scripts(self) -> list[str]:
        return [name for name in MAINTAINER_SCRIPTS if name in self.control_files]

    def control_field(self, name: str) -> str | None:
        """A control field by name, case-insensitively (as deb822 defines)."""
        return _get(self.control, name)

    @contextmanager
    def open_data(self) -> Iterator[tarfile.TarFile]:
        """The data archive as a streaming :class:`tarfile.TarFile`.

        Read errors while iterating it are tarfile's, zlib's or lzma's own
        exceptions; :func:`extract_data` turns them into one-line errors.
        """
        with (
            open(self.path, "rb") as f,
            _open_tar(_Slice(f, self.data.offset, self.data.size), self.data, self.path) as tar,
        ):
            yield tar


# --- reading -----------------------------------------------------------------


def read_deb(path: Path) -> DebPackage:
    """Parse a ``.deb``: check its structure, read its control file, hash it.

    The whole ``ar`` layer is checked here (every member inside the file),
    so a truncated download is refused before anything is unpacked.
    """
    label = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
            members = _read_ar(f, size, label)
            version = _read_member(f, members[0], 64).decode("ascii", "replace")
            major = version.strip().partition(".")[0]
            if major != "2":
                raise CpkError(
                    f"{label}: debian-binary says format {version.strip()!r}; "
                    "only format 2.x is supported"
                )
            control_member = _find_member(members, "control.tar", label)
            data_member = _find_member(members, "data.tar", label)
            control_text, control_files = _read_control_tar(f, control_member, path)
    except OSError as exc:
        raise CpkError(f"{label}: {exc.strerror or exc}") from None

    control = parse_control(control_text, f"{label}: control")
    name = _required(control, "Package", label)
    if not _PACKAGE_NAME.fullmatch(name):
        raise CpkError(f"{label}: control: Package {name!r} is not a valid package name")
    version_text = _required(control, "Version", label)
    if not _VERSION.fullmatch(version_text):
        raise CpkError(f"{label}: control: Version {version_text!r} is not a valid version")
    source = (_get(control, "Source") or name).split("(")[0].strip() or name
    return DebPackage(
        path=path,
        sha256=digest.hexdigest(),
        name=name,
        version=version_text,
        architecture=_required(control, "Architecture", label),
        depends=parse_relations(_get(control, "Depends") or "", f"{label}: Depends"),
        pre_depends=parse_relations(_get(control, "Pre-Depends") or "", f"{label}: Pre-Depends"),
        provides=_flat(parse_relations(_get(control, "Provides") or "", f"{label}: Provides")),
        description=(_get(control, "Description") or "").split("\n")[0].strip(),
        multi_arch=_get(control, "Multi-Arch"),
        source=source,
        control=control,
        control_files=control_files,
        data=data_member,
    )


def _read_ar(f: IO[bytes], size: int, label: str) -> list[ArMember]:
    f.seek(0)
    if f.read(len(AR_MAGIC)) != AR_MAGIC:
        raise CpkError(f"{label}: not a Debian package (no ar archive header)")
    members: list[ArMember] = []
    offset = len(AR_MAGIC)
    while offset < size:
        f.seek(offset)
        header = f.read(_AR_HEADER)
        if len(header) < _AR_HEADER:
            # A lone padding byte at the very end is tolerated; anything
            # else is a header cut short.
            if header.strip(b"\n") == b"":
                break
            raise CpkError(f"{label}: truncated (ar member header cut short at byte {offset})")
        if header[58:60] != b"`\n":
            raise CpkError(f"{label}: corrupt ar member header at byte {offset}")
        try:
            name = header[0:16].decode("ascii").rstrip(" ").removesuffix("/")
            member_size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise CpkError(f"{label}: corrupt ar member header at byte {offset}") from None
        start = offset + _AR_HEADER
        if member_size < 0 or start + member_size > size:
            raise CpkError(
                f"{label}: truncated: member {name!r} declares {member_size} bytes, "
                f"but the file ends {size - start} bytes into it"
            )
        members.append(ArMember(name, start, member_size))
        offset = start + member_size + (member_size & 1)
    if not members:
        raise CpkError(f"{label}: empty ar archive, not a Debian package")
    if members[0].name != "debian-binary":
        raise CpkError(
            f"{label}: first member is {members[0].name!r}, not debian-binary; "
            "not a Debian binary package"
        )
    return members


def _find_member(members: list[ArMember], stem: str, label: str) -> ArMember:
    # dpkg ignores members whose names start with '_' (signatures and other
    # additions); any other unknown member is not ours to judge.
    found = [m for m in members if m.name == stem or m.name.startswith(stem + ".")]
    if not found:
        raise CpkError(f"{label}: no {stem} member; not a Debian binary package")
    if len(found) > 1:
        raise CpkError(f"{label}: more than one {stem} member ({', '.join(m.name for m in found)})")
    member = found[0]
    if member.compression not in _COMPRESSIONS:
        raise CpkError(f"{label}: {member.name}: unsupported compression {member.compression!r}")
    return member


def _read_member(f: IO[bytes], member: ArMember, limit: int) -> bytes:
    f.seek(member.offset)
    return f.read(min(member.size, limit))


def _read_control_tar(f: IO[bytes], member: ArMember, path: Path) -> tuple[str, list[str]]:
    label = f"{path}: {member.name}"
    names: list[str] = []
    text: bytes | None = None
    try:
        with _open_tar(_Slice(f, member.offset, member.size), member, path) as tar:
            for info in tar:
                name = posixpath.normpath(info.name)
                names.append(name)
                if name == "control" and info.isreg():
                    if info.size > _MAX_CONTROL:
                        raise CpkError(f"{label}: control file is {info.size} bytes; too large")
                    extracted = tar.extractfile(info)
                    assert extracted is not None
                    text = extracted.read()
    except _READ_ERRORS as exc:
        raise CpkError(f"{label}: truncated or corrupt ({_reason(exc)})") from None
    if text is None:
        raise CpkError(f"{label}: no control file inside")
    try:
        return text.decode("utf-8"), sorted(n for n in names if n != ".")
    except UnicodeDecodeError:
        raise CpkError(f"{label}: control file is not UTF-8") from None


# --- control files -----------------------------------------------------------


def parse_control(text: str, label: str) -> dict[str, str]:
    """The first paragraph of a deb822 file: fields with continuation lines.

    A continuation line (starting with a space or tab) is appended to the
    previous field after a newline, its one leading blank removed; `` .``
    lines (blank lines of a Description) are kept as they are.
    """
    fields: dict[str, str] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields:
                break  # a binary package's control file has one paragraph
            continue
        if line.startswith("#"):
            continue
        if line[0] in " \t":
            if current is None:
                raise CpkError(f"{label}: line {lineno} continues a field that never started")
            fields[current] += "\n" + line[1:]
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or any(c.isspace() for c in name):
            raise CpkError(f"{label}: line {lineno} is not 'Field: value': {line[:60]!r}")
        current = name
        fields[name] = value.strip()
    if not fields:
        raise CpkError(f"{label}: empty")
    return fields


def parse_relations(text: str, label: str) -> list[list[Relation]]:
    """``a (>= 1) | b, c:any`` -> ``[[("a", ">= 1"), ("b", None)], [("c", None)]]``.

    Architecture qualifiers (``:any``, ``:amd64``) are dropped: a user store
    holds one architecture. The obsolete ``<`` and ``>`` mean ``<=`` and
    ``>=`` (as dpkg reads them) and are written so.
    """
    groups: list[list[Relation]] = []
    flat = " ".join(text.split())
    if not flat:
        return groups
    for group_text in flat.split(","):
        group: list[Relation] = []
        for alternative in group_text.split("|"):
            match = _RELATION.fullmatch(alternative)
            if match is None:
                raise CpkError(f"{label}: cannot parse {alternative.strip()!r}")
            op = {"<": "<=", ">": ">="}.get(match["op"] or "", match["op"])
            constraint = f"{op} {match['version']}" if op else None
            group.append((match["name"], constraint))
        groups.append(group)
    return groups


def _flat(groups: list[list[Relation]]) -> list[Relation]:
    return [relation for group in groups for relation in group]


def _get(control: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in control.items():
        if key.lower() == lowered:
            return value
    return None


def _required(control: dict[str, str], name: str, label: str) -> str:
    value = _get(control, name)
    if not value:
        raise CpkError(f"{label}: control file has no {name} field")
    return value


# --- decompression -------------------------------------------------------------


class _Slice(io.RawIOBase):
    """A read-only window on one ar member of an open file."""

    def __init__(self, f: IO[bytes], offset: int, size: int) -> None:
        self._f = f
        self._pos = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._end - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _Counted(io.RawIOBase):
    """Counts the bytes read through it, to check where the tar ended and to
    stop a decompression bomb once the count passes ``limit``."""

    def __init__(self, raw: IO[bytes], limit: int, label: str, packed: int) -> None:
        self._raw = raw
        self.total = 0
        self._limit = limit
        self._label = label
        self._packed = packed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.total += len(data)
        if self.total > self._limit:
            raise InvalidInputError(
                f"{self._label}: expands past {self._limit} bytes from {self._packed} "
                "(a decompression bomb?); refused",
                path=self._label,
            )
        return len(data)


class _FrameReader(io.RawIOBase):
    """Decompressed frames of a ``zstandard`` decompressor, one after another.

    Used instead of ``stream_reader`` because that one ends quietly when the
    input stops mid-frame; a truncated ``.deb`` must be an error, as it is
    for the standard library's gzip, lzma and bz2 readers.
    """

    #: Compressed bytes fed per decompress() call. The decompressor has no
    #: output bound, and zstd turns 4 bytes into a 128 KiB block: 1 KiB of
    #: input gives at most ~32 MiB, so a bomb cannot fill memory between
    #: two checks of the expansion limit.
    FEED = 1 << 10

    def __init__(self, raw: IO[bytes], new: Callable[[], Any]) -> None:
        self._raw = raw
        self._new = new
        self._decoder = new()
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out:
            if self._decoder.eof:
                rest = self._decoder.unused_data or self._raw.read(self.FEED)
                if not rest:
                    return 0  # the input ends where a frame does
                self._decoder = self._new()
            else:
                rest = self._raw.read(self.FEED)
                if not rest:
                    raise EOFError("compressed data ends inside a zstd frame")
            self._out = memoryview(self._decoder.decompress(rest))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


class _ReadAhead(io.RawIOBase):
    """Decompress in a thread while the caller unpacks what came before.

    dpkg-deb pipes its decompressor into tar: two processes. Here the
    decompressors (lzma, zlib, bz2, zstd) release the GIL, so one thread
    decompressing ahead into a short queue runs beside the parsing,
    hashing and writing of the members. The queue bounds what is read
    ahead (a few MiB, so a decompression bomb is still stopped by the
    reader's expansion limit), and an error in the thread is raised, as
    itself, by the next read.
    """

    DEPTH = 4

    def __init__(self, raw: IO[bytes]) -> None:
        import queue

        self._raw = raw
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._out = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._fill, name="deb-decompress", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        import queue

        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = self._raw.read(_CHUNK) or b""
            except BaseException as exc:  # handed to the reader, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out:
            if self._done:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._out = memoryview(item)
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        # The thread reads the archive's file: it must be gone before the
        # caller closes that.
        self._stop.set()
        self._thread.join()
        super().close()


#: What a corrupt or truncated compressed tar raises while being read.
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class _CheckedTarInfo(tarfile.TarInfo):
    """A header with a bad checksum is an error wherever it is.

    tarfile refuses one only as the first header; later, it takes it for
    the end of the archive and stops without a word, so a package with one
    corrupt header would be stored without the files after it.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.InvalidHeaderError as exc:
            # SubsequentHeaderError is the one tarfile.next() always raises.
            raise tarfile.SubsequentHeaderError(f"corrupt tar header ({exc})") from None


@contextmanager
def _open_tar(raw: IO[bytes], member: ArMember, path: Path) -> Iterator[tarfile.TarFile]:
    """A streaming tar over one member, checked to its very end on success.

    tarfile's own stream modes accept compressed data cut short (its stream
    decompressors never look for the end-of-stream marker) and treat a tar
    that stops at a header boundary as complete. So decompression is done
    by readers that do check, and once the caller is done the rest is read
    (verifying checksums and end markers) and the tar's end-of-archive block
    is required.
    """
    label = f"{path}: {member.name}"
    with _decompressed(raw, member.compression, label) as plain, _ReadAhead(plain) as ahead:
        counted = _Counted(ahead, expansion_limit(member.size), label, member.size)
        try:
            # Closed by the with below; opening it inside the try keeps the
            # error conversion to the opening alone.
            tar = tarfile.open(fileobj=counted, mode="r|", tarinfo=_CheckedTarInfo)  # noqa: SIM115
        except _READ_ERRORS as exc:
            raise CpkError(f"{label}: truncated or corrupt ({_reason(exc)})") from None
        with tar:
            yield tar
            try:
                while counted.read(_CHUNK):
                    pass
            except _READ_ERRORS as exc:
                raise CpkError(f"{label}: truncated or corrupt ({_reason(exc)})") from None
            if counted.total < tar.offset + tarfile.BLOCKSIZE:
                raise CpkError(f"{label}: truncated (the tar archive has no end-of-archive block)")


@contextmanager
def _decompressed(raw: IO[bytes], compression: str, label: str) -> Iterator[IO[bytes]]:
    if compression == ".zst":
        with _zstd_stream(raw, label) as plain:
            yield plain
        return
    # Closed by the with below, whichever is chosen.
    reader: IO[bytes]
    if compression == ".gz":
        reader = gzip.GzipFile(fileobj=raw, mode="rb")
    elif compression in (".xz", ".lzma"):
        # FORMAT_AUTO reads both .xz and LZMA-alone.
        reader = lzma.LZMAFile(raw)  # noqa: SIM115
    elif compression == ".bz2":
        reader = bz2.BZ2File(raw)
    else:
        reader = raw
    with reader:
        yield reader


@contextmanager
def _zstd_stream(raw: IO[bytes], label: str) -> Iterator[IO[bytes]]:
    """Decompressed zstd: the ``zstandard`` module, else the ``zstd`` command."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        zstandard = None
    if zstandard is not None:
        yield _FrameReader(raw, zstandard.ZstdDecompressor().decompressobj)
        return
    exe = shutil.which("zstd")
    if exe is None:
        raise CpkError(
            f"{label}: is zstd-compressed; install the 'zstandard' Python package "
            "(pip install zstandard) or the 'zstd' command to read it"
        )
    proc = subprocess.Popen(
        [exe, "-d", "-c", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    def feed() -> None:
        # A thread feeds zstd while this one reads its output: a pipe in
        # each direction, so neither side can block the other.
        try:
            while chunk := raw.read(_CHUNK):
                stdin.write(chunk)
        except OSError:
            pass  # zstd stopped reading (it failed, or we killed it)
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    feeder = threading.Thread(target=feed, name="cpk-zstd-feed", daemon=True)
    feeder.start()
    try:
        yield proc.stdout
        # Read to the end so zstd finishes and reports its status.
        while proc.stdout.read(_CHUNK):
            pass
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        feeder.join()
        error = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        status = proc.wait()
    if status != 0:
        reason = error.splitlines()[-1] if error else f"exit status {status}"
        raise CpkError(f"{label}: truncated or corrupt (zstd: {reason})")


# --- extraction ----------------------------------------------------------------


def map_path(name: str) -> str:
    """Where a package path goes in a prefix: ``usr/X`` -> ``X``, others as is.

    ``name`` is normalised and relative (``usr/bin/jq``); the result is
    relative to the prefix, empty for the prefix itself. Pre-usrmerge paths
    (``bin/sh``, ``lib/x86_64-linux-gnu/libc.so.6``) land where their
    ``/usr`` twins do, which is what a merged-/usr system shows too.
    """
    if name == "usr":
        return ""
    return name.removeprefix("usr/")


def extract_data(
    pkg: DebPackage,
    dest: Path,
    records: list[FileRecord] | None = None,
    elf: list[str] | None = None,
) -> list[str]:
    """Unpack pkg's data archive into dest in prefix layout; return notes.

    ``records``, when given, receives the content hash's record of every
    path written (each file was hashed as it was written), and ``elf`` the
    paths of the files that begin with the ELF magic: a store add then
    reads no file a second time to hash it or to find its ELF files.

    dest must be an existing directory this process owns (a staging slot).
    Refused, as one CpkError naming the package and member: absolute or
    ``..`` member names, device and FIFO members, hard links to anything
    not extracted before them, relative symlinks that leave the package,
    and two members mapping to one path with different content. setuid and
    setgid bits are dropped (a note names the files): a store a user writes
    cannot grant privileges, and must not pretend to.
    """
    extraction = _Extraction(pkg, dest)
    label = f"{pkg.path}: {pkg.data.name}"
    try:
        with pkg.open_data() as tar:
            members = iter(tar)
            while True:
                try:
                    info = next(members)
                except StopIteration:
                    break
                except _READ_ERRORS as exc:
                    raise CpkError(f"{label}: truncated or corrupt ({_reason(exc)})") from None
                extraction.add(tar, info)
    except OSError as exc:
        if isinstance(exc, _ReadFailure):
            raise CpkError(f"{label}: truncated or corrupt ({exc})") from None
        where = f"{exc.filename}: " if exc.filename else f"{pkg.path}: unpacking into {dest}: "
        raise CpkError(f"{where}{exc.strerror or exc}") from None
    if records is not None:
        records.extend(extraction.records())
    if elf is not None:
        elf.extend(path for path, placed in extraction.placed.items() if placed.elf)
    return extraction.notes()


class _ReadFailure(OSError):
    """A read from the archive failed (as opposed to a write into dest)."""


@dataclass
class _Placed:
    kind: str  # "d", "f" or "l"
    value: str  # sha256 of a file, target of a symlink, "" for a directory
    origin: str  # the member name that put it there
    size: int = 0  # a file's length
    executable: bool = False  # a file's owner-executable bit as written
    elf: bool = False  # a file that begins with the ELF magic


class _Extraction:
    """The state of one unpacking: what is where, and what to tell the user."""

    def __init__(self, pkg: DebPackage, dest: Path) -> None:
        self.pkg = pkg
        self.dest = os.fspath(dest)
        if not os.path.isdir(self.dest) or os.path.islink(self.dest):
            raise CpkError(f"{dest}: not a directory to unpack into")
        self.placed: dict[str, _Placed] = {"": _Placed("d", "", "./")}
        self.privileged: list[str] = []
        self.aliases: list[str] = []
        #: (sha256, executable) -> the first path written with those bytes
        self.by_content: dict[tuple[str, bool], str] = {}

    def fail(self, member: str, problem: str) -> CpkError:
        return CpkError(f"{self.pkg.path}: member {member!r} {problem}")

    def add(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = self.normalise(info.name)
        if name is None:
            return  # the archive's root, "./"
        mapped = map_path(name)
        if mapped.split("/")[0] == META_DIR:
            raise self.fail(info.name, f"maps to {mapped!r}, a name the store reserves")
        if info.ischr() or info.isblk():
            raise self.fail(info.name, "is a device node; a user store cannot hold one")
        if info.isfifo():
            raise self.fail(info.name, "is a FIFO; a user store cannot hold one")
        if info.isdir():
            self.directory(info, mapped)
        elif info.issym():
            self.symlink(info, name, mapped)
        elif info.islnk():
            self.hardlink(info, mapped)
        elif info.isreg():
            self.file(tar, info, mapped)
        else:
            raise self.fail(info.name, f"has unsupported tar type {info.type!r}")

    def normalise(self, raw: str) -> str | None:
        if raw.startswith("/"):
            raise self.fail(raw, "has an absolute name")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(raw, "contains '..' (it could escape the package root)")
        return "/".join(parts) or None

    # -- parents and collisions

    def parent(self, member: str, mapped: str) -> str:
        """Make mapped's parent directories; refuse to write through a symlink."""
        parent = posixpath.dirname(mapped)
        missing: list[str] = []
        path = parent
        while path not in self.placed:
            missing.append(path)
            path = posixpath.dirname(path)
        if self.placed[path].kind != "d":
            raise self.fail(member, f"lies below {path!r}, which is not a directory")
        for path in reversed(missing):
            full = os.path.join(self.dest, path)
            try:
                os.mkdir(full, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(full).st_mode):
                    raise self.fail(
                        member, f"lies below {path!r}, which is not a directory"
                    ) from None
            self.placed[path] = _Placed("d", "", member)
        return os.path.join(self.dest, mapped)

    def existing(self, member: str, mapped: str, kind: str, value: str) -> bool:
        """True when mapped already holds exactly this (a pre-usrmerge twin)."""
        before = self.placed.get(mapped)
        if before is None:
            return False
        if before.kind == kind and before.value == value:
            return True
        raise self.fail(
            member,
            f"and {before.origin!r} both map to {mapped or '.'!r} with different content",
        )

    # -- member kinds

    def directory(self, info: tarfile.TarInfo, mapped: str) -> None:
        if self.existing(info.name, mapped, "d", ""):
            return
        full = self.parent(info.name, mapped)
        os.mkdir(full, 0o755)
        self.placed[mapped] = _Placed("d", "", info.name)
        if info.mode & (stat.S_ISUID | stat.S_ISGID):
            self.privileged.append(mapped + "/")

    def symlink(self, info: tarfile.TarInfo, name: str, mapped: str) -> None:
        target = info.linkname
        if not target:
            raise self.fail(info.name, "is a symlink with an empty target")
        if target.startswith("/"):
            # Absolute targets name the installed system's paths: map them
            # like member names, into the same tree.
            resolved = posixpath.normpath(target).lstrip("/")
        else:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if resolved == ".." or resolved.startswith("../"):
                raise self.fail(info.name, f"is a symlink to {target!r}, outside the package")
        resolved = "" if resolved == "." else resolved
        mapped_target = map_path(resolved)
        if mapped_target == mapped:
            # ./bin -> usr/bin (merged-/usr aliases shipped as symlinks):
            # the mapping already puts both in one place.
            self.aliases.append(f"/{name} -> {target}")
            return
        if not mapped:
            raise self.fail(info.name, "is a symlink in place of the package root")
        # Always rewritten to the normal form '../../x/y': the climb runs
        # through real directories only (parents are never symlinks here),
        # so a link can never reach outside the tree through another link.
        link_dir = posixpath.dirname(mapped) or "."
        relative = posixpath.relpath(mapped_target or ".", link_dir)
        if self.existing(info.name, mapped, "l", relative):
            return
        full = self.parent(info.name, mapped)
        os.symlink(relative, full)
        self.placed[mapped] = _Placed("l", relative, info.name)

    def hardlink(self, info: tarfile.TarInfo, mapped: str) -> None:
        # Hard links name an earlier member: only files this run extracted
        # qualify, which also rules out anything absolute or with '..'.
        parts = [p for p in info.linkname.split("/") if p not in ("", ".")]
        inside = ".." not in parts and not info.linkname.startswith("/")
        target = "/".join(parts) if inside else ""
        source = self.placed.get(map_path(target)) if target else None
        if source is None or source.kind != "f":
            raise self.fail(
                info.name, f"is a hard link to {info.linkname!r}, not a file extracted before it"
            )
        if self.existing(info.name, mapped, "f", source.value):
            return
        full = self.parent(info.name, mapped)
        src = os.path.join(self.dest, map_path(target))
        try:
            os.link(src, full, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, full, follow_symlinks=False)
        self.placed[mapped] = _Placed(
            "f", source.value, info.name, source.size, source.executable, source.elf
        )

    def file(self, tar: tarfile.TarFile, info: tarfile.TarInfo, mapped: str) -> None:
        if not mapped:
            raise self.fail(info.name, "is a file in place of the package root")
        source = tar.extractfile(info)
        assert source is not None
        if mapped in self.placed:
            digest = hashlib.sha256()
            while chunk := _read(source):
                digest.update(chunk)
            self.existing(info.name, mapped, "f", digest.hexdigest())
            return
        full = self.parent(info.name, mapped)
        if info.mode & (stat.S_ISUID | stat.S_ISGID):
            self.privileged.append(mapped)
        # Created with the mode the store seals files with (read-only, the
        # owner's executable bit kept for everyone): permissions are checked
        # at open, so this descriptor still writes, and sealing the entry
        # later has no file left to chmod.
        mode = 0o555 if info.mode & stat.S_IXUSR else 0o444
        executable = bool(mode & stat.S_IXUSR)
        first = _read(source)
        whole = None  # the sha256, when the first read holds the whole file
        if len(first) == info.size:
            whole = hashlib.sha256(first).hexdigest()
            if self._link_twin(info.name, mapped, full, first, whole, executable):
                return
        digest = hashlib.sha256()
        size = 0
        head = first[:4]
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with open(fd, "wb") as out:
            chunk = first
            while chunk:
                size += len(chunk)
                if whole is None:
                    digest.update(chunk)
                out.write(chunk)
                chunk = _read(source)
            if stat.S_IMODE(os.fstat(out.fileno()).st_mode) != mode:
                os.fchmod(out.fileno(), mode)  # a umask took bits away
        # tarfile reads a member no further than its header's size, so a
        # first read of that size was the whole file.
        hexdigest = whole or digest.hexdigest()
        self.by_content.setdefault((hexdigest, executable), mapped)
        self.placed[mapped] = _Placed("f", hexdigest, info.name, size, executable, head == _ELF)

    def _link_twin(
        self, member: str, mapped: str, full: str, data: bytes, digest: str, executable: bool
    ) -> bool:
        """Hard-link full to a file this package already wrote with the same
        bytes and executable bit; False (nothing done) if there is none.

        Packages repeat files (an icon in several sizes' directories, the
        same translation twice): the entry stores them once anyway (the
        store's ``share_identical``), and linking here, with the whole small
        file in hand, spares creating, writing and then unlinking the copy.
        """
        twin = self.by_content.get((digest, executable))
        if twin is None:
            return False
        try:
            os.link(os.path.join(self.dest, twin), full, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.EMLINK:  # a file system's link limit: write a copy
                raise
            return False
        self.placed[mapped] = _Placed("f", digest, member, len(data), executable, data[:4] == _ELF)
        return True

    def records(self) -> list[FileRecord]:
        """What was written, as the content hash records it (the root left out)."""
        return [
            FileRecord(path, "x" if p.kind == "f" and p.executable else p.kind, p.value, p.size)
            for path, p in self.placed.items()
            if path
        ]

    def notes(self) -> list[str]:
        notes = []
        if self.privileged:
            notes.append(
                "dropped setuid/setgid bits (a user store cannot grant them): "
                + ", ".join(sorted(self.privileged))
            )
        if self.aliases:
            notes.append(
                "skipped merged-/usr alias symlinks (their paths already coincide): "
                + ", ".join(self.aliases)
            )
        scripts = self.pkg.maintainer_scripts
        if scripts:
            notes.append(f"maintainer scripts not run: {', '.join(scripts)}")
        return notes


def _read(source: IO[bytes]) -> bytes:
    try:
        return source.read(_CHUNK)
    except _READ_ERRORS as exc:
        raise _ReadFailure(_reason(exc)) from None
