"""Finding a project and loading its inputs, whichever kind of file declares them.

Standard library only: ``cpk run`` finds its project on every cold start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from contentpkg.errors import CpkError, NotFoundError
from contentpkg.python.project.models import IndexSettings, ProjectInputs, Selection
from contentpkg.python.project.pyproject import (
    PYPROJECT,
    load_pyproject,
    load_setuptools_project,
)
from contentpkg.python.project.requirements import REQUIREMENTS_TXT, RequirementsReader

#: The files of a project declared for setuptools without ``pyproject.toml``.
SETUPTOOLS_FILES = ("setup.py", "setup.cfg")


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
        # A setup.py or setup.cfg alone declares a project too (setuptools'
        # legacy backend builds it), as pip and uv accept.
        if any((directory / n).is_file() for n in (PYPROJECT, *SETUPTOOLS_FILES)):
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
        elif any((path / n).is_file() for n in SETUPTOOLS_FILES):
            return load_setuptools_project(path.absolute(), _selection(
                extras, groups, all_extras, all_groups, no_default_groups
            ))  # fmt: skip
        elif (path / REQUIREMENTS_TXT).is_file():
            path = path / REQUIREMENTS_TXT
        else:
            raise NotFoundError(
                f"{path}: no {PYPROJECT} or {REQUIREMENTS_TXT} here", what=str(path)
            )
    elif not path.is_file():
        raise NotFoundError(f"{path}: no such project file", what=str(path))
    selection = _selection(extras, groups, all_extras, all_groups, no_default_groups)
    if path.name.endswith(".toml"):
        return load_pyproject(path, selection, validate)
    if selection.any:
        raise CpkError(f"{path}: a requirements file has no extras or dependency groups")
    reqs = RequirementsReader(validate)
    reqs.read(path.absolute(), None)
    return reqs.inputs(path.absolute().parent, path, IndexSettings(), {})


def _selection(
    extras: Iterable[str],
    groups: Iterable[str],
    all_extras: bool,
    all_groups: bool,
    no_default_groups: bool,
) -> Selection:
    return Selection(
        extras=tuple(extras),
        groups=tuple(groups),
        all_extras=all_extras,
        all_groups=all_groups,
        no_default_groups=no_default_groups,
    )
