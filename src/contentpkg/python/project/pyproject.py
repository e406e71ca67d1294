"""A project's ``pyproject.toml`` as its inputs: dependencies, extras, groups.

PEP 621 ``[project]`` (read by :mod:`.pep621`, the one reader of that
table), PEP 735 ``[dependency-groups]`` and ``[tool.cpk]`` (:mod:`.cpk_table`)
become one :class:`~.models.ProjectInputs`: the selected extras and groups
flattened into requirement strings, the project's own self-references
(``myproj[test]``) expanded. Standard library only, for ``cpk run``'s path.

Why PEP 735 groups are expanded here rather than by
``packaging.dependency_groups``: that module returns parsed ``Requirement``
objects, whose ``str()`` re-spells markers (``python_version<'3.12'``
becomes ``python_version < "3.12"``), which would change every inputs
fingerprint and make existing locks read as stale; it cannot expand a group's
references to the project's own extras (``myproj[test]``), which pip and uv
allow; and importing it loads ``packaging.requirements`` (~18 ms), which the
freshness check of ``cpk run`` (``validate=False``) must not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError, InvalidInputError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.cpk_table import is_package, read_tool_table
from contentpkg.python.project.models import BACKEND_FIELDS, ProjectInputs, Selection
from contentpkg.python.project.pep508 import (
    NAME,
    and_markers,
    validate_requirements,
    validate_specifier,
    with_marker,
)
from contentpkg.python.project.pep621 import static_project
from contentpkg.python.project.requirements import REQUIREMENTS_TXT, RequirementsReader
from contentpkg.python.project.sources import add_url_sources
from contentpkg.python.project.tomlfile import read_toml, table
from contentpkg.python.project.uv_table import UvSettings, read_uv_table

PYPROJECT = "pyproject.toml"


def load_pyproject(file: Path, selection: Selection, validate: bool) -> ProjectInputs:
    """The inputs ``file`` declares, for the extras and groups selected."""
    file = file.absolute()
    root = file.parent
    data = read_toml(file)
    raw_project = data.get("project")
    project = static_project(raw_project, file) if raw_project is not None else None
    tools = table(data.get("tool"), file, "[tool]")
    tool = table(tools.get("cpk"), file, "[tool.cpk]")
    uv = read_uv_table(tools.get("uv"), tool, file, root)
    index, sources, default_groups = read_tool_table(uv.cpk, file, root, validate)
    groups_table = data.get("dependency-groups")

    if project is None and groups_table is None and (root / REQUIREMENTS_TXT).is_file():
        # A pyproject.toml that only configures tools (black, ruff, cpk) next
        # to a requirements.txt: the requirements file is the declaration.
        if selection.any:
            raise CpkError(f"{file}: no [project] or [dependency-groups] to select from")
        reqs = RequirementsReader(validate)
        reqs.read(root / REQUIREMENTS_TXT, None)
        inputs = reqs.inputs(root, file, index, sources)
        inputs.tool = tool
        _add_uv(inputs, uv)
        inputs.installable = "build-system" in data
        inputs.files = (file, *inputs.files)
        return inputs

    if project is None and groups_table is None and not is_package(data, tool, file):
        # Never an empty environment in silence: nothing here says what to
        # install (uv refuses the same file).
        raise CpkError(
            f"{file}: no [project], [dependency-groups] or [build-system] table: "
            "nothing says what this project needs"
        )
    requirements: list[str] = []
    name = version = requires_python = None
    selected_extras: tuple[str, ...] = ()
    optional: dict[str, list[str]] = {}
    installable = is_package(data, tool, file)
    # What the build backend supplies (point 1 of building the project
    # itself): everything without [project], else what it lists as dynamic.
    dynamic: tuple[str, ...] = ()
    if project is not None:
        dynamic = tuple(f for f in BACKEND_FIELDS if f in project.dynamic)
    elif installable:
        dynamic = BACKEND_FIELDS
    if dynamic and not installable:
        # Not a package: nothing is built, so only a version may stay unknown.
        needed = [f for f in dynamic if f != "version"]
        if needed:
            raise CpkError(
                f"{file}: [project].{needed[0]} is dynamic, but no [build-system] "
                "names a backend to ask for it"
            )
        dynamic = ()
    if project is not None:
        name = project.name
        if name is None and "name" not in dynamic:
            raise InvalidInputError(f"{file}: [project] has no name", path=str(file))
        version = project.version if "version" not in dynamic else None
        requires_python = project.requires_python
        requirements = project.dependencies
        optional = project.optional_dependencies
    if "optional-dependencies" in dynamic:
        # Checked once the backend has said which extras exist.
        wanted = ("*",) if selection.all_extras else selection.extras
        selected_extras = tuple(dict.fromkeys(canonical_name(e) if e != "*" else e for e in wanted))
    elif project is not None:
        wanted = sorted(optional) if selection.all_extras else selection.extras
        selected_extras = _select(wanted, optional, file, "extra", "optional-dependencies")
    elif selection.extras or selection.all_extras:
        raise CpkError(f"{file}: no [project] table, so no extras to select")
    self_name = canonical_name(name) if name else None
    expander = _Expander(file, self_name, optional)
    out: list[str] = []
    expander.add(requirements, "[project].dependencies", out)
    for extra in selected_extras:
        if extra in optional:
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

    out = uv.apply(out)
    if validate:
        validate_requirements(out, file)
        if requires_python is not None:
            validate_specifier(requires_python, file, "[project].requires-python")
    add_url_sources(out, root, str(file), sources)

    return ProjectInputs(
        root=root,
        input_file=file,
        kind="pyproject",
        name=name,
        version=version,
        installable=installable,
        requirements=_dedupe(out),
        requires_python=requires_python,
        extras=selected_extras,
        groups=selected_groups,
        index=index,
        sources=sources,
        tool=tool,
        files=(file,),
        dynamic=dynamic,
        constraints=uv.constraints,
        overrides=uv.overrides,
        index_pins=uv.index_pins,
    )


def load_setuptools_project(root: Path, selection: Selection) -> ProjectInputs:
    """A project declared by ``setup.py``/``setup.cfg`` alone: everything
    comes from the setuptools backend (PEP 517's fallback, as in pip)."""
    files = tuple(root / n for n in ("setup.py", "setup.cfg") if (root / n).is_file())
    if not files:
        raise CpkError(f"{root}: no pyproject.toml, setup.py or setup.cfg here")
    if selection.groups or selection.all_groups:
        raise CpkError(f"{files[0]}: a setup.py project has no dependency groups")
    wanted = ("*",) if selection.all_extras else selection.extras
    return ProjectInputs(
        root=root,
        input_file=files[0],
        kind="pyproject",
        installable=True,
        extras=tuple(dict.fromkeys(canonical_name(e) if e != "*" else e for e in wanted)),
        files=files,
        dynamic=BACKEND_FIELDS,
    )


def _add_uv(inputs: ProjectInputs, uv: UvSettings) -> None:
    """``[tool.uv]``'s resolver settings onto inputs read from requirements.txt."""
    inputs.constraints = [*inputs.constraints, *uv.constraints]
    inputs.overrides = list(uv.overrides)
    inputs.index_pins = dict(uv.index_pins)


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
    groups = table(groups_table, file, "[dependency-groups]")
    names: dict[str, str] = {}
    for raw in groups:
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
            match = NAME.match(req)
            if self.self_name and match and canonical_name(match.group(1)) == self.self_name:
                extras, self_marker = _self_reference(req[match.end() :])
                combined = and_markers(marker, self_marker)
                for extra in extras:
                    key = canonical_name(extra)
                    if key not in self.optional:
                        raise CpkError(
                            f"{self.file}: {req!r} in {where} names an extra the project "
                            "does not declare"
                        )
                    self.add_extra(key, out, combined)
                continue
            out.append(with_marker(req, marker))

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


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Declared:
    """Every requirement a ``pyproject.toml`` declares, by where it applies.

    What a universal lock is made from: the project's own dependencies
    (``base``), each extra's and each dependency group's requirements
    (expanded, self-references included), and the groups selected by
    default (``[tool.cpk] default-groups``, else ``[tool.uv]
    default-groups``, else ``dev`` when declared). A plain class, like
    :class:`~.models.Selection`: ``cpk run`` builds it before deciding
    whether any work is needed.
    """

    __slots__ = (
        "base",
        "conflicts",
        "default_groups",
        "environments",
        "extras",
        "groups",
        "required_environments",
    )

    def __init__(
        self,
        base: list[str],
        extras: dict[str, list[str]],
        groups: dict[str, list[str]],
        default_groups: tuple[str, ...],
        environments: tuple[str, ...] = (),
        required_environments: tuple[str, ...] = (),
        conflicts: tuple[tuple[tuple[str, str], ...], ...] = (),
    ) -> None:
        self.base = base
        self.extras = extras
        self.groups = groups
        self.default_groups = default_groups
        #: ``[tool.uv] environments``: the markers the lock is narrowed to.
        self.environments = environments
        #: ``required-environments``: markers every package needs a wheel for.
        self.required_environments = required_environments
        #: ``conflicts``: sets of ("extra"|"group", name) resolved apart.
        self.conflicts = conflicts


def declared_requirements(file: Path) -> Declared | None:
    """Each extra's and group's requirements of ``file``, apart; None when the
    file declares neither ``[project]`` nor ``[dependency-groups]`` (a
    requirements file beside it is then the declaration)."""
    file = file.absolute()
    data = read_toml(file)
    raw_project = data.get("project")
    groups_table = data.get("dependency-groups")
    if raw_project is None and groups_table is None:
        return None
    project = static_project(raw_project, file) if raw_project is not None else None
    optional = project.optional_dependencies if project is not None else {}
    self_name = canonical_name(project.name) if project is not None and project.name else None
    base: list[str] = []
    _Expander(file, self_name, optional).add(
        project.dependencies if project is not None else [], "[project].dependencies", base
    )
    extras: dict[str, list[str]] = {}
    for extra in sorted(optional):
        extras[extra] = []
        _Expander(file, self_name, optional).add_extra(extra, extras[extra])
    names = _group_names(groups_table, file)
    groups: dict[str, list[str]] = {}
    for group in sorted(names):
        groups[group] = []
        _Expander(file, self_name, optional).add_group(group, groups_table, names, groups[group])
    tool = table(data.get("tool"), file, "[tool]")
    uv = table(tool.get("uv"), file, "[tool.uv]")
    cpk = table(tool.get("cpk"), file, "[tool.cpk]")
    # git and URL sources ([tool.uv.sources]) rewrite the requirements on
    # their names, in every extra and group, as load_pyproject does.
    sourced = read_uv_table(tool.get("uv"), cpk, file, file.parent)
    base = sourced.apply(base)
    extras = {name: sourced.apply(reqs) for name, reqs in extras.items()}
    groups = {name: sourced.apply(reqs) for name, reqs in groups.items()}

    def setting(key: str) -> tuple[Any, str]:
        # [tool.cpk] wins where both speak.
        if key in cpk:
            return cpk[key], f"[tool.cpk].{key}"
        return uv.get(key), f"[tool.uv].{key}"

    configured, _ = setting("default-groups")
    if configured is None:
        defaults: tuple[str, ...] = ("dev",) if "dev" in names else ()
    elif configured == "all":
        defaults = tuple(sorted(names))
    elif isinstance(configured, list) and all(isinstance(g, str) for g in configured):
        defaults = _select(configured, names, file, "dependency group", "groups")
    else:
        raise CpkError(f'{file}: default-groups must be a list of group names or "all"')
    return Declared(
        _dedupe(base),
        {k: _dedupe(v) for k, v in extras.items()},
        {k: _dedupe(v) for k, v in groups.items()},
        defaults,
        _markers(*setting("environments"), file),
        _markers(*setting("required-environments"), file),
        _conflicts(*setting("conflicts"), file, set(extras), set(groups)),
    )


def _markers(value: Any, where: str, file: Path) -> tuple[str, ...]:
    """A list of PEP 508 markers (``environments``); one string is a list of one."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CpkError(f"{file}: {where} must be a list of markers")
    return tuple(value)


def _conflicts(
    value: Any, where: str, file: Path, extras: set[str], groups: set[str]
) -> tuple[tuple[tuple[str, str], ...], ...]:
    """uv's ``conflicts``: sets of extras/groups that may resolve apart."""
    if value is None:
        return ()
    shape = f'{file}: {where} must be a list of lists like [{{ extra = "a" }}, {{ extra = "b" }}]'
    if not isinstance(value, list):
        raise CpkError(shape)
    found = []
    for items in value:
        if not isinstance(items, list):
            raise CpkError(shape)
        one = []
        for item in items:
            if not isinstance(item, dict):
                raise CpkError(shape)
            kind = "extra" if "extra" in item else "group" if "group" in item else None
            if kind is None or not isinstance(item[kind], str):
                raise CpkError(shape)
            name = canonical_name(item[kind])
            if name not in (extras if kind == "extra" else groups):
                raise CpkError(f"{file}: {where} names {kind} {item[kind]!r}, not declared")
            one.append((kind, name))
        if len(one) > 1:
            found.append(tuple(one))
    return tuple(found)
