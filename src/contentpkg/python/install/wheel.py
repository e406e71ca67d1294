"""Wheels into the store: verify everything, then unpack into one entry.

A wheel becomes an entry of kind ``wheel`` named ``<name>,<version>,<hash>``
whose content is laid out by install scheme, so that views and build
environments link what they need without knowing the wheel format::

    site-packages/   purelib and platlib merged, the .dist-info included
    scripts/         <name>-<version>.data/scripts
    data/            <name>-<version>.data/data
    headers/         <name>-<version>.data/headers

Console and GUI entry points are recorded in the metadata, not written as
files: a script names an interpreter, which only an environment knows.

Everything a wheel could lie about is checked before the entry can appear:
its sha256 against the index or lock, its name and version against its
``.dist-info``, every member against ``RECORD`` (name, sha256 and size),
member paths that would escape, duplicates, links and special files, and
expansion (total size, per-member and whole-archive compression ratio,
counted on the bytes actually decompressed). The cheap checks read only the
zip's central directory and run before anything is written; hashes, sizes
and ratios are checked while streaming each member once into the staging
slot, which :func:`~contentpkg.store.add.add_built` discards on any error.

Why not ``installer.install(source, destination, metadata)`` with a store
destination (checked against installer 1.1): ``WheelFile.get_contents``
hands a destination ``(record, stream, is_executable)`` per member, so a
member's file type is reduced to an executable bit (a symlink or device
member would be written as a regular file holding its target, and the
destination cannot tell); a member RECORD omits arrives with an empty record,
like a second member of the same name; and the compressed size a ratio check
needs is not passed at all. The checks that need the central directory
(duplicates, escapes, links, total size) must also run before the first
byte is written, while ``install`` writes as it iterates, and installer's
own hash check (``validate_record``) is a second full pass over the archive,
where ours hashes, sizes and measures each member in the one pass that
writes it. A destination could redo all of this only by opening the zip
itself beside installer, which is the extraction below again. installer
still parses RECORD (``parse_record_file``) and the metadata files.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from installer.sources import WheelFile
from installer.utils import parse_metadata_file
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from contentpkg.errors import CpkError, HashMismatchError, InvalidInputError, write_failed
from contentpkg.store.add import AddResult, add_built
from contentpkg.store.entry import Entry
from contentpkg.store.hashing import DERIVED_DIRS, FileRecord
from contentpkg.store.layers import Store

if TYPE_CHECKING:
    from contentpkg.python.install.bytecode import BytecodePipeline

KIND = "wheel"

#: Scheme directories of an entry (the keys of a ``.data`` directory that
#: have one; purelib and platlib both land in site-packages).
SITE_PACKAGES = "site-packages"
_SCHEMES = {
    "purelib": SITE_PACKAGES,
    "platlib": SITE_PACKAGES,
    "scripts": "scripts",
    "data": "data",
    "headers": "headers",
}

#: Default bound on the total uncompressed size of a wheel. The largest real
#: wheels (CUDA builds of torch and the nvidia-* libraries) unpack to a few
#: GiB; four times that is still a bound a disk survives.
MAX_SIZE = 16 << 30

#: Default bound on the compression ratio, per member and for the archive.
#: Deflate cannot exceed about 1032:1 on one member, and real packages stay
#: far below 100:1 on anything large; bombs live near the ceiling or beat it
#: with overlapping members, which the whole-archive ratio catches.
MAX_RATIO = 200

#: Ratios are only judged above this many output bytes: a small member may
#: legitimately compress very well (a file of blanks), and cannot hurt.
_RATIO_FLOOR = 1 << 20

_CHUNK = 1 << 20

#: RECORD hashes weaker than sha256 are not allowed by the wheel spec.
_STRONG_HASHES = frozenset(
    {"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"}
)

#: The wheel spec allows only these two; zipfile's bzip2 and lzma readers
#: also decompress without a bound per read, so a crafted member could fill
#: memory before any byte count is seen.
_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

#: What reading a damaged archive raises: zipfile's own error, a short read,
#: zlib's error for a deflate stream that is not one, and the
#: NotImplementedError/RuntimeError zipfile raises for a version, method or
#: encryption flag it cannot handle (all found by fuzzing, none wrapped).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")
# What importlib.metadata accepts as an entry point value, with the
# attribute required: a script has to call something.
_ENTRY_POINT = re.compile(r"[\w.]+\s*:\s*[\w.]+\s*(\[[^\]]*\])?")
_MODULE_SUFFIX = re.compile(r"\.(py|pyc|so|pyd)$")
# A script name becomes a file in bin/ and a word people type and scripts
# paste into shell lines: path separators, whitespace and the shell's
# metacharacters have no place in it (no real package uses them).
_SCRIPT_UNSAFE = re.compile(r"[/\\\s|&;<>()$`'\"*?\[\]{}#!~%=^]")


@dataclass
class _Plan:
    """What the checks of the central directory and dist-info decided."""

    filename: str
    name: str  # PEP 503 normalized
    version: str  # normalized
    dist_info: str
    root_is_purelib: bool
    tags: list[str]
    metadata: dict[str, Any]
    entry_points: dict[str, dict[str, str]]
    # (zip member, destination relative to the entry, RECORD row, executable)
    members: list[tuple[zipfile.ZipInfo, str | None, RecordEntry | None, bool]] = field(
        default_factory=list
    )
    top_level: list[str] = field(default_factory=list)


def add_wheel(
    store: Store,
    wheel_path: Path,
    *,
    expected_sha256: str | None = None,
    source: str | None = None,
    max_size: int = MAX_SIZE,
    max_ratio: int = MAX_RATIO,
    bytecode: BytecodePipeline | None = None,
) -> AddResult:
    """Add a wheel to the user store, or find the entry already made from it.

    ``expected_sha256`` is the hash the index or lock file publishes (hex,
    optionally prefixed ``sha256:`` or ``sha256=``); ``source`` is where the
    wheel came from (a URL), recorded in the metadata, and whose last path
    component names the wheel when the file itself is stored under another
    name. With ``bytecode``, the wheel's modules are compiled by that
    pipeline's workers while the rest is still being unpacked, and the entry
    is published with its bytecode. Any problem raises :class:`CpkError`
    with one line naming the wheel, and leaves the store as it was.
    """
    filename = _wheel_filename(wheel_path, source)
    try:
        f = open(wheel_path, "rb")  # noqa: SIM115 - held across the whole add
    except OSError as exc:
        raise CpkError(f"{wheel_path}: {exc.strerror or exc}") from None
    with f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        wheel_size = f.tell()
        if expected_sha256 is not None:
            want = _normalise_sha256(filename, expected_sha256)
            if want != digest:
                raise HashMismatchError(
                    subject=filename,
                    expected=want,
                    actual=digest,
                    hint="corrupt or truncated download?",
                )
        source_hash = f"sha256:{digest}"
        found = store.find_source(source_hash)
        if found is not None:
            return AddResult(found, created=False)

        f.seek(0)
        with _open_zip(filename, f) as zf:
            plan = _plan(zf, filename, max_size)

            operation = f"extracting {filename}"

            def populate(slot: Path) -> list[FileRecord]:
                staged = bytecode.staged(slot, filename) if bytecode is not None else None
                if staged is None:
                    return _extract(
                        zf, plan, slot, wheel_size, max_size, max_ratio,
                        verified=expected_sha256 is not None,
                    )  # fmt: skip
                try:
                    records = _extract(
                        zf, plan, slot, wheel_size, max_size, max_ratio,
                        verified=expected_sha256 is not None, on_module=staged.add,
                    )  # fmt: skip
                    staged.finish()
                except BaseException:
                    staged.abandon()
                    raise
                return records

            try:
                result = add_built(
                    store,
                    plan.name,
                    plan.version,
                    KIND,
                    populate,
                    source=source or filename,
                    source_hash=source_hash,
                    extra=_metadata(plan),
                )
            except _WriteError as exc:
                # Named as what it is (a full disk, a quota, a read-only
                # store) and where, never as a fault of the wheel.
                raise write_failed(exc.error, store.user.root, operation) from None
            except OSError as exc:
                # The reads of the archive are judged inside _extract; what
                # reaches here is the store writing its metadata and tables.
                raise write_failed(exc, store.user.root, operation) from None
    if result.created:
        # The symlinks every view of this entry will hold, made once here
        # (views then hard-link them: python/envs/links.py).
        from contentpkg.python.envs.links import LinkPool

        LinkPool.of(store).prepare(result.entry)
    return result


def wheel_entry_info(entry: Entry) -> dict[str, Any]:
    """The ``python`` block of a wheel entry's metadata (see :func:`_metadata`)."""
    if entry.kind != KIND:
        raise CpkError(f"{entry.dirname}: not a wheel entry (kind {entry.kind!r})")
    info = entry.metadata.get("python")
    if not isinstance(info, dict):
        raise CpkError(f"{entry.dirname}: wheel metadata has no python block")
    return info


