"""Garbage collection: keep what roots reach, remove the rest of the user store.

A root is a symlink under ``$CPK_HOME/roots/``. It may point at:

* a store entry (or anything inside one): that entry is live;
* a directory holding ``.cpk/refs`` (a view, an env dir, a profile
  generation): every entry listed there is live;
* a ``pylock.toml``: every entry made from a file the lock names (found by
  source hash), so a project's lock keeps its packages and a deleted
  project's root dangles and is pruned;
* any other file (a refs file): every entry listed in it.

Every profile generation (``profiles/<name>.gens/<N>``, see
``contentpkg.env.profiles``) is a root too, through its ``.cpk/refs``, for as
long as it exists: old generations keep their entries until deleted.

A refs file lists one entry per line, by directory name or by path. Liveness
then follows each live entry's ``references`` metadata to a fixed point.
Roots whose target has gone are pruned. Only the user layer is swept; the
project and system layers are read-only to cpk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.store import lookup
from contentpkg.store.entry import Entry, parse_dirname
from contentpkg.store.layers import Store
from contentpkg.store.locks import LOCKS, collector_lock
from contentpkg.store.staging import Slot, clean_stale

REFS = ".cpk/refs"


@dataclass
class GcReport:
    removed: list[tuple[str, int]] = field(default_factory=list)  # (entry, bytes)
    removed_environments: list[tuple[str, int]] = field(default_factory=list)
    pruned_roots: list[str] = field(default_factory=list)
    live: int = 0
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(size for _, size in [*self.removed, *self.removed_environments])


def write_refs(path: Path, entries: list[Entry]) -> None:
    """Write a refs file listing entries (for views, env dirs, lock roots)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text("".join(f"{e.dirname}\n" for e in entries))
    os.replace(tmp, path)


