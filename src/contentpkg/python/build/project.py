"""The project itself, built by its own PEP 517 backend.

A checkout is not importable as written: a C extension must be compiled, a
dynamic version computed, build hooks run. So the project is built as pip
and uv build it, by its own backend (``[build-system]``, else setuptools'
``__legacy__`` backend for a bare ``setup.py``/``setup.cfg``), in an
isolated build environment composed from the store exactly as an sdist's is
(:class:`~contentpkg.python.build.sdist._Build`), but in place, in the
checkout:

* its core metadata from ``prepare_metadata_for_build_editable`` (else
  ``_wheel``, else a build), when ``[project]`` is missing or leaves
  fields to the backend (:func:`with_backend_metadata`);
* a PEP 660 editable wheel (``build_editable``; extensions compiled in
  place), which the project's overlay installs, or a regular wheel
  (``build_wheel``) for ``--no-editable`` and for backends without
  ``build_editable`` (one line says so).

Everything is cached under the *build key* (:func:`build_key`): the bytes of
``pyproject.toml``, ``setup.cfg`` and ``setup.py``, what the user lists in
``[tool.uv] cache-keys`` / ``[tool.cpk] cache-keys`` (uv's format), the
checkout's path and the interpreter's build facts. The build requirements
are named in ``pyproject.toml``, so a change to them changes the key; the
versions resolved for them are written beside each build
(``requires.txt``). A key that changed means a new build; an unchanged one
reuses the cached answer without starting the backend.

A build failure is one line naming the project and the backend, and the
path of the log holding the backend's whole output.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.context import Bucket
from contentpkg.errors import BuildError, CpkError, InvalidInputError
from contentpkg.progress import QUIET, Reporter
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.names import canonical_name
from contentpkg.python.project import ProjectInputs

if TYPE_CHECKING:
    from contentpkg.python.build.sdist import ResolveBuildRequires

#: The files every backend reads its configuration from (uv's default cache keys).
DEFAULT_KEY_FILES = ("pyproject.toml", "setup.cfg", "setup.py")
_KEY_FORMAT = "cpk-project-build-1"


@dataclass(frozen=True)
class BuiltProject:
    """The project's wheel, built for one build key.

    ``editable`` says whether ``wheel`` is a PEP 660 editable wheel;
    ``note`` is the one line to show when the build is not what was asked
    (a backend without ``build_editable``).
    """

    root: Path
    name: str
    key: str
    wheel: Path
    editable: bool
    note: str | None = None


# -- the build key ---------------------------------------------------------


def _cache_keys(root: Path) -> list[Any]:
    """The ``cache-keys`` of ``[tool.uv]`` and ``[tool.cpk]``, as written."""
    try:
        with open(root / "pyproject.toml", "rb") as f:
            data = tomllib.load(f)
    except OSError:
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{root / 'pyproject.toml'}: not valid TOML ({exc})") from None
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    found: list[Any] = []
    for owner in ("uv", "cpk"):
        table = tool.get(owner) if isinstance(tool, dict) else None
        keys = table.get("cache-keys") if isinstance(table, dict) else None
        if keys is None:
            continue
        if not isinstance(keys, list):
            raise InvalidInputError(
                f"{root / 'pyproject.toml'}: [tool.{owner}].cache-keys must be a list"
            )
        found.extend(keys)
    return found


def key_files(root: Path) -> list[Path]:
    """Every file whose bytes are in the build key: what the run memo stats.

    A glob in ``cache-keys`` counts the files it matches now; a file that
    starts matching later is noticed by the next full run, not the memo.
    """
    files = [root / n for n in DEFAULT_KEY_FILES]
    for item in _cache_keys(root):
        pattern = (
            item
            if isinstance(item, str)
            else (item.get("file") if isinstance(item, dict) else None)
        )
        if isinstance(pattern, str):
            matched = sorted(glob.glob(pattern, root_dir=root, recursive=True))
            files += [root / m for m in matched] or [root / pattern]
        elif isinstance(item, dict) and isinstance(item.get("dir"), str):
            files.append(root / item["dir"])
        elif isinstance(item, dict) and item.get("git"):
            files += _git_files(root)
    return list(dict.fromkeys(files))


def _git_files(root: Path) -> list[Path]:
    """``.git/HEAD`` and the ref it names: what changes with the commit."""
    git = root / ".git"
    head = git / "HEAD"
    files = [head]
    try:
        text = head.read_text().strip()
    except OSError:
        return files
    if text.startswith("ref: "):
        files.append(git / text[5:])
    return files


def build_key(root: Path, python: InterpreterInfo, environ: Mapping[str, str]) -> str:
    """The key of the project's builds (hex sha256); see the module docstring."""
    h = hashlib.sha256(f"{_KEY_FORMAT}\0{os.fspath(root)}\0{python.build_key}\0".encode())
    for path in key_files(root):
        h.update(os.fsencode(os.path.relpath(path, root)) + b"\0")
        try:
            if path.is_dir():
                # uv's "dir" key: the directory's modification time.
                h.update(str(path.stat().st_mtime_ns).encode())
            else:
                data = path.read_bytes()
                h.update(str(len(data)).encode() + b"\0" + data)
        except OSError:
            h.update(b"<absent>")
        h.update(b"\0")
    for item in _cache_keys(root):
        if isinstance(item, dict) and isinstance(item.get("env"), str):
            h.update(f"env:{item['env']}={environ.get(item['env'], '')}\0".encode())
    return h.hexdigest()


