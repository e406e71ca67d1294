"""Resolve requirements into pins for one target interpreter, on resolvelib.

resolvelib does the search (backtracking, conflict causes); this module is
the provider that answers its questions from an :class:`IndexClient`:

* Each project is an identifier, and so is each *extra* of a project
  (``b[x]``). An extra's candidate depends on the project itself pinned to
  the same version plus the dependencies the extra adds: the standard
  approach (pip, uv), which keeps the base and all its extras on one version.
* Which versions a requirement may use is decided per file: PEP 592 yanked
  files only for an exact ``==``/``===`` pin, ``requires-python`` against the
  target's version, wheels only when one of their tags is supported by the
  *target* interpreter (best-ranked first), the sdist otherwise.
* Pre-releases only when asked for, when a specifier names one, or when no
  final release satisfies the requirement (pip's and uv's rule).
* Dependencies come from metadata files (PEP 658), so resolving downloads no
  wheel where the index serves them. Candidates are checked lazily, as pip
  does: one whose metadata is broken, names another project, or requires
  another Python is skipped and the next version tried.
* A name with a local source (a checkout named in ``[tool.cpk.sources]``, or
  a ``name @ file:`` requirement) has exactly one candidate, the checkout,
  described by its static PEP 621 ``[project]`` table; its dependencies are
  resolved from the index like any others. See :func:`resolve`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.markers import Marker
from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

from contentpkg.errors import CpkError, InvalidInputError, ResolutionError
from contentpkg.python.index.client import FileName, IndexClient, parse_filename, sdist_pkg_info
from contentpkg.python.index.dists import DistFile, Pin, Resolution
from contentpkg.python.index.releases import ProjectFiles
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.project.pep621 import DYNAMIC_VERSION, read_static_project
from contentpkg.python.resolve.markers import (
    DNF,
    FALSE,
    TRUE,
    Universe,
    and_,
    marker_variables,
    propagate,
    to_dnf,
)

if TYPE_CHECKING:
    from contentpkg.store import Store

SdistMetadata = Callable[[DistFile], bytes]

_MAX_ROUNDS = 20000
_STATIC_SDIST_METADATA = Version("2.2")
# What a checkout whose [project].version is dynamic is called (the overlay's
# dist-info says the same: both take it from the one PEP 621 reader).
_DYNAMIC_VERSION = Version(DYNAMIC_VERSION)


# -- what the resolver juggles -------------------------------------------------


@dataclass(frozen=True)
class _Req:
    """One requirement on one identifier: a project, or one extra of it."""

    name: NormalizedName
    extra: str | None
    specifier: SpecifierSet
    text: str  # for messages: "b[x]>=1"
    pinned: Version | None = None  # an extra's requirement on its own base version

    @property
    def identifier(self) -> str:
        return self.name if self.extra is None else f"{self.name}[{self.extra}]"


@dataclass(frozen=True)
class _Candidate:
    name: NormalizedName
    version: Version
    extra: str | None
    files: tuple[DistFile, ...] = field(compare=False)  # best wheel first, sdist last

    @property
    def identifier(self) -> str:
        return self.name if self.extra is None else f"{self.name}[{self.extra}]"

    def __str__(self) -> str:
        return f"{self.identifier} {self.version}"


@dataclass(frozen=True)
class _Metadata:
    requires_dist: tuple[Requirement, ...]
    requires_python: str | None


class _Unusable(Exception):
    """A candidate that cannot be used, with the reason shown if nothing else works."""


@dataclass(frozen=True)
class _Local:
    """A local checkout standing for a project: its one candidate's facts.

    ``version_known`` is False when ``[project].version`` is dynamic: then
    ``version`` is a placeholder and version specifiers on the project are
    not checked (see :func:`resolve`).
    """

    path: Path
    version: Version
    version_known: bool
    metadata: _Metadata
    dynamic_extras: bool


def _load_local(name: NormalizedName, path: Path, target: Version) -> _Local:
    """Read a checkout's static PEP 621 metadata, or say why it cannot be used.

    Only ``[project]`` is read: a backend's dynamic metadata needs a PEP 517
    build of the directory, which cpk does not do yet (sdists, with their
    own ``_Build`` in :mod:`sdist`, are another matter). The checkout's own
    ``[tool.cpk.sources]`` are not read either: the project being locked
    decides where every name comes from, as a workspace root does in uv.
    """
    label = f"{name} ({path})"
    if not path.exists():
        raise CpkError(f"{label}: local source does not exist")
    if not path.is_dir():
        raise CpkError(
            f"{label}: local source is a file; cpk uses local checkouts (directories) "
            "in place (put a wheel in a find-links directory instead)"
        )
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        raise CpkError(
            f"{label}: no pyproject.toml [project] table; "
            "dynamic metadata needs a build; not supported yet"
        )
    _, project = read_static_project(pyproject)
    if project is None:
        raise CpkError(
            f"{label}: no [project] table in pyproject.toml; "
            "dynamic metadata needs a build; not supported yet"
        )
    meta_name = project.name
    if meta_name is None or canonicalize_name(meta_name) != name:
        raise CpkError(f"{label}: its pyproject.toml names project {meta_name!r}, not {name!r}")
    if "dependencies" in project.dynamic:
        raise CpkError(
            f"{label}: dynamic metadata needs a build; not supported yet "
            "([project].dependencies is dynamic)"
        )
    if project.version_known:
        try:
            version, known = Version(project.shown_version), True
        except InvalidVersion:
            raise InvalidInputError(
                f"{pyproject}: invalid [project].version {project.version!r}", path=str(pyproject)
            ) from None
    else:
        version, known = _DYNAMIC_VERSION, False
    requires_python = project.requires_python
    if not _requires_python_ok(requires_python, target):
        raise CpkError(f"{label}: requires Python {requires_python} (target is {target})")

    def parse(text: object, where: str) -> Requirement:
        try:
            return Requirement(str(text))
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise InvalidInputError(
                f"{pyproject}: {where}: invalid requirement {text!r} ({reason})",
                path=str(pyproject),
            ) from None

    requires = [parse(d, "[project].dependencies") for d in project.dependencies]
    for key, reqs in project.optional_dependencies.items():
        where = f"[project.optional-dependencies].{project.extra_names[key]}"
        for text in reqs:
            # As a wheel's METADATA says it: the extra becomes a marker,
            # which get_dependencies evaluates as for any other candidate.
            req = parse(text, where)
            clause = f'extra == "{key}"'
            req.marker = Marker(f"({req.marker}) and {clause}" if req.marker else clause)
            requires.append(req)
    return _Local(
        path=path,
        version=version,
        version_known=known,
        metadata=_Metadata(tuple(requires), requires_python),
        dynamic_extras="optional-dependencies" in project.dynamic,
    )


def _file_url_path(url: str) -> Path | None:
    """The absolute local path of a ``file:`` URL; None if it is relative.

    Raises for URLs that name no local file (another scheme, another host).
    """
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise CpkError(
            f"{url}: unsupported direct URL (cpk takes git+ URLs, http(s) URLs of "
            "archives and wheels, and file: URLs)"
        )
    path = unquote(parts.path)
    if not os.path.isabs(path):
        return None
    return Path(os.path.normpath(path))


def _display(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def _expand(req: Requirement) -> list[_Req]:
    """A requirement with extras is one requirement per identifier it touches."""
    name = canonicalize_name(req.name)
    text = _display(req)
    reqs = [_Req(name, None, req.specifier, text)]
    for extra in sorted({canonicalize_name(e) for e in req.extras}):
        reqs.append(_Req(name, extra, req.specifier, text))
    return reqs


def _exact_versions(specifier: SpecifierSet) -> tuple[set[Version], set[str]]:
    """Versions a specifier names exactly (``==V`` without ``*``, ``===V``)."""
    versions: set[Version] = set()
    strings: set[str] = set()
    for spec in specifier:
        if spec.operator == "==" and not spec.version.endswith(".*"):
            try:
                versions.add(Version(spec.version))
            except InvalidVersion:
                pass
        elif spec.operator == "===":
            strings.add(spec.version)
    return versions, strings


def _rank_key(build: tuple[int, str] | tuple[()]) -> tuple[int, str]:
    # Higher build numbers win ties between otherwise equal wheels.
    return (-build[0], build[1]) if build else (1, "")


def _for_universe(parsed: FileName, universe: Universe) -> bool:
    """Whether a wheel serves some Python version of the universe (any platform)."""
    assert parsed.tags is not None
    minors = universe.minors
    for tag in parsed.tags:
        interpreter = tag.interpreter
        if interpreter.startswith("py"):
            if interpreter in ("py3", "py2.py3") or interpreter[2:] in minors:
                return True
            continue
        digits = interpreter[2:]
        if not digits.startswith("3"):
            continue
        if digits in minors or (
            tag.abi == "abi3" and any(int(m[1:]) >= int(digits[1:] or 0) for m in minors)
        ):
            return True
    return False


@lru_cache(maxsize=4096)
def _requires_python_ok(spec: str | None, target: Version) -> bool:
    # Cached: most files of a project repeat a handful of specifiers.
    if not spec:
        return True
    try:
        return SpecifierSet(spec).contains(target, prereleases=True)
    except InvalidSpecifier:
        return True  # as pip does: a malformed constraint does not exclude


class _Releases(Mapping[Version, list[tuple[DistFile, FileName]]]):
    """A project's versions, each one's files (with their parsed names) made
    on first look: most releases of a big project are never looked at."""

    def __init__(self, files: ProjectFiles) -> None:
        self._files = files
        self._made: dict[Version, list[tuple[DistFile, FileName]]] = {}

    def __getitem__(self, version: Version) -> list[tuple[DistFile, FileName]]:
        found = self._made.get(version)
        if found is None:
            if version not in self._files.versions():
                raise KeyError(version)
            found = []
            for file in self._files.release(version):
                parsed = parse_filename(file.filename)
                if parsed is not None:
                    found.append((file, parsed))
            self._made[version] = found
        return found

    def __iter__(self) -> Iterator[Version]:
        return iter(self._files.versions())

    def __len__(self) -> int:
        return len(self._files.versions())

    def __contains__(self, version: object) -> bool:
        return version in self._files.versions()


class _Provider(AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self,
        client: IndexClient,
        python: InterpreterInfo,
        *,
        prereleases: bool,
        constraints: Mapping[NormalizedName, list[SpecifierSet]],
        preferences: Mapping[NormalizedName, Version],
        store: Store | None,
        sdist_metadata: SdistMetadata | None,
        hashes: Mapping[NormalizedName, set[str]],
        local: Mapping[NormalizedName, Path] | None = None,
        overrides: Mapping[NormalizedName, list[Requirement]] | None = None,
        index_pins: Mapping[NormalizedName, str] | None = None,
        universe: Universe | None = None,
    ) -> None:
        self.client = client
        self.python = python
        #: Set for a universal lock: every environment it samples must be
        #: served, so no marker is evaluated against the running interpreter.
        self.universe = universe
        # The version requires-python is checked against: for a universal
        # lock the lowest the project supports (as uv checks).
        self.target = universe.lowest if universe is not None else Version(python.version)
        #: For a universal lock: each candidate's dependencies with the
        #: marker under which they apply (extra substituted).
        self.edges: dict[_Candidate, list[tuple[_Req, DNF]]] = {}
        self.env = dict(python.markers)
        self.ranks = python.tag_ranks
        self.prereleases = prereleases
        self.constraints = constraints
        self.preferences = preferences
        self.store = store
        self.sdist_metadata = sdist_metadata
        self.hashes = hashes
        #: (name, specifier) already handed to the background look-ahead.
        self._warmed: set[tuple[str, str]] = set()
        self._releases: dict[str, _Releases] = {}
        self._newest_first: dict[str, list[Version]] = {}
        self._usable: dict[tuple[str, Version, bool], tuple[DistFile, ...]] = {}
        self._metadata: dict[tuple[str, Version], _Metadata | _Unusable] = {}
        self._store_versions: dict[str, set[Version]] = {}
        self.dependencies: dict[_Candidate, list[_Req]] = {}
        self.root_names: set[str] = set()
        self.local_paths: dict[NormalizedName, Path] = dict(local or {})
        self._local: dict[NormalizedName, _Local] = {}
        self.overrides = dict(overrides or {})
        self.index_pins = dict(index_pins or {})
        #: Names served by a direct URL (see :mod:`.direct`), set by resolve().
        self.direct: Any = None

    # -- local checkouts ------------------------------------------------

    def local(self, name: NormalizedName) -> _Local:
        """The checkout serving name (read once, on first need: a source
        nothing requires is never read, so it may be broken harmlessly)."""
        found = self._local.get(name)
        if found is None:
            found = self._local[name] = _load_local(name, self.local_paths[name], self.target)
        return found

    # -- index data -----------------------------------------------------

    def releases(self, name: str) -> Mapping[Version, list[tuple[DistFile, FileName]]]:
        """A project's releases: each version's files, made when first looked at."""
        found = self._releases.get(name)
        if found is None:
            pinned = self.index_pins.get(canonicalize_name(name))
            listed = (
                self.client.releases_on(pinned, name)
                if pinned is not None
                else self.client.project_releases(name)
            )
            found = self._releases[name] = _Releases(listed)
        return found

    def newest_first(self, name: str) -> list[Version]:
        found = self._newest_first.get(name)
        if found is None:
            found = self._newest_first[name] = sorted(self.releases(name), reverse=True)
        return found

    def usable_files(self, name: str, version: Version, yanked_ok: bool) -> tuple[DistFile, ...]:
        """A release's files the target can use: wheels best tag first, then one sdist."""
        key = (name, version, yanked_ok)
        found = self._usable.get(key)
        if found is None:
            found = self._usable[key] = self._usable_files(name, version, yanked_ok)
        return found

    def _python_ok(self, spec: str | None) -> bool:
        if self.universe is not None:
            return self.universe.python_ok(spec)
        return _requires_python_ok(spec, self.target)

    def _usable_files(self, name: str, version: Version, yanked_ok: bool) -> tuple[DistFile, ...]:
        entries = self.releases(name)[version]
        allowed = self.hashes.get(name)
        wheels: list[tuple[int, tuple[int, str], DistFile]] = []
        sdists: list[DistFile] = []
        for file, parsed in entries:
            if file.yanked is not None and not yanked_ok:
                continue
            if not self._python_ok(file.requires_python):
                continue
            if allowed is not None and not any(
                f"{algo}:{value}" in allowed for algo, value in file.hashes.items()
            ):
                continue
            if parsed.tags is None:
                sdists.append(file)
                continue
            rank = min((self.ranks[t] for t in parsed.tags if t in self.ranks), default=None)
            if rank is None and self.universe is not None and _for_universe(parsed, self.universe):
                # Locked for the other platforms and versions; after the
                # running interpreter's own, so metadata comes from one of those.
                rank = len(self.ranks)
            if rank is not None:
                wheels.append((rank, _rank_key(parsed.build), file))
        wheels.sort(key=lambda w: (w[0], w[1], w[2].filename))
        # One sdist per release: .tar.gz is the standard form (PEP 625).
        sdists.sort(key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
        return tuple(w[2] for w in wheels) + tuple(sdists[:1])

    def in_store(self, name: str, version: Version) -> bool:
        if self.store is None:
            return False
        if name not in self._store_versions:
            from contentpkg.store.entry import Spec

            versions = set()
            for entry in self.store.match(Spec(name)):
                try:
                    versions.add(Version(entry.version))
                except InvalidVersion:
                    continue
            self._store_versions[name] = versions
        if version in self._store_versions[name]:
            return True
        return any(
            file.sha256 and self.store.find_source(f"sha256:{file.sha256}")
            for file, _ in self.releases(name)[version]
        )

    def metadata(
        self, name: NormalizedName, version: Version, files: Sequence[DistFile]
    ) -> _Metadata:
        if name in self.local_paths:
            return self.local(name).metadata
        if self.direct is not None and name in self.direct.names:
            return self._direct_metadata(name)
        key = (name, version)
        found = self._metadata.get(key)
        if found is None:
            try:
                found = self._read_metadata(name, version, files[0])
            except _Unusable as exc:
                found = exc
            self._metadata[key] = found
        if isinstance(found, _Unusable):
            raise found
        return found

    def _read_metadata(self, name: NormalizedName, version: Version, file: DistFile) -> _Metadata:
        if file.is_wheel or file.core_metadata is not None:
            data = self.client.metadata(file)
        elif self.sdist_metadata is not None:
            data = self.sdist_metadata(file)
        else:
            data = self._static_sdist_metadata(file)
        raw, _ = parse_email(data)
        meta_name = raw.get("name")
        if meta_name is None or canonicalize_name(meta_name) != name:
            raise _Unusable(f"its metadata names project {meta_name!r}")
        try:
            meta_version = Version(raw.get("version", ""))
        except InvalidVersion:
            raise _Unusable(f"its metadata has invalid version {raw.get('version')!r}") from None
        if meta_version != version:
            raise _Unusable(f"its metadata says version {meta_version}")
        requires = []
        for line in raw.get("requires_dist", []):
            try:
                requires.append(Requirement(line))
            except InvalidRequirement:
                raise _Unusable(f"its metadata has an invalid requirement {line!r}") from None
        requires_python = raw.get("requires_python")
        if not self._python_ok(requires_python):
            raise _Unusable(f"requires Python {requires_python}")
        return _Metadata(tuple(requires), requires_python)

    def _direct_metadata(self, name: NormalizedName) -> _Metadata:
        """A direct reference's metadata (its requirements unparsable is an error:
        there is no other version to fall back to)."""
        key = (name, Version("0"))
        found = self._metadata.get(key)
        if isinstance(found, _Metadata):
            return found
        dist = self.direct.dist(name)
        raw, _ = parse_email(dist.metadata)
        try:
            requires = tuple(Requirement(line) for line in raw.get("requires_dist", []))
        except InvalidRequirement as exc:
            raise CpkError(f"{name} @ {self.direct.names[name]}: bad metadata ({exc})") from None
        requires_python = raw.get("requires_python")
        if not _requires_python_ok(requires_python, self.target):
            raise CpkError(
                f"{name} @ {self.direct.names[name]}: requires Python {requires_python} "
                f"(target is {self.target})"
            )
        found = self._metadata[key] = _Metadata(requires, requires_python)
        return found

    def _static_sdist_metadata(self, file: DistFile) -> bytes:
        """PKG-INFO, when PEP 643 makes it trustworthy without a build."""
        data = sdist_pkg_info(self.client.fetch_archive(file), file.filename)
        raw, _ = parse_email(data)
        version_text = raw.get("metadata_version", "0")
        try:
            static = Version(version_text) >= _STATIC_SDIST_METADATA
        except InvalidVersion:
            static = False
        dynamic = {d.lower() for d in raw.get("dynamic", [])}
        if static and "requires-dist" not in dynamic:
            return data
        why = "requires-dist is dynamic" if static else f"metadata version {version_text}"
        raise CpkError(f"{file.filename}: dependencies unknown without a build ({why})")

    # -- resolvelib's questions -----------------------------------------

    def identify(self, requirement_or_candidate: _Req | _Candidate) -> str:
        return requirement_or_candidate.identifier

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, _Candidate],
        candidates: Mapping[str, Iterator[_Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[bool, bool, bool, str]:
        infos = list(information[identifier])
        # A local checkout is a single candidate, like an exact pin: decide
        # it first, so its dependencies constrain the search early.
        pinned = any(
            i.requirement.pinned is not None
            or _exact_versions(i.requirement.specifier)[0]
            or i.requirement.name in self.local_paths
            or (self.direct is not None and i.requirement.name in self.direct.names)
            for i in infos
        )
        direct = any(i.parent is None for i in infos)
        backtracking = any(c.requirement.identifier == identifier for c in backtrack_causes)
        return (not pinned, not backtracking, not direct, identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[_Req]],
        incompatibilities: Mapping[str, Iterator[_Candidate]],
    ) -> Callable[[], Iterator[_Candidate]]:
        reqs = list(requirements.get(identifier, ()))
        name = canonicalize_name(identifier.split("[", 1)[0])
        extra = identifier[len(name) + 1 : -1] if "[" in identifier else None
        bad = {c.version for c in incompatibilities.get(identifier, ())}
        if name in self.local_paths:
            return self._local_matches(name, extra, reqs, bad)
        if self.direct is not None and name in self.direct.names:
            return self._direct_matches(name, extra, reqs, bad)

        def candidates() -> Iterator[_Candidate]:
            # Lazy: resolvelib usually takes the first candidate, so most
            # versions of a big project never have their files examined.
            for version, files in self.matching_versions(name, reqs):
                if version in bad:
                    continue
                try:
                    self.metadata(name, version, files)
                except _Unusable:
                    continue
                yield _Candidate(name, version, extra, files)

        return candidates

    def _local_matches(
        self, name: NormalizedName, extra: str | None, reqs: Sequence[_Req], bad: set[Version]
    ) -> Callable[[], Iterator[_Candidate]]:
        """The checkout as the only candidate, if the requirements admit it."""
        local = self.local(name)
        if extra is not None and local.dynamic_extras:
            raise CpkError(
                f"{name} ({local.path}): dynamic metadata needs a build; not supported yet "
                f"([project].optional-dependencies is dynamic, and extra {extra!r} is asked for)"
            )
        candidate = _Candidate(name, local.version, extra, ())
        specs = list(self.constraints.get(name, ()))
        ok = (
            local.version not in bad
            and all(self.is_satisfied_by(r, candidate) for r in reqs)
            and (
                not local.version_known
                or all(s.contains(local.version, prereleases=True) for s in specs)
            )
        )

        def candidates() -> Iterator[_Candidate]:
            if ok:
                yield candidate

        return candidates

    def _direct_matches(
        self, name: NormalizedName, extra: str | None, reqs: Sequence[_Req], bad: set[Version]
    ) -> Callable[[], Iterator[_Candidate]]:
        """The direct reference as the only candidate, if the requirements admit it."""
        dist = self.direct.dist(name)
        self._direct_metadata(name)
        version = Version(dist.version)
        candidate = _Candidate(name, version, extra, (dist.file,))
        specs = list(self.constraints.get(name, ()))
        ok = (
            version not in bad
            and all(self.is_satisfied_by(r, candidate) for r in reqs)
            and all(s.contains(version, prereleases=True) for s in specs)
        )

        def candidates() -> Iterator[_Candidate]:
            if ok:
                yield candidate

        return candidates

    def matching_versions(
        self, name: NormalizedName, reqs: Sequence[_Req], *, store_order: bool = True
    ) -> Iterator[tuple[Version, tuple[DistFile, ...]]]:
        """Versions (with their usable files) allowed by reqs, most preferred first.

        ``store_order=False`` leaves out the preference for versions in the
        store (for the look-ahead threads, which must not touch the store).
        """
        specs = [r.specifier for r in reqs] + list(self.constraints.get(name, ()))
        pins = {r.pinned for r in reqs if r.pinned is not None}
        exact: set[Version] = set(pins)
        exact_strings: set[str] = set()
        for spec in specs:
            versions, strings = _exact_versions(spec)
            exact |= versions
            exact_strings |= strings

        def allowed(version: Version) -> bool:
            return not (pins and any(version != p for p in pins)) and all(
                s.contains(version, prereleases=True) for s in specs
            )

        def usable(version: Version) -> tuple[DistFile, ...]:
            yanked_ok = version in exact or str(version) in exact_strings
            return self.usable_files(name, version, yanked_ok)

        allow_pre = self.prereleases or any(s.prereleases for s in specs) or bool(pins)
        preferred = self.preferences.get(name)
        if (self.store is not None and store_order) or (
            preferred is not None and preferred.is_prerelease and not allow_pre
        ):
            # Orders that need every matching version known first.
            matching = [v for v in self.newest_first(name) if allowed(v)]
            # Pre-releases stay only when no final release is usable.
            if not allow_pre and any(not v.is_prerelease and usable(v) for v in matching):
                matching = [v for v in matching if not v.is_prerelease]
            # Stable sort: the lock's version, then versions in the store, newest first.
            matching.sort(
                key=lambda v: (v != preferred, store_order and not self.in_store(name, v))
            )
            for version in matching:
                files = usable(version)
                if files:
                    yield version, files
            return
        # The same order, found lazily: the resolver mostly takes the first
        # answer, and a project with thousands of releases (botocore) need
        # not have each checked against the specifiers on every question.
        final_seen = False
        if preferred is not None and preferred in self.releases(name) and allowed(preferred):
            files = usable(preferred)
            if files:
                final_seen = not preferred.is_prerelease
                yield preferred, files
        for version in self.newest_first(name):
            if version == preferred or (version.is_prerelease and not allow_pre):
                continue
            if allowed(version):
                files = usable(version)
                if files:
                    final_seen = final_seen or not version.is_prerelease
                    yield version, files
        if not allow_pre and not final_seen:
            # No final release is usable: pre-releases are, then (pip's and uv's rule).
            for version in self.newest_first(name):
                if version.is_prerelease and version != preferred and allowed(version):
                    files = usable(version)
                    if files:
                        yield version, files

    def is_satisfied_by(self, requirement: _Req, candidate: _Candidate) -> bool:
        if requirement.pinned is not None:
            return candidate.version == requirement.pinned
        if candidate.name in self.local_paths and not self.local(candidate.name).version_known:
            # A dynamic version is unknown without a build; the checkout is
            # what the project asked for, so it is taken at its word.
            return True
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: _Candidate) -> list[_Req]:
        found = self.dependencies.get(candidate)
        if found is not None:
            return found
        meta = self.metadata(candidate.name, candidate.version, candidate.files)
        if self.universe is not None:
            deps = self._universal_dependencies(candidate, meta)
            self.dependencies[candidate] = deps
            self._prefetch(deps)
            return deps
        base_env = {**self.env, "extra": ""}
        deps: list[_Req] = []
        if candidate.extra is not None:
            v = candidate.version
            deps.append(
                _Req(candidate.name, None, SpecifierSet(f"=={v}"), f"{candidate.name}=={v}", v)
            )
            extra_env = {**self.env, "extra": candidate.extra}
        for req in meta.requires_dist:
            if candidate.extra is None:
                applies = req.marker is None or self._evaluate(req.marker, base_env, candidate)
            else:
                applies = (
                    req.marker is not None
                    and self._evaluate(req.marker, extra_env, candidate)
                    and not self._evaluate(req.marker, base_env, candidate)
                )
            if not applies:
                continue
            deps.extend(self._dependency(candidate, req))
        self.dependencies[candidate] = deps
        self._prefetch(deps)
        return deps

    def _universal_dependencies(self, candidate: _Candidate, meta: _Metadata) -> list[_Req]:
        """Every dependency that applies somewhere in the universe, with the
        marker (``extra`` decided by the candidate) kept on its edge."""
        assert self.universe is not None
        deps: list[_Req] = []
        edges: list[tuple[_Req, DNF]] = []
        if candidate.extra is not None:
            v = candidate.version
            pin = _Req(candidate.name, None, SpecifierSet(f"=={v}"), f"{candidate.name}=={v}", v)
            deps.append(pin)
            edges.append((pin, TRUE))
        for req in meta.requires_dist:
            mentions_extra = req.marker is not None and "extra" in marker_variables(req.marker)
            if (candidate.extra is None) == mentions_extra:
                # The base adds what applies without an extra; each extra's
                # candidate what its extra adds.
                continue
            try:
                where = to_dnf(req.marker, candidate.extra or "")
            except Exception as exc:  # packaging raises several types for bad markers
                raise CpkError(
                    f"{candidate}: cannot evaluate marker {str(req.marker)!r} ({exc})"
                ) from None
            if not self.universe.possible(where):
                continue
            found = self._dependency(candidate, req)
            deps.extend(found)
            edges.extend((r, where) for r in found)
        self.edges[candidate] = edges
        return deps

    def _dependency(self, candidate: _Candidate, req: Requirement) -> list[_Req]:
        """The requirements one dependency of candidate puts on the resolver."""
        served = self.direct is not None and canonicalize_name(req.name) in self.direct.names
        if req.url and canonicalize_name(req.name) not in self.local_paths and not served:
            # With a local source for the name, the project's choice wins
            # over where a dependency says it comes from (as uv's sources
            # do); without one there is nowhere cpk could get it from.
            hint = (
                f"; declare {req.name} in the project's [tool.cpk.sources]"
                if req.url.startswith("file:")
                # A project's own git/URL requirement serves the name
                # everywhere in the graph; a dependency's does not.
                else f"; require {req.name} @ {req.url} in the project itself"
            )
            raise CpkError(
                f"{candidate}: depends on {req.name} @ {req.url}; "
                f"direct URL dependencies are not supported{hint}"
            )
        replaced = override_requirement(req, self.overrides)
        if replaced is not None:
            return [r for ov in replaced for r in _expand(ov)]
        expanded = _expand(req)
        if candidate.extra is None and canonicalize_name(req.name) == candidate.name:
            expanded = [r for r in expanded if r.extra is not None]  # a self-reference
        return expanded

    def _evaluate(self, marker: Marker, env: dict[str, str], candidate: _Candidate) -> bool:
        try:
            return marker.evaluate(env)
        except Exception as exc:  # packaging raises several types for bad markers
            raise CpkError(f"{candidate}: cannot evaluate marker {str(marker)!r} ({exc})") from None

    def _prefetch(self, deps: list[_Req]) -> None:
        """Fetch pages and the likely metadata of upcoming projects in parallel.

        The resolver asks serially; fetching ahead lets the network answers
        overlap. It changes nothing but timing: whatever is fetched is what
        the resolver would have fetched itself.
        """
        pending = [
            r
            for r in deps
            if r.extra is None
            and r.name not in self._releases
            and r.name not in self.local_paths
            and r.name not in self.index_pins  # never asked of another index
            and not (self.direct is not None and r.name in self.direct.names)
        ]
        if pending:
            self.client.background(self._warm, pending)

    def _warm(self, reqs: list[_Req]) -> None:
        for req in reqs:
            key = (req.name, str(req.specifier))
            if key in self._warmed:
                continue  # also ends the look-ahead on dependency cycles
            self._warmed.add(key)
            self.client.background(self._warm_one, req)

    def _warm_one(self, req: _Req) -> None:
        # The resolver's own first choice for req alone, made the way it makes
        # it (versions, then the best usable file), so what is fetched here is
        # what it reads next: never another platform's wheel of the release.
        choice = next(self.matching_versions(req.name, [req], store_order=False), None)
        if choice is None:
            return
        version, files = choice
        file = files[0]
        # Without a PEP 658 file a wheel's metadata is read by range requests,
        # or the wheel itself is fetched when small: the likely choice, which
        # a sync would download next anyway (into the archive cache that the
        # download reuses), so it costs nothing extra unless the resolver
        # backtracks away from it. An sdist's metadata may need a build: left
        # to the resolver.
        if not (file.is_wheel or file.core_metadata is not None):
            return
        try:
            # Read and parsed as the resolver reads it, and kept for it.
            meta = self.metadata(req.name, version, files)
        except (_Unusable, CpkError):
            return  # the resolver meets (and reports) it when it gets there
        # Look further ahead: the likely choice's own dependencies are what
        # the resolver asks about after it. Fetching them now widens the
        # frontier from one candidate's children to every level the metadata
        # already shows (as uv's prefetching does).
        ahead: list[_Req] = []
        env = {**self.env, "extra": ""}
        for dep in meta.requires_dist:
            try:
                if dep.marker is None:
                    applies = True
                elif self.universe is not None:
                    # Every environment of a universal lock counts, but not
                    # what only an extra of the choice adds.
                    applies = "extra" not in marker_variables(dep.marker) and (
                        self.universe.possible(to_dnf(dep.marker))
                    )
                else:
                    applies = dep.marker.evaluate(env)
                if applies:
                    ahead.extend(r for r in _expand(dep) if r.extra is None)
            except Exception:
                continue  # the resolver reports bad markers when it gets there
        self._prefetch(ahead)


