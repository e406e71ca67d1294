"""Garbage collection: keep what roots reach, remove the rest of the user store.

A root is a symlink under ``$CPK_HOME/roots/``. It may point at:

* a store entry (or anything inside one): that entry is live;
* a directory holding ``.cpk/refs`` (a view, an env dir, a profile
  generation): every entry listed there is live;
* a file of a kind a namespace registered (a :class:`RootKind`, such as a
  project's ``pylock.toml``): the entries that namespace reads from it;
* any other file (a refs file): every entry listed in it.

Namespaces also register roots that need no link (a :class:`RootSource`:
every profile generation), roots that lapse when unused
(:class:`ExpiringRoots`), and the folders of environments built from the
store (views, overlays), which are swept when no root reaches them. An
environment names the environments it runs in with ``.cpk/view`` (a link)
or ``.cpk/views`` (one path per line), and keeps them alive.

A refs file lists one entry per line, by directory name or by path. Liveness
then follows each live entry's ``references`` metadata to a fixed point.
Roots whose target has gone are pruned. Only the user layer is swept; the
project and system layers are read-only to cpk.

What the namespaces register comes in as a :class:`Registry` argument, so
``store/`` imports none of them (``contentpkg.namespaces`` lists them all).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.fs import TMP_PREFIX, remove_tree, replace_symlink, tmp_owner_alive, write_atomic
from contentpkg.store import lookup
from contentpkg.store.entry import Entry, parse_dirname
from contentpkg.store.layers import Store
from contentpkg.store.locks import IN_USE, LOCKS, collector_lock, reading_lock
from contentpkg.store.registry import ExpiringRoots, Registry, RootKind, RootSource
from contentpkg.store.staging import Slot, clean_stale

__all__ = ["ExpiringRoots", "Registry", "RootKind", "RootSource", "add_root", "collect"]

REFS = ".cpk/refs"


@dataclass
class GcReport:
    removed: list[tuple[str, int]] = field(default_factory=list)  # (entry, bytes)
    removed_environments: list[tuple[str, int]] = field(default_factory=list)
    #: Files derived from the removed entries (pool links, images), by path
    #: under the home.
    removed_derived: list[tuple[str, int]] = field(default_factory=list)
    pruned_roots: list[str] = field(default_factory=list)
    #: Environments kept only because a running process holds them (by
    #: path under the home).
    in_use: list[str] = field(default_factory=list)
    live: int = 0
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(
            size for _, size in [*self.removed, *self.removed_environments, *self.removed_derived]
        )


def write_refs(path: Path, entries: list[Entry]) -> None:
    """Write a refs file listing entries (for views, env dirs, lock roots)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Durable: the refs are what keeps the entries alive after a crash.
    write_atomic(path, "".join(f"{e.dirname}\n" for e in entries), durable=True)


