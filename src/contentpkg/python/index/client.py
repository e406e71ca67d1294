"""The package index client: the simple API (PEP 503/691), metadata files, downloads.

An index answers "which files does project X have" with a page in JSON
(PEP 691) or HTML (PEP 503); each file may come with a ``.metadata`` file
(PEP 658/714) so that a resolver learns a wheel's dependencies without
downloading the wheel. Find-links locations (a local directory, a ``file:``
URL, or an HTML page of links) add files to whatever the indexes list.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import marshal
import os
import re
import tarfile
import threading
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, TypeVar

from packaging.utils import (
    NormalizedName,
    canonicalize_name,
)

from contentpkg.context import Bucket, Context
from contentpkg.errors import CpkError, HashMismatchError, InvalidInputError
from contentpkg.fs import TMP_PREFIX, discard, make_tmp_dir, replace_path, write_cache
from contentpkg.progress import QUIET, Reporter
from contentpkg.python.index.dists import DistFile
from contentpkg.python.index.filenames import FileName as FileName
from contentpkg.python.index.filenames import metadata_member, split_filename
from contentpkg.python.index.filenames import parse_filename as parse_filename
from contentpkg.python.index.http import HttpSession, Page, file_url_path, is_file_url, redact
from contentpkg.python.index.releases import ProjectFiles, canonical_part, group_rows, to_row

# Where to look is decided in a module of its own, light enough for the hot
# path of ``cpk run`` (which must not import this client); re-exported here.
from contentpkg.python.project.settings import DEFAULT_INDEX as DEFAULT_INDEX
from contentpkg.python.project.settings import index_settings as index_settings
from contentpkg.python.project.settings import index_url, location_url
from contentpkg.store.hashing import hash_file

T = TypeVar("T")

# JSON first; HTML stays acceptable (at a lower q) so an index that only
# speaks PEP 503 still answers the same request (PEP 691's negotiation).
ACCEPT_SIMPLE = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
ACCEPT_HTML = "text/html"
_JSON_TYPES = (
    "application/vnd.pypi.simple.v1+json",
    "application/vnd.pypi.simple.latest+json",
    "application/json",
)
#: Bump when DistFile's fields or the parsing rules change: parsed pages
#: cached under the old format are then simply not found.
_PARSED_FORMAT = 3

#: Under -v: which index answered, what the HTTP cache served.
_log = logging.getLogger(__name__)

#: Requests in flight at once (look-ahead and downloads). Measured on a cold
#: lock of bench/python_fetch.py's project (PyPI, 2 cores): 16 took 1.8-2.0 s
#: where 8 took 2.4-2.8 s, and 32 was no faster than 16 for the same CPU;
#: on bench/growth.py's 200 packages at 20 ms a request, 3.3 s for 16 or
#: 32 against 5.0 s for 8.
JOBS = 16
#: The largest PEP 658 metadata file read (into memory); real ones are a few KiB.
MAX_METADATA_FILE = 8 << 20


#: What may not be in a file name: path separators and control characters.
_UNSAFE_IN_NAME = re.compile(r"[/\\\x00-\x1f]")


def _safe_filename(filename: str) -> bool:
    # The name becomes a path in the download directory: it must stay there.
    return (
        bool(filename) and not filename.startswith(".") and _UNSAFE_IN_NAME.search(filename) is None
    )


# -- page parsing ------------------------------------------------------------


def _hash_fragment(fragment: str) -> dict[str, str]:
    algo, sep, value = fragment.partition("=")
    algo = algo.lower()
    if sep and value and algo in hashlib.algorithms_guaranteed:
        return {algo: value.lower()}
    return {}


def _metadata_attr(value: str | None) -> dict[str, str] | None:
    """A ``data-core-metadata`` value: "true", "<algo>=<hex>", or absent."""
    if value is None:
        return None
    value = value.strip()
    if value.lower() == "true" or value == "":
        return {}
    if value.lower() == "false":
        return None
    return _hash_fragment(value) if "=" in value else {}


def _json_metadata(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict):
        return {str(k).lower(): str(v).lower() for k, v in value.items()}
    return {} if value is True else None


def _check_api_version(version: str | None, url: str) -> None:
    if version is None:
        return
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) > 1:
        raise CpkError(f"{redact(url)}: simple API version {version} is not supported (only 1.x)")


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []
        self.api_version: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name") == "pypi:repository-version":
                self.api_version = values.get("content")


def _make_file(
    url: str,
    page_url: str,
    index: str,
    *,
    hashes: Mapping[str, str] | None = None,
    requires_python: str | None = None,
    yanked: str | None = None,
    core_metadata: dict[str, str] | None = None,
    size: int | None = None,
    upload_time: str | None = None,
    filename: str | None = None,
) -> DistFile | None:
    if (
        filename is not None
        and url.startswith(("https://", "http://"))
        and not any(c in url for c in "#[]")
    ):
        # What PyPI's JSON pages give for every file: an absolute URL with
        # no fragment and the name beside it. Nothing to resolve or parse,
        # and urljoin over tens of thousands of links is most of a page's cost.
        without_fragment, fragment = url, ""
    else:
        try:
            absolute = urllib.parse.urljoin(page_url, url)
            without_fragment, fragment = urllib.parse.urldefrag(absolute)
            path = urllib.parse.urlsplit(without_fragment).path
        except ValueError:
            # urllib's own refusal ("Invalid IPv6 URL"): a link no client can
            # follow, skipped like a file name no installer can use.
            return None
        if filename is None:
            filename = urllib.parse.unquote(path.rsplit("/", 1)[-1])
    if not _safe_filename(filename) or parse_filename(filename) is None:
        return None
    all_hashes = _hash_fragment(fragment) if fragment else {}
    all_hashes.update({k.lower(): v.lower() for k, v in (hashes or {}).items()})
    return DistFile(
        filename=filename,
        url=without_fragment,
        hashes=all_hashes,
        requires_python=requires_python or None,
        yanked=yanked,
        core_metadata=core_metadata,
        size=size,
        upload_time=upload_time,
        index=index,
    )


def parse_html_page(body: bytes | str, page_url: str, index: str = "") -> list[DistFile]:
    """The files a PEP 503 HTML page links to, relative links resolved.

    Reads ``data-requires-python``, ``data-yanked`` (present means yanked,
    its value is the reason) and the metadata attribute under both its PEP 714
    name ``data-core-metadata`` and its older ``data-dist-info-metadata``.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    parser = _LinkParser()
    try:
        parser.feed(text)
        parser.close()
    except AssertionError as exc:
        # The standard library's parser asserts on some malformed markup
        # (``<![OCTYPE``: "unknown status keyword ... in marked section")
        # instead of raising a parse error; it is the page that is bad.
        raise CpkError(f"{redact(page_url)}: not an HTML page an index serves ({exc})") from None
    _check_api_version(parser.api_version, page_url)
    try:
        base = urllib.parse.urljoin(page_url, parser.base) if parser.base else page_url
    except ValueError as exc:
        raise CpkError(f"{redact(page_url)}: invalid <base href> ({exc})") from None
    files = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        yanked = attrs["data-yanked"] or "" if "data-yanked" in attrs else None
        metadata_value = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        if "data-core-metadata" in attrs or "data-dist-info-metadata" in attrs:
            core = _metadata_attr(metadata_value if metadata_value is not None else "true")
        else:
            core = None
        made = _make_file(
            href,
            base,
            index,
            requires_python=attrs.get("data-requires-python"),
            yanked=yanked,
            core_metadata=core,
        )
        if made is not None:
            files.append(made)
    return files


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) else None