# -- explaining failures -------------------------------------------------------


class _Explainer:
    def __init__(self, provider: _Provider) -> None:
        self.p = provider

    def who(self, parent: _Candidate | None) -> str:
        return "requested:" if parent is None else f"{parent} requires"

    def exclusion(self, name: NormalizedName, version: Version, reqs: Sequence[_Req]) -> str:
        """Why one version that matches the specifiers was not used."""
        p = self.p
        entries = p.releases(name)[version]
        files = [f for f, _ in entries]
        if all(f.yanked is not None for f in files):
            reasons = sorted({f.yanked for f in files if f.yanked})
            return "is yanked" + (f" ({reasons[0]})" if reasons else "")
        live = [f for f in files if f.yanked is None]
        if not any(_requires_python_ok(f.requires_python, p.target) for f in live):
            spec = next(f.requires_python for f in live if f.requires_python)
            if p.universe is not None:
                # A universal lock serves the project's whole range.
                return (
                    f"requires Python {spec}, but the lock must serve Python {p.target} "
                    f"(requires-python {p.universe.requires_python or 'not set'})"
                )
            return f"requires Python {spec} (target is {p.target})"
        if not p.usable_files(name, version, yanked_ok=False):
            return "has no wheel for the target interpreter and no sdist"
        failure = p._metadata.get((name, version))
        if isinstance(failure, _Unusable):
            return str(failure)
        if version.is_prerelease and not p.prereleases:
            return "is a pre-release (allow pre-releases to use it)"
        return "conflicts with the other requirements"

    def lines_for(self, name: NormalizedName, infos: list[Any]) -> tuple[str, list[str]]:
        reqs = [i.requirement for i in infos]
        p = self.p
        lines = []
        seen = set()
        for info in infos:
            line = f"{self.who(info.parent)} {info.requirement.text}"
            if line not in seen:
                seen.add(line)
                lines.append(line)
        if name in p.local_paths:
            local = p.local(name)
            texts = ", ".join(sorted({r.text for r in reqs}))
            lines.append(f"{name} comes from the local checkout {local.path}")
            return f"{name} {local.version} (local) does not satisfy {texts}", lines
        if p.direct is not None and name in p.direct.names:
            dist = p.direct.dist(name)
            texts = ", ".join(sorted({r.text for r in reqs}))
            lines.append(f"{name} comes from {p.direct.names[name]}")
            return f"{name} {dist.version} (direct URL) does not satisfy {texts}", lines
        releases = p.releases(name)
        if not releases:
            summary = f"no project named {name} on {p.client.describe()}"
            return summary, lines
        texts = sorted({r.text for r in reqs})
        if len(texts) > 1:
            word = "both" if len(texts) == 2 else "all of them"
            lines.append(f"no version of {name} satisfies {word}")
            return f"conflicting requirements for {name}", lines
        specs = [r.specifier for r in reqs] + list(p.constraints.get(name, ()))
        pins = {r.pinned for r in reqs if r.pinned is not None}
        matching = [
            v
            for v in sorted(releases, reverse=True)
            if all(s.contains(v, prereleases=True) for s in specs) and (not pins or v in pins)
        ]
        if not matching:
            available = ", ".join(str(v) for v in sorted(releases, reverse=True)[:8])
            more = ", ..." if len(releases) > 8 else ""
            lines.append(f"no version of {name} matches {texts[0]} (available: {available}{more})")
            return f"no version of {name} matches {texts[0]}", lines
        for version in matching[:5]:
            lines.append(f"{name} {version} {self.exclusion(name, version, reqs)}")
        return f"no usable version of {name} matches {texts[0]}", lines

    def chain(self, candidate: _Candidate, limit: int = 4) -> list[str]:
        """How a root requirement led to candidate: "top 1.0 requires h>=2", ...

        Walks back through the dependencies seen during the search, taking
        the first parent (by name) whose requirement admits the candidate;
        a project that the roots name directly needs no explanation.
        """
        p = self.p
        lines: list[str] = []
        current = candidate
        seen = {current.name}
        while len(lines) < limit and current.name not in p.root_names:
            parents = sorted(
                (
                    (parent, req)
                    for parent, reqs in p.dependencies.items()
                    for req in reqs
                    if req.name == current.name
                    and req.pinned is None
                    and req.specifier.contains(current.version, prereleases=True)
                    and parent.name not in seen
                ),
                key=lambda pr: (str(pr[0]), pr[1].text),
            )
            if not parents:
                break
            parent, req = parents[0]
            lines.insert(0, f"{parent} requires {req.text}")
            seen.add(parent.name)
            current = parent
        return lines

    def explain(self, causes: Sequence[Any]) -> ResolutionError:
        by_name: dict[NormalizedName, list[Any]] = {}
        for cause in causes:
            by_name.setdefault(cause.requirement.name, []).append(cause)
        summaries = []
        details: list[str] = []
        for cause in sorted(causes, key=lambda c: str(c.parent or "")):
            if cause.parent is not None:
                for line in self.chain(cause.parent):
                    if line not in details:
                        details.append(line)
        for name in sorted(by_name):
            infos = sorted(
                by_name[name],
                key=lambda i: (i.parent is not None, str(i.parent or ""), i.requirement.text),
            )
            summary, lines = self.lines_for(name, infos)
            summaries.append(summary)
            details.extend(lines)
        unknown = [s for s in summaries if s.startswith("no project named")]
        summary = unknown[0] if unknown else "; ".join(summaries)
        # The chains (how each root led to the conflict, then why each
        # version was refused) are the error's data and its detail lines.
        return ResolutionError(summary, chains=details)


