"""The fingerprint of a project's inputs: what decides whether a lock is fresh.

Standard library only: ``cpk run`` compares it with the lock's on every
cold start, before anything heavy may be loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from contentpkg.context import IndexEnvironment
from contentpkg.python.names import canonical_name
from contentpkg.python.project.models import ProjectInputs
from contentpkg.python.project.pep508 import NAME, split_marker

# Bumped whenever the canonical serialisation below changes, so that every
# lock written by an older cpk reads as stale rather than as wrongly fresh.
_FINGERPRINT_FORMAT = "cpk-inputs-1"


def inputs_fingerprint(
    inputs: ProjectInputs,
    *,
    python_version: str,
    index_settings: tuple[Sequence[str], Sequence[str]] | None = None,
    markers: Mapping[str, str] | None = None,
    index_env: IndexEnvironment | None = None,
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
    ``(indexes, find_links)`` pair :func:`.settings.index_settings` returns.
    None means that function's answer without command-line options (the
    environment's settings, else the project's, else PyPI), which is what
    ``cpk run`` checks a lock against; ``index_env`` (``ctx.index``) is the
    environment's part of it.
    """
    import hashlib
    import json

    root = inputs.root
    if index_settings is None:
        from contentpkg.python.project.settings import index_settings as settings_of

        index_settings = settings_of(
            None, None, inputs.index_table, project_dir=root, index_env=index_env
        )
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
    # Only when set, so the fingerprints of locks that have none stay as
    # they were written.
    if inputs.constraints:
        document["constraints"] = sorted({canonical_requirement(r) for r in inputs.constraints})
    if inputs.overrides:
        document["overrides"] = sorted({canonical_requirement(r) for r in inputs.overrides})
    if inputs.index_pins:
        document["index-pins"] = {
            name: _canonical_place(url, root) for name, url in sorted(inputs.index_pins.items())
        }
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def canonical_requirement(req: str) -> str:
    """A whitespace- and order-insensitive key for a PEP 508 string (see
    :func:`inputs_fingerprint`); not meant to be parsed back."""
    match = NAME.match(req)
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
        url, marker = split_marker(rest[1:].strip())
        return f"{name}{extras}@{url.strip()}" + (f";{_squeeze(marker)}" if marker else "")
    spec, marker = split_marker(rest)
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
    """A URL without its trailing slash and its credentials; a local place
    relative to the root. Credentials choose nothing that is resolved, so a
    rotated token, or a CI token beside a developer's, keeps the lock fresh."""
    place = place.strip()
    if place.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        place = unquote(urlsplit(place).path)
    elif "://" in place:
        scheme, _, rest = place.partition("://")
        netloc, slash, path = rest.partition("/")
        return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}".rstrip("/")
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