def in_use(environment: Path) -> bool:
    """Whether a running process holds environment (``locks.hold_in_use``).

    Asked under the collector lock held exclusively: users take their hold
    while holding it shared, so none can start between this answer and the
    sweep.
    """
    import fcntl

    try:
        fd = os.open(environment / IN_USE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock too
    return False


def _environments(store: Store, registry: Registry) -> Iterator[tuple[str, Path, str, Path]]:
    """Every environment directory (views, farms, merged sites), in a stable
    order: its area, the area's directory, its name, and its real path (roots
    and holds name the resolved path, and the home may be reached by a link).
    Hidden names are staging and gc debris, never environments."""
    for area in registry.environment_areas:
        base = store.home / area
        try:
            names = sorted(os.listdir(base))
        except FileNotFoundError:
            continue
        real_base = Path(os.path.realpath(base))
        for name in names:
            if not name.startswith("."):
                yield area, base, name, real_base / name


def _clean_stale_environments(store: Store, registry: Registry) -> None:
    """Remove environments a builder staged and never published, once the
    process that staged them is gone: a crash between staging and rename
    leaves them, and their hard links would keep pool files from ever
    being collected."""
    for area in registry.environment_areas:
        base = store.home / area
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith(TMP_PREFIX) and not tmp_owner_alive(name):
                remove_tree(base / name)


def _held_environments(store: Store, registry: Registry) -> list[Path]:
    """Environments (views, farms, merged sites) a running process holds."""
    return [real for _a, base, name, real in _environments(store, registry) if in_use(base / name)]


def add_root(store: Store, name: str, target: Path) -> Path:
    """Create or replace roots/<name> → target atomically (and durably)."""
    store.ensure()
    link = store.roots_dir / name
    replace_symlink(link, os.path.abspath(target), durable=True)
    return link


def _names_in_refs(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    names = []
    for line in text.splitlines():
        name = line.strip().rstrip("/").rsplit("/", 1)[-1]
        if parse_dirname(name):
            names.append(name)
    return names


def _root_names(store: Store, registry: Registry, target: Path) -> list[str]:
    """Entry names a root's target keeps alive."""
    inside = store.containing(target)
    if inside is not None:
        return [inside[0].dirname]
    if target.is_dir():
        return _names_in_refs(target / REFS)
    for kind in registry.root_kinds:
        if kind.claims(target):
            return kind.entry_names(store, target)
    return _names_in_refs(target)


def disk_usage(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _unused_for(link: Path, seconds: float) -> bool:
    import time

    try:
        return time.time() - os.stat(link).st_mtime > seconds
    except OSError:
        return False  # dangling: the ordinary pruning below handles it


def _environment_of(store: Store, registry: Registry, target: Path) -> Path | None:
    """The environment directory (a view, an overlay) target lies in, if any."""
    for area in registry.environment_areas:
        base = Path(os.path.realpath(store.home / area))
        if target.is_relative_to(base) and target != base:
            return base / target.relative_to(base).parts[0]
    return None


def _views_of(
    store: Store, registry: Registry, env_dir: Path, environments: set[Path] | None
) -> list[str]:
    """Environments an env dir's programs run in (its ``.cpk/views``, such as
    the views of Python tools), kept alive with it; returns their entries."""
    try:
        lines = (env_dir / ".cpk" / "views").read_text().split("\n")
    except (OSError, UnicodeDecodeError):
        return []
    names: list[str] = []
    for line in filter(None, lines):
        view = Path(os.path.realpath(line))
        if environments is not None and _environment_of(store, registry, view) is not None:
            environments.add(view)
        names.extend(_root_names(store, registry, view))
    return names


def _source_names(store: Store, registry: Registry, environments: set[Path] | None) -> list[str]:
    """Entries listed by the roots namespaces keep without a link (generations)."""
    names: list[str] = []
    for source in registry.root_sources:
        for directory in source.root_dirs(store.home):
            names.extend(_names_in_refs(directory / REFS))
            names.extend(_views_of(store, registry, directory, environments))
    return names


def _expiry_of(registry: Registry, name: str) -> ExpiringRoots | None:
    return next((e for e in registry.expiring if name.startswith(e.prefix)), None)


def live_entries(
    store: Store,
    registry: Registry,
    report: GcReport | None = None,
    environments: set[Path] | None = None,
) -> set[str]:
    """Names of every entry a root reaches; prunes dangling roots if asked.

    ``environments`` receives the view and overlay directories roots reach
    (an overlay keeps its view alive too).
    """
    pending: list[str] = []
    # Held environments first: one in use is live whatever its root says
    # (lost, or lapsed while a long-running union kept using it).
    held = set(_held_environments(store, registry))
    for env in sorted(held):
        pending.extend(_root_names(store, registry, env))
    reached: set[Path] = set()
    try:
        roots = sorted(os.listdir(store.roots_dir))
    except FileNotFoundError:
        roots = []
    for name in roots:
        link = store.roots_dir / name
        if name.startswith("."):
            continue
        expiry = _expiry_of(registry, name)
        if (
            expiry is not None
            and _unused_for(link, expiry.max_age)
            and Path(os.path.realpath(link)) not in held
        ):
            # Nothing owns such a target to delete it; its users touch the
            # root on each use, so age says it is forgotten.
            if report is not None and not report.dry_run:
                remove_tree(Path(os.path.realpath(link)))
                os.unlink(link)
            if report is not None:
                report.pruned_roots.append(name)
            continue
        if not os.path.exists(link):
            if report is not None:
                report.pruned_roots.append(name)
                if not report.dry_run:
                    os.unlink(link)
            continue
        target = Path(os.path.realpath(link))
        env = _environment_of(store, registry, target)
        if env is not None:
            reached.add(env)
        if env is not None and environments is not None:
            environments.add(env)
            view = env / ".cpk" / "view"
            if view.is_symlink():
                environments.add(Path(os.path.realpath(view)))
                pending.extend(_root_names(store, registry, Path(os.path.realpath(view))))
        pending.extend(_root_names(store, registry, env if env is not None else target))
        if env is None and target.is_dir():
            pending.extend(_views_of(store, registry, target, environments))
    for env in sorted(held - reached):
        if report is not None:
            report.in_use.append(os.path.relpath(env, os.path.realpath(store.home)))
    if environments is not None:
        environments.update(held)
    pending.extend(_source_names(store, registry, environments))
    live: set[str] = set()
    while pending:
        name = pending.pop()
        if name in live:
            continue
        live.add(name)
        entry = store.entry(name)
        if entry is not None:
            try:
                refs = entry.metadata.get("references", [])
            except Exception:
                refs = []
            pending.extend(r for r in refs if isinstance(r, str))
    return live


def collect(store: Store, registry: Registry, dry_run: bool = False) -> GcReport:
    """Remove every user-store entry no root reaches.

    ``registry`` says what the namespaces keep alive; it is required, since
    a registration left out would make its roots' entries look dead.
    """
    report = GcReport(dry_run=dry_run)
    root = store.user.root
    if not root.is_dir():
        return report
    # A dry run writes nothing, so it must work where nothing can be
    # written (a read-only home); it still waits for writers, to report
    # what a real run would remove now.
    lock = reading_lock if dry_run else collector_lock
    with lock(root, exclusive=True):
        if not dry_run:
            clean_stale(root)
            _clean_stale_environments(store, registry)
        environments: set[Path] = set()
        live = live_entries(store, registry, report, environments)
        report.live = len(live)
        _sweep_environments(store, registry, environments, report)
        dead = sorted(
            (e for e in store.user.entries() if e.dirname not in live), key=lambda e: e.dirname
        )
        # Asked while the dead entries are still there to read; removed after
        # them, so a crash in between leaves only derived files, which the
        # next run finds again, never an entry without its image.
        derived = _derived_of(store, registry, dead)
        for entry in dead:
            size = disk_usage(entry.path)
            if not dry_run:
                os.chmod(entry.path, 0o755)  # moving a directory needs write on it
                with Slot(root) as slot:
                    # Disappear atomically first, then delete at leisure: a
                    # crash mid-delete leaves debris in staging, not half an
                    # entry in the store.
                    os.rename(entry.path, slot.path)
                try:
                    os.unlink(root / LOCKS / f"{entry.dirname}.lock")
                except FileNotFoundError:
                    pass
            report.removed.append((entry.dirname, size))
        if not dry_run and dead:
            names = {e.dirname for e in dead}
            lookup.forget(root, names)
            lookup.unlink_sources(root, names)
        _remove_derived(store, derived, report)
    return report


def _derived_of(store: Store, registry: Registry, dead: list[Entry]) -> list[Path]:
    """What the namespaces derived from the dead entries, once each."""
    paths: dict[Path, None] = {}
    for derived in registry.derived:
        paths.update(dict.fromkeys(derived.doomed(store, dead)))
    return list(paths)


def _remove_derived(store: Store, paths: list[Path], report: GcReport) -> None:
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        is_dir = not os.path.islink(path) and os.path.isdir(path)
        size = disk_usage(path) if is_dir else st.st_blocks * 512
        # A pool link or image with other hard links (a view's) frees no space.
        if not is_dir and st.st_nlink > 1:
            size = 0
        name = os.path.relpath(path, store.home) if path.is_relative_to(store.home) else str(path)
        report.removed_derived.append((name, size))
        if report.dry_run:
            continue
        if is_dir:
            remove_tree(path)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _sweep_environments(
    store: Store, registry: Registry, live: set[Path], report: GcReport
) -> None:
    """Remove views and overlays no root reaches (they are rebuilt on demand).

    Each goes first by one rename to a hidden name, so a concurrent reader
    sees it whole or not at all; builders hold the collector lock shared.
    """
    for area, base, name, real in _environments(store, registry):
        if real in live:
            continue
        size = disk_usage(base / name)
        report.removed_environments.append((f"{area}/{name}", size))
        if not report.dry_run:
            doomed = base / f".staging-gc-{name}-{os.getpid()}"
            os.rename(base / name, doomed)
            remove_tree(doomed)