# -- entry point ---------------------------------------------------------------


def override_requirement(
    req: Requirement, overrides: Mapping[NormalizedName, list[Requirement]]
) -> list[Requirement] | None:
    """What stands for req when an override names its project: each
    override, with req's extras (uv's ``override-dependencies`` replace the
    version and marker, not what is asked of the package); None otherwise."""
    found = overrides.get(canonicalize_name(req.name))
    if not found:
        return None
    out = []
    for ov in found:
        new = Requirement(str(ov))
        new.extras = set(ov.extras) | set(req.extras)
        out.append(new)
    return out


def _parse(req: str | Requirement, what: str) -> Requirement:
    if isinstance(req, Requirement):
        return req
    try:
        return Requirement(req)
    except InvalidRequirement as exc:
        # packaging's message ends with a caret drawing: keep its first line.
        reason = str(exc).splitlines()[0]
        raise CpkError(f"invalid {what} {req!r}: {reason}") from None


def resolve(
    requirements: Sequence[str | Requirement],
    client: IndexClient,
    python: InterpreterInfo,
    *,
    prereleases: bool = False,
    prefer_store: Store | None = None,
    constraints: Iterable[str | Requirement] = (),
    upgrade: bool = True,
    preferences: Mapping[str, str] | None = None,
    sdist_metadata: SdistMetadata | None = None,
    hashes: Mapping[str, Iterable[str]] | None = None,
    local_sources: Mapping[str, Path] | None = None,
    local_metadata: Mapping[str, tuple[str, Sequence[str], str | None]] | None = None,
    overrides: Iterable[str | Requirement] = (),
    index_pins: Mapping[str, str] | None = None,
    direct: Any = None,
    universe: Universe | None = None,
    conditions: Sequence[DNF] | None = None,
) -> Resolution:
    """Pin every package the requirements need on the target interpreter python.

    ``constraints`` narrow versions without adding packages; ``preferences``
    (name -> version, e.g. from an existing lock) are tried first unless
    ``upgrade``, as uv keeps locked versions; ``prefer_store`` tries versions
    already in the store before newer ones; ``hashes`` (name ->
    ``"algo:hex"`` strings, from ``--hash``) admits only files with one of
    those hashes. ``sdist_metadata`` builds an sdist's metadata when a
    release has no usable wheel; without it, an sdist's static PKG-INFO
    (Metadata-Version 2.2+, requires-dist not dynamic) is used or the
    resolution fails saying the sdist must be built.

    ``local_metadata`` (name -> version, Requires-Dist, Requires-Python)
    gives a local source's metadata as its build backend said it, for a
    checkout whose ``[project]`` leaves fields to the backend.
    ``local_sources`` (name -> directory, e.g. a project's
    ``[tool.cpk.sources]``) serve those names from local checkouts, wherever
    in the graph they are required, and whatever URL a dependency names for
    them. A root requirement ``name @ file:///abs/dir`` adds a source too; a
    relative ``file:`` URL must be among ``local_sources`` (the project
    resolves it against its own directory), since nothing here knows what it
    is relative to. A checkout's one candidate takes its version, its
    dependencies and its extras from the static ``[project]`` table; a
    dynamic version satisfies every specifier (it is unknown without a
    build), dynamic dependencies are an error. The checkout's own
    ``[tool.cpk.sources]`` are ignored. Its pin has ``directory`` set and no
    files: it is used in place, never fetched.

    ``overrides`` replace every requirement on their names, the roots' and
    the dependencies' alike (uv's ``override-dependencies``);
    ``index_pins`` (name -> index URL) ask only that index for those names.
    ``direct`` (a :class:`.direct.DirectSources`) serves root requirements
    with a git or archive URL; without it they are an error.
    With ``universe`` the pins serve every environment it samples, not just
    python (a universal lock): markers stay on the edges, each pin gets the
    marker under which it is needed (``Pin.marker``, a DNF, with
    ``conditions[i]`` the selection marker of ``requirements[i]``, e.g.
    ``"dev" in dependency_groups``), and every file of a chosen version
    serving some Python of the universe is kept, on any platform.

    The result is deterministic: the same inputs and index state give the
    same pins, and pins are sorted by name.
    """
    roots_given = [_parse(r, "requirement") for r in requirements]
    env = {**python.markers, "extra": ""}
    local = {canonicalize_name(n): Path(p) for n, p in (local_sources or {}).items()}
    override_map: dict[NormalizedName, list[Requirement]] = {}
    for item in overrides:
        ov = _parse(item, "override")
        override_map.setdefault(canonicalize_name(ov.name), []).append(ov)
    roots: list[_Req] = []
    root_where: list[tuple[str, DNF, bool]] = []
    for index, given in enumerate(roots_given):
        replaced = override_requirement(given, override_map)
        for req in replaced if replaced is not None else [given]:
            where = TRUE
            try:
                if universe is not None:
                    condition = conditions[index] if conditions is not None else TRUE
                    where = and_(to_dnf(req.marker), condition)  # type: ignore[assignment]
                    applies = universe.possible(where)
                else:
                    applies = req.marker is None or req.marker.evaluate(env)
            except Exception as exc:
                raise CpkError(f"{req}: cannot evaluate its marker ({exc})") from None
            if not applies:
                continue
            name = canonicalize_name(req.name)
            if req.url and name not in local:
                if direct is not None and direct.accepts(req.url):
                    direct.add(name, req.url)
                else:
                    path = _file_url_path(req.url)
                    if path is None:
                        raise CpkError(
                            f"{req}: a relative file: URL needs a project to be relative to "
                            "(declare the checkout in [tool.cpk.sources])"
                        )
                    local[name] = path
            expanded = _expand(req)
            roots.extend(expanded)
            in_group = any("dependency_groups" in atom for conj in where for atom in conj)
            root_where.extend((r.identifier, where, in_group) for r in expanded)
    constraint_specs: dict[NormalizedName, list[SpecifierSet]] = {}
    for item in constraints:
        req = _parse(item, "constraint")
        if universe is not None:
            applies = universe.possible(to_dnf(req.marker))
        else:
            applies = req.marker is None or req.marker.evaluate(env)
        if applies:
            constraint_specs.setdefault(canonicalize_name(req.name), []).append(req.specifier)
    preferred: dict[NormalizedName, Version] = {}
    if not upgrade:
        for name, version in (preferences or {}).items():
            try:
                preferred[canonicalize_name(name)] = Version(version)
            except InvalidVersion:
                continue
    allowed = {
        canonicalize_name(name): {h.lower().replace("=", ":", 1) for h in values}
        for name, values in (hashes or {}).items()
    }
    provider = _Provider(
        client,
        python,
        prereleases=prereleases,
        constraints=constraint_specs,
        preferences=preferred,
        store=prefer_store,
        sdist_metadata=sdist_metadata,
        hashes=allowed,
        local=local,
        overrides=override_map,
        index_pins={canonicalize_name(n): u for n, u in (index_pins or {}).items()},
        universe=universe,
    )
    for raw, (version, requires, requires_python) in (local_metadata or {}).items():
        # A checkout whose metadata its build backend gave (dynamic fields):
        # as a wheel's METADATA, extras as markers.
        name = canonicalize_name(raw)
        provider._local[name] = _Local(
            path=local[name],
            version=Version(version),
            version_known=True,
            metadata=_Metadata(tuple(Requirement(r) for r in requires), requires_python),
            dynamic_extras=False,
        )
    provider.direct = direct
    provider.root_names = {r.name for r in roots}
    skip = set(local) | set(provider.index_pins) | (set(direct.names) if direct else set())
    # The roots' pages, their likely choices' metadata and what those need
    # in turn, fetched ahead in parallel while the resolver starts.
    provider._prefetch([r for r in roots if r.name not in skip])
    resolver: Resolver[_Req, _Candidate, str] = Resolver(provider, BaseReporter())
    try:
        result = resolver.resolve(roots, max_rounds=_MAX_ROUNDS)
    except ResolutionImpossible as exc:
        error = _Explainer(provider).explain(exc.causes)
        if universe is not None:
            # Where the conflicting requirements apply: a universal
            # resolution may fork on them (see universal.py).
            error.splits = _cause_markers(provider, exc.causes, roots, root_where)  # type: ignore[attr-defined]
        raise error from None
    except ResolutionTooDeep:
        raise CpkError(
            f"resolution gave up after {_MAX_ROUNDS} rounds of backtracking",
            details=["narrow the requirements (or add constraints) and try again"],
        ) from None
    resolution = _resolution(provider, result.mapping, roots_given, python, root_where)
    if universe is not None:
        resolution.python_bound = _python_bound(provider, result.mapping)
    return resolution


