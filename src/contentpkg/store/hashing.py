"""Content hashes: what a tree of files is, reduced to one digest.

The content hash is sha256 over a deterministic serialisation of the tree:
a format tag, then one record per path in byte-sorted order, each record
``type NUL path NUL value NUL`` where type is ``d`` (directory), ``f``
(file), ``x`` (executable file) or ``l`` (symlink) and value is the file's
own sha256 in hex, the symlink's target, or empty for a directory. Neither
paths nor targets can contain NUL, so the serialisation is injective: equal
hashes mean equal trees (paths, types, executable bits, targets, bytes).

Hashing files individually first (rather than streaming bytes into one
digest, as Nix's NAR does) gives every file its own hash for free, which the
store keeps in a lookup table so ``cpk identify`` can name where a loose
file came from.

Derived files are not content: ``__pycache__`` directories anywhere and the
entry's own metadata directory at the root are excluded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

TREE_FORMAT = b"cpk-tree-1\0"

#: Nix's base32 alphabet: digits and lowercase letters without e, o, u, t,
#: so hashes never spell words and read unambiguously.
_NIX_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_TO_NIX = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _NIX_ALPHABET)

#: Length of the hash in an entry's directory name: 32 base32 digits, 160 bits.
SHORT_HASH_LEN = 32

#: Names excluded from content at every depth (derived, rebuilt on demand).
DERIVED_DIRS = frozenset({"__pycache__"})

#: The entry's metadata directory, at the root of an entry only.
META_DIR = ".cpk"


def b32(digest: bytes) -> str:
    """Encode a digest in Nix's base32 alphabet (big-endian bit order)."""
    return base64.b32encode(digest).decode("ascii").rstrip("=").translate(_TO_NIX)


class FileRecord:
    """One path of a tree as the content hash sees it.

    ``kind`` is ``d``, ``f``, ``x`` or ``l``; ``value`` is the hex sha256 of a
    file, the target of a symlink, or empty for a directory; ``size`` is the
    file's length (0 for the others).

    A plain frozen class rather than a dataclass: ``cpk run`` rebuilding a
    view imports this module, and ``dataclasses`` (with the ``inspect`` it
    loads) plus generating the methods cost that path milliseconds.
    """

    __slots__ = ("kind", "path", "size", "value")

    path: str
    kind: str
    value: str
    size: int

    def __init__(self, path: str, kind: str, value: str, size: int = 0) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "path", path)
        setattr_(self, "kind", kind)
        setattr_(self, "value", value)
        setattr_(self, "size", size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"FileRecord is frozen: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"FileRecord is frozen: cannot delete {name!r}")

    def _key(self) -> tuple[str, str, str, int]:
        return (self.path, self.kind, self.value, self.size)

    def __eq__(self, other: object) -> bool:
        if type(other) is not FileRecord:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "FileRecord(path={!r}, kind={!r}, value={!r}, size={!r})".format(*self._key())

    # Records cross process pools (batch adds): rebuilt through __init__, as
    # the default for slots would set them with the refused __setattr__.
    def __reduce__(self) -> tuple[type[FileRecord], tuple[str, str, str, int]]:
        return (FileRecord, self._key())

    def serialise(self) -> bytes:
        return b"%s\0%s\0%s\0" % (
            self.kind.encode(),
            os.fsencode(self.path),
            os.fsencode(self.value),
        )


def tree_digest(records: Iterable[FileRecord]) -> bytes:
    """The sha256 digest of a tree given its records, in any order."""
    h = hashlib.sha256(TREE_FORMAT)
    for record in sorted(records, key=lambda r: os.fsencode(r.path)):
        h.update(record.serialise())
    return h.digest()


def content_hash(records: Iterable[FileRecord]) -> str:
    """The content hash as stored in metadata: ``sha256:`` + 52 base32 digits."""
    return "sha256:" + b32(tree_digest(records))


def short_hash(full: str) -> str:
    """The hash used in an entry's directory name (a 160-bit prefix)."""
    return full.split(":", 1)[1][:SHORT_HASH_LEN]


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return (hex sha256, size) of a regular file, read in one pass."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


def walk(root: str | os.PathLike[str]) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (relative path, DirEntry) for everything below root.

    Symlinks are yielded, never followed. Derived directories and the root's
    metadata directory are skipped. Order is unspecified: callers that need
    determinism sort (the hash does).
    """
    stack = [("", os.fspath(root))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as it:
            for item in it:
                if item.name in DERIVED_DIRS or (not prefix and item.name == META_DIR):
                    continue
                rel = prefix + item.name
                yield rel, item
                if item.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", item.path))


def scan_tree(root: str | os.PathLike[str]) -> list[FileRecord]:
    """Hash every path below root (an entry, or any tree) into records.

    Special files are recorded with kind ``?`` so that a caller comparing
    against stored records sees a mismatch rather than a crash.
    """
    records = []
    for rel, item in walk(root):
        st = item.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            records.append(FileRecord(rel, "d", ""))
        elif stat.S_ISLNK(st.st_mode):
            records.append(FileRecord(rel, "l", os.readlink(item.path)))
        elif stat.S_ISREG(st.st_mode):
            digest, size = hash_file(item.path)
            kind = "x" if st.st_mode & stat.S_IXUSR else "f"
            records.append(FileRecord(rel, kind, digest, size))
        else:
            records.append(FileRecord(rel, "?", "", 0))
    return records


def tree_hash(root: str | os.PathLike[str]) -> str:
    """The content hash of the tree at root."""
    return content_hash(scan_tree(Path(root)))