def add_root(store: Store, name: str, target: Path) -> Path:
    """Create or replace roots/<name> → target atomically."""
    store.ensure()
    link = store.roots_dir / name
    tmp = link.with_name(f".{name}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.abspath(target), tmp)
    os.replace(tmp, link)
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


def _root_names(store: Store, target: Path) -> list[str]:
    """Entry names a root's target keeps alive."""
    inside = store.containing(target)
    if inside is not None:
        return [inside[0].dirname]
    if target.is_dir():
        return _names_in_refs(target / REFS)
    if target.name.endswith(".toml"):
        return _names_in_lock(store, target)
    return _names_in_refs(target)


def _names_in_lock(store: Store, path: Path) -> list[str]:
    """Entries a PEP 751 lock file reaches through its files' hashes."""
    from contentpkg.errors import CpkError
    from contentpkg.python.lock import read_lock

    try:
        lock = read_lock(path)
    except CpkError:
        return []  # not a lock we can read: it keeps nothing alive
    names = []
    for package in lock.packages:
        for file in (*package.wheels, package.sdist):
            if file is not None and file.sha256:
                entry = store.find_source(f"sha256:{file.sha256}")
                if entry is not None:
                    names.append(entry.dirname)
    return names


def disk_usage(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


#: A contentpkg.use() farm unused this long (seconds) is collected with its root.
RUNTIME_MAX_AGE = 30 * 24 * 3600


def _unused_for(link: Path, seconds: float) -> bool:
    import time

    try:
        return time.time() - os.stat(link).st_mtime > seconds
    except OSError:
        return False  # dangling: the ordinary pruning below handles it


#: Directories of composed environments under the user's home (views, the
#: per-project overlays on them): caches, alive while a root reaches them.
ENVIRONMENT_DIRS = ("views", "envs")


def _environment_of(store: Store, target: Path) -> Path | None:
    """The view or overlay directory target lies in, if any."""
    for area in ENVIRONMENT_DIRS:
        base = Path(os.path.realpath(store.home / area))
        if target.is_relative_to(base) and target != base:
            return base / target.relative_to(base).parts[0]
    return None


def _views_of(store: Store, env_dir: Path, environments: set[Path] | None) -> list[str]:
    """Views an env dir's Python tools run in (its ``.cpk/views``), kept alive
    with it; returns the entries those views list."""
    try:
        lines = (env_dir / ".cpk" / "views").read_text().split("\n")
    except (OSError, UnicodeDecodeError):
        return []
    names: list[str] = []
    for line in filter(None, lines):
        view = Path(os.path.realpath(line))
        if environments is not None and _environment_of(store, view) is not None:
            environments.add(view)
        names.extend(_root_names(store, view))
    return names


def _profile_generation_names(store: Store, environments: set[Path] | None = None) -> list[str]:
    """Entries listed by every generation of every profile.

    Walked rather than registered under roots/: a generation needs no second
    record that could drift from it, and its number directory appearing (by
    rename) or going (by rename) is exactly when it starts and stops
    counting. Hidden names (staging, half-deleted) are not generations.
    """
    names: list[str] = []
    profiles = store.home / "profiles"
    try:
        gens_dirs = [d for d in os.listdir(profiles) if not d.startswith(".")]
    except FileNotFoundError:
        return names
    for gens in gens_dirs:
        if os.path.islink(profiles / gens):
            continue  # an alias: its target is one of the generations walked here
        try:
            numbers = os.listdir(profiles / gens)
        except (NotADirectoryError, FileNotFoundError):
            continue
        for number in numbers:
            if number.isdigit():
                names.extend(_names_in_refs(profiles / gens / number / REFS))
                names.extend(_views_of(store, profiles / gens / number, environments))
    return names


def live_entries(
    store: Store, report: GcReport | None = None, environments: set[Path] | None = None
) -> set[str]:
    """Names of every entry a root reaches; prunes dangling roots if asked.

    ``environments`` receives the view and overlay directories roots reach
    (an overlay keeps its view alive too).
    """
    pending: list[str] = []
    try:
        roots = sorted(os.listdir(store.roots_dir))
    except FileNotFoundError:
        roots = []
    for name in roots:
        link = store.roots_dir / name
        if name.startswith("."):
            continue
        if name.startswith("runtime-") and _unused_for(link, RUNTIME_MAX_AGE):
            # contentpkg.use() farms have no owner that could delete them;
            # use() touches a farm each time, so age says it is forgotten.
            if report is not None and not report.dry_run:
                from contentpkg.store.staging import remove_tree

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
        env = _environment_of(store, target)
        if env is not None and environments is not None:
            environments.add(env)
            view = env / ".cpk" / "view"
            if view.is_symlink():
                environments.add(Path(os.path.realpath(view)))
                pending.extend(_root_names(store, Path(os.path.realpath(view))))
        pending.extend(_root_names(store, env if env is not None else target))
        if env is None and target.is_dir():
            pending.extend(_views_of(store, target, environments))
    pending.extend(_profile_generation_names(store, environments))
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


def collect(store: Store, dry_run: bool = False) -> GcReport:
    """Remove every user-store entry no root reaches."""
    report = GcReport(dry_run=dry_run)
    root = store.user.root
    if not root.is_dir():
        return report
    with collector_lock(root, exclusive=True):
        if not dry_run:
            clean_stale(root)
        environments: set[Path] = set()
        live = live_entries(store, report, environments)
        report.live = len(live)
        _sweep_environments(store, environments, report)
        dead = sorted(
            (e for e in store.user.entries() if e.dirname not in live), key=lambda e: e.dirname
        )
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
    return report


def _sweep_environments(store: Store, live: set[Path], report: GcReport) -> None:
    """Remove views and overlays no root reaches (they are rebuilt on demand).

    Each goes first by one rename to a hidden name, so a concurrent reader
    sees it whole or not at all; builders hold the collector lock shared.
    """
    from contentpkg.store.staging import remove_tree

    for area in ENVIRONMENT_DIRS:
        base = store.home / area
        try:
            names = sorted(os.listdir(base))
        except FileNotFoundError:
            continue
        real_base = Path(os.path.realpath(base))
        for name in names:
            if name.startswith("."):
                continue
            if real_base / name in live:
                continue
            size = disk_usage(base / name)
            report.removed_environments.append((f"{area}/{name}", size))
            if not report.dry_run:
                doomed = base / f".staging-gc-{name}-{os.getpid()}"
                os.rename(base / name, doomed)
                remove_tree(doomed)