def _python_bound(provider: _Provider, mapping: Mapping[str, _Candidate]) -> str | None:
    """The lowest sampled Python above the universe's lowest that a newer
    release of some pin supports while the lowest does not (None: none)."""
    universe = provider.universe
    assert universe is not None
    higher = [Version(v) for v in universe.versions if Version(v) > universe.lowest]
    higher = [v for v in higher if any(
        universe.envs[i]["python_full_version"] == str(v) for i in universe.all
    )]  # fmt: skip
    if not higher:
        return None
    best: Version | None = None
    for candidate in mapping.values():
        if candidate.extra is not None or candidate.name in provider.local_paths:
            continue
        if provider.direct is not None and candidate.name in provider.direct.names:
            continue  # one commit or archive: no newer releases to weigh
        for version in provider.newest_first(candidate.name):
            if version <= candidate.version:
                break
            if version.is_prerelease and not provider.prereleases:
                continue
            specs = {f.requires_python for f, _ in provider.releases(candidate.name)[version]}
            for spec in specs:
                if not spec or _requires_python_ok(spec, universe.lowest):
                    continue
                for v in higher:
                    if (best is None or v < best) and _requires_python_ok(spec, v):
                        best = v
                        break
    return str(best) if best is not None else None


def _cause_markers(
    provider: _Provider,
    causes: Sequence[Any],
    roots: list[_Req],
    root_where: list[tuple[str, DNF, bool]],
) -> list[DNF]:
    """The distinct markers under which the conflicting requirements apply."""
    found: list[DNF] = []
    for cause in causes:
        wheres: list[DNF] = []
        if cause.parent is None:
            wheres = [
                w for r, (_, w, _) in zip(roots, root_where, strict=True) if r is cause.requirement
            ]
        else:
            wheres = [w for r, w in provider.edges.get(cause.parent, ()) if r is cause.requirement]
        for where in wheres:
            env_only = frozenset(
                frozenset(
                    a for a in conj if " in extras" not in a and " in dependency_groups" not in a
                )
                for conj in where
            )
            if env_only != TRUE and env_only not in found:
                found.append(env_only)
    return found