# --- reading and checking ---------------------------------------------------


def _wheel_filename(wheel_path: Path, source: str | None) -> str:
    """The wheel's own filename: the file's, else the source URL's last part.

    Downloads may sit in a cache under another name; the filename carries
    the tags and must then come from where the wheel was found.
    """
    if wheel_path.name.endswith(".whl") or not source:
        return wheel_path.name
    tail = unquote(urlsplit(source).path.rsplit("/", 1)[-1])
    return tail if tail.endswith(".whl") else wheel_path.name


def _normalise_sha256(filename: str, value: str) -> str:
    text = value.strip().lower()
    for prefix in ("sha256:", "sha256="):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise InvalidInputError(f"{filename}: expected hash {value!r} is not a sha256 hex digest")
    return text


@contextmanager
def _open_zip(filename: str, f: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(f)
    except (*_ZIP_ERRORS, ValueError) as exc:
        raise InvalidInputError(f"{filename}: not a valid zip archive ({exc})") from None
    # installer's WheelFile takes the distribution name from this.
    zf.filename = filename
    with zf:
        yield zf


def _show(name: str) -> str:
    """A member name fit for a one-line message (controls escaped)."""
    return repr(name)


def _check_member_name(filename: str, info: zipfile.ZipInfo) -> str:
    """Refuse a member path that could land anywhere but inside the entry.

    zipfile cuts names at the first NUL (``filename``) but keeps what the
    archive says (``orig_filename``), so the raw name is the one judged.
    """
    raw = info.orig_filename
    where = f"{filename}: member {_show(raw)}"
    if not raw:
        raise InvalidInputError(f"{filename}: member with an empty name")
    if "\x00" in raw:
        raise InvalidInputError(f"{where} contains a NUL character")
    if _CONTROL.search(raw):
        raise InvalidInputError(f"{where} contains a control character")
    if "\\" in raw:
        raise InvalidInputError(f"{where} contains a backslash")
    if raw.startswith("/"):
        raise InvalidInputError(f"{where} is an absolute path")
    if _DRIVE.match(raw):
        raise InvalidInputError(f"{where} starts with a drive letter")
    parts = raw.removesuffix("/").split("/")
    if ".." in parts:
        raise InvalidInputError(f"{where} has a '..' component that escapes the wheel")
    if any(p in ("", ".") for p in parts):
        raise InvalidInputError(f"{where} has an empty or '.' component")
    return raw


def _member_kind(filename: str, info: zipfile.ZipInfo, zf: zipfile.ZipFile) -> str:
    """``dir``, ``file`` or ``exec``; links and special files are refused.

    All symlinks are refused, not only those that leave the entry: the
    wheel format has no links, pip and installer write such a member as a
    regular file holding the target's text, and where a link points depends
    on the scheme directory its member is moved to. A wheel that holds one
    is broken or hostile either way.
    """
    where = f"{filename}: member {_show(info.orig_filename)}"
    if info.flag_bits & 0x1:
        raise InvalidInputError(f"{where} is encrypted")
    if info.compress_type not in _COMPRESSIONS:
        raise InvalidInputError(
            f"{where} uses compression method {info.compress_type}; wheels use deflate or none"
        )
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.is_dir():
        return "dir"  # never created as such, whatever its mode bits say
    if kind == stat.S_IFLNK:
        target = _read_small(zf, info, filename)
        base = PurePosixPath(info.orig_filename).parent
        escapes = not stays_inside(base / target)
        problem = "points outside the wheel" if escapes else "is not allowed in a wheel"
        raise InvalidInputError(f"{where} is a symlink to {target!r}, which {problem}")
    if kind not in (0, stat.S_IFREG):
        raise InvalidInputError(f"{where} is a special file (mode {oct(mode)})")
    # As pip and installer decide it: any execute bit on a regular file.
    return "exec" if mode & 0o111 else "file"


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename: str) -> str:
    """A symlink's target text, read with a bound (it is only for a message)."""
    try:
        with zf.open(info) as stream:
            return stream.read(4096).decode("utf-8", "replace")
    except _ZIP_ERRORS:
        return "?"


