"""What a project declares: its requirements, its settings, and their fingerprint.

Three kinds of input name the requirements of an environment: a
``pyproject.toml`` (PEP 621 ``[project]`` dependencies and optional
dependencies, PEP 735 ``[dependency-groups]``), a pip-style
``requirements.txt``, and a script's PEP 723 ``# /// script`` block. All
three become one :class:`ProjectInputs`, so locking and running never care
which kind they came from.

This module sits on the hot path of ``cpk run`` (finding the project and
checking that its lock is fresh), so parsing uses only the standard library;
``packaging`` (which costs ~17 ms to import, mostly for ``packaging.tags``)
is imported only to validate requirements, and ``validate=False`` skips it
when the caller only needs the fingerprint of inputs that were validated
when the lock was written.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contentpkg.errors import CpkError

PYPROJECT = "pyproject.toml"
REQUIREMENTS_TXT = "requirements.txt"

# Bumped whenever the canonical serialisation below changes, so that every
# lock written by an older cpk reads as stale rather than as wrongly fresh.
_FINGERPRINT_FORMAT = "cpk-inputs-1"

_TOOL_KEYS = (
    "default-groups",
    "extra-index-url",
    "find-links",
    "index-url",
    "no-index",
    "package",
    "sources",
)
_SOURCE_KEYS = ("editable", "path")

# PEP 723's reference regex, verbatim: the spec defines the block by it.
_SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# pip's definition of a comment in a requirements file.
_COMMENT = re.compile(r"(^|\s+)#.*$")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, written out so the hot path needs no ``packaging``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized project name a PEP 508 requirement string starts with."""
    match = _NAME.match(requirement)
    return canonical_name(match.group(1) if match else requirement.strip())