def _markers(
    provider: _Provider,
    mapping: Mapping[str, _Candidate],
    root_where: list[tuple[str, DNF, bool]],
) -> tuple[dict[str, DNF], dict[str, DNF]]:
    """Each identifier's marker in a universal resolution: for every
    selection, and for the dependency groups alone (``--only-group``)."""
    assert provider.universe is not None
    edges: dict[str, list[tuple[str, DNF]]] = {}
    for candidate in mapping.values():
        edges[candidate.identifier] = [
            (req.identifier, where) for req, where in provider.edges.get(candidate, ())
        ]
    every = propagate([(i, w) for i, w, _ in root_where], edges, provider.universe)
    groups = propagate([(i, w) for i, w, g in root_where if g], edges, provider.universe)
    return every, groups


def _resolution(
    provider: _Provider,
    mapping: Mapping[str, _Candidate],
    roots: list[Requirement],
    python: InterpreterInfo,
    root_where: list[tuple[str, DNF, bool]] = (),  # type: ignore[assignment]
) -> Resolution:
    every: dict[str, DNF] = {}
    groups: dict[str, DNF] = {}
    if provider.universe is not None:
        every, groups = _markers(provider, mapping, root_where)
    by_name: dict[NormalizedName, list[_Candidate]] = {}
    for candidate in mapping.values():
        by_name.setdefault(candidate.name, []).append(candidate)
    pins: dict[str, Pin] = {}
    for name in sorted(by_name):
        base = next(c for c in by_name[name] if c.extra is None)
        deps = {
            r.name for c in by_name[name] for r in provider.get_dependencies(c) if r.name != name
        }
        if name in provider.local_paths:
            local = provider.local(name)
            pins[name] = Pin(
                name=name,
                version=str(base.version),
                files=(),
                dependencies=tuple(sorted(deps)),
                requires_python=local.metadata.requires_python,
                directory=os.fspath(local.path),
                marker=every.get(name),
                group_marker=groups.get(name, FALSE),
            )
            continue
        meta = provider.metadata(name, base.version, base.files)
        if provider.direct is not None and name in provider.direct.names:
            dist = provider.direct.dist(name)
            pins[name] = Pin(
                name=name,
                version=str(base.version),
                files=(dist.file,),
                dependencies=tuple(sorted(deps)),
                requires_python=meta.requires_python,
                direct=dist.table,
                marker=every.get(name),
                group_marker=groups.get(name, FALSE),
            )
            continue
        pins[name] = Pin(
            name=name,
            version=str(base.version),
            files=base.files,
            dependencies=tuple(sorted(deps)),
            requires_python=meta.requires_python or base.files[0].requires_python,
            index=base.files[0].index,
            marker=every.get(name),
            group_marker=groups.get(name, FALSE),
        )
    return Resolution(
        pins=pins, requirements=roots, python_version=python.version, markers=dict(python.markers)
    )


__all__ = ["SdistMetadata", "resolve"]