def stays_inside(path: str | os.PathLike[str]) -> bool:
    """Whether a relative POSIX path, its ``..`` resolved lexically, stays
    below the directory it is relative to; an absolute path does not.

    Lexical is enough for archive members (sdist unpacking uses it too):
    nothing is on disk yet whose links could lead elsewhere.
    """
    text = os.fspath(path)
    norm = os.path.normpath(text)
    return not (os.path.isabs(text) or norm == ".." or norm.startswith("../"))


def _plan(zf: zipfile.ZipFile, filename: str, max_size: int) -> _Plan:
    """Check everything the central directory and dist-info can tell.

    Nothing is written here: a wheel that fails leaves no trace anywhere.
    """
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise InvalidInputError(f"{filename}: not a valid wheel filename ({exc})") from None

    infos = zf.infolist()
    kinds: dict[str, str] = {}
    for info in infos:
        raw = _check_member_name(filename, info)
        if raw in kinds:
            raise InvalidInputError(f"{filename}: member {_show(raw)} appears more than once")
        kinds[raw] = _member_kind(filename, info, zf)

    dist_info = _find_dist_info(filename, infos, str(name), version)
    wheel_meta = _read_text(zf, filename, f"{dist_info}/WHEEL")
    root_is_purelib = _check_wheel_file(filename, wheel_meta)
    metadata = _read_metadata(zf, filename, dist_info, str(name), version)
    entry_points = _read_entry_points(zf, filename, dist_info)
    records = _check_record(zf, filename, dist_info)

    declared = sum(info.file_size for info in infos)
    if declared > max_size:
        raise InvalidInputError(
            f"{filename}: expands to {declared} bytes, more than the limit of {max_size}"
        )

    plan = _Plan(
        filename=filename,
        name=str(name),
        version=str(version),
        dist_info=dist_info,
        root_is_purelib=root_is_purelib,
        tags=sorted(str(t) for t in tags),
        metadata=metadata,
        entry_points=entry_points,
    )
    destinations: dict[str, str] = {}
    for info in infos:
        kind = kinds[info.orig_filename]
        if kind == "dir":
            continue  # directories come with their files, as installers do
        dest = _destination(filename, info.orig_filename)
        if dest is not None:
            other = destinations.setdefault(dest, info.orig_filename)
            if other != info.orig_filename:
                raise InvalidInputError(
                    f"{filename}: members {_show(other)} and {_show(info.orig_filename)}"
                    f" both install {dest}"
                )
        plan.members.append((info, dest, records.get(info.orig_filename), kind == "exec"))
    _check_tree(filename, destinations, dist_info)
    plan.top_level = sorted(
        {d.split("/")[1] for d in destinations if d.startswith(SITE_PACKAGES + "/")}
    )
    return plan


