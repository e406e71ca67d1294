"""Locking and syncing: ``cpk lock``, ``cpk sync``, ``cpk fetch``, and what
``cpk run`` and ``contentpkg.use()`` need made.

Each operation wires the parts together in one place: the project's inputs,
the target interpreter, the index client, the resolver, the lock file, and
the store (wheels unpacked, sdists built, bytecode compiled). The CLI only
parses arguments and prints the outcome these functions return. Whether a
lock is current is decided by :mod:`.lockstate`; ``cpk run``'s plan
(:mod:`.plan`) calls down into this module, never the other way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.progress import elapsed, size_text
from contentpkg.python.index.dists import DistFile, Pin, Resolution
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.python.lock import (
    Lock,
    LockedPackage,
    lock_to_requirements_pins,
    read_lock,
    write_lock,
)
from contentpkg.python.lock.selection import select
from contentpkg.python.project import (
    ProjectInputs,
    inputs_fingerprint,
)
from contentpkg.python.project.pyproject import Declared
from contentpkg.python.run.lockstate import (
    LockOutcome,
    LockState,
    current_lock,
    lock_inputs,
    lock_state,
    project_inputs,
    universal_fingerprint,
)
from contentpkg.python.run.options import Options, index_places
from contentpkg.store import Entry, Store
from contentpkg.store.locks import collector_lock

if TYPE_CHECKING:
    # Imported where a client is made: its HTTP stack is most of what a
    # no-op `cpk lock` would otherwise load.
    from contentpkg.python.index.client import IndexClient
    from contentpkg.python.install.bytecode import BytecodePipeline

#: Build requirements may themselves come as sdists needing builds; a chain
#: deeper than this is a cycle (setuptools needing setuptools from source).
_MAX_BUILD_DEPTH = 4

log = logging.getLogger(__name__)


@dataclass
class Materialized:
    """One pin or locked package made present in the store."""

    name: str
    version: str
    entry: Entry
    how: str  # "present", "fetched" or "built"


@dataclass
class SyncOutcome:
    lock: LockOutcome | None
    items: list[Materialized]

    def count(self, how: str) -> int:
        return sum(1 for item in self.items if item.how == how)


class Session:
    """The store, the target interpreter and the index client for one command."""

    def __init__(
        self,
        options: Options,
        store: Store,
        python: InterpreterInfo,
        places: tuple[list[str], list[str]],
    ) -> None:
        self.options = options
        self.store = store
        self.python = python
        self.cache_dir = options.ctx.cache_dir
        #: The (indexes, find-links) this command uses, as the fingerprint has them.
        self.settings = places
        self._client: IndexClient | None = None
        self._depth = 0
        #: Sizes of the files downloaded, for the "Fetched" summary (appended
        #: from the download threads: list.append needs no lock).
        self._downloaded: list[int] = []
        # Worker processes for bytecode (None: one per core). Inside someone
        # else's process (contentpkg.use()), spawned workers would re-run
        # that program's __main__, so the runtime compiles in-process.
        self.bytecode_jobs: int | None = None

    @classmethod
    def open(cls, options: Options, project_root: Path | None, inputs: ProjectInputs | None):
        """A session for a command that has no plan of its own (lock, sync, fetch, use)."""
        return cls(
            options,
            Store.open(project_root, ctx=options.ctx),
            interpreter_info(options.python, cache_dir=options.ctx.cache_dir),
            index_places(options, inputs),
        )

    def fingerprint(self, inputs: ProjectInputs) -> str:
        """The fingerprint of inputs under this session's interpreter and indexes
        (a single-environment lock's: a script's, a ``--with`` run's)."""
        return inputs_fingerprint(
            inputs,
            python_version=self.python.version,
            index_settings=self.settings,
            markers=self.python.markers,
        )

    @property
    def client(self) -> IndexClient:
        if self._client is None:
            indexes, links = self.settings
            from contentpkg.python.index.client import IndexClient

            self._client = IndexClient(
                indexes,
                links,
                cache_dir=self.cache_dir,
                offline=self.options.offline,
                reporter=self.options.reporter,
                netrc=self.options.ctx.netrc,
                retries=self.options.ctx.http_retries,
                timeout=self.options.ctx.http_timeout,
                refresh=self.options.refresh,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- resolution ---------------------------------------------------------

    def resolve(
        self,
        requirements: Sequence[str],
        *,
        preferences: dict[str, str] | None = None,
        upgrade: bool = True,
        hashes: dict[str, tuple[str, ...]] | None = None,
        local_sources: dict[str, Path] | None = None,
        local_metadata: dict[str, tuple[str, tuple[str, ...], str | None]] | None = None,
        constraints: Sequence[str] = (),
        overrides: Sequence[str] = (),
        index_pins: dict[str, str] | None = None,
        locked_vcs: dict[str, dict[str, Any]] | None = None,
    ) -> Resolution:
        from contentpkg.python.resolve.resolver import resolve

        direct = self._direct_sources(locked_vcs)
        started = time.monotonic()
        resolution = resolve(
            list(requirements),
            self.client,
            self.python,
            prereleases=self.options.prereleases,
            prefer_store=self.store if self.options.prefer_store else None,
            preferences=preferences,
            upgrade=upgrade,
            sdist_metadata=self._sdist_metadata,
            hashes=hashes,
            local_sources=local_sources,
            local_metadata=local_metadata,
            constraints=constraints,
            overrides=overrides,
            index_pins=index_pins,
            direct=direct,
        )
        self._summarize_resolution(resolution, started)
        return resolution

    def _summarize_resolution(self, resolution: Resolution, started: float) -> None:
        count = len(resolution.pins)
        self.options.reporter.summary(
            f"Resolved {count} package{'' if count == 1 else 's'} "
            f"in {elapsed(time.monotonic() - started)}"
        )

    def _direct_sources(self, locked_vcs: dict[str, dict[str, Any]] | None) -> Any:
        """Where root requirements with a git or archive URL are served from."""
        from contentpkg.python.resolve.direct import DirectSources

        return DirectSources(
            client=self.client,
            cache_dir=self.cache_dir,
            offline=self.options.offline,
            metadata_of=self._direct_metadata,
            store=self.store,
            locked=locked_vcs,
        )

    def _direct_metadata(self, path: Path, file: DistFile) -> bytes:
        """Metadata of a git commit's or an archive URL's file, at ``path``."""
        if file.is_wheel:
            from contentpkg.python.index.client import wheel_metadata_from_archive

            return wheel_metadata_from_archive(path, file.filename)
        from contentpkg.python.build.sdist import sdist_metadata

        return sdist_metadata(
            path,
            python=self.python,
            resolve_build_requires=self._build_requires,
            reporter=self.options.reporter,
        )

    def resolve_universal(
        self,
        inputs: ProjectInputs,
        declared: Declared,
        *,
        preferences: dict[str, str] | None = None,
        upgrade: bool = True,
        local_sources: dict[str, Path] | None = None,
        local_metadata: dict[str, tuple[str, tuple[str, ...], str | None]] | None = None,
        locked_vcs: dict[str, dict[str, Any]] | None = None,
    ) -> Resolution:
        """The project's universal resolution (see :mod:`..resolve.universal`)."""
        from contentpkg.python.resolve.universal import resolve_universal, selection_roots

        started = time.monotonic()
        resolution = resolve_universal(
            selection_roots(declared.base, declared.extras, declared.groups),
            self.client,
            self.python,
            requires_python=inputs.requires_python,
            environments=declared.environments,
            required_environments=declared.required_environments,
            conflicts=declared.conflicts,
            prereleases=self.options.prereleases,
            prefer_store=self.store if self.options.prefer_store else None,
            preferences=preferences,
            upgrade=upgrade,
            sdist_metadata=self._sdist_metadata,
            hashes=inputs.hashes,
            local_sources=local_sources
            if local_sources is not None
            else {name: source.path for name, source in inputs.sources.items()},
            local_metadata=local_metadata,
            constraints=inputs.constraints,
            overrides=inputs.overrides,
            index_pins=inputs.index_pins,
            direct=self._direct_sources(locked_vcs),
        )
        resolution.extras = tuple(sorted(declared.extras))
        resolution.groups = tuple(sorted(declared.groups))
        resolution.default_groups = tuple(declared.default_groups)
        resolution.conflicts = tuple(declared.conflicts)
        self._summarize_resolution(resolution, started)
        return resolution

    def _sdist_metadata(self, file: DistFile) -> bytes:
        from contentpkg.python.build.sdist import sdist_metadata

        path = self.client.fetch_archive(file)
        return sdist_metadata(
            path,
            python=self.python,
            resolve_build_requires=self._build_requires,
            # The context's cache, not the environment's: --no-cache gives
            # the command a cache of its own.
            cache_dir=self.cache_dir,
            reporter=self.options.reporter,
        )

    def build_requires(self, requirements: list[str]) -> list[Entry]:
        """Resolve and store a build environment's requirements (for builds
        made elsewhere: the project's own, in :mod:`..build.project`)."""
        return self._build_requires(requirements)

    def with_backend_metadata(self, inputs: ProjectInputs) -> ProjectInputs:
        """inputs completed by the project's build backend when it has dynamic fields."""
        if not inputs.dynamic:
            return inputs
        from contentpkg.python.build.project import with_backend_metadata

        return with_backend_metadata(
            inputs,
            python=self.python,
            cache_dir=self.cache_dir,
            environ=self.options.ctx.environ,
            resolve_build_requires=self._build_requires,
            reporter=self.options.reporter,
        )

    def project_build(self, inputs: ProjectInputs) -> tuple[Any, Entry | None]:
        """The project's own build: (the build to install into its overlay,
        None) or, with ``--no-editable``, (None, its wheel's store entry)."""
        from contentpkg.python.build.project import build_project, builds_project

        if not builds_project(inputs):
            return None, None
        editable = not self.options.no_editable
        built = build_project(
            inputs,
            editable=editable,
            python=self.python,
            cache_dir=self.cache_dir,
            environ=self.options.ctx.environ,
            resolve_build_requires=self._build_requires,
            reporter=self.options.reporter,
        )
        if editable:
            return built, None
        from contentpkg.python.install.bytecode import ensure_bytecode_many
        from contentpkg.python.install.wheel import add_wheel

        entry = add_wheel(self.store, built.wheel, source=built.root.as_uri()).entry
        ensure_bytecode_many(self.store, [entry], self.python, jobs=self.bytecode_jobs)
        return None, entry

    def _build_requires(self, requirements: list[str]) -> list[Entry]:
        """Resolve and store a build environment's requirements."""
        if not requirements:
            return []
        if self._depth >= _MAX_BUILD_DEPTH:
            raise CpkError(
                f"build requirements nest deeper than {_MAX_BUILD_DEPTH} levels "
                f"({', '.join(requirements)}): a package needs itself to build"
            )
        self._depth += 1
        try:
            resolution = self.resolve(requirements)
            return [item.entry for item in self.materialize_pins(resolution.pins.values())]
        finally:
            self._depth -= 1

    # -- into the store -----------------------------------------------------

    def materialize_pins(self, pins: Iterable[Pin]) -> list[Materialized]:
        wanted = []
        for pin in sorted(pins, key=lambda p: p.name):
            if pin.directory is not None:
                # Said rather than skipped: a caller composing its own
                # environment (fetch, use()) would otherwise silently lack it.
                raise CpkError(
                    f"{pin.name}: the local checkout {pin.directory} is used in place "
                    "by projects, not fetched into the store"
                )
            if not pin.files:
                raise CpkError(f"{pin.name} {pin.version}: no file to install")
            wanted.append((pin.name, pin.version, pin.files[0]))
        return self._materialize(wanted)

    def materialize_lock(self, lock: Lock) -> list[Materialized]:
        wanted = []
        for package in lock.packages:
            if package.directory is not None:
                continue  # local checkouts are used in place, never stored
            file = package.file or _pick_wheel(package, self.python)
            if file is None or package.version is None:
                raise CpkError(f"{lock.path}: {package.name} has no file for this environment")
            wanted.append(
                (
                    package.name,
                    package.version,
                    DistFile(file.filename, file.url, dict(file.hashes), size=file.size),
                )
            )
        return self._materialize(wanted)

    def _materialize(self, wanted: list[tuple[str, str, DistFile]]) -> list[Materialized]:
        from contentpkg.python.install.bytecode import BytecodePipeline
        from contentpkg.store.staging import clean_stale

        # A run killed between publishing an entry and dropping its slot
        # leaves the slot's lock file behind. Every add sweeps such debris
        # first, but a sync that finds everything present adds nothing, so
        # it would stay until the next add or gc: sweep here as well (one
        # listdir of a directory that is usually empty or absent).
        clean_stale(self.store.user.root)
        items: list[Materialized] = []
        missing: list[tuple[str, str, DistFile]] = []
        for name, version, file in wanted:
            if not file.sha256:
                raise CpkError(
                    f"{file.filename}: no sha256 published; cpk installs only verified files:"
                    " have the index publish sha256 hashes, or put the file in a"
                    " --find-links directory, where cpk hashes it"
                )
            entry = self.store.find_source(f"sha256:{file.sha256}")
            if entry is not None:
                log.debug(
                    "%s %s: in the %s store (%s)", name, version, entry.layer.role, entry.dirname
                )
                items.append(Materialized(name, version, entry, "present"))
            else:
                missing.append((name, version, file))
        if missing:
            # Configured remotes first: a signed, verified entry beats a
            # download and an unpack (or a build).
            from contentpkg.store.remote.substitute import by_source

            hashes = [f"sha256:{file.sha256}" for _, _, file in missing]
            got = by_source(self.store, self.options.ctx, hashes, self.options.reporter)
            items += [
                Materialized(n, v, got[h], "pulled")
                for (n, v, _), h in zip(missing, hashes, strict=True)
                if h in got
            ]
            missing = [m for m in missing if f"sha256:{m[2].sha256}" not in got]
        # Each entry is compiled as soon as it is in the store, overlapping
        # the downloads of the rest; leaving the block waits for the last.
        with BytecodePipeline(self.store, self.python, jobs=self.bytecode_jobs) as compiling:
            compiling.submit_many([item.entry for item in items])
            if missing:
                # Their start overlaps the first downloads.
                compiling.start_workers()
                started = time.monotonic()
                # Builds inside fetch their build requirements through here too:
                # count from this call's start, not from zero.
                mark = len(self._downloaded)
                with tempfile.TemporaryDirectory(prefix="cpk-fetch-", dir=self._scratch()) as tmp:

                    def add(m: tuple[str, str, DistFile]) -> Materialized:
                        made = self._add(m, Path(tmp), compiling)
                        compiling.submit(made.entry)  # a no-op when it came compiled
                        return made

                    # Largest first: the big wheels take longest to download,
                    # unpack and compile, and starting them last would leave
                    # one core compiling alone after everything else is done.
                    wheels = sorted(
                        (m for m in missing if m[2].is_wheel), key=lambda m: -(m[2].size or 0)
                    )
                    # Downloading and unpacking wait on the network and the disk,
                    # not the CPU: threads overlap them, as the GIL is released.
                    # An add then waits for its wheel's bytecode; more threads
                    # than transfers keep those waits from holding up downloads.
                    http = self.client.http
                    items.extend(http.map(add, wheels, threads=4 * http.jobs))
                    # Builds resolve their own requirements through this session,
                    # whose state is not shared between threads: one at a time.
                    items.extend(add(m) for m in missing if not m[2].is_wheel)
                count = len(missing)
                size = size_text(sum(self._downloaded[mark:]))
                self.options.reporter.summary(
                    f"Fetched {count} package{'' if count == 1 else 's'} ({size}) "
                    f"in {elapsed(time.monotonic() - started)}"
                )
        if missing:
            _log_cpu_split()  # the workers are reaped by now
        return sorted(items, key=lambda i: i.name)

    def _add(
        self, item: tuple[str, str, DistFile], tmp: Path, compiling: BytecodePipeline | None = None
    ) -> Materialized:
        """Download one file and make its entry (building an sdist first),
        compiled by ``compiling``'s workers as it is unpacked."""
        from contentpkg.python.install.wheel import add_wheel
        from contentpkg.store import lookup

        name, version, file = item
        if file.url.startswith("git+"):
            from contentpkg.python.resolve.direct import git_archive

            path = git_archive(file, name, self.cache_dir, offline=self.options.offline)
        else:
            path = self.client.download(file, tmp)
            self._downloaded.append(path.stat().st_size)
        if file.is_wheel:
            result = add_wheel(
                self.store, path, expected_sha256=file.sha256, source=file.url, bytecode=compiling
            )
            how = "fetched"
        else:
            started = time.monotonic()
            result = add_wheel(self.store, self._build(path), source=file.url, bytecode=compiling)
            self.options.reporter.summary(
                f"Built {name} {version} in {elapsed(time.monotonic() - started)}"
            )
            # The lock names the sdist: remember which entry it made.
            lookup.link_source(self.store.user.root, f"sha256:{file.sha256}", result.entry.path)
            how = "built"
        self.client.forget_archive(file)
        path.unlink(missing_ok=True)
        self.options.reporter.note(f"{how} {name} {version}")
        return Materialized(name, version, result.entry, how)

    def _build(self, sdist: Path) -> Path:
        from contentpkg.python.build.sdist import build_sdist_wheel

        return build_sdist_wheel(
            sdist,
            python=self.python,
            resolve_build_requires=self._build_requires,
            # The context's cache, not the environment's: --no-cache gives
            # the command a cache of its own.
            cache_dir=self.cache_dir,
            reporter=self.options.reporter,
        )

    def _scratch(self) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir


def _log_cpu_split() -> None:
    """Log this process's CPU time beside its finished workers' (debug).

    A cold sync's CPU is split between this process (resolving, downloads,
    unpacking, checks, publishing) and the bytecode workers; which side is
    the bottleneck decides what to make faster, so it is logged on ``-v``.
    Workers count once reaped, so this is called after the pipeline ends.
    """
    if not log.isEnabledFor(logging.DEBUG):
        return
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    log.debug(
        "CPU so far: this process %.2fs (user %.2fs, system %.2fs), reaped workers %.2fs",
        own.ru_utime + own.ru_stime,
        own.ru_utime,
        own.ru_stime,
        children.ru_utime + children.ru_stime,
    )


def _pick_wheel(package: LockedPackage, python: InterpreterInfo) -> object | None:
    """For a foreign lock listing several wheels: the best one for python."""
    from packaging.utils import parse_wheel_filename

    ranks = python.tag_ranks
    best, best_rank = None, None
    for wheel in package.wheels:
        try:
            tags = parse_wheel_filename(wheel.filename)[3]
        except ValueError:
            continue
        rank = min((ranks[t] for t in tags if t in ranks), default=None)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = wheel, rank
    return best or package.sdist


def check_requires_python(inputs: ProjectInputs, python: InterpreterInfo) -> None:
    if not inputs.requires_python:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(inputs.requires_python)
    except InvalidSpecifier:
        raise CpkError(
            f"{inputs.input_file}: requires-python {inputs.requires_python!r} is not valid"
        ) from None
    if not spec.contains(python.version, prereleases=True):
        raise CpkError(
            f"{inputs.input_file}: requires Python {inputs.requires_python}, "
            f"but {python.executable} is {python.version}"
        )


def relock(
    session: Session,
    inputs: ProjectInputs,
    state: LockState,
    *,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
    base: Lock | None = None,
    declared: Declared | None = None,
) -> tuple[LockOutcome, Lock]:
    """Make ``state.path`` the lock of inputs, unless it is current already.

    With ``declared`` (the project's own lock) the lock is universal: every
    extra and group, every supported environment; without, it is made for
    the session's interpreter alone (a script's, a ``--with`` run's).

    ``state`` is the lock as read (once) by :func:`lock_state`. Versions of
    the existing lock, else of ``base`` (the project's lock under a
    ``--with`` run), are kept unless upgrading, as uv keeps them. Returns
    the outcome and the lock now in the file (read back once written).
    """
    from packaging.utils import canonicalize_name

    if declared is None:
        check_requires_python(inputs, session.python)
    old = state.found
    path = state.path
    if state.fresh and not upgrade and not upgrade_packages:
        assert old is not None
        return LockOutcome(path, True, False, len(old.packages)), old
    preferences: dict[str, str] = {}
    keep = old if old is not None else base
    if keep is not None and not upgrade:
        skip = {canonicalize_name(n) for n in upgrade_packages}
        preferences = {
            n: v
            for n, v in lock_to_requirements_pins(keep).items()
            if canonicalize_name(n) not in skip
        }
    local_sources = {name: source.path for name, source in inputs.sources.items()}
    local_metadata = {}
    if inputs.installable and inputs.name:
        # A requirement on the project's own name (a test tool depending on
        # the library being developed, also through --with) is the
        # checkout, never the index's copy, which would shadow it.
        local_sources.setdefault(canonicalize_name(inputs.name), inputs.root)
        if inputs.backend_metadata is not None:
            local_metadata[canonicalize_name(inputs.name)] = inputs.backend_metadata
    from contentpkg.python.resolve.direct import locked_direct

    # A git dependency keeps its locked commit until upgraded.
    locked_vcs = (
        locked_direct(keep, {canonicalize_name(n) for n in upgrade_packages})
        if keep is not None and not upgrade
        else None
    )
    if declared is not None:
        resolution = session.resolve_universal(
            inputs,
            declared,
            preferences=preferences,
            upgrade=upgrade or not preferences,
            local_sources=local_sources,
            local_metadata=local_metadata,
            locked_vcs=locked_vcs,
        )
    else:
        resolution = session.resolve(
            inputs.requirements,
            preferences=preferences,
            upgrade=upgrade or not preferences,
            hashes=inputs.hashes,
            local_sources=local_sources,
            local_metadata=local_metadata,
            constraints=inputs.constraints,
            overrides=inputs.overrides,
            index_pins=inputs.index_pins,
            locked_vcs=locked_vcs,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    directories = _directories(resolution, inputs)
    changed = write_lock(
        path, resolution, state.fingerprint, directories=directories, cache_dir=session.cache_dir
    )
    return LockOutcome(path, False, changed, len(resolution.pins)), read_lock(
        path, cache_dir=session.cache_dir
    )


def _directories(resolution: Resolution, inputs: ProjectInputs) -> dict[str, tuple[Path, bool]]:
    """The lock's ``directory`` packages: each pin served from a checkout,
    with the editable flag its source declares.

    A non-editable source is used in place all the same (the overlay puts
    every source directory on ``sys.path``): a wheel built from it into the
    store would go stale silently, since only its metadata files are in the
    inputs' fingerprint, not its code. The flag is kept for what the lock
    says to other tools.
    """
    found = {}
    for name, pin in resolution.pins.items():
        if pin.directory is not None:
            source = inputs.sources.get(name)
            found[name] = (Path(pin.directory), source is not None and source.editable)
    return found


def lock_project(
    options: Options,
    *,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
    check: bool = False,
    known_stale: bool = False,
) -> LockOutcome:
    """Write the project's ``pylock.toml`` if its inputs changed (or asked to).

    ``known_stale``: the caller has just found :func:`.lockstate.current_lock`
    to be None, so the cheap check is not made twice.
    """
    if not upgrade and not upgrade_packages and not known_stale:
        current = current_lock(options)
        if current is not None:
            return current
    inputs = project_inputs(options)
    session = Session.open(options, inputs.root, inputs)
    try:
        inputs = session.with_backend_metadata(inputs)
        fingerprint, declared = universal_fingerprint(inputs, session.settings)
        state = lock_state(inputs.root / inputs.lock_name, fingerprint, cache_dir=session.cache_dir)
        if check:
            # Asked to upgrade, even a current lock would change.
            fresh = state.fresh and not upgrade and not upgrade_packages
            found = state.found
            return LockOutcome(state.path, fresh, False, len(found.packages) if found else 0)
        if not state.fresh or upgrade or upgrade_packages:
            _prefetch_roots(session, inputs, declared)
        outcome, _ = relock(
            session,
            inputs,
            state,
            upgrade=upgrade,
            upgrade_packages=upgrade_packages,
            declared=declared,
        )
        return outcome
    finally:
        session.close()


def _prefetch_roots(session: Session, inputs: ProjectInputs, declared: Declared) -> None:
    """Start fetching the index pages of the project's own requirements
    while the resolver's modules load: on a cold lock the first requests
    otherwise wait for those imports.

    Only names the index serves: not local checkouts, URL requirements,
    names pinned to another index or replaced by overrides (a name must
    never be asked of an index the project did not send it to).
    """
    from contentpkg.python.project.pep508 import requirement_name, split_marker

    skip = set(inputs.sources) | set(inputs.index_pins)
    skip |= {requirement_name(r) for r in inputs.overrides}
    if inputs.name:
        skip.add(requirement_name(inputs.name))
    texts = [*declared.base]
    for table in (declared.extras, declared.groups):
        for reqs in table.values():
            texts += reqs
    names = {
        requirement_name(text)
        for text in texts
        if isinstance(text, str) and "@" not in split_marker(text)[0]
    }
    session.client.prefetch(sorted(names - skip))


def current_project_lock(
    session: Session, inputs: ProjectInputs, state: LockState, *, frozen: bool
) -> tuple[LockOutcome | None, Lock]:
    """The project's lock to use, made current unless ``frozen``.

    ``state`` is :func:`lock_state`'s answer for the project's lock, which
    has already refused what ``frozen`` and ``locked`` forbid.
    """
    if frozen:
        assert state.usable is not None
        return None, state.usable
    return relock(session, inputs, state, declared=lock_inputs(inputs))


def sync_project(options: Options, *, frozen: bool = False, locked: bool = False) -> SyncOutcome:
    """Make every package of the project's lock present in the store.

    Locks first when the inputs changed, unless ``frozen`` (use the lock as
    it is) or ``locked`` (fail when it is stale), as ``uv sync`` does. The
    lock file becomes a gc root, so its entries stay while it exists.
    """
    inputs = project_inputs(options)
    session = Session.open(options, inputs.root, inputs)
    try:
        inputs = session.with_backend_metadata(inputs)
        path = inputs.root / inputs.lock_name
        fingerprint = "" if frozen else universal_fingerprint(inputs, session.settings)[0]
        state = lock_state(
            path, fingerprint, cache_dir=session.cache_dir, frozen=frozen, locked=locked
        )
        lock_outcome, lock = current_project_lock(session, inputs, state, frozen=frozen)
        lock = select(lock, session.python, options.chosen(lock), cache_dir=session.cache_dir)
        store = session.store
        store.ensure()
        with collector_lock(store.user.root):
            items = session.materialize_lock(lock)
            root_lock(store, path)
            if options.no_editable:
                _, entry = session.project_build(inputs)
                if entry is not None:
                    name = inputs.name or entry.name
                    items.append(Materialized(name, entry.version, entry, "built"))
        return SyncOutcome(lock_outcome, items)
    finally:
        session.close()


def root_lock(store: Store, lock_path: Path) -> Path:
    """Make a project's lock file a gc root (pruned once the file is gone)."""
    from contentpkg.store.gc import add_root

    key = hashlib.sha256(os.fsencode(lock_path.absolute())).hexdigest()[:20]
    return add_root(store, f"lock-{key}", lock_path.absolute())


def fetch(requirements: Sequence[str], options: Options) -> SyncOutcome:
    """Resolve requirements and make them present in the store; no lock file."""
    if not requirements:
        raise CpkError("fetch: name at least one requirement")
    session = Session.open(options, options.project, None)
    try:
        resolution = session.resolve(requirements)
        store = session.store
        store.ensure()
        with collector_lock(store.user.root):
            items = session.materialize_pins(resolution.pins.values())
        return SyncOutcome(None, items)
    finally:
        session.close()


class _InstalledFirst:
    """An index client that answers itself for distributions already installed.

    Each installed project gets exactly one release, the installed version,
    described by the installed metadata, so the resolver treats it as any
    other candidate (its dependencies are followed, a requirement it does
    not meet is a conflict) without asking an index, which may not list
    that version at all (a local build, an editable checkout). pip's
    resolver does the same with its installed candidates. Everything else
    is the real client's business.
    """

    def __init__(
        self, client: IndexClient, installed: Mapping[str, tuple[str, bytes]], tag: str
    ) -> None:
        from packaging.utils import canonicalize_name

        self._client = client
        self._files: dict[str, DistFile] = {}
        self._metadata: dict[str, bytes] = {}
        for name, (version, metadata) in installed.items():
            key = canonicalize_name(name)
            url = f"installed:{key}"
            # A wheel name with the target's best tag: always usable, and the
            # only file of the only release, so no other version is chosen.
            filename = f"{key.replace('-', '_')}-{version}-{tag}.whl"
            self._files[key] = DistFile(filename, url, index="installed")
            self._metadata[url] = metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def project_files(self, name: str) -> list[DistFile]:
        from packaging.utils import canonicalize_name

        found = self._files.get(canonicalize_name(name))
        return [found] if found is not None else self._client.project_files(name)

    def project_releases(self, name: str) -> Any:
        from packaging.utils import canonicalize_name

        from contentpkg.python.index.releases import ProjectFiles

        key = canonicalize_name(name)
        found = self._files.get(key)
        if found is None:
            return self._client.project_releases(name)
        return ProjectFiles.of([found], key, found.index)

    def prefetch(self, names: Iterable[str]) -> None:
        from packaging.utils import canonicalize_name

        self._client.prefetch([n for n in names if canonicalize_name(n) not in self._files])

    def metadata(self, file: DistFile) -> bytes:
        found = self._metadata.get(file.url)
        return found if found is not None else self._client.metadata(file)


def materialize_requirements(
    requirements: Sequence[str],
    options: Options,
    *,
    constraints: Iterable[str] = (),
    installed: Mapping[str, tuple[str, bytes]] | None = None,
    bytecode_jobs: int | None = None,
) -> list[Materialized]:
    """Resolve requirements and make what they add present in the store.

    For callers that compose their own environment (``contentpkg.use()``):
    no lock file, no view, no root (the caller roots what it keeps, holding
    the collector lock around this call). ``constraints`` narrow versions
    without adding packages, as pip's ``-c``. ``installed`` maps project
    names to the (version, core metadata) of distributions already present
    where the packages will be used: each is taken as it is, without asking
    an index, and is not materialized. ``bytecode_jobs`` as
    :func:`~contentpkg.python.install.bytecode.ensure_bytecode_many`'s ``jobs``.
    Returns the materialized packages only, sorted by name.
    """
    from packaging.utils import canonicalize_name

    from contentpkg.python.resolve.resolver import resolve

    if not requirements:
        raise CpkError("name at least one requirement")
    session = Session.open(options, options.project, None)
    session.bytecode_jobs = bytecode_jobs
    try:
        present = {canonicalize_name(n) for n in installed or {}}
        client: Any = session.client
        if installed:
            client = _InstalledFirst(client, installed, session.python.tags[0])
        resolution = resolve(
            list(requirements),
            client,
            session.python,
            prereleases=options.prereleases,
            prefer_store=session.store if options.prefer_store else None,
            constraints=list(constraints),
            sdist_metadata=session._sdist_metadata,
        )
        pins = [pin for name, pin in resolution.pins.items() if name not in present]
        if not pins:
            return []
        store = session.store
        store.ensure()
        with collector_lock(store.user.root):
            return session.materialize_pins(pins)
    finally:
        session.close()
