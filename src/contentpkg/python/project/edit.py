"""Editing a ``pyproject.toml`` in place for ``cpk add`` and ``cpk remove``.

The file is the user's: comments, key order, quoting and line layout must
survive an edit, which a parse-and-dump through ``tomllib`` would lose.
``tomlkit`` keeps all of it, so the edit changes only the array it touches.
Functions here take and return the file's text; writing it (and undoing
the edit when the lock fails) is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError
from contentpkg.python.names import canonical_name


@dataclass(frozen=True)
class Where:
    """Which list of requirements an edit applies to."""

    #: A PEP 735 dependency group (``--group G``; ``--dev`` is ``dev``).
    group: str | None = None
    #: An extra: ``[project.optional-dependencies]`` (``--optional E``).
    optional: str | None = None

    def describe(self) -> str:
        if self.group:
            return f"[dependency-groups].{self.group}"
        if self.optional:
            return f"[project.optional-dependencies].{self.optional}"
        return "[project].dependencies"


def _requirement_name(text: str, file: Path) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canonical_name(Requirement(text).name)
    except InvalidRequirement as exc:
        # packaging's message ends with a caret drawing: its first line only.
        reason = str(exc).splitlines()[0]
        raise CpkError(f"{text!r}: not a valid requirement ({reason})") from None


def _parse(text: str, file: Path) -> Any:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise CpkError(f"{file}: not valid TOML ({exc})") from None


def _project(doc: Any, file: Path) -> Any:
    project = doc.get("project")
    if project is None:
        raise CpkError(f"{file}: no [project] table to edit (run 'cpk init' to make one)")
    return project


def _array(container: Any, key: str, file: Path, label: str, create: bool) -> Any:
    """The array at container[key], made (one item a line) when missing and create."""
    import tomlkit

    value = container.get(key)
    if value is None:
        if not create:
            return None
        value = tomlkit.array()
        value.multiline(True)
        container[key] = value
        return container[key]
    if not isinstance(value, list):
        raise CpkError(f"{file}: {label} is not an array")
    return value


def _target(doc: Any, where: Where, file: Path, create: bool) -> Any:
    import tomlkit

    if where.group:
        groups = doc.get("dependency-groups")
        if groups is None:
            if not create:
                return None
            doc["dependency-groups"] = tomlkit.table()
            groups = doc["dependency-groups"]
        return _array(groups, where.group, file, where.describe(), create)
    project = _project(doc, file)
    if where.optional:
        extras = project.get("optional-dependencies")
        if extras is None:
            if not create:
                return None
            project["optional-dependencies"] = tomlkit.table()
            extras = project["optional-dependencies"]
        return _array(extras, where.optional, file, where.describe(), create)
    if "dependencies" in project.get("dynamic", []):
        raise CpkError(f"{file}: [project].dependencies is dynamic; edit its source instead")
    return _array(project, "dependencies", file, where.describe(), create)


def _index_of(array: Any, name: str, file: Path) -> int | None:
    for i, item in enumerate(array):
        if isinstance(item, str) and _requirement_name(str(item), file) == name:
            return i
    return None


def add_requirements(
    text: str,
    requirements: list[str],
    file: Path,
    where: Where = Where(),
    editable: dict[str, str] | None = None,
) -> str:
    """The file's text with each requirement added to where's list.

    A requirement naming a package already listed replaces that line (as
    ``uv add`` does), keeping its place and its comment. ``editable`` maps
    a package name to a checkout path, written to ``[tool.cpk.sources]``.
    """
    import tomlkit

    doc = _parse(text, file)
    array = _target(doc, where, file, create=True)
    if len(array) == 0:
        # An empty list (``dependencies = []``, as cpk init writes it)
        # grows one requirement a line, so later edits diff line by line.
        array.multiline(True)
    for requirement in requirements:
        name = _requirement_name(requirement, file)
        found = _index_of(array, name, file)
        if found is None:
            array.append(requirement)
        else:
            array[found] = requirement
    for name, path in (editable or {}).items():
        tool = doc.setdefault("tool", tomlkit.table(is_super_table=True))
        cpk = tool.setdefault("cpk", tomlkit.table(is_super_table=True))
        sources = cpk.setdefault("sources", tomlkit.table())
        source = tomlkit.inline_table()
        source.update({"path": path, "editable": True})
        sources[name] = source
    return tomlkit.dumps(doc)


def remove_requirements(text: str, names: list[str], file: Path, where: Where = Where()) -> str:
    """The file's text without the named packages in where's list; naming
    one that is not there is an error (nothing is half-removed)."""
    import tomlkit

    doc = _parse(text, file)
    array = _target(doc, where, file, create=False)
    for raw in names:
        name = canonical_name(raw)
        found = _index_of(array, name, file) if array is not None else None
        if found is None:
            raise CpkError(f"{raw}: not in {where.describe()} of {file}")
        del array[found]
    return tomlkit.dumps(doc)


def project_name_at(path: Path) -> str:
    """The ``[project].name`` of the checkout at path (for ``--editable``)."""
    import tomllib

    pyproject = path / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CpkError(f"{path}: no pyproject.toml (an editable checkout needs one)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CpkError(f"{pyproject}: not valid TOML ({exc})") from None
    name = data.get("project", {}).get("name")
    if not isinstance(name, str) or not name:
        raise CpkError(f"{pyproject}: no [project].name")
    return name