@dataclass(frozen=True)
class IndexSettings:
    """Where the project files say packages are looked for, as written.

    ``index_url`` None means they do not say. ``find_links`` holds URLs and
    absolute local paths (relative ones are resolved against the file that
    named them when it is read). What is used in the end, after the command
    line and the environment have their say, is decided in one place only:
    :func:`contentpkg.python.project.settings.index_settings`, given
    :attr:`ProjectInputs.index_table`.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False


@dataclass(frozen=True)
class Source:
    """A requirement served from a local checkout or file instead of an index."""

    name: str  # PEP 503 normalized
    path: Path  # absolute
    editable: bool = False


@dataclass
class ProjectInputs:
    """Everything a project declares that determines its lock.

    ``requirements`` are the PEP 508 strings of the selected dependencies
    (the project's own, the selected extras, the selected dependency groups),
    stripped, deduplicated, in declaration order. ``hashes`` holds the
    ``--hash`` options of a requirements file, by normalized name, as
    ``"algorithm:hexdigest"``: the resolver must accept only files with one
    of those hashes. ``files`` lists every file read, so a caller can cache
    on their stat results.
    """

    root: Path
    input_file: Path
    kind: Literal["pyproject", "requirements", "script"]
    name: str | None = None
    version: str | None = None
    installable: bool = False
    requirements: list[str] = field(default_factory=list)
    requires_python: str | None = None
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    index: IndexSettings = field(default_factory=IndexSettings)
    sources: dict[str, Source] = field(default_factory=dict)
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tool: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    @property
    def index_table(self) -> dict[str, Any]:
        """The index settings in ``[tool.cpk]`` shape, with a requirements
        file's ``--index-url``/``--extra-index-url``/``--find-links``/
        ``--no-index`` merged in: what ``locations.index_settings`` takes as
        ``pyproject_tool_cpk`` (find-links here are absolute)."""
        table: dict[str, Any] = {}
        if self.index.index_url:
            table["index-url"] = self.index.index_url
        if self.index.extra_index_urls:
            table["extra-index-url"] = list(self.index.extra_index_urls)
        if self.index.find_links:
            table["find-links"] = list(self.index.find_links)
        if self.index.no_index:
            table["no-index"] = True
        return table


class ScriptInputs(ProjectInputs):
    """The inputs of a PEP 723 script; ``input_file`` is the script."""

    @property
    def script(self) -> Path:
        return self.input_file


# --------------------------------------------------------------------------
# finding and loading


def find_project(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds a project.

    A ``pyproject.toml`` anywhere above wins over a nearer ``requirements.txt``,
    as ``uv`` finds projects: a ``docs/requirements.txt`` inside a project is
    the docs builder's input, not the project's. Only when no directory above
    has a ``pyproject.toml`` does the nearest ``requirements.txt`` count.
    """
    start = Path(os.path.abspath(start))
    if not start.is_dir():
        start = start.parent
    chain = [start, *start.parents]
    for directory in chain:
        if (directory / PYPROJECT).is_file():
            return directory
    for directory in chain:
        if (directory / REQUIREMENTS_TXT).is_file():
            return directory
    return None


def load_project(
    path: Path,
    *,
    extras: Iterable[str] = (),
    groups: Iterable[str] = (),
    all_extras: bool = False,
    all_groups: bool = False,
    no_default_groups: bool = False,
    validate: bool = True,
) -> ProjectInputs:
    """Read the inputs of the project at ``path``.

    ``path`` is a project directory, a ``pyproject.toml``, or a requirements
    file. Dependency groups selected are the default groups (``[tool.cpk]
    default-groups``, else ``dev`` when it exists, as ``uv`` does) unless
    ``no_default_groups``, plus ``groups``.
    """
    path = Path(path)
    if path.is_dir():
        pyproject = path / PYPROJECT
        if pyproject.is_file():
            path = pyproject
        elif (path / REQUIREMENTS_TXT).is_file():
            path = path / REQUIREMENTS_TXT
        else:
            raise CpkError(f"{path}: no {PYPROJECT} or {REQUIREMENTS_TXT} here")
    elif not path.is_file():
        raise CpkError(f"{path}: no such project file")
    selection = _Selection(
        extras=tuple(extras),
        groups=tuple(groups),
        all_extras=all_extras,
        all_groups=all_groups,
        no_default_groups=no_default_groups,
    )
    if path.name.endswith(".toml"):
        return _load_pyproject(path, selection, validate)
    if selection.extras or selection.groups or all_extras or all_groups:
        raise CpkError(f"{path}: a requirements file has no extras or dependency groups")
    reqs = _RequirementsReader(validate)
    reqs.read(path.absolute(), None)
    return reqs.inputs(path.absolute().parent, path, IndexSettings(), {})


class _Selection:
    """What the caller asked for. A plain class: a dataclass costs ~0.5 ms
    of import time on the hot path, for nothing here."""

    __slots__ = ("all_extras", "all_groups", "extras", "groups", "no_default_groups")

    def __init__(
        self,
        *,
        extras: tuple[str, ...],
        groups: tuple[str, ...],
        all_extras: bool,
        all_groups: bool,
        no_default_groups: bool,
    ) -> None:
        self.extras = extras
        self.groups = groups
        self.all_extras = all_extras
        self.all_groups = all_groups
        self.no_default_groups = no_default_groups


def _read_toml(path: Path, what: str = "") -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CpkError(f"{path}: cannot read {what or 'file'}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CpkError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise CpkError(f"{path}: invalid TOML: {error}") from None


def _table(value: Any, file: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CpkError(f"{file}: {where} must be a table")
    return value


def _strings(value: Any, file: Path, where: str, *, single_ok: bool = False) -> list[str]:
    """A list of strings, or (when ``single_ok``) one string standing for a list."""
    if value is None:
        return []
    if single_ok and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CpkError(f"{file}: {where} must be a list of strings")
    return value


def _load_pyproject(file: Path, selection: _Selection, validate: bool) -> ProjectInputs:
    file = file.absolute()
    root = file.parent
    data = _read_toml(file)
    project = data.get("project")
    if project is not None and not isinstance(project, dict):
        raise CpkError(f"{file}: [project] must be a table")
    tool = _table(_table(data.get("tool"), file, "[tool]").get("cpk"), file, "[tool.cpk]")
    index, sources, default_groups = _tool_settings(tool, file, root, validate)
    groups_table = data.get("dependency-groups")

    if project is None and groups_table is None and (root / REQUIREMENTS_TXT).is_file():
        # A pyproject.toml that only configures tools (black, ruff, cpk) next
        # to a requirements.txt: the requirements file is the declaration.
        if selection.extras or selection.groups or selection.all_extras or selection.all_groups:
            raise CpkError(f"{file}: no [project] or [dependency-groups] to select from")
        reqs = _RequirementsReader(validate)
        reqs.read(root / REQUIREMENTS_TXT, None)
        inputs = reqs.inputs(root, file, index, sources)
        inputs.tool = tool
        inputs.installable = "build-system" in data
        inputs.files = (file, *inputs.files)
        return inputs

    requirements: list[str] = []
    name = version = requires_python = None
    selected_extras: tuple[str, ...] = ()
    optional: dict[str, list[str]] = {}
    if project is not None:
        name = project.get("name")
        if not isinstance(name, str) or not name:
            raise CpkError(f"{file}: [project] has no name")
        version = project.get("version")
        if version is not None and not isinstance(version, str):
            raise CpkError(f"{file}: [project].version must be a string")
        requires_python = project.get("requires-python")
        if requires_python is not None and not isinstance(requires_python, str):
            raise CpkError(f"{file}: [project].requires-python must be a string")
        dynamic = _strings(project.get("dynamic"), file, "[project].dynamic")
        if "dependencies" in dynamic:
            raise CpkError(f"{file}: [project].dependencies is dynamic; cpk needs it written out")
        requirements = _strings(project.get("dependencies"), file, "[project].dependencies")
        raw_optional = _table(
            project.get("optional-dependencies"), file, "[project.optional-dependencies]"
        )
        for extra, reqs in raw_optional.items():
            key = canonical_name(extra)
            if key in optional:
                raise CpkError(f"{file}: extra {extra!r} is declared twice")
            optional[key] = _strings(reqs, file, f"[project.optional-dependencies].{extra}")
        wanted = sorted(optional) if selection.all_extras else selection.extras
        selected_extras = _select(wanted, optional, file, "extra", "optional-dependencies")

    elif selection.extras or selection.all_extras:
        raise CpkError(f"{file}: no [project] table, so no extras to select")

    self_name = canonical_name(name) if name else None
    expander = _Expander(file, self_name, optional)
    out: list[str] = []
    expander.add(requirements, "[project].dependencies", out)
    for extra in selected_extras:
        expander.add_extra(extra, out)

    group_names = _group_names(groups_table, file)
    if selection.all_groups:
        wanted_groups: tuple[str, ...] = tuple(sorted(group_names))
    else:
        defaults: list[str] = []
        if not selection.no_default_groups:
            if default_groups is None:
                defaults = ["dev"] if "dev" in group_names else []
            elif default_groups == "all":
                defaults = sorted(group_names)
            else:
                defaults = list(default_groups)
        wanted_groups = (*defaults, *selection.groups)
    selected_groups = _select(wanted_groups, group_names, file, "dependency group", "groups")
    for group in selected_groups:
        expander.add_group(group, groups_table, group_names, out)

    if validate:
        _validate(out, file)
        if requires_python is not None:
            _validate_specifier(requires_python, file, "[project].requires-python")
    add_url_sources(out, root, str(file), sources)

    return ProjectInputs(
        root=root,
        input_file=file,
        kind="pyproject",
        name=name,
        version=version,
        installable=_is_package(data, tool, file) and project is not None,
        requirements=_dedupe(out),
        requires_python=requires_python,
        extras=selected_extras,
        groups=selected_groups,
        index=index,
        sources=sources,
        tool=tool,
        files=(file,),
    )


def _is_package(data: dict[str, Any], tool: dict[str, Any], file: Path) -> bool:
    """Whether the project itself is installed (editable) into its environment.

    As in uv: a project with a ``[build-system]`` is a package; one without
    is only a set of dependencies, unless ``[tool.cpk] package`` says
    otherwise.
    """
    package = tool.get("package")
    if package is None:
        return "build-system" in data
    if not isinstance(package, bool):
        raise CpkError(f"{file}: [tool.cpk] package must be true or false")
    return package


def _select(
    wanted: Iterable[str], known: Mapping[str, Any], file: Path, what: str, where: str
) -> tuple[str, ...]:
    """Normalize and check the requested names, keeping the first of duplicates."""
    chosen: list[str] = []
    for raw in wanted:
        key = canonical_name(raw)
        if key not in known:
            have = ", ".join(sorted(known)) or "none"
            raise CpkError(f"{file}: no {what} named {raw!r} (declared {where}: {have})")
        if key not in chosen:
            chosen.append(key)
    return tuple(chosen)


def _group_names(groups_table: Any, file: Path) -> dict[str, str]:
    """Normalized group name to the name as written (PEP 735 compares normalized)."""
    table = _table(groups_table, file, "[dependency-groups]")
    names: dict[str, str] = {}
    for raw in table:
        key = canonical_name(raw)
        if key in names:
            raise CpkError(
                f"{file}: dependency groups {names[key]!r} and {raw!r} have the same name"
            )
        names[key] = raw
    return names


class _Expander:
    """Flattens extras and dependency groups into plain requirement strings.

    A project may name itself (``myproj[test]``) in an extra or a group to
    reuse another extra; such self-references are expanded here, carrying
    their marker onto what they expand to, because the resolver would
    otherwise look the project up on an index. A bare self-reference (no
    extras) adds nothing: the project itself is installed as the project.
    """

    def __init__(self, file: Path, self_name: str | None, optional: dict[str, list[str]]):
        self.file = file
        self.self_name = self_name
        self.optional = optional
        self._extras_done: set[tuple[str, str]] = set()
        self._group_stack: list[str] = []

    def add(self, reqs: Iterable[str], where: str, out: list[str], marker: str = "") -> None:
        for req in reqs:
            req = req.strip()
            if not req:
                raise CpkError(f"{self.file}: empty requirement in {where}")
            match = _NAME.match(req)
            if self.self_name and match and canonical_name(match.group(1)) == self.self_name:
                extras, self_marker = _self_reference(req[match.end() :])
                combined = _and_markers(marker, self_marker)
                for extra in extras:
                    key = canonical_name(extra)
                    if key not in self.optional:
                        raise CpkError(
                            f"{self.file}: {req!r} in {where} names an extra the project "
                            "does not declare"
                        )
                    self.add_extra(key, out, combined)
                continue
            out.append(_with_marker(req, marker))

    def add_extra(self, extra: str, out: list[str], marker: str = "") -> None:
        # Extras may name each other in a loop (all = [p[a]], a = [p[all]]);
        # expanding each (extra, marker) once ends it without loss.
        if (extra, marker) in self._extras_done:
            return
        self._extras_done.add((extra, marker))
        self.add(self.optional[extra], f"[project.optional-dependencies].{extra}", out, marker)

    def add_group(
        self, group: str, table: dict[str, Any], names: dict[str, str], out: list[str]
    ) -> None:
        if group in self._group_stack:
            cycle = " -> ".join([*self._group_stack[self._group_stack.index(group) :], group])
            raise CpkError(f"{self.file}: dependency group cycle: {cycle}")
        self._group_stack.append(group)
        raw_name = names[group]
        where = f"[dependency-groups].{raw_name}"
        items = table[raw_name]
        if not isinstance(items, list):
            raise CpkError(f"{self.file}: {where} must be a list")
        for item in items:
            if isinstance(item, str):
                self.add([item], where, out)
            elif isinstance(item, dict) and list(item) == ["include-group"]:
                target = item["include-group"]
                if not isinstance(target, str) or canonical_name(target) not in names:
                    raise CpkError(
                        f"{self.file}: {where} includes unknown dependency group {target!r}"
                    )
                self.add_group(canonical_name(target), table, names, out)
            else:
                raise CpkError(
                    f"{self.file}: {where} holds {item!r}; expected a requirement string "
                    "or {include-group = NAME}"
                )
        self._group_stack.pop()


def _self_reference(rest: str) -> tuple[list[str], str]:
    """The extras and marker of a requirement on the project itself."""
    rest = rest.strip()
    extras: list[str] = []
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            return [], ""
        extras = [e.strip() for e in rest[1:close].split(",") if e.strip()]
        rest = rest[close + 1 :].strip()
    marker = rest[1:].strip() if rest.startswith(";") else ""
    return extras, marker


def _split_marker(req: str) -> tuple[str, str]:
    """Split a PEP 508 string at its marker's ``;`` (outside quotes).

    In a URL requirement, a ``;`` belongs to the URL unless whitespace
    precedes it, as PEP 508 says.
    """
    is_url = "@" in req.split(";", 1)[0]
    quote = ""
    for i, char in enumerate(req):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == ";" and (not is_url or (i and req[i - 1].isspace())):
            return req[:i].rstrip(), req[i + 1 :].strip()
    return req, ""


def _and_markers(first: str, second: str) -> str:
    if first and second:
        return f"({first}) and ({second})"
    return first or second


def _with_marker(req: str, marker: str) -> str:
    if not marker:
        return req
    base, own = _split_marker(req)
    return f"{base} ; {_and_markers(own, marker)}"


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _tool_settings(
    tool: dict[str, Any], file: Path, root: Path, validate: bool
) -> tuple[IndexSettings, dict[str, Source], list[str] | str | None]:
    """Read ``[tool.cpk]``. Unknown keys are errors: a misspelt ``index-url``
    silently ignored would send requests to the wrong index."""
    unknown = sorted(set(tool) - set(_TOOL_KEYS))
    if unknown:
        raise CpkError(
            f"{file}: unknown key [tool.cpk].{unknown[0]} (known: {', '.join(_TOOL_KEYS)})"
        )
    index_url = tool.get("index-url")
    if index_url is not None and not isinstance(index_url, str):
        raise CpkError(f"{file}: [tool.cpk].index-url must be a string")
    no_index = tool.get("no-index", False)
    if not isinstance(no_index, bool):
        raise CpkError(f"{file}: [tool.cpk].no-index must be true or false")
    extra = _strings(
        tool.get("extra-index-url"), file, "[tool.cpk].extra-index-url", single_ok=True
    )
    links = _strings(tool.get("find-links"), file, "[tool.cpk].find-links", single_ok=True)
    index = IndexSettings(
        index_url=index_url.strip() if index_url else None,
        extra_index_urls=tuple(u.strip() for u in extra),
        find_links=tuple(_location(link.strip(), root) for link in links),
        no_index=no_index,
    )
    sources: dict[str, Source] = {}
    for raw_name, spec in _table(tool.get("sources"), file, "[tool.cpk.sources]").items():
        where = f"[tool.cpk.sources].{raw_name}"
        if not isinstance(spec, dict):
            raise CpkError(f'{file}: {where} must be a table like {{ path = "../B" }}')
        bad = sorted(set(spec) - set(_SOURCE_KEYS))
        if bad:
            raise CpkError(f"{file}: {where}: unsupported key {bad[0]!r} (cpk supports path)")
        raw_path = spec.get("path")
        editable = spec.get("editable", False)
        if not isinstance(raw_path, str) or not raw_path:
            raise CpkError(f"{file}: {where} needs a path")
        if not isinstance(editable, bool):
            raise CpkError(f"{file}: {where}.editable must be true or false")
        key = canonical_name(raw_name)
        sources[key] = _source(key, raw_path, root, editable, f"{file}: {where}", validate)
    default_groups = tool.get("default-groups")
    if default_groups is not None and default_groups != "all":
        default_groups = _strings(default_groups, file, "[tool.cpk].default-groups")
    return index, sources, default_groups


def _source(
    name: str, raw_path: str, base: Path, editable: bool, where: str, check: bool
) -> Source:
    path = Path(os.path.normpath(base / os.path.expanduser(raw_path)))
    if editable and not path.is_dir():
        raise CpkError(f"{where}: {raw_path} is not a directory (editable needs one)")
    # Checked even when ``check`` is off (the hot path): one stat, and a
    # missing checkout is then named as written, not later by the resolver
    # under its absolute path.
    if not path.exists():
        raise CpkError(f"{where}: {raw_path} does not exist")
    return Source(name=name, path=path, editable=editable)


def add_url_sources(
    requirements: Iterable[str], base: Path, where: str, sources: dict[str, Source]
) -> None:
    """Record the checkout each ``name @ file:...`` requirement names as a source.

    A PEP 508 ``file:`` URL is the standard way for a requirement to name a
    local checkout; as a source it goes where ``[tool.cpk.sources]`` entries
    go: into the fingerprint (with its metadata files), to the resolver, and
    onto ``sys.path`` through the overlay. It is not editable (pip installs
    such a URL as a copy), but cpk uses every source directory in place.
    Relative URLs (``file:../B``, which ``packaging`` accepts) are relative
    to base, the directory of the file naming them. A requirement whose
    marker excludes the target still records its source: markers need
    ``packaging``, and this runs on the hot path of ``cpk run``.
    """
    for req in requirements:
        source = _url_source(req, base, where)
        if source is None:
            continue
        known = sources.get(source.name)
        if known is None:
            sources[source.name] = source
        elif known.path != source.path:
            raise CpkError(
                f"{where}: {req!r} names {source.path}, but {source.name} "
                f"already comes from {known.path}"
            )


def _url_source(req: str, base: Path, where: str) -> Source | None:
    """The source of one requirement if it is ``name[extras] @ file:...``.

    Parsed by hand rather than by ``packaging``, for the hot path.
    """
    match = _NAME.match(req)
    if not match:
        return None
    rest = req[match.end() :].lstrip()
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            return None
        rest = rest[close + 1 :].lstrip()
    if not rest.startswith("@"):
        return None
    url = _split_marker(rest[1:].strip())[0].strip()
    if not url.startswith("file:"):
        return None
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise CpkError(f"{where}: {req!r}: a file: URL on another host is not supported")
    raw = unquote(parts.path)
    path = Path(os.path.normpath(base / raw))
    if not path.exists():
        raise CpkError(f"{where}: {raw} does not exist (named by {req!r})")
    return Source(name=canonical_name(match.group(1)), path=path)


def _location(link: str, base: Path) -> str:
    """A find-links entry as a URL or an absolute path."""
    if link.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return os.path.normpath(unquote(urlsplit(link).path))
    if "://" in link:
        return link
    return os.path.normpath(base / os.path.expanduser(link))


# --------------------------------------------------------------------------
# requirements files


_OPTIONS_HELP = "-r, -e, -i/--index-url, --extra-index-url, -f/--find-links, --no-index, --hash"
# option spelling -> (canonical name, takes a value)
_OPTIONS: dict[str, tuple[str, bool]] = {
    "-r": ("requirement", True),
    "--requirement": ("requirement", True),
    "-e": ("editable", True),
    "--editable": ("editable", True),
    "-i": ("index-url", True),
    "--index-url": ("index-url", True),
    "--extra-index-url": ("extra-index-url", True),
    "-f": ("find-links", True),
    "--find-links": ("find-links", True),
    "--no-index": ("no-index", False),
}


class _RequirementsReader:
    """A pip-compatible reader for the subset of the format cpk honours.

    Options cpk cannot honour (``-c``, ``--pre``, ``--only-binary``...) are
    errors rather than silently ignored, because ignoring them would lock
    something other than what the file asks for. Relative paths are taken
    relative to the file that names them (pip takes some relative to the
    working directory, which makes a lock depend on where it was made).
    """

    def __init__(self, validate: bool) -> None:
        self.validate = validate
        self.requirements: list[str] = []
        self.index_url: str | None = None
        self.extra_index_urls: list[str] = []
        self.find_links: list[str] = []
        self.no_index = False
        self.sources: dict[str, Source] = {}
        self.hashes: dict[str, list[str]] = {}
        self.files: list[Path] = []
        self._stack: list[Path] = []

    def inputs(
        self, root: Path, input_file: Path, index: IndexSettings, sources: dict[str, Source]
    ) -> ProjectInputs:
        """Combine with ``[tool.cpk]`` settings; the requirements file's own
        options come second, as options given later do on pip's command line."""
        settings = IndexSettings(
            index_url=self.index_url or index.index_url,
            extra_index_urls=tuple(_dedupe([*index.extra_index_urls, *self.extra_index_urls])),
            find_links=tuple(_dedupe([*index.find_links, *self.find_links])),
            no_index=self.no_index or index.no_index,
        )
        return ProjectInputs(
            root=root,
            input_file=input_file.absolute(),
            kind="requirements",
            requirements=_dedupe(self.requirements),
            index=settings,
            sources={**sources, **self.sources},
            hashes={name: tuple(sorted(set(h))) for name, h in self.hashes.items()},
            files=tuple(self.files),
        )

    def read(self, file: Path, origin: tuple[Path, int] | None) -> None:
        file = Path(os.path.normpath(file))
        if file in self._stack:
            chain = " -> ".join(p.name for p in [*self._stack, file])
            raise CpkError(f"{self._stack[-1]}: requirements files include each other: {chain}")
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as error:
            where = f"{origin[0]}:{origin[1]}: " if origin else ""
            raise CpkError(f"{where}cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CpkError(f"{file}: not UTF-8 text") from None
        self._stack.append(file)
        if file not in self.files:
            self.files.append(file)
        for lineno, line in _logical_lines(text):
            self._line(file, lineno, line)
        self._stack.pop()

    def _line(self, file: Path, lineno: int, line: str) -> None:
        where = f"{file}:{lineno}"
        if line.startswith("-"):
            try:
                tokens = shlex.split(line)
            except ValueError as error:
                raise CpkError(f"{where}: cannot parse options: {error}") from None
            for option, value in _options(tokens, where):
                self._option(file, where, lineno, option, value)
            return
        # As pip does: the requirement ends at the first word that starts
        # with a dash; what follows are per-requirement options.
        words = line.split()
        cut = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        req = " ".join(words[:cut])
        hashes: list[str] = []
        rest = words[cut:]
        i = 0
        while i < len(rest):
            word = rest[i]
            if word == "--hash" and i + 1 < len(rest):
                hashes.append(rest[i + 1])
                i += 2
            elif word.startswith("--hash="):
                hashes.append(word.removeprefix("--hash="))
                i += 1
            else:
                raise CpkError(
                    f"{where}: unsupported option {word.split('=', 1)[0]!r} after a "
                    "requirement (cpk supports --hash)"
                )
        for digest in hashes:
            algorithm, sep, value = digest.partition(":")
            if not sep or not algorithm or not re.fullmatch(r"[0-9a-fA-F]+", value):
                raise CpkError(f"{where}: malformed --hash {digest!r} (expected sha256:HEX)")
        if req.startswith((".", "/", "~")):
            name = self._local(file, where, req, editable=False)
            req = name
        elif self.validate:
            _validate([req], file, lineno)
        add_url_sources([req], file.parent, where, self.sources)
        self.requirements.append(req)
        if hashes:
            match = _NAME.match(req)
            if match:
                key = canonical_name(match.group(1))
                self.hashes.setdefault(key, []).extend(
                    f"{a.lower()}:{v.lower()}" for a, _, v in (h.partition(":") for h in hashes)
                )

    def _option(self, file: Path, where: str, lineno: int, option: str, value: str) -> None:
        if option == "requirement":
            if "://" in value:
                raise CpkError(f"{where}: -r {value}: only local files can be included")
            self.read(file.parent / os.path.expanduser(value), (file, lineno))
        elif option == "editable":
            self.requirements.append(self._local(file, where, value, editable=True))
        elif option == "index-url":
            self.index_url = value
        elif option == "extra-index-url":
            self.extra_index_urls.append(value)
        elif option == "find-links":
            self.find_links.append(_location(value, file.parent))
        elif option == "no-index":
            self.no_index = True

    def _local(self, file: Path, where: str, spec: str, *, editable: bool) -> str:
        """Record a local directory as a source and return its project name."""
        if "://" in spec or spec.startswith(("git+", "hg+", "svn+", "bzr+")):
            raise CpkError(f"{where}: {spec}: only local directories are supported here")
        path_part, _, fragment = spec.partition("#")
        extras = ""
        bracket = re.search(r"\[[^\]]*\]$", path_part)
        if bracket:  # ./B[dev]: the extras belong to the requirement, not the path
            path_part, extras = path_part[: bracket.start()], bracket.group(0)
        path = Path(os.path.normpath(file.parent / os.path.expanduser(path_part)))
        if not path.is_dir():
            raise CpkError(f"{where}: {path_part} is not a directory")
        name = _project_name(path) or _egg_name(fragment)
        if not name:
            raise CpkError(
                f"{where}: cannot tell the project name of {path_part} "
                "(no [project].name in its pyproject.toml; add #egg=NAME)"
            )
        key = canonical_name(name)
        self.sources[key] = Source(name=key, path=path, editable=editable)
        return name + extras


def _egg_name(fragment: str) -> str | None:
    for part in fragment.split("&"):
        if part.startswith("egg="):
            return part[4:] or None
    return None


def _project_name(directory: Path) -> str | None:
    pyproject = directory / PYPROJECT
    if not pyproject.is_file():
        return None
    project = _read_toml(pyproject).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) and name else None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join continuation lines and drop comments, as pip's ``preprocess`` does.

    The line number of a joined line is that of its first physical line, so
    errors point where the requirement starts.
    """
    pending: list[str] = []
    first = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        is_comment = bool(_COMMENT.match(line))
        if line.endswith("\\") and not is_comment:
            if not pending:
                first = lineno
            pending.append(line[:-1])
            continue
        if pending:
            # A comment line ends a continuation rather than joining it.
            pending.append(" " + line if is_comment else line)
            joined, start = "".join(pending), first
            pending = []
        else:
            joined, start = line, lineno
        joined = _COMMENT.sub("", joined).strip()
        if joined:
            yield start, joined
    if pending:
        joined = _COMMENT.sub("", "".join(pending)).strip()
        if joined:
            yield first, joined


def _options(tokens: Sequence[str], where: str) -> Iterator[tuple[str, str]]:
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        spelling, value = token, None
        if token.startswith("--") and "=" in token:
            spelling, value = token.split("=", 1)
        elif not token.startswith("--") and len(token) > 2 and token[:2] in _OPTIONS:
            spelling, value = token[:2], token[2:]  # -rfile, -ihttps://...
        if spelling not in _OPTIONS:
            if not token.startswith("-"):
                raise CpkError(f"{where}: unexpected {token!r} among options")
            raise CpkError(
                f"{where}: unsupported option {spelling!r} (cpk supports {_OPTIONS_HELP})"
            )
        name, takes_value = _OPTIONS[spelling]
        if takes_value and value is None:
            if i >= len(tokens):
                raise CpkError(f"{where}: option {spelling} needs a value")
            value = tokens[i]
            i += 1
        elif not takes_value and value is not None:
            raise CpkError(f"{where}: option {spelling} takes no value")
        yield name, value or ""


# --------------------------------------------------------------------------
# PEP 723 scripts


def read_script_metadata(script: Path, *, validate: bool = True) -> ScriptInputs | None:
    """The inputs of a script's ``# /// script`` block, None when it has none."""
    script = Path(script).absolute()
    try:
        text = script.read_text(encoding="utf-8")
    except OSError as error:
        raise CpkError(f"{script}: cannot read script: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CpkError(f"{script}: not UTF-8 text") from None
    blocks = [m for m in _SCRIPT_BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise CpkError(f"{script}: more than one '# /// script' metadata block")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        raise CpkError(f"{script}: invalid TOML in the script metadata block: {error}") from None
    requirements = _strings(data.get("dependencies"), script, "script metadata 'dependencies'")
    requires_python = data.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise CpkError(f"{script}: script metadata 'requires-python' must be a string")
    tool = _table(
        _table(data.get("tool"), script, "script metadata [tool]").get("cpk"),
        script,
        "script metadata [tool.cpk]",
    )
    root = script.parent
    index, sources, default_groups = _tool_settings(tool, script, root, validate)
    if default_groups is not None:
        raise CpkError(f"{script}: a script has no dependency groups (default-groups)")
    requirements = [r.strip() for r in requirements]
    if validate:
        _validate(requirements, script)
        if requires_python is not None:
            _validate_specifier(requires_python, script, "script metadata 'requires-python'")
    add_url_sources(requirements, root, str(script), sources)
    return ScriptInputs(
        root=root,
        input_file=script,
        kind="script",
        requirements=_dedupe(requirements),
        requires_python=requires_python,
        index=index,
        sources=sources,
        tool=tool,
        files=(script,),
    )


# --------------------------------------------------------------------------
# validation


def _validate(reqs: Iterable[str], file: Path, lineno: int | None = None) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    where = f"{file}:{lineno}" if lineno else str(file)
    for req in reqs:
        try:
            Requirement(req)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            raise CpkError(f"{where}: invalid requirement {req!r}: {reason}") from None


def _validate_specifier(spec: str, file: Path, where: str) -> None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        raise CpkError(f"{file}: {where} {spec!r} is not a version specifier") from None


# --------------------------------------------------------------------------
# settings and fingerprint


def inputs_fingerprint(
    inputs: ProjectInputs,
    *,
    python_version: str,
    index_settings: tuple[Sequence[str], Sequence[str]] | None = None,
    markers: Mapping[str, str] | None = None,
) -> str:
    """A sha256 (hex) of everything that determines the lock.

    Stored in the lock so that ``cpk lock --check`` and ``cpk run`` can tell
    a stale lock without resolving. It must be computable without
    ``packaging`` (see the module docstring), so requirements are normalized
    here by hand: names and extras PEP 503-normalized, extras and version
    clauses sorted, whitespace outside quotes dropped. The normalization only
    ever errs towards "changed" (``'3'`` and ``"3"`` differ), which costs a
    needless re-lock, never a wrongly fresh lock. Local paths are recorded
    relative to the project root so the fingerprint is the same in every
    checkout. ``python_version`` is the target's full version and
    ``markers`` its marker environment, both as the resolver used them.

    ``index_settings`` is what the index client will use: the
    ``(indexes, find_links)`` pair ``locations.index_settings`` returns.
    None means that function's answer without command-line options (the
    environment's settings, else the project's, else PyPI), which is what
    ``cpk run`` checks a lock against.
    """
    import hashlib
    import json

    root = inputs.root
    if index_settings is None:
        from contentpkg.python.project.settings import index_settings as settings_of

        index_settings = settings_of(None, None, inputs.index_table, project_dir=root)
    indexes, links = index_settings
    sources = {
        name: {
            "path": _relative(source.path, root),
            "editable": source.editable,
            # A local dependency's own requirements are inputs too; hashing
            # its build files is cheap and never misses a change to them.
            "metadata": _local_metadata_digest(source.path),
        }
        for name, source in sorted(inputs.sources.items())
    }
    document = {
        "format": _FINGERPRINT_FORMAT,
        "project": (
            [canonical_name(inputs.name), inputs.version, inputs.installable]
            if inputs.name
            else None
        ),
        "requirements": sorted({canonical_requirement(r) for r in inputs.requirements}),
        "requires-python": _canonical_specifier(inputs.requires_python or ""),
        "extras": sorted(inputs.extras),
        "groups": sorted(inputs.groups),
        "sources": sources,
        "hashes": {name: sorted(h) for name, h in sorted(inputs.hashes.items())},
        "indexes": [_canonical_place(url, root) for url in indexes],
        "find-links": [_canonical_place(link, root) for link in links],
        "python": python_version,
        "markers": dict(sorted((markers or {}).items())),
    }
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def canonical_requirement(req: str) -> str:
    """A whitespace- and order-insensitive key for a PEP 508 string (see
    :func:`inputs_fingerprint`); not meant to be parsed back."""
    match = _NAME.match(req)
    if not match:
        return _squeeze(req)
    name = canonical_name(match.group(1))
    rest = req[match.end() :].strip()
    extras = ""
    if rest.startswith("["):
        close = rest.find("]")
        if close > 0:
            names = {canonical_name(e.strip()) for e in rest[1:close].split(",") if e.strip()}
            extras = "[" + ",".join(sorted(names)) + "]" if names else ""
            rest = rest[close + 1 :].strip()
    if rest.startswith("@"):
        # URL and marker: the URL is kept byte for byte.
        url, marker = _split_marker(rest[1:].strip())
        return f"{name}{extras}@{url.strip()}" + (f";{_squeeze(marker)}" if marker else "")
    spec, marker = _split_marker(rest)
    spec = spec.strip()
    if spec.startswith("(") and spec.endswith(")"):
        spec = spec[1:-1]
    out = name + extras + _canonical_specifier(spec)
    return out + (f";{_squeeze(marker)}" if marker else "")


def _canonical_specifier(spec: str) -> str:
    clauses = [c for c in (_squeeze(part) for part in spec.split(",")) if c]
    return ",".join(sorted(clauses))


def _squeeze(text: str) -> str:
    """Drop whitespace outside quoted strings."""
    out: list[str] = []
    quote = ""
    for char in text:
        if quote:
            out.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            out.append(char)
        elif not char.isspace():
            out.append(char)
    return "".join(out)


def _canonical_place(place: str, root: Path) -> str:
    """A URL without its trailing slash; a local place relative to the root."""
    place = place.strip()
    if place.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        place = unquote(urlsplit(place).path)
    elif "://" in place:
        return place.rstrip("/")
    return _relative(Path(place), root)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows: no relative form exists
        return path.as_posix()


def _local_metadata_digest(path: Path) -> str | None:
    import hashlib

    digest = hashlib.sha256()
    if not path.is_dir():
        # A local wheel or sdist: its bytes are its metadata. Hashing them
        # (not an mtime) keeps the fingerprint equal across checkouts.
        try:
            digest.update(path.read_bytes())
        except OSError:
            return None
        return digest.hexdigest()
    found = False
    for name in ("pyproject.toml", "setup.cfg", "setup.py"):
        try:
            data = (path / name).read_bytes()
        except OSError:
            continue
        found = True
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest() if found else None
