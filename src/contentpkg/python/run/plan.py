"""``cpk run`` and ``cpk shell``: one plan, computed once, then made and exec'd.

:func:`plan_run` decides everything that does not need the network: which
command runs (and whether it is a script), the project's or the script's
inputs, the target interpreter, the indexes, each fingerprint (once), each
lock (read once) and what ``--frozen``/``--locked`` say about it. The plan
is then handed down: on the hot path (DESIGN.md invariant 6: a warm store
and a current lock) every locked file's entry is found by its source hash,
the view by its key, and the command is exec'd; anything missing goes to
:mod:`.sync` (lock, fetch, build) and :mod:`.compose` (view, overlay,
``.venv``), which take the plan's values instead of deciding again.

Nothing here imports the resolver, the HTTP client, ``rich`` or a TOML
writer unless something must be made.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from contentpkg.context import Bucket
from contentpkg.errors import CpkError, NotFoundError
from contentpkg.progress import elapsed
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.python.lock.selection import select
from contentpkg.python.project import (
    IndexSettings,
    ProjectInputs,
    find_project,
    inputs_fingerprint,
    load_project,
    read_script_metadata,
)
from contentpkg.python.project.requirements import read_with
from contentpkg.python.run.compose import Prepared, compose, entries_of, find_env
from contentpkg.python.run.lockstate import (
    METADATA_FILES,
    LockState,
    discovery_absent,
    lock_state,
    universal_fingerprint,
)
from contentpkg.python.run.memo import (
    exec_in,
    outside_command,
    outside_warning,
    script_command,
    write_memo,
)
from contentpkg.python.run.options import Options, RunRequest, index_places, selection_arguments
from contentpkg.store import Store

__all__ = ["Launch", "RunPlan", "plan_run", "prepare", "run", "shell"]


class RunPlan:
    """What ``cpk run`` decided before making anything.

    A plain class (see :class:`.compose.Prepared` for why)."""

    __slots__ = (
        "argv", "env_lock", "inputs", "options", "places", "project_lock", "python",
        "request", "run_inputs", "store",
    )  # fmt: skip

    def __init__(
        self,
        options: Options,
        request: RunRequest,
        argv: tuple[str, ...],
        inputs: ProjectInputs | None,
        run_inputs: ProjectInputs,
        python: InterpreterInfo,
        store: Store,
        places: tuple[list[str], list[str]],
        project_lock: LockState | None,
        env_lock: LockState,
    ) -> None:
        self.options = options
        self.request = request
        #: The command as exec'd (a bare ``x.py`` runs as ``python x.py``).
        self.argv = argv
        #: The project, or the PEP 723 script, as found (None: ``--with`` alone).
        self.inputs = inputs
        #: What the environment holds: ``inputs`` plus any ``--with`` requirements.
        self.run_inputs = run_inputs
        self.python = python
        self.store = store
        #: The (indexes, find-links) every fingerprint was computed under.
        self.places = places
        #: The project's own ``pylock.toml`` (None for a script or no project).
        self.project_lock = project_lock
        #: The lock the environment is made from: the project's, or a derived
        #: lock in the cache for a script or a ``--with`` run.
        self.env_lock = env_lock

    @property
    def derived(self) -> bool:
        """Whether the environment's lock is one cpk keeps in its cache."""
        return self.env_lock is not self.project_lock


def derived_lock_path(cache_dir: Path, fingerprint: str) -> Path:
    """Where the lock of a script or of a ``--with`` run lives: its inputs'
    fingerprint names it, so finding it means it is fresh."""
    return cache_dir / Bucket.RUN_LOCKS.value / fingerprint[:2] / f"{fingerprint}.toml"


