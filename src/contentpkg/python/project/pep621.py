"""The one reader of a ``pyproject.toml``'s static ``[project]`` table (PEP 621).

The project's own inputs, the resolver (a local checkout standing for a
project) and the overlay (the editable project's ``.dist-info``) all read
``[project]`` through :func:`static_project`, so they agree on what a table
says, on its errors, and on what a dynamic version is called. Policy stays
with the callers: the project refuses dynamic dependencies in its own words,
the resolver in a checkout's. Standard library only: it runs on ``cpk run``'s
path, where ``packaging`` is not loaded (callers parse versions and
requirements with it when they need to).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentpkg.errors import InvalidInputError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.tomlfile import read_toml, strings, table

#: What a checkout whose ``[project].version`` is dynamic is called in pins,
#: messages and its editable ``.dist-info``: knowing the real version needs a
#: build, and the checkout is what gets imported whatever it says.
DYNAMIC_VERSION = "0+dynamic"


@dataclass(frozen=True)
class StaticProject:
    """What a ``[project]`` table says, its shapes checked.

    ``name`` is None when the table names no project (callers say why that
    matters to them). ``version`` is as written, None when absent.
    ``optional_dependencies`` is keyed by normalized extra name, in
    declaration order; ``extra_names`` maps those keys back to the names as
    written, for messages.
    """

    file: Path
    name: str | None
    version: str | None
    dynamic: tuple[str, ...]
    requires_python: str | None
    dependencies: list[str]
    optional_dependencies: dict[str, list[str]]
    extra_names: dict[str, str]
    scripts: dict[str, Any]
    gui_scripts: dict[str, Any]
    entry_points: dict[str, dict[str, Any]]

    @property
    def version_known(self) -> bool:
        """Whether the version is written out rather than left to the backend."""
        return self.version is not None and "version" not in self.dynamic

    @property
    def shown_version(self) -> str:
        """The version, or :data:`DYNAMIC_VERSION` when it is not known statically."""
        if self.version is None or "version" in self.dynamic:
            return DYNAMIC_VERSION
        return self.version


def static_project(project: Any, file: Path) -> StaticProject:
    """Check and read a ``[project]`` table taken from ``file``."""
    path = str(file)
    if not isinstance(project, dict):
        raise InvalidInputError(f"{file}: [project] must be a table", path=path)
    name = project.get("name")
    version = project.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidInputError(f"{file}: [project].version must be a string", path=path)
    requires_python = project.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise InvalidInputError(f"{file}: [project].requires-python must be a string", path=path)
    dynamic = strings(project.get("dynamic"), file, "[project].dynamic")
    dependencies = strings(project.get("dependencies"), file, "[project].dependencies")
    optional: dict[str, list[str]] = {}
    extra_names: dict[str, str] = {}
    raw_optional = table(
        project.get("optional-dependencies"), file, "[project.optional-dependencies]"
    )
    for extra, reqs in raw_optional.items():
        key = canonical_name(extra)
        if key in optional:
            raise InvalidInputError(f"{file}: extra {extra!r} is declared twice", path=path)
        optional[key] = strings(reqs, file, f"[project.optional-dependencies].{extra}")
        extra_names[key] = extra
    entry_points = table(project.get("entry-points"), file, "[project.entry-points]")
    return StaticProject(
        file=file,
        name=name if isinstance(name, str) and name else None,
        version=version,
        dynamic=tuple(dynamic),
        requires_python=requires_python,
        dependencies=dependencies,
        optional_dependencies=optional,
        extra_names=extra_names,
        scripts=table(project.get("scripts"), file, "[project.scripts]"),
        gui_scripts=table(project.get("gui-scripts"), file, "[project.gui-scripts]"),
        entry_points={k: v for k, v in entry_points.items() if isinstance(v, dict)},
    )


def read_static_project(pyproject: Path) -> tuple[dict[str, Any], StaticProject | None]:
    """The whole file and its ``[project]`` (None when the file has no such table)."""
    data = read_toml(pyproject)
    project = data.get("project")
    return data, (static_project(project, pyproject) if project is not None else None)