def _json_page_items(body: bytes | str, page_url: str) -> list[Any]:
    """A PEP 691 JSON project page's ``files`` list, its shape and API version checked."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise CpkError(f"{redact(page_url)}: invalid JSON project page ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise CpkError(f"{redact(page_url)}: JSON project page without a 'files' list")
    meta = data.get("meta")
    _check_api_version(meta.get("api-version") if isinstance(meta, dict) else None, page_url)
    return data["files"]


def parse_json_page(body: bytes | str, page_url: str, index: str = "") -> list[DistFile]:
    """The files of a PEP 691 JSON project page (``meta.api-version`` 1.x)."""
    files = []
    for item in _json_page_items(body, page_url):
        made = _json_file(item, page_url, index)
        if made is not None:
            files.append(made)
    return files


def _json_file(item: Any, page_url: str, index: str) -> DistFile | None:
    """One entry of a PEP 691 page's ``files`` list, or None to skip it."""
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        return None
    yanked_value = item.get("yanked", False)
    yanked = yanked_value if isinstance(yanked_value, str) else "" if yanked_value else None
    core_value = item.get("core-metadata", item.get("dist-info-metadata"))
    hashes = item.get("hashes") if isinstance(item.get("hashes"), dict) else {}
    size = item.get("size")
    return _make_file(
        item["url"],
        page_url,
        index,
        hashes={str(k): str(v) for k, v in hashes.items()},
        requires_python=_text(item, "requires-python"),
        yanked=yanked,
        core_metadata=_json_metadata(core_value),
        size=size if isinstance(size, int) else None,
        upload_time=_text(item, "upload-time"),
        filename=_text(item, "filename"),
    )