def plan_run(options: Options, request: RunRequest) -> RunPlan:
    """Decide everything about a run that needs neither the network nor the resolver.

    Raises the one-line errors of a run that cannot start: no project and
    nothing asked with ``--with``, ``--frozen`` without a lock
    (:class:`~contentpkg.errors.NotFoundError`), ``--locked`` with a stale
    one (:class:`~contentpkg.errors.LockOutdatedError`).
    """
    ctx = options.ctx
    script, argv = script_command(request.command)
    inputs = _find_inputs(options, request, script)
    python = interpreter_info(options.python, cache_dir=ctx.cache_dir)
    places = index_places(options, inputs)
    store = Store.open(inputs.root if inputs is not None else Path.cwd(), ctx=ctx)
    if inputs is not None and inputs.dynamic:
        inputs = _backend_metadata(options, inputs, store, python, places)

    def fingerprint(of: ProjectInputs) -> str:
        return inputs_fingerprint(
            of, python_version=python.version, index_settings=places, markers=python.markers
        )

    project_lock = None
    if inputs is not None and inputs.kind != "script":
        project_lock = lock_state(
            inputs.root / inputs.lock_name,
            universal_fingerprint(inputs, places)[0],
            cache_dir=ctx.cache_dir,
            frozen=request.frozen,
            locked=request.locked,
        )
    if project_lock is not None and not request.with_requirements:
        assert inputs is not None
        run_inputs, env_lock = inputs, project_lock
    else:
        run_inputs = _with_inputs(options, inputs, request)
        if inputs is None and run_inputs.index != IndexSettings():
            # No project: a --with-requirements file's index lines are the run's.
            places = index_places(options, run_inputs)
        derived = fingerprint(run_inputs)
        # --frozen applies to a script's own lock; --with makes a new one.
        frozen = request.frozen and inputs is not None and not request.with_requirements
        env_lock = lock_state(
            derived_lock_path(ctx.cache_dir, derived),
            derived,
            cache_dir=ctx.cache_dir,
            frozen=frozen,
        )
    return RunPlan(
        options, request, tuple(argv), inputs, run_inputs, python, store, places,
        project_lock, env_lock,
    )  # fmt: skip


def _find_inputs(options: Options, request: RunRequest, script: str | None) -> ProjectInputs | None:
    """The script's PEP 723 header, else the project, else None (``--with`` alone)."""
    if request.isolated:
        return None
    if script is not None:
        found = read_script_metadata(Path(script), validate=False)
        if found is not None:
            return found
    root = options.project if options.project is not None else find_project(Path.cwd())
    if root is None:
        if request.with_requirements or request.native is not None:
            return None  # an environment of --with/--with-elf packages alone
        raise NotFoundError(
            f"{Path.cwd()}: no pyproject.toml or requirements.txt here or above "
            "(use --with REQ for a throwaway environment)",
            what=str(Path.cwd()),
        )
    return load_project(root, **selection_arguments(options), validate=False)


def _backend_metadata(
    options: Options,
    inputs: ProjectInputs,
    store: Store,
    python: InterpreterInfo,
    places: tuple[list[str], list[str]],
) -> ProjectInputs:
    """The project's inputs completed by its build backend (cached by build key)."""
    from contentpkg.python.build.project import with_backend_metadata
    from contentpkg.python.run.sync import Session

    session = Session(options, store, python, places)
    try:
        return with_backend_metadata(
            inputs,
            python=python,
            cache_dir=options.ctx.cache_dir,
            environ=options.ctx.environ,
            resolve_build_requires=session.build_requires,
            reporter=options.reporter,
        )
    finally:
        session.close()


def _project_key(plan: RunPlan) -> str | None:
    """The build key of the project's editable install, if it has one."""
    inputs = plan.run_inputs
    if not _builds_project(inputs):
        return None
    from contentpkg.python.build.project import build_key

    return build_key(inputs.root, plan.python, plan.options.ctx.environ)


def _builds_project(inputs: ProjectInputs) -> bool:
    """:func:`~contentpkg.python.build.project.builds_project`, asked only
    of a project that can be built at all: a virtual one (no
    ``[build-system]``) never is, and the build module (its dataclasses,
    ``glob``, the metadata readers) is then never loaded."""
    if not inputs.installable:
        return False
    from contentpkg.python.build.project import builds_project

    return builds_project(inputs)


