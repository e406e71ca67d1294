"""The PEP 751 lock file, ``pylock.toml``: writing it reproducibly, reading it fast.

A project's lock is *universal*: it holds every extra and dependency group
(PEP 751 ``extras``, ``dependency-groups``, ``default-groups``), the
project's whole ``requires-python`` range and Linux, macOS and Windows, as
uv locks. Each package carries the PEP 751 ``marker`` under which it is
installed (``"dev" in dependency_groups``, ``sys_platform == "win32"``...)
and every wheel of its version plus the sdist, so any selection on any
platform installs from it without resolving (:mod:`.selection` picks).

The lock of a script, or of a ``--with`` run (kept in the cache), is a
single-environment lock: what the resolver chose for one interpreter
(``environments`` says which), no markers, and per package the file chosen
in ``[packages.tool.cpk].file``. Locks of the previous format were all of
this kind.

What PEP 751 has no key for lives under ``[tool.cpk]``: the fingerprint of
the inputs (to tell a stale lock without resolving), whether the lock is
universal, and per package the marker for ``--only-group`` when it differs.

Reading is on the hot path of ``cpk run`` (DESIGN.md invariant 6): this
module imports only the standard library at import time, and the writer
imports ``tomli_w`` and ``datetime`` when it runs.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.context import Bucket
from contentpkg.errors import CpkError, LockUnreadableError, NotFoundError
from contentpkg.fs import write_cache, writing_atomic
from contentpkg.python.names import canonical_name

if TYPE_CHECKING:
    from contentpkg.python.index.dists import DistFile, Pin, Resolution

LOCK_FILENAME = "pylock.toml"
LOCK_VERSION = "1.0"

# Marker variables that describe the target in ``environments``: the ones
# wheel selection and common markers depend on.
_ENVIRONMENT_KEYS = (
    "implementation_name",
    "platform_machine",
    "platform_system",
    "python_full_version",
    "sys_platform",
)


class LockedFile:
    """One wheel or sdist of a locked package.

    ``url`` is always absolute: files recorded by ``path`` (relative to the
    lock) are turned into ``file:`` URLs on reading. ``upload_time`` is the
    ISO 8601 text of the TOML datetime.
    """

    __slots__ = ("filename", "hashes", "size", "upload_time", "url")

    def __init__(
        self,
        filename: str,
        url: str,
        hashes: dict[str, str],
        size: int | None = None,
        upload_time: str | None = None,
    ) -> None:
        self.filename = filename
        self.url = url
        self.hashes = hashes
        self.size = size
        self.upload_time = upload_time

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LockedFile):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"LockedFile({self.filename!r}, sha256={self.sha256!r})"


class LockedPackage:
    """One ``[[packages]]`` entry.

    ``file`` is the file cpk installs for the lock's environment: the one
    ``[packages.tool.cpk].file`` names, else the only wheel, else the sdist;
    None for a local directory, or for a foreign lock listing several wheels
    without saying which (the caller then picks by tags). The ``url``,
    ``filename``, ``sha256``, ``size`` and ``is_wheel`` properties describe
    that file.
    """

    __slots__ = (
        "dependencies",
        "directory",
        "editable",
        "file",
        "group_marker",
        "index",
        "marker",
        "name",
        "requires_python",
        "sdist",
        "vcs",
        "version",
        "wheels",
    )

    def __init__(
        self,
        name: str,
        version: str | None,
        *,
        wheels: tuple[LockedFile, ...] = (),
        sdist: LockedFile | None = None,
        file: LockedFile | None = None,
        dependencies: tuple[str, ...] = (),
        index: str = "",
        requires_python: str | None = None,
        marker: str | None = None,
        directory: Path | None = None,
        editable: bool = False,
        group_marker: str | bool | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.wheels = wheels
        self.sdist = sdist
        self.file = file
        self.dependencies = dependencies
        self.index = index
        self.requires_python = requires_python
        self.marker = marker
        self.directory = directory
        self.editable = editable
        #: The PEP 751 ``vcs`` table of a git dependency (its commit), else None.
        self.vcs: dict[str, Any] | None = None
        #: Where ``--only-group`` installs it, when that differs from
        #: ``marker``: a marker, or False for "never" (None: as ``marker``).
        self.group_marker = group_marker

    @property
    def url(self) -> str | None:
        return self.file.url if self.file else None

    @property
    def filename(self) -> str | None:
        return self.file.filename if self.file else None

    @property
    def sha256(self) -> str | None:
        return self.file.sha256 if self.file else None

    @property
    def size(self) -> int | None:
        return self.file.size if self.file else None

    @property
    def is_wheel(self) -> bool:
        return self.file is not None and self.file.is_wheel

    def __repr__(self) -> str:
        return f"LockedPackage({self.name!r}, {self.version!r})"


class Lock:
    """A read lock file. ``fingerprint`` is None for a lock cpk did not write.

    ``lock_version`` is kept so the CLI can warn about a newer minor version,
    as PEP 751 asks (the core never prints).
    """

    __slots__ = (
        "conflicts",
        "created_by",
        "default_groups",
        "dependency_groups",
        "digest",
        "environments",
        "extras",
        "fingerprint",
        "lock_version",
        "packages",
        "path",
        "python_version",
        "requires_python",
        "universal",
    )

    def __init__(
        self,
        path: Path,
        packages: list[LockedPackage],
        *,
        fingerprint: str | None = None,
        created_by: str = "",
        requires_python: str | None = None,
        environments: tuple[str, ...] = (),
        python_version: str | None = None,
        lock_version: str = LOCK_VERSION,
        universal: bool = False,
        extras: tuple[str, ...] = (),
        dependency_groups: tuple[str, ...] = (),
        default_groups: tuple[str, ...] = (),
        conflicts: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        self.path = path
        #: sha256 of the file's bytes when read through the parse cache
        #: (what the selection cache is keyed by); None otherwise.
        self.digest: str | None = None
        #: Sets of "extra:NAME"/"group:NAME" that must not be selected together.
        self.conflicts = conflicts
        #: Written for every environment and selection (see the module's doc).
        self.universal = universal
        self.extras = extras
        self.dependency_groups = dependency_groups
        self.default_groups = default_groups
        self.lock_version = lock_version
        self.packages = packages
        self.fingerprint = fingerprint
        self.created_by = created_by
        self.requires_python = requires_python
        self.environments = environments
        self.python_version = python_version

    def by_name(self) -> dict[str, LockedPackage]:
        return {package.name: package for package in self.packages}

    def __repr__(self) -> str:
        return f"Lock({str(self.path)!r}, {len(self.packages)} packages)"


# --------------------------------------------------------------------------
# reading


def read_lock(path: Path, *, cache_dir: Path | None = None) -> Lock:
    """Read and check a ``pylock.toml``: a lock that exists but cannot be
    used raises :class:`LockUnreadableError`, so callers that relock can
    catch that alone; a missing one raises :class:`NotFoundError`."""
    try:
        return _read_lock(path, cache_dir=cache_dir)
    except CpkError as exc:
        if isinstance(exc, (LockUnreadableError, NotFoundError)) or not os.path.lexists(path):
            raise
        raise LockUnreadableError(str(exc), path=os.fspath(path)) from None


def _parse_cache_path(cache_dir: Path, blob: bytes) -> tuple[str, Path]:
    import hashlib
    import marshal

    key = hashlib.sha256(blob).hexdigest()
    return key, Path(cache_dir) / Bucket.PARSED_LOCKS.value / f"{key}.{marshal.version}.marshal"


def _remember_parse(cache_dir: Path, blob: bytes, document: dict[str, Any]) -> None:
    """Keep document as the parse of the lock whose bytes are blob."""
    import marshal

    try:
        write_cache(_parse_cache_path(cache_dir, blob)[1], marshal.dumps(document))
    except (OSError, ValueError):
        pass  # failing only costs the next read a parse


def _read_lock(path: Path, *, cache_dir: Path | None = None) -> Lock:
    """Read and check a ``pylock.toml``; any problem is one CpkError line.

    ``tomllib`` is pure Python and takes ~15 ms for a 100-package lock, too
    much for the hot path of ``cpk run``. With ``cache_dir`` the parsed TOML
    is kept in ``cache_dir/locks/`` as ``marshal`` data keyed by the sha256
    of the lock's bytes (content-addressed, so no stat race can serve a
    stale parse), and a warm read costs ~1 ms: read, hash, unmarshal, check.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no lock file", what=str(path)) from None
    except OSError as error:
        raise LockUnreadableError(
            f"{path}: cannot read lock file: {error.strerror}", path=str(path)
        ) from None
    if cache_dir is None:
        return _parse_lock(path, _decode(path, blob))
    import marshal

    key, cached = _parse_cache_path(cache_dir, blob)
    data = None
    try:
        data = marshal.loads(cached.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        pass
    if not isinstance(data, dict):
        data = _decode(path, blob)
        try:
            write_cache(cached, marshal.dumps(data))  # failing only costs speed
        except ValueError:
            pass  # a value marshal cannot hold: no cache for this lock
    lock = _parse_lock(path, data)
    lock.digest = key
    return lock


def _decode(path: Path, blob: bytes) -> dict[str, Any]:
    try:
        data = tomllib.loads(blob.decode("utf-8"))
    except UnicodeDecodeError:
        raise LockUnreadableError(f"{path}: lock file is not UTF-8 text", path=str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise LockUnreadableError(
            f"{path}: lock file is not valid TOML ({error})", path=str(path)
        ) from None
    # Dates become ISO strings: marshal cannot hold them, and cached and
    # uncached reads must give the same values.
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    return value.isoformat()  # datetime, date, time: all TOML has besides


def _parse_lock(path: Path, data: dict[str, Any]) -> Lock:
    version = data.get("lock-version")
    if version is None:
        raise LockUnreadableError(f"{path}: not a PEP 751 lock file (no lock-version)")
    if not isinstance(version, str):
        raise LockUnreadableError(f'{path}: lock-version must be a string like "1.0"')
    # PEP 751: refuse a newer major version; a newer minor is readable.
    if version.split(".", 1)[0] != "1":
        raise LockUnreadableError(
            f"{path}: lock-version {version} is not supported (cpk reads 1.x)"
        )
    packages = data.get("packages")
    if not isinstance(packages, list):
        raise LockUnreadableError(f"{path}: lock file has no [[packages]] array")
    tool = data.get("tool")
    cpk = tool.get("cpk") if isinstance(tool, dict) else None
    if not isinstance(cpk, dict):
        cpk = {}
    base = os.path.dirname(os.path.abspath(path))
    environments = data.get("environments") or ()
    fingerprint = cpk.get("inputs-fingerprint")
    return Lock(
        path,
        [_parse_package(path, base, entry) for entry in packages],
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        created_by=str(data.get("created-by", "")),
        requires_python=data.get("requires-python"),
        environments=tuple(environments) if isinstance(environments, list) else (),
        python_version=cpk.get("python"),
        lock_version=version,
        # Ours say so; another tool's (uv's export) is read as universal when
        # it has what only a universal lock needs: markers, extras, groups.
        universal=cpk.get("universal") is True
        or (
            not isinstance(fingerprint, str)
            and (
                "extras" in data
                or "dependency-groups" in data
                or any(isinstance(p, dict) and "marker" in p for p in packages)
            )
        ),
        extras=_names(data.get("extras")),
        dependency_groups=_names(data.get("dependency-groups")),
        default_groups=_names(data.get("default-groups")),
        conflicts=tuple(
            tuple(str(m) for m in members)
            for members in cpk.get("conflicts") or ()
            if isinstance(members, list)
        ),
    )


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(canonical_name(v) for v in value if isinstance(v, str))


def _parse_package(path: Path, base: str, entry: Any) -> LockedPackage:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise LockUnreadableError(f"{path}: a [[packages]] entry has no name")
    if not _VALID_NAME.fullmatch(entry["name"]):
        # The name becomes part of store entry names and paths: a lock
        # edited to say "../../x" must stop here, not reach a download.
        raise LockUnreadableError(
            f"{path}: package name {entry['name']!r} is not a valid project name"
        )
    name = canonical_name(entry["name"])
    version = entry.get("version")
    where = f"{path}: package {name}"
    if "vcs" in entry or "archive" in entry:
        return _parse_direct(where, base, name, entry)

    wheels: tuple[LockedFile, ...] = ()
    raw_wheels = entry.get("wheels")
    if raw_wheels is not None:
        if not isinstance(raw_wheels, list):
            raise LockUnreadableError(f"{where}: wheels must be an array of tables")
        wheels = tuple(_parse_file(where, base, w, "wheel") for w in raw_wheels)
    sdist = None
    if entry.get("sdist") is not None:
        sdist = _parse_file(where, base, entry["sdist"], "sdist")
    directory = None
    editable = False
    raw_dir = entry.get("directory")
    if raw_dir is not None:
        if not isinstance(raw_dir, dict) or not isinstance(raw_dir.get("path"), str):
            raise LockUnreadableError(f"{where}: directory needs a path")
        directory = Path(os.path.normpath(os.path.join(base, raw_dir["path"])))
        editable = raw_dir.get("editable") is True
    if directory is None:
        if not isinstance(version, str):
            raise LockUnreadableError(f"{where}: no version")
        if not wheels and sdist is None:
            raise LockUnreadableError(f"{where}: no wheels, sdist or directory")

    chosen = None
    tool = entry.get("tool")
    cpk = tool.get("cpk") if isinstance(tool, dict) else None
    wanted = cpk.get("file") if isinstance(cpk, dict) else None
    if wanted is not None:
        for candidate in (*wheels, sdist):
            if candidate is not None and candidate.filename == wanted:
                chosen = candidate
                break
        else:
            raise LockUnreadableError(f"{where}: the chosen file {wanted} is not among its files")
    elif directory is None:
        if len(wheels) == 1:
            chosen = wheels[0]
        elif not wheels:
            chosen = sdist

    group_marker = cpk.get("only-groups-marker") if isinstance(cpk, dict) else None
    dependencies: list[str] = []
    for dep in entry.get("dependencies") or ():
        dep_name = dep.get("name") if isinstance(dep, dict) else None
        if not isinstance(dep_name, str):
            raise LockUnreadableError(f"{where}: a dependency has no name")
        dependencies.append(canonical_name(dep_name))
    index = entry.get("index")
    return LockedPackage(
        name,
        version if isinstance(version, str) else None,
        wheels=wheels,
        sdist=sdist,
        file=chosen,
        dependencies=tuple(dependencies),
        index=index if isinstance(index, str) else "",
        requires_python=entry.get("requires-python"),
        marker=entry.get("marker"),
        directory=directory,
        editable=editable,
        group_marker=group_marker if isinstance(group_marker, (str, bool)) else None,
    )


def _parse_direct(where: str, base: str, name: str, entry: dict[str, Any]) -> LockedPackage:
    """A ``vcs`` (git, with its commit) or ``archive`` package: its file is
    what installing it needs, so the store finds its entry by source hash
    exactly as for an index's file (see ``resolve/direct.py``)."""
    from contentpkg.python.index.vcs import git_filename, vcs_source_key

    version = entry.get("version")
    if not isinstance(version, str):
        raise LockUnreadableError(f"{where}: no version")
    vcs = entry.get("vcs")
    if vcs is not None:
        if not isinstance(vcs, dict) or vcs.get("type") != "git":
            raise LockUnreadableError(f"{where}: only git vcs sources are supported by cpk")
        commit = vcs.get("commit-id")
        repo = vcs.get("url")
        if not isinstance(repo, str) and isinstance(vcs.get("path"), str):
            repo = Path(os.path.normpath(os.path.join(base, vcs["path"]))).as_uri()
        if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise LockUnreadableError(f"{where}: vcs needs a full commit-id")
        if not isinstance(repo, str):
            raise LockUnreadableError(f"{where}: vcs needs a url or path")
        sub = vcs.get("subdirectory")
        url = f"git+{repo}@{commit}" + (f"#subdirectory={sub}" if sub else "")
        file = LockedFile(git_filename(name, commit), url, {"sha256": vcs_source_key(commit, sub)})
    else:
        archive = entry.get("archive")
        if not isinstance(archive, dict):
            raise LockUnreadableError(f"{where}: archive must be a table")
        file = _parse_file(where, base, archive, "archive")
    package = LockedPackage(
        name,
        version,
        file=file,
        dependencies=tuple(
            canonical_name(d["name"])
            for d in entry.get("dependencies") or ()
            if isinstance(d, dict) and isinstance(d.get("name"), str)
        ),
        requires_python=entry.get("requires-python"),
        marker=entry.get("marker"),
    )
    package.vcs = dict(vcs) if isinstance(vcs, dict) else None
    return package


def _render_direct(base: str, pin: Pin) -> dict[str, Any]:
    """The ``vcs`` or ``archive`` table of a direct reference's pin."""
    assert pin.direct is not None
    kind, table = pin.direct
    table = dict(table)
    url = table.get("url", "")
    if kind == "archive" and url.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        del table["url"]
        table = {"path": _relative(Path(unquote(urlsplit(url).path)), base), **table}
    elif isinstance(url, str):
        table["url"] = _without_credentials(url)
    return {kind: table}


# PEP 508's project name: what the lock may name, before normalisation.
_VALID_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
#: Hex digits a digest of each common algorithm has.
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128, "blake2b": 128, "sha3_256": 64}


def _parse_file(where: str, base: str, entry: Any, kind: str) -> LockedFile:
    if not isinstance(entry, dict):
        raise LockUnreadableError(f"{where}: a {kind} entry is not a table")
    url = entry.get("url")
    local = entry.get("path")
    name = entry.get("name")
    if isinstance(url, str):
        location = url
    elif isinstance(local, str):
        location = Path(os.path.normpath(os.path.join(base, local))).as_uri()
    else:
        raise LockUnreadableError(f"{where}: a {kind} has neither url nor path")
    if not isinstance(name, str):
        # PEP 751 lets the name be implied by the url or path.
        name = (url if isinstance(url, str) else local).rsplit("/", 1)[-1].split("#", 1)[0]
        if isinstance(url, str):
            from urllib.parse import unquote

            name = unquote(name.split("?", 1)[0])
    hashes = entry.get("hashes")
    if not isinstance(hashes, dict) or not hashes:
        raise LockUnreadableError(f"{where}: {kind} {name} has no hashes")
    for algorithm, value in hashes.items():
        want = _HEX_LENGTHS.get(str(algorithm).lower())
        if (
            not isinstance(value, str)
            or not re.fullmatch(r"[0-9a-fA-F]+", value)
            or (want is not None and len(value) != want)
        ):
            raise LockUnreadableError(
                f"{where}: {kind} {name} has a malformed {algorithm} hash {str(value)[:80]!r}"
            )
    size = entry.get("size")
    uploaded = entry.get("upload-time")
    return LockedFile(
        name,
        location,
        hashes,
        size if isinstance(size, int) else None,
        uploaded if isinstance(uploaded, str) else None,
    )


def lock_is_fresh(path: Path, fingerprint: str, *, cache_dir: Path | None = None) -> bool:
    """Whether the lock at ``path`` exists and was written for these inputs.

    A missing lock is stale, and so is a valid lock another tool wrote (it
    has no cpk fingerprint; :func:`write_lock` then refuses to replace it
    unless forced). A malformed one is an error: the user should see what is
    wrong with it. Callers that go on to use the lock should call
    :func:`read_lock` once and compare ``lock.fingerprint`` themselves.
    """
    if not os.path.exists(path):
        return False
    return read_lock(path, cache_dir=cache_dir).fingerprint == fingerprint


def lock_to_requirements_pins(lock: Lock) -> dict[str, str]:
    """The locked versions by name, as preferences for the next resolution."""
    return {p.name: p.version for p in lock.packages if p.version and p.directory is None}


# --------------------------------------------------------------------------
# writing


def write_lock(
    path: Path,
    resolution: Resolution,
    inputs_fingerprint: str,
    *,
    created_by: str = "cpk",
    directories: Mapping[str, tuple[Path, bool]] | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
) -> bool:
    """Write ``resolution`` as a ``pylock.toml``; return whether the bytes changed.

    ``directories`` maps a package name to (local path, editable) for
    packages that come from a local directory (``[tool.cpk.sources]``, the
    project itself); they are written as ``directory`` entries with a path
    relative to the lock. A pin the resolver took from a local checkout
    (``Pin.directory``) is written so too, as not editable, when
    ``directories`` does not name it. The output depends on nothing but the arguments
    (no clock, no absolute paths), so an unchanged resolution rewrites
    nothing and the file keeps its mtime.

    A lock another tool wrote (its ``created-by`` differs) is not replaced
    unless ``force``: it may be someone's only record of an environment. A
    file that does not parse is replaced, since regenerating is how a lock
    with merge-conflict markers gets fixed.

    With ``cache_dir``, the new lock's parse is kept there for
    :func:`read_lock` (see :func:`_remember_parse`).
    """
    import tomli_w

    path = Path(path)
    document = lock_document(path, resolution, inputs_fingerprint, created_by, directories or {})
    text = tomli_w.dumps(document)
    data = text.encode("utf-8")
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    except OSError as error:
        raise CpkError(f"{path}: cannot read lock file: {error.strerror}") from None
    if old == data:
        return False
    author = _author(old) if old is not None else None
    if author and author != created_by and not force:
        raise CpkError(f"{path}: written by {author}, not {created_by}; not replacing it")
    _check_standard(path, document)
    if old is not None and author is None:
        _say_if_unreadable(path)  # not TOML, or no created-by: read it to say why
    _atomic_write(path, data)
    if cache_dir is not None:
        # What reading these bytes back would parse is the document itself
        # (plain dicts, lists, strings, numbers and booleans, as tomllib
        # gives them): kept as the parse of the new lock, the read that
        # follows every write costs no TOML parsing.
        _remember_parse(cache_dir, data, document)
    return True


def _say_if_unreadable(path: Path) -> None:
    """Replacing a lock that does not read (merge-conflict markers, a hand
    edit gone wrong) is how it gets fixed, but it may hold someone's edit:
    say so, once, where it is replaced (not where it is merely read, which
    ``--check`` and ``--locked`` do too)."""
    try:
        read_lock(path)
    except LockUnreadableError as exc:
        import logging

        logging.getLogger(__name__).warning("%s; replacing it", exc)
    except CpkError:
        pass  # gone meanwhile: nothing is replaced


def _check_standard(path: Path, document: dict[str, Any]) -> None:
    """Validate what we are about to write with ``packaging.pylock``, PEP 751's
    own model, so a lock cpk writes is one every PEP 751 reader accepts.

    The document is checked as the dict it is rendered from (``tomli_w``
    writes what it is given; parsing the text back would only cost a TOML
    parse of a lock that lists every wheel of every platform).

    Only on writing. Reading stays hand-written: it is on ``cpk run``'s path,
    where importing ``packaging`` (~17 ms) is what the marshal cache exists
    to avoid, and it reads what ``packaging.pylock`` has no model for (the
    chosen file in ``[packages.tool.cpk]``, as plain values we can cache).
    Rendering stays ours too (``tomli_w`` over a dict in a fixed order), since
    ``Pylock.to_dict`` orders keys its own way and existing locks must keep
    their bytes.
    """
    from packaging.pylock import Pylock, PylockValidationError

    try:
        Pylock.from_dict(document)
    except PylockValidationError as error:
        raise CpkError(f"{path}: cpk rendered an invalid PEP 751 lock ({error})") from None


def _author(blob: bytes) -> str | None:
    try:
        author = tomllib.loads(blob.decode("utf-8")).get("created-by")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return author if isinstance(author, str) else None


def render_lock(
    path: Path,
    resolution: Resolution,
    inputs_fingerprint: str,
    created_by: str = "cpk",
    directories: Mapping[str, tuple[Path, bool]] | None = None,
) -> str:
    """The text :func:`write_lock` writes for ``path`` (paths are relative to it)."""
    import tomli_w

    return tomli_w.dumps(
        lock_document(path, resolution, inputs_fingerprint, created_by, directories)
    )


def lock_document(
    path: Path,
    resolution: Resolution,
    inputs_fingerprint: str,
    created_by: str = "cpk",
    directories: Mapping[str, tuple[Path, bool]] | None = None,
) -> dict[str, Any]:
    """The TOML document of the lock, as the dict :func:`render_lock` renders."""
    base = os.path.dirname(os.path.abspath(path))
    dirs = {canonical_name(name): value for name, value in (directories or {}).items()}
    pins = {canonical_name(pin.name): pin for pin in resolution.pins.values()}
    for name, pin in pins.items():
        if pin.directory is not None and name not in dirs:
            dirs[name] = (Path(pin.directory), False)
    if resolution.universal:
        return _render_universal(path, base, resolution, inputs_fingerprint, created_by, dirs)
    packages = [
        _render_package(path, base, pins[name], pins, dirs.get(name)) for name in sorted(pins)
    ]
    major, minor = resolution.python_version.split(".")[:2]
    document: dict[str, Any] = {
        "lock-version": LOCK_VERSION,
        "environments": [_environment_marker(resolution)],
        "requires-python": f"=={major}.{minor}.*",
        "created-by": created_by,
        "packages": packages,
        "tool": {
            "cpk": {
                "inputs-fingerprint": inputs_fingerprint,
                "python": resolution.python_version,
                # For people reading the lock; the fingerprint is what decides.
                "requirements": sorted({str(r) for r in resolution.requirements}),
            }
        },
    }
    return document


def _render_universal(
    path: Path,
    base: str,
    resolution: Resolution,
    inputs_fingerprint: str,
    created_by: str,
    dirs: Mapping[str, tuple[Path, bool]],
) -> dict[str, Any]:
    """A universal lock (see the module's doc): markers, every file."""
    from contentpkg.python.resolve.markers import FALSE, render

    pins = list(resolution.pins.values())
    names = {canonical_name(pin.name) for pin in pins}
    packages = []
    for pin in sorted(pins, key=lambda p: (canonical_name(p.name), p.version)):
        name = canonical_name(pin.name)
        # Every name the lock holds may be depended on.
        locked = dict.fromkeys(names, pin)
        package = _render_package(path, base, pin, locked, dirs.get(name), every_file=True)
        marker = render(pin.marker) if pin.marker else None
        ordered: dict[str, Any] = {}
        for key, value in package.items():
            ordered[key] = value
            # After the version (a directory has none: after the name).
            if marker is not None and key == ("version" if "version" in package else "name"):
                ordered["marker"] = marker
        if pin.group_marker is not None and pin.group_marker != pin.marker:
            only = False if pin.group_marker == FALSE else render(pin.group_marker)
            ordered.setdefault("tool", {}).setdefault("cpk", {})["only-groups-marker"] = (
                only if only is not None else True
            )
        packages.append(ordered)
    document: dict[str, Any] = {"lock-version": LOCK_VERSION}
    if resolution.environments:
        document["environments"] = list(resolution.environments)
    if resolution.requires_python:
        document["requires-python"] = resolution.requires_python
    for key, values in (
        ("extras", resolution.extras),
        ("dependency-groups", resolution.groups),
        ("default-groups", resolution.default_groups),
    ):
        document[key] = sorted(values)
    document["created-by"] = created_by
    document["packages"] = packages
    cpk: dict[str, Any] = {
        "inputs-fingerprint": inputs_fingerprint,
        "universal": True,
        "requirements": sorted({str(r) for r in resolution.requirements}),
    }
    if resolution.conflicts:
        cpk["conflicts"] = [[f"{k}:{n}" for k, n in members] for members in resolution.conflicts]
    document["tool"] = {"cpk": cpk}
    return document


def _environment_marker(resolution: Resolution) -> str:
    values = {k: v for k, v in resolution.markers.items() if k in _ENVIRONMENT_KEYS}
    values["python_full_version"] = resolution.python_version
    clauses = []
    for key in sorted(values):
        value = values[key]
        quote = '"' if "'" in value else "'"
        clauses.append(f"{key} == {quote}{value}{quote}")
    return " and ".join(clauses)


def _render_package(
    path: Path,
    base: str,
    pin: Pin,
    pins: Mapping[str, Pin],
    directory: tuple[Path, bool] | None,
    *,
    every_file: bool = False,
) -> dict[str, Any]:
    name = canonical_name(pin.name)
    where = f"{path}: package {name}"
    package: dict[str, Any] = {"name": name, "version": pin.version}
    if pin.requires_python:
        package["requires-python"] = pin.requires_python
    dependencies = sorted({canonical_name(d) for d in pin.dependencies})
    for dep in dependencies:
        if dep not in pins:
            raise CpkError(f"{where}: depends on {dep}, which the resolution does not hold")
    if dependencies:
        package["dependencies"] = [{"name": dep} for dep in dependencies]
    index = pin.index or next((f.index for f in pin.files if f.index), "")
    if index.startswith(("https://", "http://")):
        package["index"] = _without_credentials(index)

    if directory is not None:
        # PEP 751: no version for a source tree, which may change under the lock.
        del package["version"]
        local, editable = directory
        package["directory"] = {
            "path": _relative(Path(local), base),
            "editable": bool(editable),
        }
        return package
    if pin.direct is not None:
        package.update(_render_direct(base, pin))
        return package

    wheels = [f for f in pin.files if f.is_wheel]
    sdists = [f for f in pin.files if not f.is_wheel]
    if not wheels and not sdists:
        raise CpkError(f"{where}: the resolution has no file for it")
    # Pin.files lists wheels best tag first: the first is what cpk installs.
    chosen = wheels[0] if wheels else sdists[0]
    if sdists:
        package["sdist"] = _render_file(where, base, sdists[0])
    if wheels:
        unique = {w.filename: w for w in reversed(wheels)}
        package["wheels"] = [_render_file(where, base, unique[n]) for n in sorted(unique)]
    if not every_file:
        # A universal lock's file is chosen where it is installed.
        package["tool"] = {"cpk": {"file": chosen.filename}}
    return package


def _without_credentials(url: str) -> str:
    """url without ``user:password@``: a lock is committed and shared, and
    credentials come back from the index settings, ``.netrc`` or keyring."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _render_file(where: str, base: str, dist: DistFile) -> dict[str, Any]:
    if not dist.sha256:
        raise CpkError(
            f"{where}: {dist.filename} has no sha256 (the index publishes none); cpk"
            " locks and installs only verified files: have the index publish sha256"
            " hashes, or put the file in a --find-links directory, where cpk hashes it"
        )
    entry: dict[str, Any] = {"name": dist.filename}
    uploaded = _upload_time(dist.upload_time)
    if uploaded is not None:
        entry["upload-time"] = uploaded
    url = dist.url.split("#", 1)[0]  # a #sha256= fragment repeats hashes
    if url.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        entry["path"] = _relative(Path(unquote(urlsplit(url).path)), base)
    else:
        entry["url"] = _without_credentials(url)
    if dist.size is not None:
        entry["size"] = dist.size
    entry["hashes"] = {alg: dist.hashes[alg].lower() for alg in sorted(dist.hashes)}
    return entry


def _upload_time(value: str | None) -> Any:
    """The index's upload time as a UTC datetime, which PEP 751 wants as a
    TOML datetime; None when absent or unreadable (it is informational)."""
    if not value:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _relative(target: Path, base: str) -> str:
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # another drive on Windows: no relative form exists
        return target.as_posix()


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace the lock whole: readers (a concurrent ``cpk run``) see the old
    lock or the new one, never half of one. Durable (fs's rule): the user
    commits the lock and relies on it after a crash. A new lock's mode is
    left to the umask, as for any new file; a replaced one keeps its mode."""
    try:
        with writing_atomic(path, durable=True, mode=0o666) as out:
            try:
                os.fchmod(out.fileno(), path.stat().st_mode & 0o7777)
            except FileNotFoundError:
                pass
            out.write(data)
    except OSError as error:
        raise CpkError(f"{path}: cannot write lock file: {error.strerror}") from None
