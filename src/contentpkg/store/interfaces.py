"""The store's two interfaces: reading entries, and adding them atomically.

Everything above ``store/`` reaches entries through these, as everything in
Nix reaches paths through libstore's ``Store``: the local user store, the
read-only project and system stores, and the layered store that searches
them all are implementations (``contentpkg.store.layers``), and a remote
store on an OCI registry is meant to be one more.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from contentpkg.store.add import AddResult
    from contentpkg.store.entry import Entry, Spec
    from contentpkg.store.hashing import FileRecord


@runtime_checkable
class StoreReader(Protocol):
    """Finding entries: by name, by spec, by source hash, by a file's hash."""

    def entry(self, dirname: str) -> Entry | None:
        """The entry named ``name,version,hash``, if this store holds it."""
        ...

    def entries(self) -> list[Entry]:
        """Every entry (one per name)."""
        ...

    def match(self, spec: Spec) -> list[Entry]:
        """The entries a spec matches, sorted by name."""
        ...

    def find_source(self, source_hash: str) -> Entry | None:
        """The entry made from source_hash (a wheel's, a ``.deb``'s sha256)."""
        ...

    def find_files(self, sha256: str) -> list[tuple[Entry, str]]:
        """Every (entry, path) holding a file with this sha256."""
        ...


@runtime_checkable
class StoreWriter(Protocol):
    """Adding an entry whole or not at all (see ``contentpkg.store.add``)."""

    def add(
        self,
        name: str,
        version: str,
        kind: str,
        populate: Callable[[Path], list[FileRecord] | None],
        **options: Any,
    ) -> AddResult:
        """Build an entry with populate in staging and publish it with one rename."""
        ...