def _with_inputs(
    options: Options, inputs: ProjectInputs | None, request: RunRequest
) -> ProjectInputs:
    """The inputs of an environment with ``--with`` requirements (or of a script)."""
    if inputs is not None and not request.with_requirements:
        return inputs  # a script: its own header is all
    # Read as requirement lines in the working directory, as on pip's
    # command line: paths, -e, -r files and file: URLs are relative to it.
    cwd = Path.cwd()
    extra = read_with(request.with_requirements, cwd, options.ctx.environ)
    if inputs is None:
        return extra.inputs(cwd, cwd, IndexSettings(), {}, kind="script")
    if extra.has_index_options:
        raise CpkError(
            "--with-requirements: index options (-i, --extra-index-url, -f, --no-index) "
            "apply to the whole run; give them on the command line instead"
        )
    return replace(
        inputs,
        kind="script",
        requirements=[*inputs.requirements, *extra.requirements],
        sources={**inputs.sources, **extra.sources},
        hashes={**inputs.hashes, **{n: tuple(h) for n, h in extra.hashes.items()}},
        constraints=[*inputs.constraints, *extra.constraints],
        files=(*inputs.files, *extra.files),
        uses_environment=inputs.uses_environment or extra.uses_environment,
    )


def prepare(plan: RunPlan) -> Prepared:
    """The environment to run in: found on the hot path, else made."""
    found = _ready(plan)
    return found if found is not None else _make(plan)


def _ready(plan: RunPlan) -> Prepared | None:
    """The environment, when the lock is current and its entries are stored.

    Only the view (or the overlay) may be missing here, which needs neither
    the resolver nor the network. A ``--with`` run always takes the full
    path, which also re-roots the project's lock.
    """
    lock = plan.env_lock.usable
    inputs = plan.inputs
    if lock is None or inputs is None or plan.request.with_requirements:
        return None
    lock = select(
        lock, plan.python, plan.options.chosen(lock), cache_dir=plan.options.ctx.cache_dir
    )
    store = plan.store
    entries = entries_of(store, lock)
    if entries is None:
        return None
    project_key = _project_key(plan)
    if project_key is not None and plan.options.no_editable:
        return None  # the project's wheel entry is found by the full path
    env = find_env(store, plan.python, inputs, lock, entries, project_key)
    if env is not None:
        return Prepared(env, plan.python, inputs, lock_path=lock.path)
    if project_key is not None:
        return None  # the project must be built: the full path has the session
    from contentpkg.store.locks import collector_lock

    store.ensure()
    with collector_lock(store.user.root):
        link_venv = inputs.kind != "script" and plan.options.default_selection
        return _compose(
            plan, store, plan.python, inputs, inputs, lock, entries, link_venv=link_venv
        )


def _compose(plan: RunPlan, *args: Any, **kwargs: Any) -> Prepared:
    """:func:`compose`, and its summary line for the reporter."""
    started = time.monotonic()
    prepared = compose(*args, **kwargs)
    plan.options.reporter.summary(f"Composed environment in {elapsed(time.monotonic() - started)}")
    return prepared


def _make(plan: RunPlan) -> Prepared:
    """``cpk run``'s cold path: lock, sync and compose what the hot path lacked.

    The project's own lock is written next to it; a script's, and a
    ``--with`` run's, live in the cache under their inputs' fingerprint, so
    the project's lock never changes for them.
    """
    from contentpkg.python.run.sync import Session, current_project_lock, relock, root_lock
    from contentpkg.store.locks import collector_lock

    session = Session(plan.options, plan.store, plan.python, plan.places)
    store = plan.store
    try:
        store.ensure()
        with collector_lock(store.user.root):
            lock = None
            if plan.project_lock is not None:
                assert plan.inputs is not None
                _, lock = current_project_lock(
                    session, plan.inputs, plan.project_lock, frozen=plan.request.frozen
                )
                root_lock(store, plan.project_lock.path)
            if plan.derived:
                _, lock = relock(session, plan.run_inputs, plan.env_lock, base=lock)
            assert lock is not None
            # What this interpreter and the selection install from the lock.
            lock = select(
                lock, plan.python, plan.options.chosen(lock), cache_dir=plan.options.ctx.cache_dir
            )
            items = session.materialize_lock(lock)
            entries = [(item.name, item.entry) for item in items]
            link_venv = not plan.derived and plan.options.default_selection
            project, project_entry = session.project_build(plan.run_inputs)
            return _compose(
                plan, store, plan.python, plan.run_inputs, plan.inputs, lock, entries,
                link_venv=link_venv, project=project, project_entry=project_entry,
            )  # fmt: skip
    finally:
        session.close()