def _slot(cache_dir: Path, key: str) -> Path:
    return cache_dir / Bucket.PROJECT_BUILDS.value / key[:2] / key


def builds_project(inputs: ProjectInputs) -> bool:
    """Whether the project itself is built and installed into its environment
    (a requirements file beside a ``[build-system]`` names no project)."""
    return inputs.installable and bool(inputs.name or inputs.dynamic)


# -- metadata --------------------------------------------------------------


@dataclass(frozen=True)
class CoreMetadata:
    """The fields of a ``METADATA`` file the project's inputs take."""

    name: str
    version: str
    requires_dist: tuple[str, ...]
    provides_extra: tuple[str, ...]
    requires_python: str | None


def parse_metadata(data: bytes, shown: str) -> CoreMetadata:
    # Imported here: ``cpk run`` asks whether a project is built on every
    # composed run, and the email package costs more than that whole check.
    import email.parser
    import email.policy

    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        raise BuildError(f"{shown}: the backend's metadata has no Name or Version", project=shown)
    requires_python = msg.get("Requires-Python")
    return CoreMetadata(
        name=str(name).strip(),
        version=str(version).strip(),
        requires_dist=tuple(str(r).strip() for r in msg.get_all("Requires-Dist") or ()),
        provides_extra=tuple(
            canonical_name(str(e).strip()) for e in msg.get_all("Provides-Extra") or ()
        ),
        requires_python=str(requires_python).strip() if requires_python else None,
    )


_EXTRA_CLAUSE = re.compile(r"""extra\s*==\s*(['"])([^'"]+)\1""")


def split_extra(req: str) -> tuple[str, str | None]:
    """(the requirement without its ``extra == "x"`` clause, x or None).

    Backends write the extra as one ``and``-ed clause (``... ; python_version
    < "3.12" and extra == "test"``); that clause is removed here, the rest of
    the marker kept for the resolver. Written by hand because packaging's
    Marker has no API to drop one clause.
    """
    base, sep, marker = req.partition(";")
    if not sep:
        return req, None
    match = _EXTRA_CLAUSE.search(marker)
    if match is None:
        return req, None
    extra = canonical_name(match.group(2))
    rest = marker[: match.start()] + marker[match.end() :]
    rest = re.sub(r"^\s*and\s+|\s+and\s*$", "", rest.strip())
    rest = re.sub(r"\(\s*\)", "", rest).strip()
    if rest.startswith("(") and rest.endswith(")") and rest.count("(") == 1:
        rest = rest[1:-1].strip()
    return (f"{base.strip()}; {rest}" if rest else base.strip()), extra


def requirements_by_extra(
    requires_dist: Sequence[str], project: str
) -> tuple[list[str], dict[str, list[str]]]:
    """A backend's Requires-Dist as (unconditional requirements, each
    extra's), with requirements on the project itself (``proj[test]``, a
    backend's way of reusing an extra) expanded into that extra's."""
    base: list[str] = []
    by_extra: dict[str, list[str]] = {}
    for req in requires_dist:
        plain, extra = split_extra(req)
        if extra is None:
            base.append(req)
        else:
            by_extra.setdefault(extra, []).append(plain)
    self_name = canonical_name(project)

    def expand(reqs: list[str]) -> list[str]:
        out: list[str] = []
        for req in reqs:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*\[([^\]]*)\]", req)
            if match and canonical_name(match.group(1)) == self_name:
                for extra in match.group(2).split(","):
                    out += by_extra.get(canonical_name(extra.strip()), [])
                continue
            out.append(req)
        return list(dict.fromkeys(out))

    return expand(base), {name: expand(reqs) for name, reqs in sorted(by_extra.items())}


