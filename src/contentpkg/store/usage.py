"""``cpk store du``: what each gc root keeps alive, and what only it does.

The same reachability :mod:`.gc` computes, but per root instead of for all
of them at once, so a user deciding what to drop (a profile's old
generation, a forgotten project's lock) sees what dropping it would free.
Nothing is written: dangling roots are reported, not pruned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.store.gc import REFS, _environment_of, _names_in_refs, _root_names, _views_of
from contentpkg.store.layers import Store
from contentpkg.store.registry import Registry


@dataclass
class RootUsage:
    """One root: where it points and the entries it reaches."""

    name: str
    target: str
    entries: set[str] = field(default_factory=set)
    #: Bytes of every entry it reaches.
    size: int = 0
    #: Bytes of the entries no other root reaches: what removing it frees.
    only: int = 0
    dangling: bool = False


@dataclass
class StoreUsage:
    roots: list[RootUsage]
    #: User-store entries no root reaches (``cpk store gc`` removes them).
    unreachable: list[str]
    unreachable_size: int
    total_size: int


def _closure(store: Store, names: list[str], sizes: dict[str, int]) -> set[str]:
    """names and every entry their ``references`` reach."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        entry = store.entry(name)
        if entry is None:
            continue
        sizes.setdefault(name, entry.size)
        refs = entry.metadata.get("references", [])
        pending.extend(r for r in refs if isinstance(r, str))
    return seen


def _linked_roots(store: Store, registry: Registry) -> list[tuple[str, str, list[str] | None]]:
    found: list[tuple[str, str, list[str] | None]] = []
    try:
        names = sorted(os.listdir(store.roots_dir))
    except FileNotFoundError:
        names = []
    for name in names:
        if name.startswith("."):
            continue
        link = store.roots_dir / name
        shown = os.readlink(link) if link.is_symlink() else str(link)
        if not os.path.exists(link):
            found.append((name, shown, None))
            continue
        target = Path(os.path.realpath(link))
        env = _environment_of(store, registry, target)
        start = _root_names(store, registry, env if env is not None else target)
        if env is not None:
            view = env / ".cpk" / "view"
            if view.is_symlink():
                start += _root_names(store, registry, Path(os.path.realpath(view)))
        elif target.is_dir():
            start += _views_of(store, registry, target, None)
        found.append((name, shown, start))
    for source in registry.root_sources:
        for directory in source.root_dirs(store.home):
            start = _names_in_refs(directory / REFS) + _views_of(store, registry, directory, None)
            label = os.path.relpath(directory, store.home)
            found.append((label, str(directory), start))
    return found


def store_usage(store: Store, registry: Registry) -> StoreUsage:
    """Every root with what it keeps alive, largest first."""
    sizes: dict[str, int] = {}
    roots: list[RootUsage] = []
    for name, target, start in _linked_roots(store, registry):
        usage = RootUsage(name, target, dangling=start is None)
        if start is not None:
            usage.entries = _closure(store, start, sizes)
            usage.size = sum(sizes.get(n, 0) for n in usage.entries)
        roots.append(usage)
    holders: dict[str, int] = {}
    for usage in roots:
        for entry in usage.entries:
            holders[entry] = holders.get(entry, 0) + 1
    for usage in roots:
        usage.only = sum(sizes.get(n, 0) for n in usage.entries if holders[n] == 1)
    user = list(store.user.entries())
    unreachable = sorted(e.dirname for e in user if e.dirname not in holders)
    by_name = {e.dirname: e.size for e in user}
    roots.sort(key=lambda r: (-r.size, r.name))
    return StoreUsage(
        roots,
        unreachable,
        sum(by_name[n] for n in unreachable),
        sum(by_name.values()),
    )
