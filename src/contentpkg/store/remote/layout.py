"""How an entry looks on a registry: manifest, config, layer, tags, index.

* One entry is one OCI image manifest of ``artifactType``
  :data:`ENTRY_TYPE` in the repository ``<prefix>/<name>``, tagged
  ``<version>-<hash>`` (see :func:`tag_for`). Its config blob is the
  entry's ``entry.json``, byte for byte; its one layer is the whole entry
  directory (content, ``.cpk/`` metadata, and derived files such as
  compiled bytecode, so a pulled entry need not compile again) as a
  deterministic tar compressed with zstd.
* The index: one small manifest per source hash, in the repository
  ``<prefix>/cpk-index`` tagged ``sha256-<hex>``, whose annotations name
  the entry's repository, tag and manifest digest. A lock file's wheel hash
  finds its entry with one request, without listing tags. One manifest per
  hash, rather than one shared document, lets many machines publish at once
  without overwriting each other (registries have no compare-and-swap).
* The index table: the same rows gathered in one JSON blob, tagged
  :data:`INDEX_TABLE_TAG` in ``<prefix>/cpk-index``, which every push merges
  its rows into. A pull reads it once (two requests, the blob cached by its
  digest) instead of one request per hash. Two pushes racing can drop each
  other's rows from it, since a registry has no compare-and-swap: the
  per-hash manifests stay the truth, asked for any hash the table lacks.
* Signatures: see :mod:`contentpkg.store.remote.signing`.

The tarball is made by hand with :mod:`tarfile` because its bytes must be a
function of the entry alone (sorted names, zero times and owners, canonical
modes): two machines pushing one entry make the same blob, which the
registry then stores once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from contentpkg.errors import CpkError
from contentpkg.store.entry import ENTRY_JSON, Entry
from contentpkg.store.hashing import DERIVED_DIRS, META_DIR, FileRecord

ENTRY_TYPE = "application/vnd.contentpkg.entry.v1"
CONFIG_TYPE = "application/vnd.contentpkg.entry.config.v1+json"
LAYER_TYPE = "application/vnd.contentpkg.entry.tar+zstd"
INDEX_TYPE = "application/vnd.contentpkg.index.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest()
INDEX_REPOSITORY = "cpk-index"
#: The index table's tag and media types (see the module's docstring).
INDEX_TABLE_TAG = "table"
INDEX_TABLE_TYPE = "application/vnd.contentpkg.index-table.v1"
INDEX_TABLE_LAYER = "application/vnd.contentpkg.index-table.v1+json"

#: Annotations of an index manifest: where the entry made from the source is.
A_ENTRY = "dev.contentpkg.entry"
A_REPOSITORY = "dev.contentpkg.repository"
A_TAG = "dev.contentpkg.tag"
A_DIGEST = "dev.contentpkg.manifest"
A_SOURCE = "dev.contentpkg.source-hash"

_ZSTD_LEVEL = 3
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_REPO_BAD = re.compile(r"[^a-z0-9]+")


def repository_for(name: str) -> str:
    """A package name as a repository path component (``[a-z0-9]+([._-][a-z0-9]+)*``).

    Different names may share a repository after this (``Foo`` and
    ``foo``); tags carry the hash and the config carries the real name,
    so nothing is confused.
    """
    parts = [p for p in _REPO_BAD.split(name.lower()) if p]
    return "-".join(parts) or "unnamed"


def tag_for(version: str, short_hash: str) -> str:
    """``<version>-<hash>`` in the tag grammar ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``."""
    clean = _TAG_BAD.sub("_", version)[: 127 - len(short_hash) - 1]
    if not clean or not (clean[0].isalnum() or clean[0] == "_"):
        clean = "_" + clean[1:] if clean else "_"
    return f"{clean}-{short_hash}"


def plain_sha256(source_hash: str) -> str | None:
    """The hex of a sha256 source hash, written ``sha256:<hex>`` (wheels, as
    locks give them) or bare (``.deb`` entries record it so)."""
    value = source_hash.removeprefix("sha256:")
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None


def index_tag(source_hash: str, *, unmodified: bool = False) -> str | None:
    """The index tag for an entry made from source_hash.

    A ``.deb`` can have two entries: the patched one (its source hash) and
    the one a union stores as shipped (``unmodified_of``); the second is
    indexed under the same hash with ``.unmodified`` after it.
    """
    value = plain_sha256(source_hash)
    if not value:
        return None
    return f"sha256-{value}.unmodified" if unmodified else f"sha256-{value}"


@dataclass(frozen=True)
class IndexRow:
    """Where the entry indexed under one index tag is: what the per-hash
    manifest's annotations say, and one row of the index table."""

    entry: str  # name,version,hash
    repository: str  # without the remote's prefix
    tag: str
    manifest: str  # the entry manifest's digest

    def as_json(self) -> dict[str, str]:
        return {
            "entry": self.entry,
            "repository": self.repository,
            "tag": self.tag,
            "manifest": self.manifest,
        }


