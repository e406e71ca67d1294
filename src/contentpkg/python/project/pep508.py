"""The few facts about PEP 508 requirement strings the hot path needs.

``packaging.requirements`` is the parser, and validation uses it; but
``cpk run`` decides whether its lock is fresh from requirement *strings*
without importing ``packaging`` (~17 ms, mostly ``packaging.tags``), so
the name at the start of a requirement and the split at its marker are
read here by hand. ``validate=False`` callers rely on this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from contentpkg.errors import InvalidInputError
from contentpkg.python.names import canonical_name

#: The project name a requirement starts with (PEP 508's ``identifier``).
NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(requirement: str) -> str:
    """The normalized project name a PEP 508 requirement string starts with."""
    match = NAME.match(requirement)
    return canonical_name(match.group(1) if match else requirement.strip())


def split_marker(req: str) -> tuple[str, str]:
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


def and_markers(first: str, second: str) -> str:
    """Both markers, either of which may be empty."""
    if first and second:
        return f"({first}) and ({second})"
    return first or second


def with_marker(req: str, marker: str) -> str:
    """``req`` applying only where ``marker`` holds too."""
    if not marker:
        return req
    base, own = split_marker(req)
    return f"{base} ; {and_markers(own, marker)}"


def validate_requirements(reqs: Iterable[str], file: Path, lineno: int | None = None) -> None:
    """Parse each requirement with ``packaging``; the first bad one is one error line."""
    from packaging.requirements import InvalidRequirement, Requirement

    where = f"{file}:{lineno}" if lineno else str(file)
    for req in reqs:
        try:
            Requirement(req)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            raise InvalidInputError(
                f"{where}: invalid requirement {req!r}: {reason}", path=str(file)
            ) from None


def validate_specifier(spec: str, file: Path, where: str) -> None:
    """Parse a version specifier (``requires-python``) with ``packaging``."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        raise InvalidInputError(
            f"{file}: {where} {spec!r} is not a version specifier", path=str(file)
        ) from None
