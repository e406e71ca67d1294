"""Direct references: requirements served by a git commit or an archive URL.

``name @ git+URL@REV`` and ``name @ https://.../x.tar.gz`` (or ``.whl``)
name exactly one candidate each. The resolver asks :class:`DirectSources`
for it: a git revision is resolved to a commit (the locked one when the
lock has it, so a moving branch changes nothing until an upgrade), an
archive is downloaded and hashed (checked against a ``#sha256=`` fragment
when the URL has one). The candidate is a :class:`DistFile` like an index's:

* an archive's is the archive itself, so the lock's ``archive`` table
  carries its hashes and installing it verifies them as for any download;
* a commit's is the source archive ``git archive`` makes of it, whose
  "sha256" is a key derived from the commit and subdirectory: the source
  hash under which the store finds the entry built from it. The commit
  fixes the bytes, so a key of the commit is as strong as a hash of them,
  and the store is reused without exporting or building anything again.

Metadata comes from the store's entry when one was built before, else from
the caller's builder (``prepare_metadata_for_build_wheel``, as for sdists).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.metadata import parse_email
from packaging.utils import NormalizedName

from contentpkg.context import Bucket
from contentpkg.errors import CpkError, HashMismatchError
from contentpkg.python.index.dists import DistFile
from contentpkg.python.index.vcs import (
    GitCache,
    GitRef,
    git_filename,
    is_git_url,
    parse_git_url,
    vcs_source_key,
)

#: (archive path, its DistFile) -> the METADATA bytes of what it builds.
MetadataOf = Callable[[Path, DistFile], bytes]

_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


@dataclass(frozen=True)
class DirectDist:
    """One direct reference, resolved: what the resolver and the lock need."""

    name: str
    version: str
    metadata: bytes
    file: DistFile
    #: The lock's PEP 751 table: ("vcs", {...}) or ("archive", {...}).
    table: tuple[str, dict[str, Any]]


class DirectSources:
    """The direct references of one resolution, resolved on first need.

    ``locked`` maps a name to the PEP 751 ``vcs`` table the existing lock
    holds for it (see :func:`locked_direct`): its commit is kept while the
    URL, the requested revision and the subdirectory stay the same; an
    archive locked at the same URL and already in the store is not
    downloaded again. ``store`` finds a commit's entry
    (no metadata build then); ``metadata_of`` builds metadata otherwise.
    """

    def __init__(
        self,
        *,
        client: Any,
        cache_dir: Path,
        offline: bool,
        metadata_of: MetadataOf,
        store: Any = None,
        locked: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self.cache_dir = Path(cache_dir)
        self.git = GitCache(self.cache_dir, offline=offline)
        self.metadata_of = metadata_of
        self.store = store
        self.locked = dict(locked or {})
        self.names: dict[NormalizedName, str] = {}
        self._done: dict[NormalizedName, DirectDist] = {}

    @staticmethod
    def accepts(url: str) -> bool:
        """Whether url is a git or archive reference (a directory is not)."""
        if is_git_url(url):
            return True
        path = urlsplit(url).path.lower()
        if url.startswith("file:"):
            return path.endswith(_ARCHIVES) and os.path.isfile(unquote(urlsplit(url).path))
        return url.startswith(("https://", "http://")) and path.endswith(_ARCHIVES)

    def add(self, name: NormalizedName, url: str) -> None:
        known = self.names.get(name)
        if known is not None and known != url:
            raise CpkError(f"{name} is required from two places: {known} and {url}")
        self.names[name] = url

    def dist(self, name: NormalizedName) -> DirectDist:
        found = self._done.get(name)
        if found is None:
            url = self.names[name]
            found = self._git(name, url) if is_git_url(url) else self._archive(name, url)
            self._done[name] = found
        return found

    # -- git -----------------------------------------------------------------

    def _git(self, name: NormalizedName, url: str) -> DirectDist:
        ref = parse_git_url(url)
        commit = self.git.commit(ref, self._locked_commit(name, ref))
        key = vcs_source_key(commit, ref.subdirectory)
        file = DistFile(git_filename(name, commit), ref.url(commit), {"sha256": key})
        metadata = self._stored_metadata(key)
        if metadata is None:
            metadata = self.metadata_of(self.git.archive(ref, commit, name), file)
        table: dict[str, Any] = {"type": "git", "url": ref.repo}
        if ref.rev:
            table["requested-revision"] = ref.rev
        table["commit-id"] = commit
        if ref.subdirectory:
            table["subdirectory"] = ref.subdirectory
        return DirectDist(name, _version(metadata, name, url), metadata, file, ("vcs", table))

    def _locked_commit(self, name: NormalizedName, ref: GitRef) -> str | None:
        table = self.locked.get(name)
        if not table or table.get("url") != ref.repo:
            return None
        if table.get("requested-revision") != ref.rev:
            return None
        if table.get("subdirectory") != ref.subdirectory:
            return None
        commit = table.get("commit-id")
        return commit if isinstance(commit, str) else None

    def _stored_metadata(self, key: str) -> bytes | None:
        """METADATA of the entry built from this source before, if any."""
        if self.store is None:
            return None
        entry = self.store.find_source(f"sha256:{key}")
        if entry is None:
            return None
        # A wheel's entry keeps its .dist-info in site-packages/ (install/wheel.py).
        for meta in sorted(Path(entry.path).glob("site-packages/*.dist-info/METADATA")):
            return meta.read_bytes()
        return None

    # -- archives ------------------------------------------------------------

    def _archive(self, name: NormalizedName, url: str) -> DirectDist:
        plain, _, fragment = url.partition("#")
        wanted = None
        for item in fragment.split("&"):
            algo, _, value = item.partition("=")
            if algo == "sha256" and value:
                wanted = value.lower()
            elif algo == "subdirectory" and value:
                raise CpkError(f"{url}: a subdirectory of an archive is not supported by cpk")
        filename = unquote(urlsplit(plain).path.rsplit("/", 1)[-1])
        known = self.locked.get(name) or {}
        sha = (known.get("hashes") or {}).get("sha256")
        if known.get("url") == plain and sha and wanted in (None, sha):
            # Locked, and built or unpacked before: nothing to download.
            stored = self._stored_metadata(sha)
            if stored is not None:
                file = DistFile(filename, plain, {"sha256": sha}, size=known.get("size"))
                table = {"url": plain, "size": file.size, "hashes": {"sha256": sha}}
                if file.size is None:
                    del table["size"]
                version = _version(stored, name, url)
                return DirectDist(name, version, stored, file, ("archive", table))
        slot = hashlib.sha256(plain.encode()).hexdigest()[:20]
        dest = self.cache_dir / Bucket.DIRECT_ARCHIVES.value / slot / filename
        got = self.client.http.download(plain, dest, sha256=None)
        if wanted is not None and got != wanted:
            dest.unlink(missing_ok=True)
            from contentpkg.python.index.http import redact

            raise HashMismatchError(
                subject=filename,
                expected=wanted,
                actual=got,
                expected_from="the URL's #sha256",
                origin=redact(plain),
            )
        file = DistFile(filename, plain, {"sha256": got}, size=dest.stat().st_size)
        metadata = self._stored_metadata(got)
        try:
            if metadata is None:
                metadata = self.metadata_of(dest, file)
        finally:
            # Read for its hash and metadata only: installing downloads it
            # through the index client, which checks the locked hash again.
            dest.unlink(missing_ok=True)
        table = {"url": plain, "size": file.size, "hashes": {"sha256": got}}
        return DirectDist(name, _version(metadata, name, url), metadata, file, ("archive", table))


def _version(metadata: bytes, name: str, url: str) -> str:
    raw, _ = parse_email(metadata)
    version = raw.get("version")
    from packaging.utils import canonicalize_name

    if canonicalize_name(str(raw.get("name", ""))) != name:
        raise CpkError(f"{url}: it builds project {raw.get('name')!r}, not {name!r}")
    if not version:
        raise CpkError(f"{url}: its metadata has no version")
    return str(version)


def locked_direct(
    lock: Any, skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """The direct references of a read lock, by name: its ``vcs`` tables
    (what keeps a commit) and its archives as ``{url, hashes, size}`` (what
    spares downloading an archive again to hash it)."""
    found: dict[str, dict[str, Any]] = {}
    for package in getattr(lock, "packages", ()):
        if package.name in skip:
            continue
        table = getattr(package, "vcs", None)
        file = package.file
        if table:
            found[package.name] = table
        elif file is not None and not package.wheels and package.sdist is None:
            # Neither wheels nor sdist, yet a file: an archive table's.
            found[package.name] = {"url": file.url, "hashes": file.hashes, "size": file.size}
    return found


def git_archive(file: DistFile, name: str, cache_dir: Path, *, offline: bool) -> Path:
    """The source archive of a locked commit (``file`` as the lock reads
    it): from the mirror, fetched first only if the commit is not there."""
    ref = parse_git_url(file.url)
    cache = GitCache(cache_dir, offline=offline)
    commit = cache.commit(ref, locked=ref.rev)
    return cache.archive(ref, commit, name)
