"""``cpk run``: find the project, make its environment, exec the command.

The hot path (DESIGN.md invariant 6) is a warm store with an up-to-date
lock: read the project's inputs and the lock, find each locked file's entry
by its source hash (one ``readlink`` each), find the view by its key, and
``exec``. Nothing here imports the resolver, the HTTP client, ``rich`` or a
TOML writer; anything missing falls through to :mod:`operations`, which
locks, syncs and builds, and the command is exec'd the same way after.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.python.lock import LOCK_FILENAME, Lock, read_lock
from contentpkg.python.project import (
    ProjectInputs,
    find_project,
    inputs_fingerprint,
    load_project,
    read_script_metadata,
    requirement_name,
)
from contentpkg.python.run.memo import exec_in
from contentpkg.store import Entry, Store

__all__ = ["Prepared", "RunRequest", "exec_in", "prepare"]

ENVS = "envs"


@dataclass
class RunRequest:
    """What ``cpk run`` was asked, beyond the index options."""

    command: list[str]
    with_requirements: list[str] = field(default_factory=list)
    frozen: bool = False
    locked: bool = False
    with_elf: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """An environment ready to exec in."""

    env: Path  # the directory to use as VIRTUAL_ENV
    python: InterpreterInfo
    inputs: ProjectInputs | None
    conflicts: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock_path: Path | None = None

    def memo_facts(self) -> tuple[list[str], list[str], list[str]]:
        """(inputs, absent, exists) for :func:`runmemo.write_memo`: every file
        whose change could change this decision, the project files whose
        appearance could, and what must still be there to use ``env``."""
        inputs = [os.path.realpath(self.python.executable)]
        absent: list[str] = []
        if self.inputs is not None:
            inputs += [os.fspath(f) for f in self.inputs.files]
            for source in self.inputs.sources.values():
                inputs += [os.fspath(source.path / n) for n in _METADATA_FILES]
            if self.inputs.kind != "script":
                absent += _discovery_absent(self.inputs.root)
        if self.lock_path is not None:
            inputs.append(os.fspath(self.lock_path))
        exists = [os.fspath(self.env / "pyvenv.cfg")]
        view = self.env / ".cpk" / "view"
        if view.is_symlink():
            exists.append(os.path.realpath(view))
        dot = self.inputs.root / ".venv" if self.inputs is not None else None
        if dot is not None and os.path.islink(dot) and os.readlink(dot) == os.fspath(self.env):
            exists.append(os.fspath(dot))
        return inputs, absent, exists


_METADATA_FILES = ("pyproject.toml", "setup.cfg", "setup.py")


def _discovery_absent(root: Path) -> list[str]:
    """Project files that, by appearing, would make run find another project:
    any between the working directory and the root, and a pyproject.toml
    above a requirements.txt project (it would win)."""
    cwd = Path.cwd()
    absent = []
    if cwd.is_relative_to(root):
        here = cwd
        while here != root:
            absent += [os.fspath(here / "pyproject.toml"), os.fspath(here / "requirements.txt")]
            here = here.parent
    if not (root / "pyproject.toml").exists():
        absent += [os.fspath(d / "pyproject.toml") for d in (root, *root.parents)]
    return absent


def script_of(command: Sequence[str]) -> Path | None:
    """The PEP 723 script a command runs (``x.py`` or ``python x.py``), if any."""
    args = list(command)
    if args and os.path.basename(args[0]) in ("python", "python3") and len(args) > 1:
        args = args[1:]
    if args and args[0].endswith(".py") and os.path.isfile(args[0]):
        return Path(args[0]).absolute()
    return None


def _inputs(options: object, request: RunRequest) -> ProjectInputs | None:
    script = script_of(request.command)
    if script is not None:
        found = read_script_metadata(script, validate=False)
        if found is not None:
            return found
    start = getattr(options, "project", None)
    root = start if start is not None else find_project(Path.cwd())
    if root is None:
        if request.with_requirements or request.with_elf:
            return None  # an environment of --with/--with-elf packages alone
        raise CpkError(
            f"{Path.cwd()}: no pyproject.toml or requirements.txt here or above "
            "(use --with REQ for a throwaway environment)"
        )
    return load_project(
        root,
        extras=getattr(options, "extras", ()),
        groups=getattr(options, "groups", ()),
        validate=False,
    )


def derived_lock_path(cache_dir: Path, fingerprint: str) -> Path:
    """Where the lock of a script or of a ``--with`` run lives: its inputs'
    fingerprint names it, so finding it means it is fresh."""
    return cache_dir / "run-locks" / fingerprint[:2] / f"{fingerprint}.toml"


def prepare(options: object, request: RunRequest) -> Prepared:
    """The environment to run in: found on the hot path, else made."""
    from contentpkg.python.project.settings import command_line_places, default_cache_dir

    inputs = _inputs(options, request)
    python = interpreter_info(getattr(options, "python", None))
    cache_dir = default_cache_dir()
    store = Store.open(inputs.root if inputs is not None else Path.cwd())

    lock: Lock | None = None
    lock_path: Path | None = None
    if inputs is not None and not request.with_requirements:
        settings = command_line_places(options, inputs)
        fingerprint = inputs_fingerprint(
            inputs, python_version=python.version, index_settings=settings,
            markers=python.markers,
        )  # fmt: skip
        if inputs.kind == "script":
            lock_path = derived_lock_path(cache_dir, fingerprint)
        else:
            lock_path = inputs.root / LOCK_FILENAME
        if lock_path.is_file():
            try:
                found = read_lock(lock_path, cache_dir=cache_dir)
            except CpkError:
                found = None
            if found is not None and (request.frozen or found.fingerprint == fingerprint):
                lock = found
        if lock is None and request.locked and inputs.kind != "script":
            raise CpkError(f"{lock_path}: the lock is out of date with the project (--locked)")
        if lock is None and request.frozen:
            raise CpkError(f"{lock_path}: no lock file (--frozen uses it as it is)")

    entries = _entries_of(store, lock) if lock is not None else None
    if entries is not None and inputs is not None:
        from contentpkg.python.envs.views import find_view

        names = [e.dirname for e in _declared_order(entries, lock, inputs)]
        view = find_view(store, python, names)
        if view is not None:
            env = _env_for(store, view, python, inputs, build=False)
            if env is not None:
                return Prepared(env, python, inputs, lock_path=lock_path)
        # A fresh lock and every entry in the store: only the view (or the
        # overlay) is missing, which needs neither the resolver nor the network.
        from contentpkg.store.locks import collector_lock

        assert lock is not None
        store.ensure()
        with collector_lock(store.user.root):
            return compose(store, python, inputs, inputs, lock, entries, request)

    # Something is missing: lock, fetch, build the view (the cold path).
    from contentpkg.python.run.operations import environment_for

    return environment_for(options, request, inputs, python)


def compose(
    store: Store,
    python: InterpreterInfo,
    run_inputs: ProjectInputs,
    inputs: ProjectInputs | None,
    lock: Lock,
    entries: list[tuple[str, Entry]],
    request: RunRequest,
) -> Prepared:
    """Build (or find) the view of entries and the project's overlay on it,
    link ``.venv`` and make the gc root. The caller holds the collector lock.

    ``run_inputs`` decides order and overlay (the project plus any ``--with``
    requirements); ``inputs`` is the project or script as found, or None.
    """
    from contentpkg.python.envs.views import ensure_view

    ordered = _declared_order(entries, lock, run_inputs)
    view = ensure_view(store, ordered, python)
    env = _env_for(store, view.path, python, run_inputs, build=True)
    assert env is not None
    notes: list[str] = []
    if inputs is not None and inputs.kind != "script" and not request.with_requirements:
        note = link_dot_venv(store, inputs, env)
        if note:
            notes.append(note)
    elif inputs is not None and inputs.kind == "script":
        from contentpkg.store.gc import add_root

        key = hashlib.sha256(os.fsencode(inputs.input_file)).hexdigest()[:20]
        add_root(store, f"script-{key}", view.path)
    conflicts = view.conflicts if view.created else []
    return Prepared(env, python, inputs, conflicts, notes, lock_path=lock.path)


def _entries_of(store: Store, lock: Lock) -> list[tuple[str, Entry]] | None:
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


def _declared_order(
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


def _env_for(
    store: Store, view: Path, python: InterpreterInfo, inputs: ProjectInputs, build: bool
) -> Path | None:
    """The directory to run in: the view itself, or the project's overlay.

    A project that is itself a package, or that uses local checkouts in
    place, gets a small per-project overlay on the shared view (see
    :mod:`overlay`); its key covers everything that shapes it, so an
    existing overlay is current. With ``build`` False, None means "missing".
    """
    from contentpkg.python.envs.overlay import ensure_overlay, overlay_needed, overlay_path

    if not overlay_needed(inputs):
        return view
    path = overlay_path(store, view, python, inputs)
    if path.is_dir():
        return path
    if not build:
        return None
    return ensure_overlay(store, view, python, inputs)


def link_dot_venv(store: Store, inputs: ProjectInputs, env: Path) -> str | None:
    """Point ``<project>/.venv`` at env, so editors find the packages.

    Only a ``.venv`` that is missing or is already a link into cpk's home is
    touched; a user's own virtualenv is left alone (the note says so). The
    link is also a gc root: while it exists, its view and entries stay.
    """
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
    tmp = dot.with_name(f".venv.cpk-{os.getpid()}")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(env, tmp)
        os.replace(tmp, dot)
    except OSError as exc:
        return f"cannot link {dot}: {exc.strerror}"
    from contentpkg.store.gc import add_root

    key = hashlib.sha256(os.fsencode(dot)).hexdigest()[:20]
    add_root(store, f"venv-{key}", dot)
    return None
