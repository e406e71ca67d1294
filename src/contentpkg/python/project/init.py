"""``cpk init``: a new project's ``pyproject.toml``, as ``uv init`` makes one.

An application (the default) is a ``pyproject.toml`` and a ``main.py``,
not packaged; a library (``--lib``) gets a build backend and a ``src/``
package, so it is installable and importable by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.fs import write_atomic

_GITIGNORE_LINE = ".venv"


@dataclass
class Created:
    """What ``cpk init`` made."""

    root: Path
    name: str
    kind: str
    files: list[Path] = field(default_factory=list)


def _name_of(root: Path, given: str | None) -> str:
    name = given or root.name
    # PEP 508 names: letters, digits, and . _ - inside.
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        raise CpkError(f"{name!r}: not a valid project name (use --name)")
    return name


def init_project(
    root: Path, python_version: str, *, name: str | None = None, lib: bool = False
) -> Created:
    """Make a project in root (created if missing); refuse to overwrite one.

    ``python_version`` (``3.12``) becomes ``requires-python = ">=3.12"``.
    """
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        raise CpkError(f"{pyproject}: a project is already here")
    name = _name_of(root, name)
    module = re.sub(r"[-.]+", "_", name).lower()
    root.mkdir(parents=True, exist_ok=True)
    created = Created(root, name, "library" if lib else "application")
    text = (
        "[project]\n"
        f'name = "{name}"\n'
        'version = "0.1.0"\n'
        'description = ""\n'
        f'requires-python = ">={python_version}"\n'
        "dependencies = []\n"
    )
    if lib:
        text += '\n[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        package = root / "src" / module / "__init__.py"
        if not package.exists():
            package.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(
                package, f'def hello() -> str:\n    return "Hello from {name}!"\n'.encode()
            )
            created.files.append(package)
    else:
        main = root / "main.py"
        if not main.exists():
            write_atomic(
                main,
                f'def main() -> None:\n    print("Hello from {name}!")\n\n\n'
                'if __name__ == "__main__":\n    main()\n'.encode(),
            )
            created.files.append(main)
    write_atomic(pyproject, text.encode())
    created.files.insert(0, pyproject)
    gitignore = root / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if _GITIGNORE_LINE not in lines and _GITIGNORE_LINE + "/" not in lines:
        write_atomic(gitignore, "".join(f"{line}\n" for line in [*lines, _GITIGNORE_LINE]).encode())
        created.files.append(gitignore)
    return created
