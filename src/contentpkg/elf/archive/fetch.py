"""From names to store entries: indexes, resolution, parallel verified downloads.

Downloads run in threads (they wait on the network) into the cache bucket
``debian`` under each file's sha256, checked against the index while they
stream; a file whose sha256 differs is removed and refused. Adding to the
store then runs in processes (:func:`contentpkg.elf.package.add_packages`).
A package whose ``.deb`` the store already holds (found by its source
sha256, the index's ``SHA256``) is neither downloaded nor added again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from contentpkg.context import Bucket, Context
from contentpkg.elf.archive import http
from contentpkg.elf.archive.indexes import load_index
from contentpkg.elf.archive.release import ArchiveTrustError, fetch_release
from contentpkg.elf.archive.resolve import Package, Resolution, Universe, resolve
from contentpkg.elf.archive.sources import Source, host_architecture, read_sources
from contentpkg.errors import CpkError, HashMismatchError, NotFoundError
from contentpkg.fs import writing_atomic
from contentpkg.progress import QUIET, Reporter

if TYPE_CHECKING:
    from contentpkg.store.layers import Store

_DOWNLOADS = 6
_ATTEMPTS = 3


@dataclass
class FetchResult:
    """What a fetch did: the resolution, what it downloaded, what it added."""

    resolution: Resolution
    downloaded: list[Package] = field(default_factory=list)
    stored: list[Package] = field(default_factory=list)  # already in the store
    added: list[str] = field(default_factory=list)  # entry dirnames
    notes: list[str] = field(default_factory=list)


def sources_of(ctx: Context) -> list[Source]:
    """The apt sources the context names (``CPK_APT_SOURCES``), else the machine's."""
    paths = [Path(p) for p in ctx.apt_sources] if ctx.apt_sources else None
    sources = read_sources(paths)
    if not sources:
        raise NotFoundError(
            "no Debian archive source: apt's sources list none (or set CPK_APT_SOURCES)",
            what="apt sources",
        )
    return sources


def universe(ctx: Context, arch: str | None = None) -> Universe:
    """Every package the sources' verified indexes list for arch."""
    arch = arch or host_architecture()
    cache = ctx.bucket(Bucket.DEBIAN)
    packages: list[Package] = []
    for source in sources_of(ctx):
        if source.architectures and arch not in source.architectures:
            continue
        release = fetch_release(source, cache)
        components = source.components or ("",)
        for component in components:
            index = load_index(release, component, arch, cache)
            if index is None:
                continue
            packages += [Package(s, index.base_url) for s in index.stanzas]
    return Universe(packages, arch)


def resolve_names(ctx: Context, names: Sequence[str], *, recommends: bool = False) -> Resolution:
    """Resolve names against the archive (indexes fetched or revalidated first)."""
    return resolve(universe(ctx), names, recommends=recommends)


def fetch_debs(
    ctx: Context,
    store: Store,
    names: Sequence[str],
    *,
    recommends: bool = False,
    reporter: Reporter = QUIET,
    jobs: int | None = None,
) -> FetchResult:
    """Resolve names and put every package the store lacks into it."""
    from contentpkg.elf.package import add_packages

    result = FetchResult(resolve_names(ctx, names, recommends=recommends))
    result.notes += result.resolution.notes
    wanted: list[Package] = []
    for p in result.resolution.packages:
        if not p.sha256:
            raise ArchiveTrustError(f"{p.url}: the index gives no SHA256; refusing it")
        if store.find_source(f"sha256:{p.sha256}") is not None:
            result.stored.append(p)
        else:
            wanted.append(p)
    if not wanted:
        return result
    cache = ctx.bucket(Bucket.DEBIAN) / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    paths = download(wanted, cache, reporter, result)
    added = add_packages(ctx, paths, jobs=jobs)
    failed = [a for a in added if a.error]
    if failed:
        raise CpkError(failed[0].error or "", [a.error or "" for a in failed[1:]])
    for a in added:
        assert a.result is not None
        result.added.append(a.result.entry.dirname)
        result.notes += a.notes
    return result


def download(
    packages: Sequence[Package], cache: Path, reporter: Reporter, result: FetchResult
) -> list[Path]:
    """Each package's .deb in cache (by sha256), downloaded in parallel where missing."""

    def one(p: Package) -> Path:
        path = cache / f"{p.sha256}.deb"
        if path.is_file() and _sha256(path) == p.sha256:
            return path
        task = reporter.task(f"{p.name} {p.version}", p.size or None)
        digest = hashlib.sha256()

        def progress(n: int) -> None:
            task.advance(n)

        try:
            with writing_atomic(path, durable=False) as out:
                for attempt in range(_ATTEMPTS):
                    try:
                        http.stream(p.url, _Hashing(out, digest), progress)
                        break
                    except http.TransientError:
                        # A reset connection or a 5xx from a busy mirror: start over.
                        if attempt + 1 == _ATTEMPTS:
                            raise
                        out.seek(0)
                        out.truncate()
                        digest = hashlib.sha256()
                actual = digest.hexdigest()
                if actual != p.sha256:
                    # Raised inside the block: the partial file goes, nothing is cached.
                    raise HashMismatchError(
                        subject=p.url, expected=p.sha256, actual=actual, expected_from="the index"
                    )
        finally:
            task.done()
        result.downloaded.append(p)
        return path

    with ThreadPoolExecutor(min(_DOWNLOADS, len(packages))) as pool:
        return list(pool.map(one, packages))


class _Hashing:
    """A file that hashes what is written to it (one pass over the download)."""

    def __init__(self, out: BinaryIO, digest: hashlib._Hash) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._out.write(data)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