def _find_dist_info(filename: str, infos: list[zipfile.ZipInfo], name: str, version: Any) -> str:
    """The one ``.dist-info`` at the root, named as the filename says."""
    found = {
        i.orig_filename.split("/", 1)[0]
        for i in infos
        if "/" in i.orig_filename and i.orig_filename.split("/", 1)[0].endswith(".dist-info")
    }
    if len(found) != 1:
        shown = ", ".join(sorted(found)) or "none"
        raise InvalidInputError(f"{filename}: expected one .dist-info directory, found {shown}")
    dist_info = found.pop()
    di_name, _, di_version = dist_info.removesuffix(".dist-info").rpartition("-")
    if not _same_release(di_name, di_version, name, version):
        raise InvalidInputError(
            f"{filename}: .dist-info directory {dist_info!r} does not match the"
            f" filename's {name} {version}"
        )
    return dist_info


def _same_release(other_name: str, other_version: str, name: str, version: Any) -> bool:
    try:
        return canonicalize_name(other_name) == name and Version(other_version) == version
    except InvalidVersion:
        return False


def _read_text(zf: zipfile.ZipFile, filename: str, member: str) -> str:
    """A small text member of the dist-info, required to exist."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise InvalidInputError(f"{filename}: {member} is missing") from None
    if info.file_size > 16 << 20:
        raise InvalidInputError(
            f"{filename}: {member} is implausibly large ({info.file_size} bytes)"
        )
    try:
        return zf.read(info).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{filename}: {member} is not UTF-8") from None
    except _ZIP_ERRORS as exc:
        raise InvalidInputError(f"{filename}: {member} is corrupt ({exc})") from None


def _check_wheel_file(filename: str, text: str) -> bool:
    """Wheel-Version 1.x is required; returns Root-Is-Purelib."""
    wheel = parse_metadata_file(text)
    wheel_version = (wheel.get("Wheel-Version") or "").strip()
    match = re.fullmatch(r"(\d+)\.(\d+)", wheel_version)
    if not match:
        raise InvalidInputError(f"{filename}: WHEEL has no valid Wheel-Version ({wheel_version!r})")
    if match.group(1) != "1":
        raise InvalidInputError(
            f"{filename}: Wheel-Version {wheel_version} is not supported (need 1.x)"
        )
    return (wheel.get("Root-Is-Purelib") or "").strip().lower() == "true"


def _read_metadata(
    zf: zipfile.ZipFile, filename: str, dist_info: str, name: str, version: Any
) -> dict[str, Any]:
    text = _read_text(zf, filename, f"{dist_info}/METADATA")
    meta = parse_metadata_file(text)
    meta_name = (meta.get("Name") or "").strip()
    meta_version = (meta.get("Version") or "").strip()
    if not _same_release(meta_name, meta_version, name, version):
        raise InvalidInputError(
            f"{filename}: METADATA says {meta_name} {meta_version}, the filename {name} {version}"
        )
    requires_python = meta.get("Requires-Python")
    return {
        "requires_dist": [str(r).strip() for r in meta.get_all("Requires-Dist") or []],
        "requires_python": str(requires_python).strip() if requires_python else None,
    }


def _read_entry_points(zf: zipfile.ZipFile, filename: str, dist_info: str) -> dict:
    """Console and GUI scripts, checked so composing an environment cannot fail.

    Parsed by hand because installer's parser asserts on malformed values
    instead of raising an error that names the wheel.
    """
    result: dict[str, dict[str, str]] = {"console_scripts": {}, "gui_scripts": {}}
    member = f"{dist_info}/entry_points.txt"
    if member not in zf.NameToInfo:
        return result
    text = _read_text(zf, filename, member)
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise InvalidInputError(f"{filename}: entry_points.txt is malformed ({first})") from None
    for group, scripts in result.items():
        if not parser.has_section(group):
            continue
        for script, value in parser.items(group):
            value = " ".join(value.split())
            if (
                not script
                or script in (".", "..")
                or _CONTROL.search(script)
                or _SCRIPT_UNSAFE.search(script)
            ):
                raise InvalidInputError(
                    f"{filename}: {group} name {script!r} is not a plain file name"
                )
            if not _ENTRY_POINT.fullmatch(value):
                raise InvalidInputError(
                    f"{filename}: {group} entry {script!r} = {value!r} is not module:attribute"
                )
            scripts[script] = value
    return result


def _check_record(zf: zipfile.ZipFile, filename: str, dist_info: str) -> dict[str, RecordEntry]:
    """Every member listed in RECORD with a strong hash and a size.

    installer checks the listing (unlisted files, RECORD's own row, the
    signature files); the hashes and sizes are checked while extracting,
    so each member is decompressed once. The strength of the hash is ours:
    installer accepts any algorithm hashlib knows, md5 included.
    """
    record_member = f"{dist_info}/RECORD"
    text = _read_text(zf, filename, record_member)
    try:
        WheelFile(zf).validate_record(validate_contents=False)
    except ValueError as exc:
        issues = getattr(exc, "issues", None) or [str(exc)]
        first = str(issues[0]).removeprefix(f"In {filename}, ")
        more = f" (and {len(issues) - 1} more problems)" if len(issues) > 1 else ""
        raise InvalidInputError(f"{filename}: RECORD check failed: {first}{more}") from None
    records: dict[str, RecordEntry] = {}
    try:
        for row in parse_record_file(text.splitlines()):
            if row[1]:
                records[row[0]] = RecordEntry.from_elements(*row)
    except InvalidRecordEntry as exc:
        raise InvalidInputError(
            f"{filename}: RECORD row is invalid: {'; '.join(exc.issues)}"
        ) from None
    for path in records:
        if path not in zf.NameToInfo:
            # A RECORD that vouches for a file the wheel lacks is a lie about
            # what gets installed; installer's listing check does not look.
            raise InvalidInputError(
                f"{filename}: RECORD lists {_show(path)}, which is not in the wheel"
            )
    for path, record in records.items():
        assert record.hash_ is not None
        if record.hash_.name not in _STRONG_HASHES:
            raise InvalidInputError(
                f"{filename}: RECORD hashes {path!r} with {record.hash_.name};"
                " wheels must use sha256 or stronger"
            )
    return records


def _destination(filename: str, member: str) -> str | None:
    """Where a member lands in the entry; None for what is not installed.

    Any top-level ``*.data`` directory holds scheme directories, as pip
    reads it, so that a wheel whose ``.data`` is spelled differently from its
    ``.dist-info`` (case, separators) installs as it does with pip.

    Bytecode shipped in a wheel is derived, stale and for some interpreter
    we do not know; it is checked against RECORD but not installed, and
    :mod:`contentpkg.python.install.bytecode` compiles the entry's own.
    """
    parts = member.split("/")
    if any(p in DERIVED_DIRS for p in parts):
        return None
    if parts[0].endswith(".data") and len(parts) > 1:
        if len(parts) < 3 or parts[1] not in _SCHEMES:
            raise InvalidInputError(
                f"{filename}: member {_show(member)} is in no known install scheme"
                " (purelib, platlib, scripts, data, headers)"
            )
        return "/".join([_SCHEMES[parts[1]], *parts[2:]])
    return "/".join([SITE_PACKAGES, *parts])


def _check_tree(filename: str, destinations: dict[str, str], dist_info: str) -> None:
    """The destinations form a tree: no file is also a directory of another."""
    for dest, member in destinations.items():
        parts = dest.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in destinations:
                raise InvalidInputError(
                    f"{filename}: {_show(destinations[prefix])} is a file but"
                    f" {_show(member)} needs it as a directory"
                )
        if (
            len(parts) > 2
            and parts[0] == SITE_PACKAGES
            and parts[1].endswith(".dist-info")
            and parts[1] != dist_info
        ):
            raise InvalidInputError(
                f"{filename}: member {_show(member)} installs a second .dist-info"
            )


# --- extraction ---------------------------------------------------------------


class _WriteError(Exception):
    """An OSError from writing the slot, kept apart from the archive's read errors.

    Both surface as OSError inside the extraction loop; only a read error
    means the wheel is corrupt. The caller knows the store's path and turns
    this into the one line that names it.
    """

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _extract(
    zf: zipfile.ZipFile,
    plan: _Plan,
    root: Path,
    wheel_size: int,
    max_size: int,
    max_ratio: int,
    *,
    verified: bool = False,
    on_module: Callable[[str, int], None] | None = None,
) -> list[FileRecord]:
    """Stream every member into the slot, checking RECORD and the bounds.

    ``verified`` says the wheel's own sha256 matched what the index or lock
    publishes, which a RECORD mismatch message then names. ``on_module``
    is told of each ``.py`` under site-packages (its path there, its size)
    once it is written and checked, so it can be compiled meanwhile.

    Byte counts are the decompressed bytes actually produced, not the sizes
    the headers declare, so a lying header cannot carry a bomb past the
    limits. Returns the records of what was written (saving a rescan).
    """
    filename = plan.filename
    records: list[FileRecord] = []
    made: set[str] = set()
    total = 0
    total_limit = max_ratio * max(wheel_size, 1)
    for info, dest, record, executable in plan.members:
        where = f"{filename}: member {_show(info.orig_filename)}"
        target: Path | None = None
        fd = -1
        if dest is not None:
            target = root / dest
            mode = 0o755 if executable else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                _make_parents(root, dest, made, records)
                fd = os.open(target, flags, mode)
                os.fchmod(fd, mode)  # exactly this, whatever the umask
            except OSError as exc:
                raise _WriteError(exc) from None
        sha256 = hashlib.sha256()
        other = None
        if record is not None and record.hash_ is not None and record.hash_.name != "sha256":
            other = hashlib.new(record.hash_.name)
        size = 0
        member_limit = max_ratio * max(info.compress_size, 1)
        try:
            with zf.open(info) as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if size > info.file_size:
                        raise InvalidInputError(f"{where} is larger than its header says")
                    if total > max_size:
                        raise InvalidInputError(
                            f"{filename}: expands to more than the limit of {max_size} bytes"
                        )
                    if size > _RATIO_FLOOR and size > member_limit:
                        raise InvalidInputError(
                            f"{where} expands more than {max_ratio}:1 (zip bomb?)"
                        )
                    if total > _RATIO_FLOOR and total > total_limit:
                        raise InvalidInputError(
                            f"{filename}: archive expands more than {max_ratio}:1 (zip bomb?)"
                        )
                    sha256.update(chunk)
                    if other is not None:
                        other.update(chunk)
                    if fd >= 0:
                        view = memoryview(chunk)
                        try:
                            while view:
                                view = view[os.write(fd, view) :]
                        except OSError as exc:
                            raise _WriteError(exc) from None
        except _ZIP_ERRORS as exc:
            raise InvalidInputError(f"{where} is corrupt ({exc})") from None
        finally:
            if fd >= 0:
                os.close(fd)
        if record is not None:
            if record.size is not None and size != record.size:
                raise InvalidInputError(f"{where} has {size} bytes but RECORD says {record.size}")
            assert record.hash_ is not None
            digest = (other or sha256).digest()
            if not _record_digest_matches(digest, record.hash_.value):
                hint = (
                    "the wheel's own sha256 matched the published one, so the wheel was"
                    " built this way: ask its maintainers for a fixed wheel, or pin"
                    " another version"
                    if verified
                    else ""
                )
                raise HashMismatchError(
                    subject=where,
                    expected=record.hash_.value,
                    actual=_urlsafe_b64(digest),
                    algorithm=record.hash_.name,
                    expected_from="its RECORD",
                    hint=hint,
                )
        if dest is not None:
            records.append(FileRecord(dest, "x" if executable else "f", sha256.hexdigest(), size))
            if on_module is not None and dest.endswith(".py") and dest.startswith(_SITE_PREFIX):
                on_module(dest[len(_SITE_PREFIX) :], size)
    return records


_SITE_PREFIX = SITE_PACKAGES + "/"


def _record_digest_matches(digest: bytes, written: str) -> bool:
    """Whether RECORD's digest names these bytes.

    The wheel spec says unpadded urlsafe base64, but real wheels exist
    (a popular Sphinx theme's 2022 release) whose RECORD holds hex digests;
    pip and uv install them, and either spelling pins the same bytes, so
    both are accepted. Padding is tolerated for the same reason.
    """
    return written.rstrip("=") == _urlsafe_b64(digest) or written.lower() == digest.hex()


def _urlsafe_b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _make_parents(root: Path, dest: str, made: set[str], records: list[FileRecord]) -> None:
    parts = dest.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        rel = "/".join(parts[:i])
        if rel not in made:
            os.mkdir(root / rel, 0o755)
            made.add(rel)
            records.append(FileRecord(rel, "d", ""))


# --- metadata -----------------------------------------------------------------


def _metadata(plan: _Plan) -> dict[str, Any]:
    """The entry metadata a wheel adds to the store's common fields.

    ``top_level`` is every name directly under site-packages (what a view
    links); ``provides.python`` is what those names make findable: import
    names (``six.py`` and ``_x.cpython-311-x86_64-linux-gnu.so`` give
    ``six`` and ``_x``), ``.pth`` files and the ``.dist-info`` as they are.
    """
    pth_files = [n for n in plan.top_level if n.endswith(".pth")]
    provides = set()
    for top in plan.top_level:
        if top.endswith((".pth", ".dist-info")):
            provides.add(top)
        elif _MODULE_SUFFIX.search(top):
            provides.add(top.split(".", 1)[0])
        elif "." not in top:
            provides.add(top)
    return {
        "dependencies": plan.metadata["requires_dist"],
        "provides": {"python": sorted(provides)},
        "python": {
            "dist_info": plan.dist_info,
            "top_level": plan.top_level,
            "entry_points": plan.entry_points,
            "requires_python": plan.metadata["requires_python"],
            "requires_dist": plan.metadata["requires_dist"],
            "tags": plan.tags,
            "root_is_purelib": plan.root_is_purelib,
            "pth_files": pth_files,
            "wheel_filename": plan.filename,
        },
    }