def complete_inputs(inputs: ProjectInputs, meta: CoreMetadata) -> ProjectInputs:
    """The inputs with every field the backend supplied filled in."""
    dynamic = set(inputs.dynamic)
    if inputs.name is not None and canonical_name(inputs.name) != canonical_name(meta.name):
        raise CpkError(
            f"{inputs.input_file}: the build backend names the project {meta.name!r}, "
            f"not {inputs.name!r}"
        )
    base, by_extra = requirements_by_extra(meta.requires_dist, meta.name)
    added: list[str] = []
    if "dependencies" in dynamic:
        added += base
    if "optional-dependencies" in dynamic:
        wanted = list(inputs.extras)
        if "*" in wanted:  # --all-extras
            wanted = list(meta.provides_extra)
        for extra in wanted:
            if extra not in meta.provides_extra and extra not in by_extra:
                have = ", ".join(meta.provides_extra) or "none"
                raise CpkError(
                    f"{inputs.input_file}: no extra named {extra!r} (the backend declares: {have})"
                )
            added += by_extra.get(extra, [])
    requirements = list(dict.fromkeys([*added, *inputs.requirements]))
    return replace(
        inputs,
        name=inputs.name or meta.name,
        requirements=requirements,
        requires_python=(
            meta.requires_python if "requires-python" in dynamic else inputs.requires_python
        ),
        extras=tuple(e for e in inputs.extras if e != "*"),
        dynamic=(),
        backend_metadata=(meta.version, meta.requires_dist, meta.requires_python),
    )


def with_backend_metadata(
    inputs: ProjectInputs,
    *,
    python: InterpreterInfo,
    cache_dir: Path,
    environ: Mapping[str, str],
    resolve_build_requires: ResolveBuildRequires,
    reporter: Reporter = QUIET,
) -> ProjectInputs:
    """``inputs`` with what its backend says, when ``[project]`` leaves
    fields to it; unchanged otherwise. The metadata is cached under the
    build key, so the backend runs again only when that key changes."""
    if not inputs.dynamic:
        return inputs
    root = inputs.root
    key = build_key(root, python, environ)
    slot = _slot(cache_dir, key)
    shown = inputs.name or root.name
    try:
        data = (slot / "METADATA").read_bytes()
    except OSError:
        data = _backend_metadata(
            root, shown, slot, python, environ, resolve_build_requires, reporter
        )
    return complete_inputs(inputs, parse_metadata(data, shown))


def _backend_metadata(
    root: Path,
    shown: str,
    slot: Path,
    python: InterpreterInfo,
    environ: Mapping[str, str],
    resolve: ResolveBuildRequires,
    reporter: Reporter,
) -> bytes:
    from pyproject_hooks import HookMissing

    from contentpkg.python.build.sdist import _publish

    with _open_build(root, shown, slot, python, environ, resolve, reporter) as build:
        md_dir = build.scratch / "metadata"
        md_dir.mkdir()
        with _explained(build):
            caller = build.prepare("editable")
            try:
                dist_info = build.call(
                    caller.prepare_metadata_for_build_editable,
                    os.fspath(md_dir),
                    _allow_fallback=False,
                    missing_ok=True,
                )
            except HookMissing:
                caller = build.prepare("wheel")
                # Falls back to building a wheel when the backend has no
                # metadata hook, as pip does.
                dist_info = build.call(caller.prepare_metadata_for_build_wheel, os.fspath(md_dir))
        metadata = md_dir / str(dist_info) / "METADATA"
        if not isinstance(dist_info, str) or "/" in dist_info or not metadata.is_file():
            raise BuildError(
                f"building project {shown} with {build.system.backend} gave no METADATA "
                f"({dist_info!r}); the backend's output is in {build.log_path}",
                project=shown,
            )
        data = metadata.read_bytes()
        _write_requires(slot, build)
        _publish(slot, data, "METADATA")
        return data


# -- building --------------------------------------------------------------


