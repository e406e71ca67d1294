"""Building wheels from sdists with PEP 517, in environments made of entries.

An sdist is unpacked (refusing anything that could write outside its
directory), its ``[build-system]`` read, and its build requirements resolved
by the caller into store entries like any other requirement; a
:class:`~contentpkg.python.build.buildenv.BuildEnv` made of those entries runs the
backend's hooks through ``pyproject_hooks``. Built wheels are cached by the
sdist's sha256 and the facts of the interpreter that a wheel depends on, so
an sdist is built once per interpreter, not once per project or per run.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
import shutil
import stat
import tarfile
import tempfile
import tomllib
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from contentpkg.context import Bucket, Context
from contentpkg.errors import BuildError, CpkError, InvalidInputError
from contentpkg.fs import discard, writing_atomic
from contentpkg.progress import QUIET, Reporter, Task
from contentpkg.python.build.buildenv import BuildEnv
from contentpkg.python.install.wheel import stays_inside
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.python.names import dist_info_name
from contentpkg.store.hashing import hash_file

if TYPE_CHECKING:
    from pyproject_hooks import BuildBackendHookCaller

    from contentpkg.store.entry import Entry

#: Given requirement strings, return the store entries that satisfy them for
#: the target interpreter (fetching or building into the store as needed).
ResolveBuildRequires = Callable[[list[str]], list["Entry"]]

# What pip assumes for a project without [build-system] (PEP 517/518): the
# setuptools legacy backend, which also runs a bare setup.py.
DEFAULT_REQUIRES = ("setuptools>=40.8.0",)
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"

_TAIL_LINES = 20
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
# Archive bomb bounds: real sdists unpack to a few times their size; a
# generous ratio with a floor keeps large but honest sdists working.
_MAX_RATIO = 200
_MIN_UNPACKED_LIMIT = 1 << 30
_MAX_MEMBERS = 500_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 1 << 20
# tarfile's extraction filters arrived in 3.11.4; before, nothing raises this.
_FILTER_ERROR: type[Exception] | tuple[()] = getattr(tarfile, "FilterError", ())


def build_sdist_wheel(
    sdist_path: Path,
    *,
    python: str | os.PathLike[str] | InterpreterInfo | None,
    resolve_build_requires: ResolveBuildRequires,
    cache_dir: Path | None = None,
    reporter: Reporter = QUIET,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Build sdist_path into a wheel for ``python`` and return the wheel's path.

    The wheel lives in the built-wheel cache, so the path stays valid after
    the call; a second call for the same sdist bytes and an equivalent
    interpreter returns it without building or resolving anything.
    ``python`` is an interpreter's facts, a path or command naming one, or
    None for the one running cpk. ``environ`` is the environment the backend
    starts from (``ctx.environ``; None: this process's), cleaned of what
    would leak the user's setup into the build.
    """
    sdist_path, interp, slot, cached = _lookup(sdist_path, python, cache_dir)
    if cached is not None:
        return cached
    with _Build(sdist_path, interp, resolve_build_requires, reporter, environ) as build:
        caller = build.prepare()
        return build.build_wheel(caller, slot)