# -- archives ----------------------------------------------------------------


def wheel_metadata_from_archive(path: Path | IO[bytes], filename: str) -> bytes:
    """The METADATA of a wheel (a file, or its bytes in a buffer), found as
    ``<name>-<version>.dist-info/METADATA``."""
    try:
        with zipfile.ZipFile(path) as zf:
            member = metadata_member(zf.namelist(), filename)
            if member is None:
                raise InvalidInputError(
                    f"{filename}: wheel has no single .dist-info/METADATA", path=filename
                )
            return zf.read(member)
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise InvalidInputError(f"{filename}: not a valid wheel ({exc})", path=filename) from None


def sdist_pkg_info(path: Path, filename: str) -> bytes:
    """The top-level ``PKG-INFO`` of an sdist (``.tar.gz`` or ``.zip``)."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1]
                member = next((n for n in names if n.endswith("/PKG-INFO")), None)
                if member is not None:
                    return zf.read(member)
        else:
            with tarfile.open(path, "r:*") as tf:
                for info in tf:
                    parts = info.name.strip("/").split("/")
                    if len(parts) == 2 and parts[1] == "PKG-INFO" and info.isfile():
                        handle = tf.extractfile(info)
                        if handle is not None:
                            return handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(f"{filename}: not a valid sdist ({exc})", path=filename) from None
    raise InvalidInputError(f"{filename}: sdist has no PKG-INFO", path=filename)


# -- the client --------------------------------------------------------------


class IndexClient:
    """Ask indexes and find-links locations for files, metadata and archives.

    With several indexes, the first index (in the given order) that lists
    any file of a project is the only one asked about that project: uv's
    default ``first-index`` strategy, which stops a public index from
    shadowing a private package of the same name (dependency confusion).
    Find-links files are always merged in, after the index's.

    The client memoizes per instance and is safe to call from several
    threads; :meth:`prefetch` uses that to fetch pages in the background.
    """

    def __init__(
        self,
        indexes: Sequence[str | os.PathLike[str]],
        find_links: Sequence[str | os.PathLike[str]] = (),
        *,
        cache_dir: Path | None = None,
        offline: bool = False,
        reporter: Reporter = QUIET,
        retries: int = 3,
        timeout: float = 30.0,
        backoff: float = 0.25,
        jobs: int = JOBS,
        netrc: Path | None = None,
        refresh: bool = False,
    ) -> None:
        # A caller without a Context (contentpkg.use()) gets this process's.
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else Context.from_environ().cache_dir
        )
        self.offline = offline
        self.reporter = reporter
        if netrc is None:
            netrc = Path(os.path.expanduser("~/.netrc"))
        self.http = HttpSession(
            self.cache_dir,
            offline=offline,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            jobs=jobs,
            netrc=netrc,
            refresh=refresh,
        )
        # Credentials in a location are handed to the session, scoped to its
        # host, and dropped from the URL: every URL kept from here on (pins,
        # lock files, messages, cache keys) is free of them.
        take = self.http.credentials.take
        self.indexes = [take(index_url(u)) for u in indexes]
        self.find_links = [take(location_url(u, None)) for u in find_links]
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], Future[Any]] = {}
        self._background: ThreadPoolExecutor | None = None
        #: Hosts that answered a range request with a whole file.
        self._no_ranges: set[str] = set()
        self._jobs = jobs
        #: The flocked pin directory's descriptor (see :meth:`_make_pin_dir`).
        self._pin_fd: int | None = None

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            background, self._background = self._background, None
        if background is not None:
            background.shutdown(wait=True, cancel_futures=True)
        self.http.close()
        with self._lock:
            pins = self._memo.pop(("pins", ""), None)
        if pins is not None and pins.done() and pins.exception() is None:
            discard(pins.result())
        if self._pin_fd is not None:
            os.close(self._pin_fd)
            self._pin_fd = None

    def describe(self) -> str:
        """Where projects are looked up, for messages ("no project named x on ...")."""
        places = [redact(u) for u in self.indexes] + [redact(u) for u in self.find_links]
        if not places:
            return "no index"
        return places[0] if len(places) == 1 else ", ".join(places[:-1]) + " or " + places[-1]

    def _once(self, kind: str, key: str, compute: Callable[[], T]) -> T:
        """compute() once per (kind, key), other callers wait for that answer."""
        with self._lock:
            future = self._memo.get((kind, key))
            owner = future is None
            if future is None:
                future = self._memo[(kind, key)] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    # -- project pages ----------------------------------------------------

    def project_files(self, name: str) -> list[DistFile]:
        """Every wheel and sdist of a project, from the winning index and find-links.

        An empty list means no index and no find-links location has it.
        """
        return self.project_releases(name).all()

    def project_releases(self, name: str) -> ProjectFiles:
        """A project's files as :meth:`project_files` lists them, grouped by
        version and made only for the versions asked about (what a resolver
        wants of a page of thousands of files)."""
        canonical = canonicalize_name(name)
        return self._once("project", canonical, lambda: self._project_files(canonical))

    def _project_files(self, name: NormalizedName) -> ProjectFiles:
        files = ProjectFiles({}, "")
        for index in self.indexes:
            found = self._index_files(index, name)
            if found:
                if _log.isEnabledFor(logging.DEBUG):  # counting loads every group
                    _log.debug("%s: %d files from %s", name, len(found.filenames()), index)
                files = found
                break
            _log.debug("%s: not on %s", name, index)
        for location in self.find_links:
            listed = self._find_links_files(location)
            files = files.merged(ProjectFiles.of(listed, name, location, self._with_hash))
        return files

    def files_on(self, index: str, name: str) -> list[DistFile]:
        """A project's files on one index only: for a name the project pins
        to an index (uv's ``[tool.uv.sources] x = { index = "..." }``), which
        no other index and no find-links location may serve."""
        return self.releases_on(index, name).all()

    def releases_on(self, index: str, name: str) -> ProjectFiles:
        """:meth:`files_on`, grouped as :meth:`project_releases` groups."""
        canonical = canonicalize_name(name)
        place = self.http.credentials.take(index_url(index))
        return self._once(
            "project-on", f"{place} {canonical}", lambda: self._index_files(place, canonical)
        )

    def _index_files(self, index: str, name: NormalizedName) -> ProjectFiles:
        url = f"{index}{name}/"
        if is_file_url(url):
            directory = file_url_path(url)
            if directory.is_dir() and not (directory / "index.html").is_file():
                # A plain directory tree (root/<project>/<files>) serves as a
                # local index without anyone having to write index.html files.
                listed = self._directory_files(directory, index)
                return ProjectFiles.of(listed, name, index, self._with_hash)
        page = self.http.fetch_page(url, ACCEPT_SIMPLE)
        if page is None:
            return ProjectFiles({}, index)
        return self._parsed(page, index, name)

    def _parsed(self, page: Page, index: str, name: NormalizedName) -> ProjectFiles:
        """The files of a project page, read once per page body on this machine.

        A big project's page (pydantic-core's lists ~15,000 files) takes
        longer to parse than to fetch, and a resolver looks at a few of its
        releases. So the page is only split into groups by version here
        (:mod:`.releases`), and kept in the cache in that form by the hash
        of what it was read from: a page that did not change is loaded back
        with no work per file.
        """
        content_type = page.content_type.split(";", 1)[0].strip().lower()
        as_json = content_type in _JSON_TYPES
        key_text = f"{_PARSED_FORMAT}\0{page.url}\0{index}\0{name}\0{as_json}\0".encode()
        key = hashlib.sha256(key_text + page.body).hexdigest()
        path = (
            self.cache_dir
            / Bucket.PARSED_PAGES.value
            / key[:2]
            / f"{key}.{marshal.version}.marshal"
        )
        maker = self._json_maker(page.url, index) if as_json else None
        try:
            cached = marshal.loads(path.read_bytes())
            files = ProjectFiles.loads(cached[0], index, self._with_hash, maker)
            for url in cached[1]:
                # Credentials a link carried go to the session again (they
                # are never in what is cached).
                self.http.credentials.take(url, override=False)
            return files
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            pass  # not read yet (or written by another version): read it
        if as_json:
            groups, takes = self._json_groups(page, name)
        else:
            listed = parse_html_page(page.body, page.url, index)
            takes = [f.url for f in listed if "@" in f.url]
            rows = [to_row(i, f) for i, f in enumerate(self._vet(page.url, listed))]
            groups = group_rows(rows, name)  # type: ignore[assignment]
        files = ProjectFiles(groups, index, self._with_hash, maker)  # type: ignore[arg-type]
        write_cache(path, marshal.dumps((files.dumps(), takes)))
        return files

    def _json_groups(
        self, page: Page, name: NormalizedName
    ) -> tuple[dict[str, list[Any]], list[str]]:
        """A PEP 691 page's entries for project name, grouped by the version
        their file names give, and the links that carried credentials.

        Each entry is kept as the page gave it and made into a DistFile
        (by :func:`parse_json_page`'s own rules) only when its release is
        asked for: reading a page of 15,000 files then costs about its JSON
        decoding. The page is refused as a whole here, as :meth:`_vet` does,
        if it links a distribution anywhere but http(s).
        """
        page_url = page.url
        items = _json_page_items(page.body, page_url)
        remote = not is_file_url(page_url)
        groups: dict[str, list[Any]] = {}
        takes: list[str] = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            url = item.get("url")
            if not isinstance(url, str):
                continue
            filename = item.get("filename")
            if not isinstance(filename, str):
                made = _json_file(item, page_url, "")
                if made is None:
                    continue
                filename = made.filename
            split = split_filename(filename)
            if split is None:
                continue
            if (remote and not url.startswith(("https://", "http://"))) or "@" in url:
                made = _json_file(item, page_url, "")
                if made is None:
                    continue
                if "@" in made.url:
                    takes.append(made.url)
                self._vet(page_url, [made])  # refuses the page, or takes credentials
            if canonical_part(split[0]) == name:
                groups.setdefault(split[1], []).append((position, item))
        return groups, takes

    def _json_maker(self, page_url: str, index: str) -> Callable[[dict[str, Any]], DistFile | None]:
        """Make one kept PEP 691 entry of the page at page_url into a vetted DistFile."""

        def make(item: dict[str, Any]) -> DistFile | None:
            made = _json_file(item, page_url, index)
            return None if made is None else self._vet(page_url, [made])[0]

        return make

    def _find_links_files(self, location: str) -> list[DistFile]:
        return self._once("find-links", location, lambda: self._list_find_links(location))

    def _list_find_links(self, location: str) -> list[DistFile]:
        if is_file_url(location):
            path = file_url_path(location)
            if path.is_dir():
                return self._directory_files(path, location)
            if path.is_file() and parse_filename(path.name) is not None:
                return self._local_files([path], location)
            if not path.exists():
                raise CpkError(f"find-links {path}: no such file or directory")
        page = self.http.fetch_page(location, ACCEPT_HTML)
        if page is None:
            raise CpkError(f"find-links {redact(location)}: not found")
        return self._vet(page.url, parse_html_page(page.body, page.url, location))

    def _vet(self, page_url: str, files: list[DistFile]) -> list[DistFile]:
        """The files of a fetched page, safe to fetch: remote, and without credentials.

        A page that came over the network must never make cpk read a local
        file (``file:`` links to ``/etc`` or to a wheel planted in ``/tmp``):
        such a page is refused as a whole, since it is hostile or broken. A
        local index (a ``file:`` page or directory) may link locally. Any
        credentials in a link are handed to the session for that link's own
        host and removed from the URL that pins and lock files keep.
        """
        remote = not is_file_url(page_url)
        vetted = []
        for f in files:
            scheme = urllib.parse.urlsplit(f.url).scheme.lower()
            if remote and scheme not in ("http", "https"):
                raise CpkError(
                    f"{redact(page_url)}: links {f.filename} to {redact(f.url)};"
                    f" a page fetched over the network may only link http(s) URLs,"
                    f" never local files"
                )
            clean = self.http.credentials.take(f.url, override=False)
            vetted.append(f if clean == f.url else replace(f, url=clean))
        return vetted

    def _directory_files(self, directory: Path, location: str) -> list[DistFile]:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CpkError(f"{directory}: cannot list ({exc.strerror or exc})") from None
        paths = [
            directory / n
            for n in names
            if _safe_filename(n) and parse_filename(n) is not None and (directory / n).is_file()
        ]
        return self._local_files(paths, location)

    def _local_files(self, paths: Iterable[Path], location: str) -> list[DistFile]:
        return [
            DistFile(
                filename=p.name, url=p.absolute().as_uri(), size=p.stat().st_size, index=location
            )
            for p in paths
        ]

    def _with_hash(self, file: DistFile) -> DistFile:
        """A local file with its sha256 filled in, computed once per process.

        Local files come without published hashes; hashing them gives the lock
        file and the store the same sha256 an index would publish. Only the
        files of a project someone asked for are hashed.
        """
        if file.sha256 is not None or not is_file_url(file.url):
            return file
        path = file_url_path(file.url)
        try:
            stat = path.stat()
        except OSError:
            return file
        key = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
        digest = self._once("local-hash", key, lambda: hash_file(path)[0])
        return replace(file, hashes={**file.hashes, "sha256": digest})

    def background(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the client's worker threads, ignoring its outcome.

        For work that only warms the memo (prefetching pages and metadata):
        whoever later needs the answer gets it, or its error, from the memo.
        """
        with self._lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(
                    max_workers=self._jobs, thread_name_prefix="cpk-index"
                )
            background = self._background
        try:
            background.submit(_quietly, fn, *args)
        except RuntimeError:
            pass  # shut down meanwhile: nobody is waiting for this any more

    def prefetch(self, names: Iterable[str]) -> None:
        """Start fetching the pages of projects that will be asked for soon."""
        for name in names:
            if ("project", canonicalize_name(name)) not in self._memo:
                self.background(self.project_releases, name)

    # -- metadata ---------------------------------------------------------

    def metadata(self, file: DistFile) -> bytes:
        """The core metadata (METADATA) of a wheel, as bytes.

        From the PEP 658/714 ``.metadata`` file when the index offers one (its
        hash verified), else from the wheel itself. Cached on disk by the
        file's sha256, since a file with a given hash never changes.
        """
        return self._once("metadata", file.url, lambda: self._metadata(file))

    def _metadata(self, file: DistFile) -> bytes:
        sha = file.sha256
        cache_path = None
        if sha is not None:
            cache_path = self.cache_dir / Bucket.METADATA.value / sha[:2] / f"{sha}.metadata"
            try:
                return cache_path.read_bytes()
            except OSError:
                pass
        data = None
        if file.core_metadata is not None:
            data = self.http.fetch_bytes(file.url + ".metadata", limit=MAX_METADATA_FILE)
            if data is not None:
                for algo, expected in file.core_metadata.items():
                    if algo not in hashlib.algorithms_guaranteed:
                        continue
                    actual = hashlib.new(algo, data).hexdigest()
                    if actual != expected.lower():
                        raise HashMismatchError(
                            subject=f"{file.filename}.metadata",
                            expected=expected,
                            actual=actual,
                            algorithm=algo,
                            expected_from="the index",
                            origin=f"{redact(file.url)}.metadata",
                        )
        if data is None:
            if not file.is_wheel:
                raise CpkError(f"{file.filename}: no metadata file; the sdist must be built")
            data = self._metadata_by_range(file)
        if data is None:
            data = self._small_wheel_metadata(file)
        if data is None:
            data = wheel_metadata_from_archive(self.fetch_archive(file), file.filename)
        if cache_path is not None:
            write_cache(cache_path, data)
        return data

    def _metadata_by_range(self, file: DistFile) -> bytes | None:
        """A remote wheel's METADATA by range requests; None to download it instead.

        Worth it only for wheels known to be bigger than the two requests it
        takes; others are downloaded whole (sync needs them next anyway). Hosts
        that answer a range request with the whole file are remembered and
        not asked again by this client.
        """
        from contentpkg.python.index.ranged import (
            MIN_SIZE,
            RangesUnsupported,
            wheel_metadata_by_range,
        )

        if is_file_url(file.url) or self.offline:
            return None
        # Without a size (HTML pages give none) the wheel may be tiny, and a
        # server that ignores ranges would cost a request for nothing.
        if file.size is None or file.size < MIN_SIZE:
            return None
        host = urllib.parse.urlsplit(file.url).netloc
        if host in self._no_ranges:
            return None
        try:
            return wheel_metadata_by_range(self.http, file.url, file.filename, file.size)
        except RangesUnsupported:
            self._no_ranges.add(host)
            return None

    def _small_wheel_metadata(self, file: DistFile) -> bytes | None:
        """A small remote wheel's METADATA, read from the wheel fetched whole
        into memory; None to take the archive path instead.

        The wheel (its sha256 checked) goes to the archive cache, where a
        sync's download finds it: read in memory, it needs no pinned copy,
        whose files and directories a lock of hundreds of small packages
        would otherwise create and remove one by one.
        """
        from contentpkg.python.index.ranged import MIN_SIZE

        if (
            is_file_url(file.url)
            or self.offline
            or file.sha256 is None
            or file.size is None
            or file.size >= MIN_SIZE
        ):
            return None
        from contentpkg.python.index.http import BodyTooLarge

        try:
            # Read into memory only what the index declared (and never more
            # than this path is for): a longer body is not this wheel.
            data = self.http.fetch_bytes(file.url, limit=file.size)
        except BodyTooLarge:
            _log.debug("%s: longer than the %d bytes declared; downloading it", file.url, file.size)
            return None  # the archive path streams it to disk and checks its hash
        if data is None:
            return None  # the archive path says it is gone, in its words
        actual = hashlib.sha256(data).hexdigest()
        if actual != file.sha256:
            raise _mismatch(file, actual, redact(file.url))
        import io

        metadata = wheel_metadata_from_archive(io.BytesIO(data), file.filename)
        write_cache(self._archive_cache_path(file), data)
        return metadata

    # -- archives ---------------------------------------------------------

    def _archive_cache_path(self, file: DistFile) -> Path:
        key = file.sha256 or "url-" + hashlib.sha256(file.url.encode()).hexdigest()
        return self.cache_dir / Bucket.ARCHIVES.value / key[:2] / key / file.filename

    # The archive cache is shared by every cpk process, and each removes an
    # archive once its entry is stored (forget_archive). A path into the cache
    # may therefore vanish between any check and any read. So this client
    # never reads the cache by path after a check: it hard-links the cached
    # file to a name only it uses (its pin directory, or the caller's
    # download directory), which keeps the inode whatever the others remove,
    # and verifies what it linked. A link that fails because the archive is
    # gone just means downloading it again.

    def _pin_dir(self) -> Path:
        return self._once("pins", "", self._make_pin_dir)

    def _make_pin_dir(self) -> Path:
        """This client's private directory of archive links, removed by
        :meth:`close`; one left by a killed process is removed by the next.

        The directory is flocked for the client's life (the kernel drops the
        lock when the process dies, even by SIGKILL), so a directory whose
        lock can be taken belongs to nobody. It is locked under a temporary
        name and only then renamed to the name others sweep, so no sweeper
        can see it unlocked.
        """
        archives = self.cache_dir / Bucket.ARCHIVES.value
        staged = make_tmp_dir(archives, "pins")
        fd = os.open(staged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        pins = archives / staged.name.removeprefix(TMP_PREFIX).replace("pins.", _PINS, 1)
        os.rename(staged, pins)
        self._pin_fd = fd
        for stale in archives.glob(f"{_PINS}*"):
            if stale != pins:
                _remove_if_unlocked(stale)
        return pins

    def _pinned_archive(self, file: DistFile) -> Path:
        """A verified copy of a remote file that stays while this client lives:
        the cached one when it is there and intact, else a new download, which
        is then shared through the cache."""
        cached = self._archive_cache_path(file)
        pinned = self._pin_dir() / cached.parent.name / file.filename
        pinned.parent.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # absent (or just forgotten): download
            os.link(cached, pinned)
        # Keeps the linked file when its sha256 matches, else downloads it.
        self.http.download(
            file.url, pinned, sha256=file.sha256, size=file.size, reporter=self.reporter
        )
        # Share it: a cached copy may have appeared, gone or been corrupt
        # meanwhile; whichever, the cache now gets this verified one.
        with contextlib.suppress(OSError):
            cached.parent.mkdir(parents=True, exist_ok=True)
            if not (cached.exists() and os.path.samefile(cached, pinned)):
                replace_path(cached, lambda tmp: os.link(pinned, tmp), durable=False)
        return pinned

    def fetch_archive(self, file: DistFile) -> Path:
        """A local, verified copy of file (for reading metadata out of it).

        Local files are used where they are; remote ones are downloaded once
        into the cache, where :meth:`download` (and other processes) find
        them again. The path returned stays readable while this client is
        open, whatever other processes remove from the cache.
        """
        if is_file_url(file.url):
            path = file_url_path(file.url)
            if not path.is_file():
                raise CpkError(f"{file.filename}: no such file {path}")
            if file.sha256 is not None:
                actual = self._once("local-verify", str(path), lambda: hash_file(path)[0])
                if actual != file.sha256:
                    raise _mismatch(file, actual, str(path))
            return path
        return self._once("archive", file.url, lambda: self._pinned_archive(file))

    def _local_copy(self, file: DistFile) -> Path:
        """Where a copy of file may already be: this client's pin, else the cache."""
        with self._lock:
            future = self._memo.get(("archive", file.url))
        if future is not None and future.done() and future.exception() is None:
            return future.result()
        return self._archive_cache_path(file)

    def download(self, file: DistFile, dest_dir: Path) -> Path:
        """Download file into dest_dir (verifying its sha256) and return its path.

        A file already fetched (to read its metadata), by this process or
        another, is linked from there instead of downloaded again.
        """
        if not _safe_filename(file.filename):
            raise CpkError(f"{file.filename!r}: not a safe file name")
        dest = Path(dest_dir) / file.filename
        if file.sha256 is not None and not is_file_url(file.url):
            with contextlib.suppress(OSError):  # gone meanwhile: download below
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(self._local_copy(file), dest)
        # Keeps what was linked when its sha256 matches, else downloads it.
        self.http.download(
            file.url, dest, sha256=file.sha256, size=file.size, reporter=self.reporter
        )
        return dest

    def forget_archive(self, file: DistFile) -> None:
        """Drop the cached copy of file once its content is in the store.

        The store then holds everything the archive had; keeping both would
        double the disk a package costs. Its metadata stays cached (small).
        Other processes reading it are unaffected: they read their own links.
        """
        if is_file_url(file.url):
            return
        with self._lock:
            future = self._memo.pop(("archive", file.url), None)
        if future is not None and future.done() and future.exception() is None:
            _quietly(os.unlink, future.result())
        cached = self._archive_cache_path(file)
        try:
            cached.unlink()
            cached.parent.rmdir()
        except OSError:
            pass

    def download_many(self, files: Sequence[DistFile], dest_dir: Path) -> list[Path]:
        """Download several files in parallel; paths in the order of files."""
        return self.http.map(lambda f: self.download(f, dest_dir), files)


def _file_name(file: DistFile) -> NormalizedName | None:
    parsed = parse_filename(file.filename)
    return parsed.name if parsed is not None else None


#: How pin directories are named (``.pins.<pid>.<random>`` in the archives bucket).
_PINS = ".pins."


def _remove_if_unlocked(path: Path) -> None:
    """Remove a pin directory whose owner is gone (its flock can be taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # alive
    else:
        discard(path)
    finally:
        os.close(fd)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def _mismatch(file: DistFile, actual: str, origin: str = "") -> HashMismatchError:
    """The one refusal of a file whose bytes are not the ones its index or lock named."""
    assert file.sha256 is not None
    return HashMismatchError(
        subject=file.filename, expected=file.sha256, actual=actual, origin=origin
    )