def table_bytes(rows: dict[str, IndexRow]) -> bytes:
    """The index table's blob: rows by index tag, serialised one way only."""
    return json.dumps(
        {"type": "contentpkg-index-table-v1", "rows": {k: r.as_json() for k, r in rows.items()}},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def parse_table(data: bytes, where: str) -> dict[str, IndexRow]:
    """The rows of an index table's blob; malformed rows are skipped (the
    per-hash manifests still find those entries), a malformed blob refused."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, dict):
        raise CpkError(f"{where}: the index table is not a cpk index table")
    table = {}
    for key, row in rows.items():
        if not isinstance(row, dict):
            continue
        fields = [row.get(k) for k in ("entry", "repository", "tag", "manifest")]
        if all(isinstance(f, str) and f for f in fields):
            table[str(key)] = IndexRow(*fields)  # type: ignore[arg-type]
    return table


def descriptor(media_type: str, digest: str, size: int, **more: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **more}


def manifest_bytes(
    artifact_type: str,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    annotations: dict[str, str] | None = None,
) -> bytes:
    """An OCI image manifest, serialised one way only (so equal inputs, equal digests)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": config,
        "layers": layers,
    }
    if annotations:
        manifest["annotations"] = annotations
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError:
        raise CpkError(f"{where}: the manifest is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise CpkError(f"{where}: not an OCI image manifest")
    return manifest


@dataclass(frozen=True)
class PackedEntry:
    """An entry made ready to push: its config bytes and its layer on disk."""

    entry: Entry
    config: bytes
    layer: Path
    layer_digest: str
    layer_size: int
    repository: str
    tag: str

    @property
    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()

    def manifest(self) -> bytes:
        meta = self.entry.metadata
        annotations = {
            A_ENTRY: self.entry.dirname,
            "org.opencontainers.image.title": self.entry.name,
            "org.opencontainers.image.version": self.entry.version,
        }
        if meta.get("source_hash"):
            annotations[A_SOURCE] = str(meta["source_hash"])
        return manifest_bytes(
            ENTRY_TYPE,
            descriptor(CONFIG_TYPE, self.config_digest, len(self.config)),
            [descriptor(LAYER_TYPE, self.layer_digest, self.layer_size)],
            annotations,
        )


def pack(entry: Entry, dest: Path) -> PackedEntry:
    """Write entry's deterministic tar.zst to dest and describe it."""
    import zstandard

    config = (entry.path / META_DIR / ENTRY_JSON).read_bytes()
    h = _HashingWriter(open(dest, "wb"))  # noqa: SIM115 - closed with h, below
    try:
        cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
        with (
            cctx.stream_writer(h, closefd=False) as zw,
            tarfile.open(
                fileobj=zw,
                mode="w|",
                format=tarfile.PAX_FORMAT,  # type: ignore[arg-type]
            ) as tar,
        ):
            _add_tree(tar, entry.path)
    finally:
        h.close()
    return PackedEntry(
        entry,
        config,
        dest,
        "sha256:" + h.hash.hexdigest(),
        h.size,
        repository_for(entry.name),
        tag_for(entry.version, entry.short_hash),
    )


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    """Everything below root in byte order of paths, with canonical headers."""
    paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            paths.append(name if rel == "." else f"{rel}/{name}")
    for rel in sorted(paths, key=os.fsencode):
        full = os.path.join(root, rel)
        st = os.lstat(full)
        info = tarfile.TarInfo(rel)
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(full)
            info.mode = 0o777
            tar.addfile(info)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            with open(full, "rb") as f:
                tar.addfile(info, f)
        else:
            raise CpkError(f"{full}: special file in an entry; cannot push it")


@dataclass
class Unpacked:
    """What an unpack wrote, hashed on the way: the content's records (as the
    content hash sees them) and the sha256 of every derived file, by path."""

    records: list[FileRecord]
    derived: dict[str, str]
    #: Directories made (still writable: the caller seals them once checked).
    dirs: list[str]
    #: Files made by writing their bytes, and files made as a hard link to
    #: an identical one already written (see :class:`SameFiles`).
    written: int = 0
    linked: int = 0
    #: Bytes of file data hashed: each member's bytes exactly once.
    hashed: int = 0


class SameFiles:
    """The files written by one batch of unpacks, by content and mode.

    A file whose bytes and mode equal one already written is made a hard
    link to it: no inode to allocate, no data to write. Entries of one
    project share many files (empty ``__init__.py``, licences, the same
    vendored module; 576 of the 7,229 files of the 14-package benchmark),
    and creating a file is most of what an unpack costs. The bytes are
    hashed from the stream before the link is made, so a linked file is
    vouched for by its own layer, as a written one is. Store files are
    read-only and never changed in place, so sharing an inode between
    entries changes nothing a reader sees (the union's entries share theirs
    the same way). Only files whose writer has closed them are offered, and
    any failure to link (a link limit, a target gone) falls back to writing.
    """

    def __init__(self) -> None:
        self._paths: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def find(self, digest: str, mode: int) -> str | None:
        with self._lock:
            return self._paths.get((digest, mode))

    def add(self, digest: str, mode: int, path: str) -> None:
        with self._lock:
            self._paths.setdefault((digest, mode), path)


def unpack(fileobj: BinaryIO, dest: Path, where: str, same: SameFiles | None = None) -> Unpacked:
    """Extract a layer into dest (an empty staging directory), hashing as it writes.

    Written out rather than left to ``tarfile.extractall``: the ``data``
    filter resolves every member's real path, ``tarfile`` builds an object
    per member, and the files would then be read a second time to hash
    them; for entries of thousands of files that was most of a pull. The
    checks are the filter's, made cheaper by the layer's own order: members
    are normalised relative paths, each inside a directory this unpack
    created (so never through a symlink), only files, directories and
    symlinks; symlink targets are checked to stay inside by the caller, as
    for every entry. With ``same``, a file identical to one already written
    in the batch is hard-linked to it instead (see :class:`SameFiles`).
    """
    import zstandard

    records: list[FileRecord] = []
    derived: dict[str, str] = {}
    dirs = {""}
    root = os.fspath(dest)
    try:
        with zstandard.ZstdDecompressor().stream_reader(fileobj) as zr:
            reader = _TarReader(zr, where, same)
            for rel, kind, mode, size, link in reader.members():
                parts = rel.split("/")
                if (
                    "\0" in rel
                    # A leading "/" splits into an empty first part.
                    or not _UNSAFE_PARTS.isdisjoint(parts)
                    or rel.rpartition("/")[0] not in dirs
                    or rel in dirs
                ):
                    raise CpkError(f"{where}: the layer holds an unsafe path {rel!r}")
                full = f"{root}/{rel}"
                is_derived = not DERIVED_DIRS.isdisjoint(parts[:-1])
                content = not is_derived and parts[0] != META_DIR and parts[-1] not in DERIVED_DIRS
                if kind == "d":
                    os.mkdir(full, 0o755)
                    dirs.add(rel)
                    if content:
                        records.append(FileRecord(rel, "d", ""))
                elif kind == "l":
                    os.symlink(link, full)
                    if content:
                        records.append(FileRecord(rel, "l", link))
                else:
                    executable = bool(mode & 0o100)
                    # Created with the store's final mode (writing through the
                    # descriptor still works), so sealing has only directories left.
                    digest = reader.copy(full, size, 0o555 if executable else 0o444)
                    if is_derived:
                        derived[rel] = digest
                    elif content:
                        records.append(FileRecord(rel, "x" if executable else "f", digest, size))
            # Whatever follows the tar's end is part of the blob, whose digest
            # is checked only once it has been read whole.
            _drain(fileobj)
    except (zstandard.ZstdError, EOFError) as exc:
        # Bytes that are not what the manifest names are reported as such
        # (the digest check) rather than as whatever they failed to parse as.
        _drain(fileobj)
        raise CpkError(
            f"{where}: the layer is not a valid tar.zst ({exc or 'truncated'})"
        ) from None
    except FileExistsError:
        raise CpkError(f"{where}: the layer holds a path twice") from None
    return Unpacked(
        records, derived, sorted(dirs - {""}), reader.written, reader.linked, reader.hashed
    )


#: Path components a layer's member may not have (empty, ``.``, ``..``).
_UNSAFE_PARTS = frozenset({"", ".", ".."})


def _drain(fileobj: BinaryIO) -> None:
    drain = getattr(fileobj, "drain", None)
    if drain is not None:
        drain()


class _TarReader:
    """The tars :func:`pack` writes, read back: POSIX ustar headers, with PAX
    records for what does not fit them (long paths and link targets).

    Anything else (GNU long names, hard links, devices, sparse files) is
    refused: a layer of cpk's media type holds only what cpk writes.
    """

    #: Bytes asked of the decompressor at a time: most members are small
    #: files, served from this buffer by slicing rather than by one
    #: decompressor call each (those calls were a pull's main Python cost).
    _FILL = 1 << 20

    def __init__(self, raw: Any, where: str, same: SameFiles | None = None) -> None:
        self.raw = raw
        self.where = where
        self.same = same
        self._buf = b""
        self._pos = 0
        self.written = 0
        self.linked = 0
        self.hashed = 0

    def _take(self, n: int) -> memoryview:
        """Up to n bytes (at least one), from the buffer or a refill; empty at the end."""
        if self._pos >= len(self._buf):
            self._buf = self.raw.read(max(n, self._FILL))
            self._pos = 0
            if not self._buf:
                return memoryview(b"")
        end = min(self._pos + n, len(self._buf))
        view = memoryview(self._buf)[self._pos : end]
        self._pos = end
        return view

    def _exact(self, n: int) -> bytes:
        data = bytes(self._take(n))
        while len(data) < n:
            more = self._take(n - len(data))
            if not more:
                raise EOFError("truncated tar")
            data += more
        return data

    def _skip(self, n: int) -> None:
        """Pass over n bytes (a member's padding) without copying them."""
        while n:
            got = len(self._take(n))
            if not got:
                raise EOFError("truncated tar")
            n -= got

    def _bad(self, why: str) -> CpkError:
        return CpkError(f"{self.where}: the layer is not a cpk tarball ({why})")

    def members(self) -> Iterator[tuple[str, str, int, int, str]]:
        """(path, kind ``f``/``d``/``l``, mode, size, link target) per member.

        A file's bytes must be consumed with :meth:`copy` before the next.
        """
        pax: dict[str, str] = {}
        while True:
            block = self._exact(512)
            if block == _ZERO_BLOCK:
                return
            if int(block[148:156].strip(b"\0 ") or b"0", 8) != sum(block[:148]) + 256 + sum(
                block[156:]
            ):
                raise self._bad("header checksum")
            kind = block[156:157]
            size = _number(block[124:136])
            if kind == b"x":
                data = self._exact(size + (-size % 512))[:size]
                pax = _pax_records(data, self._bad)
                continue
            name = block[0:100].split(b"\0", 1)[0]
            if block[257:263] == b"ustar\0" and block[345] != 0:
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
            path = pax.get("path") or name.decode("utf-8", "surrogateescape")
            link = pax.get("linkpath") or block[157:257].split(b"\0", 1)[0].decode(
                "utf-8", "surrogateescape"
            )
            if "size" in pax:
                size = int(pax["size"])
            pax = {}
            mode = _number(block[100:108])
            if kind in (b"0", b"\0"):
                yield path, "f", mode, size, ""
            elif kind == b"5":
                yield path.rstrip("/"), "d", mode, 0, ""
            elif kind == b"2":
                yield path, "l", mode, 0, link
            else:
                raise self._bad(f"member {path!r} of type {kind!r}")

    def copy(self, path: str, size: int, mode: int) -> str:
        """Write the current member's bytes to a new file (or link an
        identical one, see :class:`SameFiles`); their sha256."""
        self.hashed += size
        first = self._take(size) if size else memoryview(b"")
        if len(first) == size:
            # The whole file is in hand (most are: the buffer holds a
            # megabyte): hashed before anything is created, so a copy of a
            # file already written becomes a link.
            digest = hashlib.sha256(first).hexdigest()
            existing = self.same.find(digest, mode) if self.same is not None else None
            if existing is not None and _link(existing, path):
                self.linked += 1
            else:
                self._write(path, mode, first, 0, None)
                if self.same is not None:
                    self.same.add(digest, mode, path)
        else:
            h = hashlib.sha256(first)
            self._write(path, mode, first, size - len(first), h)
            digest = h.hexdigest()
        if size % 512:
            self._skip(512 - size % 512)
        return digest

    def _write(self, path: str, mode: int, first: memoryview, left: int, h: Any | None) -> None:
        """Create path with its final mode (writing through the descriptor
        still works), write first and then left more bytes of the member,
        hashing those into h."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            view = first
            while view:
                view = view[os.write(fd, view) :]
            while left:
                view = self._take(left)
                if not view:
                    raise EOFError("truncated tar")
                left -= len(view)
                h.update(view)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.written += 1


def _link(existing: str, path: str) -> bool:
    """Hard-link path to existing; False when the file system will not (a
    link limit, another device, the target gone) and it must be written."""
    try:
        os.link(existing, path)
    except FileExistsError:
        raise
    except OSError:
        return False
    return True


_ZERO_BLOCK = bytes(512)


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when its top bit is set."""
    if field and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    return int(field.strip(b"\0 ") or b"0", 8)


def _pax_records(data: bytes, bad: Any) -> dict[str, str]:
    """``<length> <key>=<value>\\n`` records (POSIX pax extended headers)."""
    found = {}
    while data:
        length_text, sep, _ = data.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise bad("pax record length") from None
        record, data = data[:length], data[length:]
        key, eq, value = record[len(length_text) + 1 : -1].partition(b"=")
        if not sep or not eq or not record.endswith(b"\n"):
            raise bad("pax record")
        found[key.decode()] = value.decode("utf-8", "surrogateescape")
    return found


class _HashingWriter(io.RawIOBase):
    """A file that hashes and counts what is written through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        self.f.write(view)
        return len(view)

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()