def memo_facts(prepared: Prepared, plan: RunPlan) -> tuple[list[str], list[str], list[str]]:
    """(inputs, absent, exists) for :func:`.memo.write_memo`: every file whose
    change could change this decision, the project files whose appearance
    could, and what must still be there to use the environment.

    The script is always an input, with or without a header today (adding
    one chooses another environment), and so are the metadata files of every
    local source the run used, the ``--with`` ones included; with no project
    found, any project file appearing from here up would change the answer.
    """
    inputs = [os.path.realpath(prepared.python.executable)]
    absent: list[str] = []
    script, _ = script_command(plan.request.command)
    if script is not None:
        inputs.append(os.fspath(Path(script).absolute()))
    found = prepared.inputs
    sources = dict(found.sources) if found is not None else {}
    sources.update(plan.run_inputs.sources)
    for source in sources.values():
        inputs += [os.fspath(source.path / n) for n in METADATA_FILES]
    if plan.run_inputs is not found:  # --with-requirements files
        inputs += [os.fspath(f) for f in plan.run_inputs.files]
    if found is not None:
        inputs += [os.fspath(f) for f in found.files]
        if _builds_project(plan.run_inputs):
            from contentpkg.python.build.project import key_files

            # What the build key hashes: a changed setup.py (or a file named
            # in cache-keys) rebuilds the project on the next run.
            inputs += [os.fspath(f) for f in key_files(found.root)]
        if found.kind != "script":
            absent += discovery_absent(found.root)
    else:
        absent += discovery_absent(Path("/"))
    if prepared.lock_path is not None:
        inputs.append(os.fspath(prepared.lock_path))
    env = prepared.env
    exists = [os.fspath(env / "pyvenv.cfg")]
    view = env / ".cpk" / "view"
    if view.is_symlink():
        exists.append(os.path.realpath(view))
    dot = found.root / ".venv" if found is not None else None
    if dot is not None and os.path.islink(dot) and os.readlink(dot) == os.fspath(env):
        exists.append(os.fspath(dot))
    return inputs, absent, exists


