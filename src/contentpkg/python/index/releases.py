"""A project's files grouped by release, each release's files made on first use.

A resolver looks at a handful of a project's releases, while a big project's
page lists thousands of files (pydantic-core's ~15,000, botocore's ~5,000).
Building a :class:`DistFile` and parsing the wheel tags of every one of them
cost more than fetching the page, on every lock. So a page is read into
groups keyed by the version its file names give (a string split, no
parsing), and a group's files are parsed, checked and made only when that
release is asked for. A page read before is kept in this grouped form with
each group still serialized (see :meth:`ProjectFiles.dumps`), so loading
it does no work per file at all.

Nothing is skipped that the full parse would keep, or kept that it would
skip: a release's files go through :func:`parse_filename` when it is made,
and a file whose name does not parse is dropped then, as before.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from contentpkg.python.index.dists import DistFile
from contentpkg.python.index.filenames import parse_filename, split_filename

#: One file as kept in a group: its position on the page (so the flat list
#: keeps the page's order), then DistFile's fields but ``index``; or, for a
#: PEP 691 page, its position and the page's own entry for it, made into a
#: DistFile only when its release is asked for.
Row = tuple[int, str, str, dict[str, str], str | None, str | None, dict[str, str] | None,
            int | None, str | None]  # fmt: skip


@lru_cache(maxsize=4096)
def canonical_part(text: str) -> NormalizedName:
    # A page repeats a handful of spellings of its project's name.
    return canonicalize_name(text)


@lru_cache(maxsize=1 << 14)
def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def group_rows(rows: Iterable[Row], project: NormalizedName) -> dict[str, list[Row]]:
    """Rows of project's own files, by the version text of their names."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        split = split_filename(row[1])
        if split is None or canonical_part(split[0]) != project:
            continue
        groups.setdefault(split[1], []).append(row)
    return groups


def to_row(position: int, f: DistFile) -> Row:
    return (position, f.filename, f.url, f.hashes, f.requires_python, f.yanked,
            f.core_metadata, f.size, f.upload_time)  # fmt: skip


