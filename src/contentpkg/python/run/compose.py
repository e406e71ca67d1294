"""From a lock whose entries are in the store to the directory a command runs in.

The view of the locked entries (shared by every project with the same
list), the project's overlay on it when the project is itself a package or
uses checkouts in place, the project's ``.venv`` link, and the gc roots
that keep them. Nothing here resolves or downloads: the caller has made the
lock's entries present.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.lock import Lock
from contentpkg.python.project import ProjectInputs, requirement_name
from contentpkg.store import Entry, Store

if TYPE_CHECKING:
    from contentpkg.python.build.project import BuiltProject


class Prepared:
    """An environment ready to exec in, and what to tell the user about it.

    A plain class, like the run's other records (:class:`.plan.RunPlan`,
    :class:`.lockstate.LockState`): each dataclass costs ``cpk run`` the
    generation of its methods at import, on every memo miss."""

    __slots__ = ("conflicts", "env", "inputs", "lock_path", "notes", "python")

    def __init__(
        self,
        env: Path,
        python: InterpreterInfo,
        inputs: ProjectInputs | None,
        conflicts: list | None = None,
        notes: list[str] | None = None,
        lock_path: Path | None = None,
    ) -> None:
        self.env = env  # the directory to use as VIRTUAL_ENV
        self.python = python
        self.inputs = inputs
        self.conflicts = conflicts if conflicts is not None else []
        self.notes = notes if notes is not None else []
        self.lock_path = lock_path


def entries_of(store: Store, lock: Lock) -> list[tuple[str, Entry]] | None:
    """Each locked package's entry, by its file's source hash; None if any is missing."""
    found = []
    for package in lock.packages:
        if package.directory is not None:
            continue
        sha = package.sha256
        entry = store.find_source(f"sha256:{sha}") if sha else None
        if entry is None:
            return None
        found.append((package.name, entry))
    return found


def declared_order(
    entries: list[tuple[str, Entry]], lock: Lock | None, inputs: ProjectInputs | None
) -> list[Entry]:
    """Entries in "first declared" order: the project's direct requirements
    in the order written, then their dependencies breadth-first, then the
    rest by name. Where two distributions install the same file, the first
    in this order wins."""
    by_name = dict(entries)
    deps = {p.name: p.dependencies for p in lock.packages} if lock is not None else {}
    queue = [requirement_name(r) for r in (inputs.requirements if inputs is not None else [])]
    ordered: list[str] = []
    seen: set[str] = set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if name in by_name:
            ordered.append(name)
        # Local checkouts have no entry but their dependencies do: follow them.
        queue.extend(deps.get(name, ()))
    ordered.extend(sorted(n for n in by_name if n not in seen))
    return [by_name[n] for n in ordered]


def find_env(
    store: Store,
    python: InterpreterInfo,
    inputs: ProjectInputs,
    lock: Lock,
    entries: list[tuple[str, Entry]],
    project_key: str | None = None,
) -> Path | None:
    """The existing environment of these entries, or None (nothing is made).

    ``project_key`` is the build key of the project's editable install, when
    the project is installed in its environment.
    """
    from contentpkg.python.envs.views import find_view

    names = [e.dirname for e in declared_order(entries, lock, inputs)]
    view = find_view(store, python, names)
    if view is None:
        return None
    return env_for(store, view, python, inputs, project_key, None)


def compose(
    store: Store,
    python: InterpreterInfo,
    run_inputs: ProjectInputs,
    inputs: ProjectInputs | None,
    lock: Lock,
    entries: list[tuple[str, Entry]],
    *,
    link_venv: bool,
    project: BuiltProject | None = None,
    project_entry: Entry | None = None,
) -> Prepared:
    """Build (or find) the view of entries and the project's overlay on it,
    link ``.venv`` (when ``link_venv``) and make the gc root. The caller
    holds the collector lock.

    ``run_inputs`` decides order and overlay (the project plus any ``--with``
    requirements); ``inputs`` is the project or script as found, or None.
    ``project`` is the project's own build, installed into the overlay;
    ``project_entry`` its wheel in the store instead (``--no-editable``),
    which joins the view first.
    """
    from contentpkg.python.envs.views import ensure_view

    ordered = declared_order(entries, lock, run_inputs)
    if project_entry is not None:
        ordered = [project_entry, *(e for e in ordered if e.name != project_entry.name)]
    view = ensure_view(store, ordered, python)
    env = env_for(store, view.path, python, run_inputs, project.key if project else None, project)
    assert env is not None
    notes: list[str] = []
    if project is not None and project.note:
        notes.append(f"warning: {project.note}")
    if inputs is not None and link_venv:
        note = link_dot_venv(store, inputs, env)
        if note:
            notes.append(note)
    elif inputs is not None and inputs.kind == "script":
        key = hashlib.sha256(os.fsencode(inputs.input_file)).hexdigest()[:20]
        _ensure_root(store, f"script-{key}", view.path)
    conflicts = view.conflicts if view.created else []
    return Prepared(env, python, inputs, conflicts, notes, lock_path=lock.path)


def env_for(
    store: Store,
    view: Path,
    python: InterpreterInfo,
    inputs: ProjectInputs,
    project_key: str | None,
    project: BuiltProject | None,
) -> Path | None:
    """The directory to run in: the view itself, or the project's overlay.

    A project installed in its environment (``project_key``, the key of its
    build), or one that uses local checkouts in place, gets a small
    per-project overlay on the shared view (see
    :mod:`contentpkg.python.envs.overlay`); its key covers everything that
    shapes it, so an existing overlay is current. None means "missing" when
    the overlay would need ``project``, the build, and it is not given.
    """
    if project_key is None and not inputs.sources:
        return view  # nothing to overlay, by overlay_needed's rule, without its module
    from contentpkg.python.envs.overlay import ensure_overlay, overlay_needed, overlay_path

    if not overlay_needed(inputs, project_key):
        return view
    path = overlay_path(store, view, python, inputs, project_key)
    if path.is_dir():
        return path
    if project_key is not None and project is None:
        return None
    return ensure_overlay(store, view, python, inputs, project)


def link_dot_venv(store: Store, inputs: ProjectInputs, env: Path) -> str | None:
    """Point ``<project>/.venv`` at env, so editors find the packages.

    Only a ``.venv`` that is missing or is already a link into cpk's home is
    touched; a user's own virtualenv is left alone (the note says so). The
    link is also a gc root: while it exists, its view and entries stay.
    """
    from contentpkg.fs import replace_symlink

    if inputs.kind != "pyproject" and inputs.kind != "requirements":
        return None
    dot = inputs.root / ".venv"
    home = os.path.realpath(store.home)
    if os.path.islink(dot):
        current = os.readlink(dot)
        if current == os.fspath(env):
            return None
        if not os.path.realpath(os.path.dirname(current) or ".").startswith(home):
            return f"{dot} links elsewhere; left as it is"
    elif os.path.lexists(dot):
        return f"{dot} is your own environment; left as it is"
    try:
        # Not durable: a link lost in a crash is made again by the next run.
        replace_symlink(dot, os.fspath(env), durable=False)
    except OSError as exc:
        return f"cannot link {dot}: {exc.strerror}"
    key = hashlib.sha256(os.fsencode(dot)).hexdigest()[:20]
    _ensure_root(store, f"venv-{key}", dot)
    return None


def _ensure_root(store: Store, name: str, target: Path) -> None:
    """Make the gc root ``name`` point at target, unless it already does.

    A root names a stable path (the ``.venv`` link, a script), not the view
    behind it, so once made it stays right; making it again would cost a
    durable write (an fsync of the roots directory) on every rebuilt view.
    """
    try:
        if os.readlink(store.roots_dir / name) == os.path.abspath(target):
            return
    except OSError:
        pass
    from contentpkg.store.gc import add_root

    add_root(store, name, target)