def rebuild_recipe(prepared: Prepared, plan: RunPlan) -> dict[str, Any] | None:
    """What :mod:`contentpkg.python.envs.rebuild` needs to make the view
    again when only the view is gone (deleted, collected) and every input the
    memo watches is unchanged: the view's path, its entries in their order,
    the interpreter's facts and the project's ``.venv`` link with its gc root.

    None when the environment is more than a shared view (a project overlay)
    or the project's ``.venv`` is not cpk's link to it: those take the full path.
    """
    import json

    from contentpkg.python.envs.views import VIEW_JSON

    env = prepared.env
    found = prepared.inputs
    if found is None or found.kind not in ("pyproject", "requirements"):
        return None
    if os.path.lexists(env / ".cpk" / "view"):
        return None  # an overlay on a view: its project build is not recorded here
    dot = found.root / ".venv"
    if not os.path.islink(dot) or os.readlink(dot) != os.fspath(env):
        return None
    root = f"venv-{hashlib.sha256(os.fsencode(dot)).hexdigest()[:20]}"
    try:
        names = json.loads((env / ".cpk" / VIEW_JSON).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    store = plan.store
    # A view needs neither the interpreter's wheel tags (some 900 strings for
    # a manylinux CPython) nor its markers: left out, the memo every warm
    # run reads is an eighth of the size.
    python = {**prepared.python.to_json(), "tags": [], "markers": {}}
    return {
        "home": os.fspath(store.home),
        "store": os.fspath(store.user.root),
        # Where the entries are found, in lookup order: the rebuild looks
        # each up (it stats each anyway), not this full path.
        "layers": [os.fspath(layer.root) for layer in store.layers],
        "view": os.fspath(env),
        "entries": [str(name) for name in names],
        "python": python,
        "venv": os.fspath(dot),
        "root": [os.fspath(store.roots_dir / root), os.fspath(dot)],
    }


class Launch:
    """A command ready to exec in its environment, and what to say first."""

    __slots__ = ("argv", "env", "environ", "memo", "prepared")

    def __init__(
        self,
        env: Path,
        argv: tuple[str, ...],
        environ: dict[str, str],
        prepared: Prepared,
        memo: str | None = None,
    ) -> None:
        self.env = env
        self.argv = argv
        #: The environment the command inherits (before ``exec_in`` adds the
        #: environment's ``bin/`` and ``VIRTUAL_ENV``).
        self.environ = environ
        self.prepared = prepared
        #: The memo written for the next identical run (None: none written).
        self.memo = memo

    @property
    def notes(self) -> list[str]:
        return self.prepared.notes

    @property
    def conflicts(self) -> list:
        return self.prepared.conflicts

    def exec(self) -> None:
        """Replace this process with the command (returns only by raising)."""
        exec_in(self.env, list(self.argv), self.environ)


def _child_environ(ctx_environ: Mapping[str, str], native: Path | None) -> dict[str, str]:
    """The command's environment: this one, with native packages' paths first.

    Libraries go on ``LD_LIBRARY_PATH``: a name given to dlopen
    (``ctypes.CDLL``) is searched there, and not through any RUNPATH of the
    interpreter's.
    """
    environ = dict(ctx_environ)
    if native is not None:
        for var, value in (("LD_LIBRARY_PATH", native / "lib"), ("PATH", native / "bin")):
            old = environ.get(var)
            environ[var] = os.fspath(value) + (os.pathsep + old if old else "")
    return environ


def run(options: Options, request: RunRequest, memo_args: Sequence[str] | None = None) -> Launch:
    """``cpk run``: plan, make what is missing, remember the answer, and say what to exec.

    ``memo_args`` are the command line's ``cpk run`` arguments: given, the
    decision is remembered for :func:`.memo.try_fast` under them. A run with
    native packages is not remembered, since the memo cannot check them, nor
    one whose requirements files expand ``${VAR}``.
    """
    plan = plan_run(options, request)
    prepared = prepare(plan)
    ctx = options.ctx
    environ = _child_environ(ctx.environ, request.native)
    strict = _strict_command(options, plan.inputs)
    _check_command(prepared, plan.argv[0], environ, strict)
    memo = None
    # ${VAR} in a requirements file: the memo cannot watch the variable.
    if memo_args is not None and request.native is None and not plan.run_inputs.uses_environment:
        memo = write_memo(
            ctx.cache_dir,
            ctx.environ,
            memo_args,
            os.fspath(prepared.env),
            *memo_facts(prepared, plan),
            strict=strict,
            rebuild=rebuild_recipe(prepared, plan),
        )
    return Launch(prepared.env, plan.argv, environ, prepared, memo)


def _strict_command(options: Options, inputs: ProjectInputs | None) -> bool:
    """Whether a command outside the environment is refused: the option, else
    ``CPK_STRICT_COMMAND``, else ``[tool.cpk] strict-command``."""
    if options.strict_command or options.ctx.strict_command:
        return True
    setting = inputs.tool.get("strict-command") if inputs is not None else None
    if setting is not None and not isinstance(setting, bool):
        raise CpkError(f"{inputs.input_file}: [tool.cpk] strict-command must be true or false")
    return bool(setting)


def _check_command(
    prepared: Prepared, program: str, environ: Mapping[str, str], strict: bool
) -> None:
    """Say when the command runs from outside the environment; refuse it when strict."""
    outside = outside_command(prepared.env, program, environ)
    if outside is None:
        return
    if strict:
        raise CpkError(
            f"{program} is not in the environment; refusing to run {outside} from PATH, "
            "outside it (strict command: add it to the project's dependencies)"
        )
    prepared.notes.append(f"warning: {outside_warning(program, outside)}")


def shell(options: Options, request: RunRequest) -> Launch:
    """``cpk shell``: the project's environment for an interactive subshell.

    The shell learns where it is from ``CPK_SHELL`` (prompts, nesting
    checks) and names the project in ``VIRTUAL_ENV_PROMPT``, as an activated
    virtualenv does.
    """
    plan = plan_run(options, request)
    prepared = prepare(plan)
    environ = _child_environ(options.ctx.environ, None)
    environ["CPK_SHELL"] = os.fspath(prepared.env)
    environ["VIRTUAL_ENV_PROMPT"] = (prepared.inputs and prepared.inputs.name) or "cpk"
    return Launch(prepared.env, plan.argv, environ, prepared)
