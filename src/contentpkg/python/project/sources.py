"""Local sources: checkouts and files a requirement is served from in place.

``[tool.cpk.sources]`` entries, ``name @ file:...`` requirements and a
requirements file's local paths all name a :class:`Source`; the paths are
made absolute here, relative to the file that named them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.models import Source
from contentpkg.python.project.pep508 import NAME, split_marker


def local_source(
    name: str, raw_path: str, base: Path, editable: bool, where: str, check: bool
) -> Source:
    """The source ``[tool.cpk.sources]`` names, its path relative to ``base``."""
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
        source = url_source(req, base, where)
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


def url_source(req: str, base: Path, where: str) -> Source | None:
    """The source of one requirement if it is ``name[extras] @ file:...``.

    Parsed by hand rather than by ``packaging``, for the hot path.
    """
    match = NAME.match(req)
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
    url = split_marker(rest[1:].strip())[0].strip()
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


def find_links_location(link: str, base: Path) -> str:
    """A find-links entry as a URL or an absolute path."""
    if link.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return os.path.normpath(unquote(urlsplit(link).path))
    if "://" in link:
        return link
    return os.path.normpath(base / os.path.expanduser(link))


# --------------------------------------------------------------------------
