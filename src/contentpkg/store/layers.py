"""Layered stores: project, user and system, searched in that order.

A *layer* is a directory of entries. The user store (``$CPK_HOME/store``,
default ``$XDG_DATA_HOME/contentpkg/store``) is the only one written to; a
project store (``.cpk/store`` in the project or an ancestor directory) and
system stores (``CPK_STORE_PATH``, colon-separated) are read-only to cpk. An
entry name is the same content wherever it is found, so the first layer that
has it serves it.

Each kind of layer is its own type (:class:`LocalStore`,
:class:`ProjectStore`, :class:`SystemStore`); :class:`Store` layers them and
implements both interfaces of ``contentpkg.store.interfaces``. Where the
layers come from is the caller's :class:`~contentpkg.context.Context`; this
module reads no environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from contentpkg.errors import AmbiguousSpecError, CpkError, NotFoundError
from contentpkg.store import lookup
from contentpkg.store.entry import Entry, Spec, parse_dirname
from contentpkg.store.hashing import hash_file

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.add import AddResult
    from contentpkg.store.hashing import FileRecord


def find_project_store(start: Path) -> Path | None:
    """The nearest ``.cpk/store`` at or above start."""
    for directory in (start, *start.parents):
        candidate = directory / ".cpk" / "store"
        if candidate.is_dir():
            return candidate
    return None


class Layer:
    """One directory of entries; a read-only one unless a subclass says otherwise.

    ``role`` names the kind for display (``cpk store ls``' LAYER column);
    code that must tell layers apart asks for the type, or for ``writable``.
    """

    role: ClassVar[str] = "system"
    writable: ClassVar[bool] = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.root))

    def entry(self, dirname: str) -> Entry | None:
        parts = parse_dirname(dirname)
        if parts is None or not (self.root / dirname).is_dir():
            return None
        return Entry(self.root / dirname, *parts, layer=self)

    def entries(self) -> list[Entry]:
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        result = []
        for dirname in names:
            parts = parse_dirname(dirname)
            if parts is not None:
                result.append(Entry(self.root / dirname, *parts, layer=self))
        return result

    def match(self, spec: Spec) -> list[Entry]:
        return sorted(
            (e for e in self.entries() if spec.matches(e.name, e.version, e.short_hash)),
            key=lambda e: e.dirname,
        )

    def source_path(self, source_hash: str) -> Path | None:
        """Path of the entry made from source_hash, possibly in another layer.

        The user layer's table may name an equal entry of a read-only layer
        (see :func:`contentpkg.store.lookup.link_source`).
        """
        return lookup.find_source(self.root, source_hash)

    def find_source(self, source_hash: str) -> Entry | None:
        """The entry of this layer made from source_hash."""
        path = self.source_path(source_hash)
        return self.entry(path.name) if path is not None and path.parent == self.root else None

    def find_files(self, sha256: str) -> list[tuple[Entry, str]]:
        rows = lookup.find_files(self.root, sha256, writable=self.writable)
        if rows is None:
            # A read-only layer shipped without a table: read file lists.
            rows = [
                (e.dirname, r.path)
                for e in self.entries()
                for r in e.file_records()
                if r.value == sha256
            ]
        found = []
        for dirname, path in rows:
            entry = self.entry(dirname)
            if entry is not None:
                found.append((entry, path))
        return found


class LocalStore(Layer):
    """The user's store: the one layer cpk writes to."""

    role = "user"
    writable = True


class ProjectStore(Layer):
    """A project's ``.cpk/store``, shipped with it and read-only to cpk."""

    role = "project"


class SystemStore(Layer):
    """A store from ``CPK_STORE_PATH``, read-only (often owned by root)."""

    role = "system"


class Store:
    """All layers together: lookups search each, writes go to the user layer."""

    def __init__(self, home: Path, layers: Sequence[Layer]) -> None:
        self.home = home
        self.layers = list(layers)
        self.user = next(layer for layer in self.layers if isinstance(layer, LocalStore))

    @classmethod
    def open(cls, cwd: Path | None = None, *, ctx: Context | None = None) -> Store:
        """The layers ctx names, with the project store found from cwd.

        Without a context, one is read from this process's environment: a
        convenience for tests and scripts; commands pass the one they built.
        """
        if ctx is None:
            from contentpkg.context import Context

            ctx = Context.from_environ()
        # A home that is a file would read as an empty store ("no entries",
        # success) and fail only at the first write: say so at once.
        for directory in (ctx.home, ctx.store_dir):
            if directory.exists() and not directory.is_dir():
                raise CpkError(f"{directory}: not a directory (cpk's home is set by CPK_HOME)")
        layers: list[Layer] = []
        project = find_project_store(cwd or Path.cwd())
        if project is not None:
            layers.append(ProjectStore(project))
        layers.append(LocalStore(ctx.store_dir))
        layers += [SystemStore(path) for path in ctx.system_stores]
        return cls(ctx.home, layers)

    @property
    def roots_dir(self) -> Path:
        return self.home / "roots"

    def ensure(self) -> None:
        """Create the user store's directories (only writers need them)."""
        self.user.root.mkdir(parents=True, exist_ok=True)
        self.roots_dir.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[Entry]:
        """Every entry, the first layer's copy when several layers hold one."""
        seen: dict[str, Entry] = {}
        for layer in self.layers:
            for entry in layer.entries():
                seen.setdefault(entry.dirname, entry)
        return list(seen.values())

    def entry(self, dirname: str) -> Entry | None:
        for layer in self.layers:
            entry = layer.entry(dirname)
            if entry is not None:
                return entry
        return None

    def match(self, spec: Spec) -> list[Entry]:
        return sorted(
            (e for e in self.entries() if spec.matches(e.name, e.version, e.short_hash)),
            key=lambda e: e.dirname,
        )

    def resolve(self, text: str) -> Entry:
        """The one entry a spec names; an error naming candidates otherwise."""
        if "/" in text and os.path.isdir(text):
            return self._entry_at(Path(text))
        spec = Spec.parse(text)
        found = self.match(spec)
        if len(found) == 1:
            return found[0]
        if not found:
            names = sorted({e.name for e in self.entries() if e.name.lower() == spec.name.lower()})
            hint = f" (did you mean {', '.join(names)}?)" if names else ""
            raise NotFoundError(f"no entry matches {str(spec)!r}{hint}", what=str(spec))
        raise AmbiguousSpecError(
            f"{str(spec)!r} is ambiguous: {len(found)} entries match; add a version or hash prefix",
            spec=str(spec),
            candidates=[f"{e.dirname}  [{e.layer.role}]" for e in found],
        )

    def _entry_at(self, path: Path) -> Entry:
        real = path.resolve()
        for layer in self.layers:
            if real.parent == layer.root.resolve():
                entry = layer.entry(real.name)
                if entry is not None:
                    return entry
        raise NotFoundError(f"{path}: not an entry of any store layer", what=str(path))

    def find_source(self, source_hash: str) -> Entry | None:
        """The entry made from source_hash (a wheel's, a .deb's sha256)."""
        for layer in self.layers:
            path = layer.source_path(source_hash)
            if path is None:
                continue
            parent = path.parent
            owner = next((o for o in self.layers if o.root == parent), None)
            # source_path() has just seen the directory: only the name is
            # left to check, not a second stat (this runs once per locked
            # package on every sync).
            parts = parse_dirname(path.name) if owner else None
            entry = Entry(path, *parts, layer=owner) if owner and parts else None
            if entry is None:  # a layer reached under another spelling
                found = self.containing(path)
                entry = found[0] if found and not found[1] else None
            if entry is not None:
                return entry
        return None

    def containing(self, path: Path) -> tuple[Entry, str] | None:
        """The entry a path is or lies inside (symlinks resolved), and the rest."""
        real = path.resolve()
        for layer in self.layers:
            root = layer.root.resolve()
            if real.is_relative_to(root) and real != root:
                rel = real.relative_to(root)
                entry = layer.entry(rel.parts[0])
                if entry is not None:
                    return entry, "/".join(rel.parts[1:])
        return None

    def find_files(self, sha256: str) -> list[tuple[Entry, str]]:
        """Every (entry, path) of any layer holding a file with this sha256."""
        found: dict[tuple[str, str], tuple[Entry, str]] = {}
        for layer in self.layers:
            for entry, rel in layer.find_files(sha256):
                found.setdefault((entry.dirname, rel), (entry, rel))
        return list(found.values())

    def identify(self, path: Path) -> tuple[str, list[tuple[Entry, str]]]:
        """Hash a file and find every entry and path that holds it."""
        if not path.is_file():
            raise CpkError(f"{path}: not a regular file")
        sha256, _ = hash_file(path)
        return sha256, self.find_files(sha256)

    def add(
        self,
        name: str,
        version: str,
        kind: str,
        populate: Callable[[Path], list[FileRecord] | None],
        **options: Any,
    ) -> AddResult:
        """Add an entry to the user layer (see :func:`contentpkg.store.add.add_built`)."""
        from contentpkg.store.add import add_built  # the writer needs this module

        return add_built(self, name, version, kind, populate, **options)