def sdist_metadata(
    sdist_path: Path,
    *,
    python: str | os.PathLike[str] | InterpreterInfo | None,
    resolve_build_requires: ResolveBuildRequires,
    cache_dir: Path | None = None,
    reporter: Reporter = QUIET,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """The core metadata (``METADATA`` bytes) of the wheel sdist_path builds.

    Uses the backend's ``prepare_metadata_for_build_wheel`` when it has one,
    which is much cheaper than a build; otherwise builds (and caches) the
    wheel and reads its metadata. The sdist's own PKG-INFO is not trusted:
    before metadata 2.2 any field of it may differ from the built wheel's.
    """
    sdist_path, interp, slot, cached = _lookup(sdist_path, python, cache_dir)
    if cached is not None:
        return _wheel_metadata(cached)
    try:
        return (slot / "METADATA").read_bytes()
    except OSError:
        pass
    from pyproject_hooks import HookMissing

    with _Build(sdist_path, interp, resolve_build_requires, reporter, environ) as build:
        caller = build.prepare()
        md_dir = build.scratch / "metadata"
        md_dir.mkdir()
        try:
            dist_info = build.call(
                caller.prepare_metadata_for_build_wheel,
                os.fspath(md_dir),
                _allow_fallback=False,
                missing_ok=True,
            )
        except HookMissing:
            return _wheel_metadata(build.build_wheel(caller, slot))
        metadata_file = md_dir / str(dist_info) / "METADATA"
        if not isinstance(dist_info, str) or "/" in dist_info or not metadata_file.is_file():
            raise BuildError(
                f"building {build.label} failed: prepare_metadata_for_build_wheel "
                f"returned {dist_info!r}, "
                "which holds no METADATA",
                project=build.name,
            )
        data = metadata_file.read_bytes()
        build.check_name(_metadata_name(data), "metadata")
        _publish(slot, data, "METADATA")
        return data


def _lookup(
    sdist_path: Path,
    python: str | os.PathLike[str] | InterpreterInfo | None,
    cache_dir: Path | None,
) -> tuple[Path, InterpreterInfo, Path, Path | None]:
    """The interpreter, the built-wheel cache slot, and the wheel cached there.

    Both the build and the metadata query start here: the slot is keyed by
    the sdist's bytes and the interpreter, so either finds the other's wheel.
    """
    sdist_path = Path(sdist_path)
    interp = _interpreter(python, cache_dir)
    slot = _cache_slot(cache_dir, sdist_path, interp)
    return sdist_path, interp, slot, _cached_wheel(slot)


def _interpreter(
    python: str | os.PathLike[str] | InterpreterInfo | None, cache_dir: Path | None
) -> InterpreterInfo:
    if isinstance(python, InterpreterInfo):
        return python
    return interpreter_info(python, cache_dir=cache_dir)


# -- unpacking -------------------------------------------------------------


def extract_sdist(sdist_path: Path, dest: Path) -> Path:
    """Unpack an sdist into dest (an empty directory) and return its project
    directory: the single top-level directory when there is one, as pip does.

    Every member is checked before anything is written, so a bad archive
    leaves dest empty: absolute names, ``..`` components, control
    characters, links leading out, devices and FIFOs, and archives that would
    unpack to far more than their size are refused.
    """
    shown = sdist_path.name
    lower = shown.lower()
    if not lower.endswith(_SDIST_SUFFIXES):
        raise InvalidInputError(f"{shown}: not an sdist (expected .tar.gz or .zip)")
    try:
        size = sdist_path.stat().st_size
    except OSError as exc:
        raise CpkError(f"{sdist_path}: {exc.strerror}") from None
    limit = max(_MIN_UNPACKED_LIMIT, _MAX_RATIO * size)
    if lower.endswith(".zip"):
        _extract_zip(sdist_path, dest, limit)
    else:
        _extract_tar(sdist_path, dest, limit)
    top = list(dest.iterdir())
    root = top[0] if len(top) == 1 and top[0].is_dir() and not top[0].is_symlink() else dest
    if not (root / "pyproject.toml").is_file() and not (root / "setup.py").is_file():
        raise InvalidInputError(
            f"{shown}: neither pyproject.toml nor setup.py found; not a Python sdist"
        )
    return root


def _check_member_name(shown: str, name: str) -> None:
    if not name or _CONTROL.search(name):
        raise InvalidInputError(f"{shown}: member {name!r} has control characters in its name")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise InvalidInputError(f"{shown}: member {name!r} has an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise InvalidInputError(f"{shown}: member {name!r} escapes the archive with '..'")


def _extract_tar(sdist_path: Path, dest: Path, limit: int) -> None:
    shown = sdist_path.name
    try:
        with tarfile.open(sdist_path, "r:*") as tf:
            members = []
            total = 0
            for member in tf:
                name = member.name
                _check_member_name(shown, name)
                if member.issym():
                    target = os.path.join(os.path.dirname(name), member.linkname)
                    if os.path.isabs(member.linkname) or not stays_inside(target):
                        raise InvalidInputError(
                            f"{shown}: symlink {name!r} to {member.linkname!r} "
                            "points outside the archive"
                        )
                elif member.islnk():
                    if not stays_inside(member.linkname):
                        raise InvalidInputError(
                            f"{shown}: hard link {name!r} to {member.linkname!r} "
                            "points outside the archive"
                        )
                elif not (member.isreg() or member.isdir()):
                    raise InvalidInputError(
                        f"{shown}: member {name!r} is a device or FIFO; "
                        "sdists hold only files, directories and links"
                    )
                total += member.size if member.isreg() else 0
                if total > limit:
                    raise InvalidInputError(f"{shown}: unpacks to more than {limit} bytes")
                if len(members) >= _MAX_MEMBERS:
                    raise InvalidInputError(f"{shown}: more than {_MAX_MEMBERS} members")
                members.append(member)
            if hasattr(tarfile, "data_filter"):
                # The "data" filter re-checks each link against what is
                # already on disk, which catches chains of links the name
                # checks above cannot see.
                tf.extractall(dest, members=members, filter="data")
            else:  # Python before 3.11.4: no filters, so no links at all
                if any(m.issym() or m.islnk() for m in members):
                    raise InvalidInputError(
                        f"{shown}: holds links, which need Python 3.11.4 to unpack"
                    )
                tf.extractall(dest, members=members)
    except CpkError:
        raise
    except _FILTER_ERROR as exc:
        raise InvalidInputError(f"{shown}: {exc}") from None
    except Exception as exc:  # TarError, EOFError, zlib.error, LZMAError, OSError...
        raise InvalidInputError(f"{shown}: not a readable sdist archive ({exc})") from None


def _extract_zip(sdist_path: Path, dest: Path, limit: int) -> None:
    shown = sdist_path.name
    try:
        with zipfile.ZipFile(sdist_path) as zf:
            infos = zf.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise InvalidInputError(f"{shown}: more than {_MAX_MEMBERS} members")
            total = 0
            for info in infos:
                _check_member_name(shown, info.filename)
                # Many zips carry no file type at all; a symlink is written
                # as a file holding its target, as pip does; only devices,
                # FIFOs and sockets have no meaning in an sdist.
                kind = stat.S_IFMT(info.external_attr >> 16)
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                    raise InvalidInputError(
                        f"{shown}: member {info.filename!r} is a device, FIFO or socket; "
                        "sdists hold only files and directories"
                    )
                total += info.file_size
                if total > limit:
                    raise InvalidInputError(f"{shown}: unpacks to more than {limit} bytes")
            for info in infos:
                # zipfile bounds each member's output by its declared size,
                # so the total checked above holds.
                written = zf.extract(info, dest)
                mode = info.external_attr >> 16
                if not info.is_dir() and mode & 0o111:
                    os.chmod(written, 0o755)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{shown}: not a readable sdist archive ({exc})") from None


# -- the build system ------------------------------------------------------


@dataclass(frozen=True)
class BuildSystem:
    """A project's ``[build-system]``, defaults applied."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] | None = None


def read_build_system(project_dir: Path, shown: str) -> BuildSystem:
    """Read ``[build-system]`` of project_dir; shown names it in errors.

    Without pyproject.toml, or without a [build-system] table, the project
    is a setuptools one (PEP 517's and pip's fallback).
    """
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        return BuildSystem(DEFAULT_REQUIRES, LEGACY_BACKEND)
    try:
        with open(pyproject, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{shown}: pyproject.toml is not valid TOML ({exc})") from None
    table = data.get("build-system")
    if table is None:
        return BuildSystem(DEFAULT_REQUIRES, LEGACY_BACKEND)
    if not isinstance(table, dict):
        raise InvalidInputError(f"{shown}: pyproject.toml [build-system] is not a table")
    if "requires" not in table:
        raise InvalidInputError(
            f"{shown}: pyproject.toml [build-system] has no 'requires' (PEP 518)"
        )
    requires = _requirement_list(table["requires"], shown, "build-system.requires")
    backend = table.get("build-backend", LEGACY_BACKEND)
    if not isinstance(backend, str) or not re.fullmatch(r"[\w.]+(:[\w.]+)?", backend):
        raise InvalidInputError(
            f"{shown}: pyproject.toml build-backend {backend!r} is not 'module:object'"
        )
    backend_path = table.get("backend-path")
    if backend_path is not None:
        if not isinstance(backend_path, list) or not all(isinstance(p, str) for p in backend_path):
            raise InvalidInputError(
                f"{shown}: pyproject.toml backend-path is not a list of strings"
            )
        for p in backend_path:
            if not stays_inside(p):
                raise InvalidInputError(f"{shown}: backend-path {p!r} leads outside the project")
        backend_path = tuple(backend_path)
    return BuildSystem(tuple(requires), backend, backend_path)


def _requirement_list(value: Any, shown: str, what: str) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise InvalidInputError(f"{shown}: {what} is not a list of requirement strings")
    for text in value:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise InvalidInputError(
                f"{shown}: {what}: {text!r} is not a valid requirement ({exc})"
            ) from None
    return list(value)


# -- running the backend ---------------------------------------------------


class _HookFailed(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


class _Build:
    """One sdist's scratch space: unpacked source, build env, output log."""

    def __init__(
        self,
        sdist_path: Path,
        interp: InterpreterInfo,
        resolve: ResolveBuildRequires,
        reporter: Reporter,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.sdist_path = sdist_path
        self.environ = environ
        self.interp = interp
        self.resolve = resolve
        self.scratch = Path(tempfile.mkdtemp(prefix="cpk-build-"))
        self.env: BuildEnv | None = None
        self._task: Task | None = None
        try:
            src = self.scratch / "src"
            src.mkdir()
            self.source = extract_sdist(sdist_path, src)
            self.name, self.version = _identity(self.source, sdist_path)
            self.label = f"{self.name} {self.version} from {sdist_path.name}"
            self.system = read_build_system(self.source, sdist_path.name)
            self.log_path = self.scratch / "build.log"
            # Unbuffered and appending: the backend's processes write to the
            # same file through their own descriptors.
            self.log: IO[bytes] = open(self.log_path, "ab", buffering=0)  # noqa: SIM115
        except BaseException:
            discard(self.scratch)
            raise
        self._task = reporter.task(f"building {self.name} {self.version}")

    def __enter__(self) -> _Build:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._task is not None:
            self._task.done(None if exc_type else f"built {self.name} {self.version}")
        self.log.close()
        if self.env is not None:
            self.env.close()
        discard(self.scratch)

    def prepare(self, kind: str = "wheel") -> BuildBackendHookCaller:
        """A hook caller whose environment holds the static build
        requirements and those ``get_requires_for_build_<kind>`` adds
        (``wheel``, or ``editable`` for PEP 660)."""
        requires = list(self.system.requires)
        caller = self._caller(requires)
        hook = f"get_requires_for_build_{kind}"
        extra = self.call(getattr(caller, hook))
        extra = _requirement_list(extra, self.sdist_path.name, hook)
        added = [r for r in extra if r not in requires]
        if added:
            # Resolved together with the static ones, so the environment is
            # one consistent set rather than two stacked resolutions.
            caller = self._caller(requires + added)
        return caller

    def _caller(self, requires: list[str]) -> BuildBackendHookCaller:
        from pyproject_hooks import BuildBackendHookCaller

        entries = self.resolve(list(requires)) if requires else []
        self._check_provided(requires, entries)
        if self.env is not None:
            self.env.close()
            self.env = None
        self.env = BuildEnv(entries, python=self.interp, parent=self.scratch, environ=self.environ)
        try:
            return BuildBackendHookCaller(
                os.fspath(self.source),
                self.system.backend,
                backend_path=list(self.system.backend_path or ()) or None,
                runner=self._runner,
                python_executable=os.fspath(self.env.python),
            )
        except ValueError as exc:  # backend-path outside the tree
            raise CpkError(f"{self.sdist_path.name}: {exc}") from None

    def _check_provided(self, requires: list[str], entries: list[Entry]) -> None:
        """Name the missing build requirement now, rather than leave the
        reader to infer it from an ImportError deep in the backend's output."""
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
        from packaging.version import InvalidVersion

        by_name: dict[str, list[Entry]] = {}
        for entry in entries:
            by_name.setdefault(canonicalize_name(entry.name), []).append(entry)
        env = {**self.interp.markers, "extra": ""}
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            found = by_name.get(canonicalize_name(req.name), [])
            if not found:
                raise CpkError(
                    f"cannot build {self.label}: no store entry provides build requirement {text!r}"
                )
            try:
                ok = any(req.specifier.contains(e.version, prereleases=True) for e in found)
            except InvalidVersion:
                ok = True  # not a PEP 440 version: nothing to compare against
            if not ok:
                versions = ", ".join(sorted(e.version for e in found))
                raise CpkError(
                    f"cannot build {self.label}: build requirement {text!r} "
                    f"is not satisfied by version {versions} from the store"
                )

    def _runner(
        self,
        cmd: Iterable[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        assert self.env is not None
        status = self.env.run(list(cmd), cwd=cwd, extra_environ=extra_environ, output=self.log)
        if status != 0:
            raise _HookFailed(status)

    def call(
        self, hook: Callable[..., Any], *args: Any, missing_ok: bool = False, **kw: Any
    ) -> Any:
        """Run one hook; every way it can fail becomes one CpkError whose
        details are the tail of what the backend printed meanwhile."""
        from pyproject_hooks import BackendUnavailable, HookMissing

        start = self.log_path.stat().st_size
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return hook(*args, **kw)
            except _HookFailed as exc:
                raise self._failure(start, "", f"exit status {exc.returncode}") from None
            except BackendUnavailable as exc:
                trace = getattr(exc, "traceback", "") or ""
                self.log.write(trace.encode(errors="replace"))
                backend = self.system.backend
                reason = f": build backend {backend!r} is not importable"
                raise self._failure(start, reason, "no traceback") from None
            except HookMissing as exc:
                if missing_ok:
                    raise
                raise BuildError(
                    f"building {self.label} failed: build backend {self.system.backend!r} "
                    f"has no {exc.hook_name} hook",
                    project=self.name,
                ) from None
            except (OSError, ValueError) as exc:  # the hook wrote no result
                raise self._failure(start, "", str(exc)) from None
            finally:
                # The core never prints, so the backend's warnings join its
                # output instead of going to stderr.
                for w in caught:
                    self.log.write(f"{w.category.__name__}: {w.message}\n".encode())

    def _failure(self, start: int, reason: str, fallback: str) -> BuildError:
        with open(self.log_path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        lines = [line.rstrip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        tail = lines[-_TAIL_LINES:] or [f"(the backend printed nothing; {fallback})"]
        return BuildError(f"building {self.label} failed{reason}", project=self.name, log=tail)

    def build_wheel(self, caller: BuildBackendHookCaller, slot: Path) -> Path:
        """Build into scratch, check what came out, and move it into slot."""
        out = self.scratch / "wheel"
        out.mkdir(exist_ok=True)
        basename = self.call(caller.build_wheel, os.fspath(out))
        built = out / str(basename)
        if (
            not isinstance(basename, str)
            or "/" in basename
            or not basename.endswith(".whl")
            or not built.is_file()
        ):
            raise BuildError(
                f"building {self.label} failed: the backend returned {basename!r}",
                project=self.name,
            )
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        try:
            wheel_name = parse_wheel_filename(basename)[0]
        except InvalidWheelFilename as exc:
            raise BuildError(f"building {self.label} failed: {exc}", project=self.name) from None
        self.check_name(wheel_name, basename)
        return _publish(slot, built, basename)

    def check_name(self, found: str | None, what: str) -> None:
        from packaging.utils import canonicalize_name

        if found is not None and canonicalize_name(found) != canonicalize_name(self.name):
            raise BuildError(
                f"building {self.label} produced {what} for another project, {found!r}",
                project=self.name,
            )


def _identity(project_dir: Path, sdist_path: Path) -> tuple[str, str]:
    """Name and version for messages: PKG-INFO's, else the file name's."""
    try:
        data = (project_dir / "PKG-INFO").read_bytes()
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
        name, version = msg.get("Name"), msg.get("Version")
        if name and version:
            return str(name).strip(), str(version).strip()
    except OSError:
        pass
    stem = sdist_path.name
    for suffix in _SDIST_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name, _, version = stem.rpartition("-")
    return (name, version) if name else (stem, "(unknown version)")


def _metadata_name(data: bytes) -> str | None:
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    name = msg.get("Name")
    return str(name).strip() if name else None


# -- the built-wheel cache -------------------------------------------------


def _cache_slot(cache_dir: Path | None, sdist_path: Path, interp: InterpreterInfo) -> Path:
    try:
        digest, _ = hash_file(sdist_path)
    except OSError as exc:
        raise CpkError(f"{sdist_path}: {exc.strerror}") from None
    if cache_dir is None:  # callers not handed a Context yet: this process's
        cache_dir = Context.from_environ().cache_dir
    root = cache_dir / Bucket.BUILT_WHEELS.value
    return root / digest / interp.build_key


def _cached_wheel(slot: Path) -> Path | None:
    try:
        names = sorted(n for n in os.listdir(slot) if n.endswith(".whl") and n[0] != ".")
    except OSError:
        return None
    return slot / names[0] if names else None


def _publish(slot: Path, content: Path | bytes, name: str) -> Path:
    """Place content in the cache whole or not at all: a concurrent reader
    sees either nothing or the finished file.

    Durable although the cache is a cache (fs's rule): a built wheel has no
    published hash to check it against, so one torn by a crash would be
    served as found, whereas an fsync costs little beside a build.
    """
    slot.mkdir(parents=True, exist_ok=True)
    final = slot / name
    with writing_atomic(final, durable=True) as out:
        os.fchmod(out.fileno(), 0o644)
        if isinstance(content, bytes):
            out.write(content)
        else:
            with open(content, "rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
    return final


def _wheel_metadata(wheel: Path) -> bytes:
    from packaging.utils import parse_wheel_filename

    try:
        name, version, _, _ = parse_wheel_filename(wheel.name)
        with zipfile.ZipFile(wheel) as zf:
            candidates = [
                n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            wanted = f"{dist_info_name(name)}-{version}.dist-info/METADATA".lower()
            chosen = next((n for n in candidates if n.lower() == wanted), None)
            if chosen is None and len(candidates) == 1:
                chosen = candidates[0]
            if chosen is None:
                raise InvalidInputError(f"{wheel.name}: no .dist-info/METADATA in the built wheel")
            return zf.read(chosen)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInputError(f"{wheel.name}: unreadable built wheel ({exc})") from None
