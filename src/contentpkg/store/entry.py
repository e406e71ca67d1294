"""Entries: immutable directories named ``name,version,hash``.

An entry holds one package's content at its root and its metadata under
``.cpk/``: ``entry.json`` (kind, name, version, content hash, source, source
hash, dependencies, what it provides, references to other entries) and
``files.json`` (every path with its type, hash and size, so ``verify`` can
name the file that changed and ``identify`` can say where a file came from).
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.store.hashing import META_DIR, SHORT_HASH_LEN, FileRecord

if TYPE_CHECKING:
    from contentpkg.store.layers import Layer

METADATA_FORMAT = 1
ENTRY_JSON = "entry.json"
FILES_JSON = "files.json"
#: Records of derived files, one per kind (``.cpk/bytecode-<cache tag>``):
#: JSON whose ``files`` maps each derived file's path to its sha256. Derived
#: files are outside the content hash, yet an unchecked-hash ``.pyc`` is what
#: Python runs, so ``verify`` checks them against these records.
DERIVED_RECORD_PREFIX = "bytecode-"

# Commas separate the parts of an entry's name; slashes would leave the store;
# colons separate elements of PATH, LD_LIBRARY_PATH and RUNPATH, where store
# paths end up; whitespace and control characters break shell and loader
# lists. A leading dot is reserved for the store's own bookkeeping.
_PART = re.compile(r"[^\s,/\\:\x00-\x1f\x7f][^\s,/\\:\x00-\x1f\x7f]*")
_BAD_CHAR = re.compile(r"[\s,/\\:\x00-\x1f\x7f]")
_HASH = re.compile(rf"[0-9a-df-np-sv-z]{{{SHORT_HASH_LEN}}}")


def check_part(what: str, value: str) -> str:
    """Validate a name or version for use in an entry's directory name."""
    if not value:
        raise CpkError(f"{what} is empty")
    bad = _BAD_CHAR.search(value)
    if bad:
        raise CpkError(f"{what} {value!r} contains {bad.group()!r}, which entry names cannot hold")
    if value.startswith(".") or value in ("..",):
        raise CpkError(f"{what} {value!r} starts with '.', which the store reserves")
    if len(value) > 120:
        raise CpkError(f"{what} {value[:40]!r}... is longer than 120 characters")
    return value


def parse_dirname(dirname: str) -> tuple[str, str, str] | None:
    """Split ``name,version,hash``; None when dirname is not an entry's name."""
    parts = dirname.split(",")
    if len(parts) != 3 or not _PART.fullmatch(parts[0]) or not _PART.fullmatch(parts[1]):
        return None
    if not _HASH.fullmatch(parts[2]):
        return None
    return parts[0], parts[1], parts[2]


class Spec:
    """What a user typed to name entries: ``name[,version[,hash-prefix]]``.

    Plain frozen classes here (this and :class:`Entry`), not dataclasses:
    rebuilding a view on ``cpk run`` imports this module, and the
    ``dataclasses`` import plus generating the methods cost that path
    milliseconds.
    """

    __slots__ = ("hash_prefix", "name", "version")

    name: str
    version: str | None
    hash_prefix: str | None

    def __init__(
        self, name: str, version: str | None = None, hash_prefix: str | None = None
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "hash_prefix", hash_prefix)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Spec is frozen: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Spec is frozen: cannot delete {name!r}")

    def _key(self) -> tuple[str, str | None, str | None]:
        return (self.name, self.version, self.hash_prefix)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Spec:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Spec(name={!r}, version={!r}, hash_prefix={!r})".format(*self._key())

    def __reduce__(self) -> tuple[type[Spec], tuple[str, str | None, str | None]]:
        return (Spec, self._key())

    @classmethod
    def parse(cls, text: str) -> Spec:
        parts = text.split(",")
        if len(parts) > 3 or not parts[0]:
            raise CpkError(f"{text!r} is not a spec: expected name[,version[,hash-prefix]]")
        name = parts[0]
        version = parts[1] if len(parts) > 1 and parts[1] else None
        hash_prefix = parts[2] if len(parts) > 2 and parts[2] else None
        return cls(name, version, hash_prefix)

    def matches(self, name: str, version: str, short: str) -> bool:
        if name != self.name:
            return False
        if self.version is not None and version != self.version:
            return False
        return self.hash_prefix is None or short.startswith(self.hash_prefix)

    def __str__(self) -> str:
        return ",".join(p for p in (self.name, self.version, self.hash_prefix) if p)


class Entry:
    """One entry of one store layer.

    Compared by identity, as entries of different layers may share a name.
    Not slotted: ``dirname`` and ``metadata`` are cached in the instance's
    dict, which ``cached_property`` writes past the refused ``__setattr__``.
    """

    path: Path
    name: str
    version: str
    short_hash: str
    layer: Layer

    def __init__(self, path: Path, name: str, version: str, short_hash: str, layer: Layer) -> None:
        self.__dict__.update(
            path=path, name=name, version=version, short_hash=short_hash, layer=layer
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Entry is frozen: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Entry is frozen: cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"Entry(path={self.path!r}, name={self.name!r}, version={self.version!r},"
            f" short_hash={self.short_hash!r})"
        )

    @cached_property
    def dirname(self) -> str:
        # Cached: planning an env dir asks it hundreds of thousands of times,
        # and pathlib computes a name anew each time.
        return self.path.name

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The parsed ``entry.json``; a missing or broken file is a CpkError."""
        meta_path = self.path / META_DIR / ENTRY_JSON
        try:
            with open(meta_path, "rb") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise CpkError(f"{self.dirname}: metadata unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise CpkError(f"{self.dirname}: metadata is not a JSON object")
        return data

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", "?"))

    @property
    def content_hash(self) -> str:
        return str(self.metadata.get("content_hash", ""))

    @property
    def size(self) -> int:
        return int(self.metadata.get("size", 0))

    def derived_records(self) -> dict[str, dict[str, str]]:
        """Each derived record's name with the files it vouches for.

        A record that cannot be read maps to an empty dict; verify then names
        its files as unrecorded.
        """
        meta_dir = self.path / META_DIR
        try:
            names = sorted(n for n in os.listdir(meta_dir) if n.startswith(DERIVED_RECORD_PREFIX))
        except OSError:
            return {}
        found: dict[str, dict[str, str]] = {}
        for name in names:
            try:
                with open(meta_dir / name, "rb") as f:
                    files = json.load(f).get("files")
            except (OSError, ValueError, AttributeError):
                files = None
            found[name] = (
                {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
            )
        return found

    def file_records(self) -> list[FileRecord]:
        """The records stored at add time (what the content should be)."""
        try:
            with open(self.path / META_DIR / FILES_JSON, "rb") as f:
                rows = json.load(f)
            return [FileRecord(path, kind, value, size) for kind, value, size, path in rows]
        except (OSError, ValueError, TypeError) as exc:
            raise CpkError(f"{self.dirname}: file list unreadable ({exc})") from None

    def __str__(self) -> str:
        return self.dirname


def dump_files(records: list[FileRecord]) -> bytes:
    """Serialise records for ``files.json``, sorted so the file is stable."""
    rows = [[r.kind, r.value, r.size, r.path] for r in sorted(records, key=lambda r: r.path)]
    return json.dumps(rows, separators=(",", ":")).encode()


def dump_metadata(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=1, sort_keys=True).encode() + b"\n"
