"""Reading a project's TOML files, and checking the shape of their values.

Shared by every reader of ``pyproject.toml``, PEP 723 blocks and
``[tool.cpk]``, so a malformed file gets the same one-line error whichever
reader met it. Standard library only (``cpk run`` reads these before it
may load anything else).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError, InvalidInputError


def read_toml(path: Path, what: str = "") -> dict[str, Any]:
    """The parsed file; unreadable, non-UTF-8 or invalid TOML is one error line."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CpkError(f"{path}: cannot read {what or 'file'}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path}: not UTF-8 text", path=str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(f"{path}: invalid TOML: {error}", path=str(path)) from None


def table(value: Any, file: Path, where: str) -> dict[str, Any]:
    """A TOML table, empty when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{file}: {where} must be a table", path=str(file))
    return value


def strings(value: Any, file: Path, where: str, *, single_ok: bool = False) -> list[str]:
    """A list of strings, or (when ``single_ok``) one string standing for a list."""
    if value is None:
        return []
    if single_ok and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInputError(f"{file}: {where} must be a list of strings", path=str(file))
    return value