def build_project(
    inputs: ProjectInputs,
    *,
    editable: bool,
    python: InterpreterInfo,
    cache_dir: Path,
    environ: Mapping[str, str],
    resolve_build_requires: ResolveBuildRequires,
    reporter: Reporter = QUIET,
) -> BuiltProject:
    """The project's editable (PEP 660) or regular wheel, from the cache or built now."""
    root = inputs.root
    key = build_key(root, python, environ)
    slot = _slot(cache_dir, key)
    shown = inputs.name or root.name
    no_hook = _no_editable_note(shown, slot)
    if editable and no_hook is None:
        found = _cached(slot / "editable")
        if found is not None:
            return BuiltProject(root, shown, key, found, True)
    else:
        found = _cached(slot / "wheel")
        if found is not None:
            return BuiltProject(root, shown, key, found, False, no_hook if editable else None)
    from pyproject_hooks import HookMissing

    from contentpkg.python.build.sdist import _publish

    with _open_build(root, shown, slot, python, environ, resolve_build_requires, reporter) as build:
        out = build.scratch / "out"
        out.mkdir()
        kind = "editable" if editable and no_hook is None else "wheel"
        with _explained(build):
            caller = build.prepare(kind)
            if kind == "editable":
                try:
                    name = build.call(caller.build_editable, os.fspath(out), missing_ok=True)
                except HookMissing:
                    kind = "wheel"
                    no_hook = (
                        f"{shown}: build backend {build.system.backend} has no build_editable "
                        "hook (PEP 660); installed as a built wheel, not editable: rerun "
                        "cpk after changing the code"
                    )
                    _publish(slot, no_hook.encode(), "no-build-editable")
                    caller = build.prepare("wheel")
            if kind == "wheel":
                name = build.call(caller.build_wheel, os.fspath(out))
        wheel = out / str(name)
        if (
            not isinstance(name, str)
            or "/" in name
            or not name.endswith(".whl")
            or not wheel.is_file()
        ):
            raise BuildError(
                f"building project {shown} with {build.system.backend} returned {name!r}, "
                f"not a wheel; the backend's output is in {build.log_path}",
                project=shown,
            )
        _write_requires(slot, build)
        published = _publish(slot / kind, wheel, name)
    return BuiltProject(
        root, shown, key, published, kind == "editable", no_hook if editable else None
    )


def _no_editable_note(shown: str, slot: Path) -> str | None:
    try:
        return (slot / "no-build-editable").read_text()
    except OSError:
        return None


def _cached(directory: Path) -> Path | None:
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".whl") and n[0] != ".")
    except OSError:
        return None
    return directory / names[0] if names else None


def _write_requires(slot: Path, build: Any) -> None:
    """Record which build requirements' versions made this build."""
    from contentpkg.python.build.sdist import _publish

    entries = build.env.entries if build.env is not None else []
    text = "".join(f"{e.name}=={e.version}\n" for e in sorted(entries, key=lambda e: e.name))
    _publish(slot, text.encode(), "requires.txt")


def _open_build(
    root: Path,
    shown: str,
    slot: Path,
    python: InterpreterInfo,
    environ: Mapping[str, str],
    resolve: ResolveBuildRequires,
    reporter: Reporter,
) -> Any:
    from contentpkg.python.build.sdist import _Build

    class _InPlace(_Build):
        """A build of the checkout itself: no archive to unpack, and a log
        that outlives the build (its path is in the failure's message)."""

        def __init__(self) -> None:
            import tempfile

            from contentpkg.fs import discard
            from contentpkg.python.build.sdist import read_build_system

            self.sdist_path = root
            self.environ = environ
            self.interp = python
            self.resolve = resolve
            self.scratch = Path(tempfile.mkdtemp(prefix="cpk-build-"))
            self.env = None
            self._task = None
            try:
                self.source = root
                self.name, self.version = shown, "(checkout)"
                self.label = f"project {shown} ({root})"
                self.system = read_build_system(root, os.fspath(root))
                slot.mkdir(parents=True, exist_ok=True)
                self.log_path = slot / "build.log"
                self.log = open(self.log_path, "wb", buffering=0)  # noqa: SIM115
            except BaseException:
                discard(self.scratch)
                raise
            self._task = reporter.task(f"building {shown} with {self.system.backend}")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            from contentpkg.fs import discard

            if self._task is not None:
                self._task.done(None if exc_type else f"built {shown}")
            self.log.close()
            if self.env is not None:
                self.env.close()
            discard(self.scratch)

    return _InPlace()


class _explained:
    """Turn a failed hook into the one line the user sees: the project, the
    backend and the log file that holds the backend's output."""

    def __init__(self, build: Any) -> None:
        self.build = build

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is None or not isinstance(exc, BuildError):
            return False
        build = self.build
        reason = str(exc).split(" failed", 1)[1] if " failed" in str(exc) else f": {exc}"
        raise BuildError(
            f"building project {build.name} with {build.system.backend} failed{reason}; "
            f"the backend's output is in {build.log_path}",
            project=build.name,
            log=exc.log,
        ) from None