class ProjectFiles:
    """A project's files, grouped by the version their names give.

    ``groups`` maps a version text to its rows, or to those rows serialized
    (bytes, as :meth:`dumps` keeps them): either is turned into DistFiles on
    first use. ``finish`` is applied to each DistFile made (the client fills
    in the sha256 of local files there). Safe to use from several threads:
    a group made twice at once is made the same way twice.
    """

    def __init__(
        self,
        groups: dict[str, list[Row] | bytes],
        index: str,
        finish: Callable[[DistFile], DistFile] | None = None,
        make_raw: Callable[[dict[str, Any]], DistFile | None] | None = None,
    ) -> None:
        self._groups = groups
        self._index = index
        self._finish = finish
        self._make_raw = make_raw
        self._made: dict[str, list[tuple[int, DistFile]]] = {}
        self._versions: dict[Version, tuple[str, ...]] | None = None
        self._by_version: dict[Version, list[DistFile]] = {}

    @classmethod
    def of(
        cls,
        files: Iterable[DistFile],
        project: NormalizedName,
        index: str,
        finish: Callable[[DistFile], DistFile] | None = None,
    ) -> ProjectFiles:
        """Files already made (a find-links location, a local directory), grouped."""
        return cls(
            group_rows((to_row(i, f) for i, f in enumerate(files)), project),  # type: ignore[arg-type]
            index,
            finish,
        )

    # -- the serialized form ----------------------------------------------

    def dumps(self) -> bytes:
        """The groups with each group serialized on its own, for the page cache."""
        return marshal.dumps(
            {v: g if isinstance(g, bytes) else marshal.dumps(g) for v, g in self._groups.items()}
        )

    @classmethod
    def loads(
        cls,
        data: bytes,
        index: str,
        finish: Callable[[DistFile], DistFile] | None = None,
        make_raw: Callable[[dict[str, Any]], DistFile | None] | None = None,
    ) -> ProjectFiles:
        groups = marshal.loads(data)
        if not isinstance(groups, dict):
            raise ValueError("not a grouped page")
        return cls(groups, index, finish, make_raw)

    # -- what callers ask -------------------------------------------------

    def _group(self, text: str) -> list[tuple[int, DistFile]]:
        """One group's files that parse, with their page positions, made once."""
        made = self._made.get(text)
        if made is None:
            rows = self._groups[text]
            if isinstance(rows, bytes):
                rows = marshal.loads(rows)
            index, finish = self._index, self._finish
            made = []
            for row in rows:
                if len(row) == 2:
                    # A PEP 691 entry as the page gave it: made the long way,
                    # now that its release is asked for.
                    f = self._make_raw(row[1]) if self._make_raw is not None else None
                    if f is None or parse_filename(f.filename) is None:
                        continue
                elif parse_filename(row[1]) is None:
                    continue  # what the full parse skips (invalid tags or version)
                else:
                    f = DistFile(*row[1:], index=index)
                made.append((row[0], finish(f) if finish is not None else f))
            self._made[text] = made
        return made

    def versions(self) -> dict[Version, tuple[str, ...]]:
        """Every valid version listed, with the version texts that spell it
        (``1.0`` and ``1.0.0`` are one version)."""
        found = self._versions
        if found is None:
            found = {}
            for text in self._groups:
                version = _version(text)
                if version is not None:
                    found[version] = (*found.get(version, ()), text)
            self._versions = found
        return found

    def release(self, version: Version) -> list[DistFile]:
        """The files of one version whose names parse, in page order."""
        found = self._by_version.get(version)
        if found is None:
            texts = self.versions().get(version, ())
            made = [pair for text in texts for pair in self._group(text)]
            if len(texts) > 1:
                made.sort(key=lambda pair: pair[0])
            found = self._by_version[version] = [f for _, f in made]
        return found

    def all(self) -> list[DistFile]:
        """Every file whose name parses, in page order (all of them made:
        for callers that list, not for the resolver)."""
        made = [pair for text in self._groups for pair in self._group(text)]
        made.sort(key=lambda pair: pair[0])
        return [f for _, f in made]

    def filenames(self) -> set[str]:
        """Every file name listed, without making any file."""
        names: set[str] = set()
        for rows in self._groups.values():
            if isinstance(rows, bytes):
                rows = marshal.loads(rows)
            for row in rows:
                if len(row) != 2:
                    names.add(row[1])
                elif isinstance(row[1].get("filename"), str):
                    names.add(row[1]["filename"])
                elif self._make_raw is not None and (f := self._make_raw(row[1])) is not None:
                    names.add(f.filename)
        return names

    def __bool__(self) -> bool:
        return bool(self._groups)

    def merged(self, extra: ProjectFiles) -> ProjectFiles:
        """These files, then extra's not listed here (by file name)."""
        if not extra:
            return self
        if not self:
            return extra
        return _Merged(self, extra)


class _Merged(ProjectFiles):
    """An index's files followed by the find-links files it does not list
    (each keeps the location that listed it)."""

    def __init__(self, first: ProjectFiles, second: ProjectFiles) -> None:
        super().__init__({}, "")
        self._parts = (first, second)
        self._seen = first.filenames()

    def versions(self) -> dict[Version, tuple[str, ...]]:
        found = self._versions
        if found is None:
            found = {}
            for part in self._parts:
                for version, texts in part.versions().items():
                    found[version] = (*found.get(version, ()), *texts)
            self._versions = found
        return found

    def release(self, version: Version) -> list[DistFile]:
        found = self._by_version.get(version)
        if found is None:
            first, second = self._parts
            found = list(first.release(version)) if version in first.versions() else []
            if version in second.versions():
                found += [f for f in second.release(version) if f.filename not in self._seen]
            self._by_version[version] = found
        return found

    def all(self) -> list[DistFile]:
        first, second = self._parts
        return first.all() + [f for f in second.all() if f.filename not in self._seen]

    def filenames(self) -> set[str]:
        return self._seen | self._parts[1].filenames()

    def __bool__(self) -> bool:
        return any(self._parts)

    def dumps(self) -> bytes:
        raise TypeError("merged files are not cached")
