"""``Packages`` indexes: fetched as the verified Release lists them, read fast.

An index is cached under its own sha256 (the Release's), so revalidating
it costs nothing: a Release that still names the same hash names a file
already here, verified when it was written. ``.xz`` is preferred, then
``.gz``, then the plain file; by-hash URLs are used when the Release says
``Acquire-By-Hash: yes`` (a mirror updating in the middle of a run then
still serves the file this Release names).

The reader is written by hand rather than with ``debian.deb822.Packages``:
a full Debian ``main`` index is ~64,000 stanzas, which deb822 takes
seconds to parse, while resolution needs a handful of fields of each.
What it reads is kept (``marshal``) next to the index, by the same hash.
"""

from __future__ import annotations

import hashlib
import marshal
from dataclasses import dataclass
from pathlib import Path

from contentpkg.elf.archive import http
from contentpkg.elf.archive.release import ArchiveTrustError, IndexFile, Release
from contentpkg.errors import CpkError, HashMismatchError
from contentpkg.fs import write_cache

#: Fields resolution and fetching need; the rest of each stanza is skipped.
FIELDS = (
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Section",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Filename",
    "Size",
    "SHA256",
)
_WANTED = frozenset(FIELDS)
_PARSED_FORMAT = 1


@dataclass(frozen=True)
class Index:
    """The stanzas of one Packages index and where its files are fetched from."""

    base_url: str  # the source's URI: Filename is relative to it
    stanzas: list[dict[str, str]]
    label: str


def _candidates(release: Release, component: str, arch: str) -> list[tuple[IndexFile, str]]:
    prefix = f"{component}/binary-{arch}/Packages"
    out = []
    for suffix in (".xz", ".gz", ""):
        found = release.files.get(prefix + suffix)
        if found is not None:
            out.append((found, suffix))
    return out


def load_index(release: Release, component: str, arch: str, cache: Path) -> Index | None:
    """One component's index for arch, verified against the Release; None if it lists none."""
    choices = _candidates(release, component, arch)
    if not choices:
        return None
    wanted, suffix = choices[0]
    base = release.source.dist_url
    label = f"{base}{wanted.path}"
    parsed_path = cache / "indexes" / f"{wanted.sha256}.parsed"
    try:
        stanzas = marshal.loads(parsed_path.read_bytes())
        if stanzas and stanzas[0] == _PARSED_FORMAT:
            return Index(release.source.uri, stanzas[1], label)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    raw_path = cache / "indexes" / wanted.sha256
    try:
        raw = raw_path.read_bytes()
    except OSError:
        raw = b""
    if hashlib.sha256(raw).hexdigest() != wanted.sha256:
        url = label
        if release.by_hash:
            directory = wanted.path.rsplit("/", 1)[0]
            url = f"{base}{directory}/by-hash/SHA256/{wanted.sha256}"
        raw = http.get(url).body
        actual = hashlib.sha256(raw).hexdigest()
        if actual != wanted.sha256:
            raise HashMismatchError(
                subject=url,
                expected=wanted.sha256,
                actual=actual,
                expected_from="the signed Release",
                hint="refusing the index",
            )
        if len(raw) != wanted.size:
            raise ArchiveTrustError(
                f"{url}: {len(raw)} bytes, but the signed Release says {wanted.size};"
                " refusing the index"
            )
        write_cache(raw_path, raw)
    text = _decompress(raw, suffix, label)
    stanzas = parse_packages(text)
    write_cache(parsed_path, marshal.dumps([_PARSED_FORMAT, stanzas]))
    return Index(release.source.uri, stanzas, label)


def _decompress(raw: bytes, suffix: str, label: str) -> str:
    try:
        if suffix == ".xz":
            import lzma

            raw = lzma.decompress(raw)
        elif suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise CpkError(f"{label}: cannot decompress: {exc}") from None
    return raw.decode("utf-8", errors="replace")


def parse_packages(text: str) -> list[dict[str, str]]:
    """The wanted fields of every stanza (continuation lines are skipped:
    none of the wanted fields is folded in Debian's indexes)."""
    out: list[dict[str, str]] = []
    wanted = _WANTED
    for block in text.split("\n\n"):
        stanza: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line[0] in " \t":
                continue
            key, sep, value = line.partition(":")
            if sep and key in wanted:
                stanza[key] = value.strip()
        if "Package" in stanza and "Version" in stanza:
            out.append(stanza)
    return out
