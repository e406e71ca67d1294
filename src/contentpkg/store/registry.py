"""What the namespaces tell the store: the roots gc keeps, the checks verify runs.

The store knows entries, refs files and the links under ``roots/``; it does
not know what a ``pylock.toml`` is, where profiles keep their generations or
what an ELF record promises. Each namespace describes those in the small
protocols below, and a :class:`Registry` carries them into
:func:`contentpkg.store.gc.collect` and :func:`contentpkg.store.verify.verify`
as an argument (as Nix's gc takes its roots from the profiles and gcroots
directories it is told about), so ``store/`` imports nothing above it and a
caller cannot forget a namespace by importing less: ``contentpkg.namespaces``
lists every namespace's registrations in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from contentpkg.store.entry import Entry
    from contentpkg.store.interfaces import StoreReader
    from contentpkg.store.layers import Store


class RootKind(Protocol):
    """A kind of file a root may point at, read by the namespace that wrote it.

    Example: a project's ``pylock.toml`` keeps the entries made from the
    files it names.
    """

    def claims(self, target: Path) -> bool:
        """Whether target (a file a root points at) is of this kind."""
        ...

    def entry_names(self, store: StoreReader, target: Path) -> list[str]:
        """Directory names of the entries target keeps alive (none if unreadable)."""
        ...


class RootSource(Protocol):
    """Roots a namespace keeps without a link under ``roots/``.

    Example: every generation of every profile. Each directory yielded is read
    as a directory root is: its ``.cpk/refs`` and ``.cpk/views``.
    """

    def root_dirs(self, home: Path) -> Iterable[Path]:
        """The directories under the user's home that are roots right now."""
        ...


@dataclass(frozen=True)
class ExpiringRoots:
    """Roots named ``prefix...`` that lapse once unused for ``max_age`` seconds.

    For what has no owner that could delete it (``contentpkg.use()`` farms):
    their users touch the root on each use, so its age says it is forgotten,
    and gc removes the target with the root.
    """

    prefix: str
    max_age: float


class DerivedFiles(Protocol):
    """Files a namespace derives from entries and keeps beside the store.

    Example: the link pool's symlinks into entries, the squashfs images of
    entries. They are worthless once their entries are gone, so gc removes
    them with the entries.
    """

    def doomed(self, store: Store, dead: Sequence[Entry]) -> list[Path]:
        """The files (or directories) under the home that go with ``dead``.

        Called while the dead entries are still in place (their metadata
        readable) and every builder is held off by the collector lock; gc
        removes what is returned after the entries themselves.
        """
        ...


class EntryCheck(Protocol):
    """A namespace's check of what its metadata says against the entry's files.

    Example: an ELF record's RUNPATH, SONAME and DT_NEEDED against the file.
    """

    def problems(self, entry: Entry, actual: dict[str, str]) -> list[str]:
        """What is wrong with entry; ``actual`` maps each path to its hash now.

        Called for every entry whose metadata is readable; a check decides
        from the metadata whether the entry is of its kind.
        """
        ...


@dataclass(frozen=True)
class Registry:
    """Everything the namespaces register, combined."""

    root_kinds: tuple[RootKind, ...] = ()
    root_sources: tuple[RootSource, ...] = ()
    expiring: tuple[ExpiringRoots, ...] = ()
    #: Folders under the user's home holding environments built from the
    #: store (views, overlays, shared env dirs): caches that live while a root
    #: reaches them, swept by gc otherwise.
    environment_areas: tuple[str, ...] = ()
    checks: tuple[EntryCheck, ...] = ()
    derived: tuple[DerivedFiles, ...] = ()

    @classmethod
    def combine(cls, *parts: Registry) -> Registry:
        """One registry holding every part's registrations (areas once each)."""
        areas: list[str] = []
        for part in parts:
            areas += [a for a in part.environment_areas if a not in areas]
        return cls(
            root_kinds=tuple(k for p in parts for k in p.root_kinds),
            root_sources=tuple(s for p in parts for s in p.root_sources),
            expiring=tuple(e for p in parts for e in p.expiring),
            environment_areas=tuple(areas),
            checks=tuple(c for p in parts for c in p.checks),
            derived=tuple(d for p in parts for d in p.derived),
        )
