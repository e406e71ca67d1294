"""Is the lock current? Read it once and apply ``--frozen`` and ``--locked``.

``cpk lock``, ``cpk sync`` and ``cpk run`` all judge a lock the same way:
it is current when the fingerprint recorded in it equals the fingerprint of
the inputs it is meant for (see ``inputs_fingerprint``). ``--frozen`` takes
it as it is, and ``--locked`` refuses to replace a stale one; this module is
the one place those two rules and their errors are written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.errors import LockOutdatedError, LockUnreadableError, NotFoundError
from contentpkg.python.lock import Lock, read_lock
from contentpkg.python.project import ProjectInputs, find_project, load_project
from contentpkg.python.run.options import Options, index_places, selection_arguments

if TYPE_CHECKING:
    from contentpkg.python.project.pyproject import Declared


class LockState:
    """A lock file, what it holds, and whether it can be used as it is.

    A plain class (see :class:`.compose.Prepared` for why)."""

    __slots__ = ("fingerprint", "found", "path", "usable")

    def __init__(
        self, path: Path, fingerprint: str, found: Lock | None, usable: Lock | None
    ) -> None:
        self.path = path
        #: The fingerprint of the inputs the lock is for.
        self.fingerprint = fingerprint
        #: What the file holds (None: missing, or unreadable and to be replaced).
        self.found = found
        #: The lock to use without resolving: ``found`` when it is current, or
        #: under ``--frozen``; None when it must be (re)made.
        self.usable = usable

    @property
    def fresh(self) -> bool:
        return self.found is not None and self.found.fingerprint == self.fingerprint


def lock_state(
    path: Path,
    fingerprint: str,
    *,
    cache_dir: Path,
    frozen: bool = False,
    locked: bool = False,
) -> LockState:
    """Read the lock at path (once) and decide whether it can be used as it is.

    Raises :class:`~contentpkg.errors.NotFoundError` under ``frozen`` when
    there is no lock, :class:`~contentpkg.errors.LockOutdatedError` under
    ``locked`` when it is missing or stale. An unreadable lock (merge
    conflict markers, a hand edit gone wrong) counts as missing, since
    re-locking is how it gets fixed; under ``frozen`` its error is raised.
    """
    found: Lock | None = None
    if path.is_file():
        try:
            found = read_lock(path, cache_dir=cache_dir)
        except LockUnreadableError:
            if frozen:
                raise
    usable = found if found is not None and (frozen or found.fingerprint == fingerprint) else None
    if usable is None and frozen:
        raise NotFoundError(f"{path}: no lock file (--frozen uses it as it is)", what=str(path))
    if usable is None and locked:
        raise LockOutdatedError(f"{path}: the lock is out of date with the project (--locked)")
    return LockState(path, fingerprint, found, usable)


#: Bumped when what a universal lock holds changes: every lock written
#: before reads as stale (and is re-locked), never as wrongly fresh.
UNIVERSAL_FORMAT = "universal-1"


def lock_inputs(inputs: ProjectInputs) -> Declared:
    """What the project's universal lock is made from: every requirement it
    declares, by the extra or group it belongs to (a requirements file's
    are all the project's own)."""
    from contentpkg.python.project.pyproject import Declared, declared_requirements

    found = None
    if inputs.kind == "pyproject" and inputs.input_file.name == "pyproject.toml":
        found = declared_requirements(inputs.input_file)
    if inputs.backend_metadata is not None:
        # Dynamic metadata (or a setup.py project): the backend's
        # Requires-Dist is the whole declaration of the project and its
        # extras; dependency groups stay pyproject.toml's own.
        found = _backend_declared(inputs, found)
    if found is None:
        found = Declared(list(inputs.requirements), {}, {}, ())
    return found


def _backend_declared(inputs: ProjectInputs, static: Declared | None) -> Declared:
    """The declaration the build backend gave: its unconditional
    requirements and each extra's; groups stay pyproject.toml's own."""
    from contentpkg.python.build.project import requirements_by_extra
    from contentpkg.python.project.pyproject import Declared

    assert inputs.backend_metadata is not None and inputs.name is not None
    base, extras = requirements_by_extra(inputs.backend_metadata[1], inputs.name)
    if static is None:
        return Declared(base, extras, {}, ())
    return Declared(
        base,
        extras,
        static.groups,
        static.default_groups,
        environments=static.environments,
        required_environments=static.required_environments,
        conflicts=static.conflicts,
    )


def universal_fingerprint(
    inputs: ProjectInputs, places: tuple[list[str], list[str]]
) -> tuple[str, Declared]:
    """The fingerprint of the project's universal lock, and its inputs.

    Neither the interpreter nor the selection is in it: one lock serves
    every selection on every supported Python (a lock made on 3.11.7 is
    current on 3.11.8), so only what is declared, where, and the indexes
    decide.
    """
    from dataclasses import replace

    from contentpkg.python.project import inputs_fingerprint

    declared = lock_inputs(inputs)
    tagged = list(declared.base)
    for kind, table in (("extra", declared.extras), ("group", declared.groups)):
        for name in sorted(table):
            tagged += [f"{kind}:{name}|{req}" for req in table[name]]
    universal = replace(
        inputs,
        requirements=tagged,
        extras=tuple(sorted(declared.extras)),
        groups=tuple(sorted(declared.groups)),
    )
    fingerprint = inputs_fingerprint(
        universal,
        python_version=UNIVERSAL_FORMAT,
        index_settings=places,
        markers={
            "default-groups": ",".join(declared.default_groups),
            "environments": "\n".join(declared.environments),
            "required-environments": "\n".join(declared.required_environments),
            "conflicts": repr(declared.conflicts),
        },
    )
    return fingerprint, declared


class LockOutcome:
    """What ``cpk lock`` did: the file, and whether it was current or changed."""

    __slots__ = ("changed", "fresh", "packages", "path")

    def __init__(self, path: Path, fresh: bool, changed: bool, packages: int) -> None:
        self.path = path
        self.fresh = fresh  # the lock was already up to date (nothing resolved)
        self.changed = changed  # the file's bytes changed
        self.packages = packages

    def __repr__(self) -> str:
        return (
            f"LockOutcome({str(self.path)!r}, fresh={self.fresh}, changed={self.changed},"
            f" packages={self.packages})"
        )


def project_inputs(options: Options, *, validate: bool = True) -> ProjectInputs:
    """The project the options name, or the one found upward from here.

    ``validate=False`` leaves the requirement strings unparsed (no
    ``packaging`` import): for deciding whether a lock is current, which
    compares them as strings, before anything else is needed.
    """
    start = options.project or Path.cwd()
    root = find_project(start) if options.project is None else start
    if root is None:
        raise NotFoundError(
            f"{start}: no pyproject.toml or requirements.txt here or above", what=str(start)
        )
    return load_project(root, **selection_arguments(options), validate=validate)


def current_lock(options: Options) -> LockOutcome | None:
    """The outcome of locking when the lock is already current, decided the
    cheap way; None when it is not (or cannot be told without more).

    A current lock's fingerprint equals the inputs' as they are now, and
    those inputs were checked when it was made: so this reads them without
    parsing a requirement, opens no store, asks nothing of the interpreter
    and imports no HTTP or resolver code. It lives here, not beside the
    resolution in ``sync``, so a no-op ``cpk lock`` does not even load that
    module. What a project's build backend decides (dynamic metadata) needs
    the full path.
    """
    inputs = project_inputs(options, validate=False)
    if inputs.dynamic:
        return None
    fingerprint, _ = universal_fingerprint(inputs, index_places(options, inputs))
    state = lock_state(inputs.root / inputs.lock_name, fingerprint, cache_dir=options.ctx.cache_dir)
    if not state.fresh:
        return None
    assert state.found is not None
    return LockOutcome(state.path, True, False, len(state.found.packages))


#: A local source's files whose change changes the fingerprint (it hashes them).
METADATA_FILES = ("pyproject.toml", "setup.cfg", "setup.py")


def remember_current(options: Options, args: Sequence[str], outcome: LockOutcome) -> str | None:
    """Write the memo that lets the next ``cpk lock`` with these arguments
    (those after the command) say the lock is current from file stats alone
    (:func:`.memo.current_lock_memo`); return its path, None when none is.

    Not for what the stats cannot watch: a build backend's answer (dynamic
    metadata) or a ``${VAR}`` in a requirements file.
    """
    from contentpkg.python.run.memo import stat_of, write_lock_memo

    inputs = project_inputs(options, validate=False)
    if inputs.dynamic or inputs.uses_environment:
        return None
    lock = os.fspath(outcome.path.absolute())
    files = [os.fspath(f) for f in inputs.files]
    for source in inputs.sources.values():
        files += [os.fspath(source.path / name) for name in METADATA_FILES]
    absent = discovery_absent(inputs.root) if options.project is None else []
    # Stat first, then read again and check: a file changed after its stat
    # only makes the next check miss; one changed before it (while this
    # command ran) is seen here, and no memo is written.
    stats = [stat_of(p) for p in (*files, lock)] + [(p, -1, -1, -1) for p in absent]
    again = project_inputs(options, validate=False)
    if again.files != inputs.files or again.dynamic or again.uses_environment:
        return None
    fingerprint, _ = universal_fingerprint(again, index_places(options, again))
    state = lock_state(outcome.path, fingerprint, cache_dir=options.ctx.cache_dir)
    if not state.fresh or state.found is None:
        return None
    ctx = options.ctx
    return write_lock_memo(ctx.cache_dir, ctx.environ, args, lock, len(state.found.packages), stats)


def discovery_absent(root: Path) -> list[str]:
    """Project files that, by appearing, would make run (or lock) find another project:
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
