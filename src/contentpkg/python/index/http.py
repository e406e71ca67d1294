"""HTTP for the index client: one connection pool, a page cache, retries, downloads.

This is written by hand on urllib3 because the HTTP caching libraries of the
field (CacheControl, hishel) are built for ``requests`` and ``httpx``; cpk
depends on neither, and the caching an index client needs is small: index
pages are revalidated with ``ETag`` / ``Last-Modified`` and kept fresh for
``Cache-Control: max-age``, while archives and metadata files are immutable
and cached by their hash elsewhere, never by URL.

urllib3 is imported lazily so that asking for the cache directory (as the
interpreter facts do) never loads the HTTP stack.

HTTP/1.1 over pooled keep-alive connections, not HTTP/2, though PyPI and
its mirrors offer it: measured with ``bench/python_http2.py`` (what a cold
lock of a 14-project set asks for: 45 pages and 45 range requests from 8
threads; medians of 5 on 2 busy cores), httpx multiplexing everything over
one HTTP/2 connection was slower than urllib3 over a pool (0.79 s against
0.49 s) and cost more CPU (0.29 s against 0.19 s: h2 and hpack are pure
Python), on top of a larger import (0.42 s against 0.17 s); and httpcore's
HTTP/2 connection shared by threads failed one run in five (``KeyError``
on a stream id). What HTTP/2 would save is the TLS handshake of each extra
connection, paid once per connection, not per request: too little for the
dependency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from contentpkg import netfaults
from contentpkg.context import Bucket
from contentpkg.errors import CpkError, HashMismatchError, write_failed
from contentpkg.fs import write_cache, writing_atomic
from contentpkg.progress import QUIET, Reporter
from contentpkg.store.hashing import hash_file

if TYPE_CHECKING:
    import urllib3

T = TypeVar("T")
R = TypeVar("R")

_CHUNK = 1 << 16
# 408/429 are the server asking us to come back later; 5xx are its failures.
_RETRY_STATUS = frozenset({408, 429})
_MAX_RETRY_AFTER = 10.0
#: Seconds a cached page is fresh when its response carried no max-age.
HEURISTIC_FRESHNESS = 300.0

#: Under -v: which index answered, what the HTTP cache served.
_log = logging.getLogger(__name__)


def is_file_url(url: str) -> bool:
    return url.startswith("file:")


def file_url_path(url: str) -> Path:
    """The local path a ``file:`` URL names (host must be empty or localhost)."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise CpkError(f"{url}: file URLs on other hosts are not supported")
    return Path(urllib.request.url2pathname(parts.path))


def redact(url: str) -> str:
    """A URL fit for messages: credentials in it are replaced by ``***``.

    Works on strings urllib refuses too (they are what error messages quote).
    """
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"


def strip_credentials(url: str) -> str:
    """url without its ``user:password@`` part (for lock files and cache keys)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _origin(url: str) -> str:
    """scheme://host:port, the unit URL credentials are scoped to (as pip scopes them)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


_AUTH_HINT = (
    "give credentials in the index URL (https://user:token@host/simple/),"
    " in ~/.netrc, or through keyring"
)


def _status_message(url: str, status: int, reason: str = "") -> str:
    """``<url>: HTTP <status>``, saying how to proceed where the server wants credentials."""
    text = f"{redact(url)}: HTTP {status}"
    if reason:
        text += f" {reason}"
    if status in (401, 403):
        text += f"; {_AUTH_HINT}"
    return text


class _Credentials:
    """Who to be, per origin: credentials from URLs, then ``.netrc``, then keyring.

    Credentials given in a URL are sent to that URL's scheme, host and port
    only; ``.netrc`` ones to the host they name (as curl, pip and requests
    read it). Files a page links to on the same origin get the same
    credentials, since that is how private indexes serve them. Nothing here
    is ever put into a message, a cache key or a lock file.
    """

    def __init__(self, netrc_path: Path | None) -> None:
        self.netrc_path = netrc_path
        self._by_origin: dict[str, tuple[str, str]] = {}
        self._netrc: Any = None
        self._keyring_asked: set[str] = set()
        self._lock = threading.Lock()

    def take(self, url: str, *, override: bool = True) -> str:
        """Remember url's credentials for its origin; return url without them.

        ``override=False`` (for links a page gives) keeps credentials the
        user gave for that origin: a page cannot choose who cpk logs in as.
        """
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018  (a bad port raises here, not deep in a request)
        except ValueError as exc:
            raise CpkError(f"{redact(url)}: not a valid URL ({exc})") from None
        if "@" not in parts.netloc:
            return url
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        with self._lock:
            origin = _origin(url)
            if override or origin not in self._by_origin:
                self._by_origin[origin] = (
                    urllib.parse.unquote(user),
                    urllib.parse.unquote(password),
                )
        return strip_credentials(url)

    def header(self, url: str) -> dict[str, str]:
        """The Authorization header for url, or nothing."""
        found = self._lookup(url)
        if found is None:
            return {}
        token = base64.b64encode(f"{found[0]}:{found[1]}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _lookup(self, url: str) -> tuple[str, str] | None:
        origin = _origin(url)
        with self._lock:
            if origin in self._by_origin:
                return self._by_origin[origin]
        host = urllib.parse.urlsplit(url).hostname
        if host:
            found = self._from_netrc(host)
            if found is not None:
                return found
        return None

    def _from_netrc(self, host: str) -> tuple[str, str] | None:
        import netrc

        if self.netrc_path is None:
            return None
        with self._lock:
            if self._netrc is None:
                try:
                    self._netrc = netrc.netrc(os.fspath(self.netrc_path))
                except FileNotFoundError:
                    self._netrc = False
                except netrc.NetrcParseError as exc:
                    raise CpkError(
                        f"{self.netrc_path}: cannot read it as a .netrc file"
                        f" ({exc.msg}, line {exc.lineno})"
                    ) from None
                except OSError as exc:
                    raise CpkError(
                        f"{self.netrc_path}: cannot read ({exc.strerror or exc})"
                    ) from None
                except (UnicodeDecodeError, ValueError) as exc:
                    raise CpkError(
                        f"{self.netrc_path}: cannot read it as a .netrc file ({exc})"
                    ) from None
            if not self._netrc:
                return None
            # Only the host it names: netrc's "default" entry would hand a
            # login to every server a page links to.
            found = self._netrc.hosts.get(host.lower()) or self._netrc.hosts.get(host)
        if not found:
            return None
        login, _account, password = found
        return (login or "", password or "")

    def from_keyring(self, url: str) -> bool:
        """Ask keyring (when installed) for url's origin, once; True if it answered."""
        origin = _origin(url)
        with self._lock:
            if origin in self._keyring_asked:
                return False
            self._keyring_asked.add(origin)
            user = self._by_origin.get(origin, (None, None))[0]
        try:
            import keyring  # optional: installed by those who use it
        except ImportError:
            return False
        try:
            credential = keyring.get_credential(strip_credentials(url), user)
        except Exception:
            # A keyring backend may fail in many ways (no D-Bus, locked
            # vault); it is then as if none were installed.
            return False
        if credential is None or not credential.password:
            return False
        with self._lock:
            self._by_origin[origin] = (credential.username or user or "", credential.password)
        return True


@dataclass(frozen=True)
class Page:
    """An index or find-links page as fetched (or as served from the cache)."""

    url: str  # the final URL after redirects: relative links resolve against it
    content_type: str
    body: bytes
    from_cache: bool = False


class BodyTooLarge(CpkError):
    """A response body longer than its caller allowed (``fetch_bytes``'s
    ``limit``): the caller takes another path or refuses in one line."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not (5xx, reset, truncation)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _CacheControl:
    """The few Cache-Control directives a client cache acts on."""

    def __init__(self, header: str | None) -> None:
        self.max_age: int | None = None
        self.no_cache = False
        self.no_store = False
        for part in (header or "").split(","):
            key, _, value = part.strip().partition("=")
            key = key.strip().lower()
            if key == "max-age":
                try:
                    self.max_age = max(0, int(value.strip().strip('"')))
                except ValueError:
                    self.max_age = 0
            elif key == "no-cache":
                self.no_cache = True
            elif key == "no-store":
                self.no_store = True


class HttpSession:
    """Connection reuse, cached pages, bounded retries and verified downloads.

    ``retries`` is the number of extra attempts after a retryable failure;
    the waits between them grow as ``backoff * 2**n``. ``offline`` forbids
    the network: cached pages are still served (whatever their age, as
    ``uv --offline`` does) and anything else raises a CpkError naming the URL.
    ``refresh`` revalidates every cached page whatever its freshness
    (``--refresh``).
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        offline: bool = False,
        retries: int = 3,
        backoff: float = 0.25,
        timeout: float = 30.0,
        jobs: int = 8,
        netrc: Path | None = None,
        refresh: bool = False,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.refresh = refresh
        self.credentials = _Credentials(netrc)
        self.offline = offline
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self.timeout = timeout
        self.jobs = max(1, jobs)
        # At most ``jobs`` transfers at once, however many threads ask:
        # callers may run more threads than that when each also waits on
        # something else (a wheel's bytecode), and the pool keeps ``jobs``
        # connections per host.
        self._transfers = threading.BoundedSemaphore(self.jobs)
        self._pool: urllib3.PoolManager | None = None
        self._pool_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------

    @property
    def pool(self) -> urllib3.PoolManager:
        with self._pool_lock:
            if self._pool is None:
                import urllib3
                from urllib3.util.ssl_ import create_urllib3_context

                from contentpkg import __version__

                # One TLS context for every connection: left to itself,
                # urllib3 makes one per connection and loads the system's CA
                # bundle into each (~20 ms of CPU apiece, times the parallel
                # connections of a cold lock).
                tls = create_urllib3_context()
                tls.load_default_certs()
                self._pool = urllib3.PoolManager(
                    num_pools=32,
                    ssl_context=tls,
                    # Parallel downloads from one host share its pool; block=False
                    # lets a burst open extra connections instead of waiting.
                    maxsize=max(10, self.jobs),
                    headers={"User-Agent": f"contentpkg/{__version__}"},
                    timeout=urllib3.Timeout(connect=min(10.0, self.timeout), read=self.timeout),
                    # Retries are ours (below): urllib3's do not cover a body
                    # truncated while streaming, and we want one policy for all.
                    retries=urllib3.Retry(
                        total=None, connect=0, read=0, status=0, other=0, redirect=10
                    ),
                )
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None

    def _check_online(self, url: str, what: str) -> None:
        if self.offline:
            raise CpkError(f"{redact(url)}: offline mode, {what} is not allowed")

    def _with_retries(self, url: str, attempt: Callable[[], T], label: str | None = None) -> T:
        """Run attempt, again after retryable failures, with exponential backoff.

        The final error names label (a file name) or else the URL.
        """
        for n in range(self.retries + 1):
            try:
                return attempt()
            except _Retryable as exc:
                if n == self.retries:
                    tries = "1 attempt" if n == 0 else f"{n + 1} attempts"
                    message = f"{label or redact(url)}: {exc} (gave up after {tries})"
                    details = [f"from {redact(url)}"] if label else []
                    raise CpkError(message, details=details) from None
                delay = self.backoff * (2**n)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, _MAX_RETRY_AFTER))
                if delay:
                    time.sleep(delay)
        raise AssertionError("unreachable")

    def _request(
        self, url: str, headers: dict[str, str], *, stream: bool = False
    ) -> urllib3.BaseHTTPResponse:
        """One request; network failures and server errors become _Retryable.

        Credentials known for url's origin are sent; on a 401 without any,
        keyring (if installed) is asked once and the request made again.
        """
        url = self.credentials.take(url)
        response = self._send(url, headers, stream)
        if response.status == 401 and self.credentials.from_keyring(url):
            if stream:
                response.drain_conn()
                response.release_conn()
            response = self._send(url, headers, stream)
        status = response.status
        if status >= 500 or status in _RETRY_STATUS:
            retry_after = netfaults.retry_after(response.headers.get("Retry-After"))
            if stream:
                response.drain_conn()
                response.release_conn()
            raise _Retryable(f"HTTP {status} {response.reason or ''}".rstrip(), retry_after)
        return response

    def _send(self, url: str, headers: dict[str, str], stream: bool) -> urllib3.BaseHTTPResponse:
        import urllib3

        # urllib3 drops Authorization on a redirect to another host
        # (Retry.remove_headers_on_redirect), so it never follows a link away.
        headers = {**headers, **self.credentials.header(url)}
        try:
            return self.pool.request(
                "GET", url, headers=headers, preload_content=not stream, redirect=True
            )
        except urllib3.exceptions.MaxRetryError as exc:
            raise _Retryable(netfaults.describe(exc.reason or exc)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _Retryable(netfaults.describe(exc)) from None
        except OSError as exc:
            raise _Retryable(netfaults.describe(exc)) from None

    # -- pages ------------------------------------------------------------

    def _cache_paths(self, url: str, accept: str) -> Path:
        # Keyed without credentials: they are not part of what the page is,
        # and must not be hashed into names on disk either.
        key = hashlib.sha256(f"{strip_credentials(url)}\n{accept}".encode()).hexdigest()
        return self.cache_dir / Bucket.HTTP.value / key[:2] / key

    def _load_cached(self, path: Path) -> tuple[dict[str, Any], bytes] | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        header, sep, body = raw.partition(b"\n")
        if not sep:
            return None
        try:
            meta = json.loads(header)
        except ValueError:
            return None
        if not isinstance(meta, dict):
            return None
        return meta, body

    def _store_cached(self, path: Path, meta: dict[str, Any], body: bytes) -> None:
        write_cache(path, json.dumps(meta, sort_keys=True).encode() + b"\n" + body)

    def fetch_page(self, url: str, accept: str = "text/html") -> Page | None:
        """GET a page through the HTTP cache; None when the server says 404/410.

        A cached page younger than its ``max-age`` (or, when the server gave
        none, than :data:`HEURISTIC_FRESHNESS`) is served without asking; an
        older one, one marked ``no-cache``, or any with ``refresh`` set, is
        revalidated with ``If-None-Match`` / ``If-Modified-Since`` and served
        again on 304.
        """
        if is_file_url(url):
            return self._file_page(url)
        url = self.credentials.take(url)
        path = self._cache_paths(url, accept)
        cached = self._load_cached(path)
        if cached is not None:
            meta, body = cached
            page = Page(meta.get("url", url), meta.get("content_type", ""), body, True)
            if self.offline:
                _log.debug("%s: from the cache (offline)", url)
                return page
            control = _CacheControl(meta.get("cache_control"))
            age = time.time() - float(meta.get("stored", 0)) + float(meta.get("age", 0))
            # A server that says nothing about freshness (PyPI's mirrors
            # strip the headers) gets a short window, as uv gives it: a
            # re-lock minutes later need not fetch every page again.
            fresh_for = control.max_age if control.max_age is not None else HEURISTIC_FRESHNESS
            if not self.refresh and not control.no_cache and age < fresh_for:
                _log.debug("%s: from the cache (fresh for %.0fs more)", url, fresh_for - age)
                return page
        self._check_online(url, "fetching this page")
        headers = {"Accept": accept}
        if cached is not None:
            if cached[0].get("etag"):
                headers["If-None-Match"] = cached[0]["etag"]
            if cached[0].get("last_modified"):
                headers["If-Modified-Since"] = cached[0]["last_modified"]

        def attempt() -> tuple[int, Any, bytes, str]:
            import urllib3

            response = self._request(url, headers)
            try:
                data = response.data
            except urllib3.exceptions.HTTPError as exc:
                raise _Retryable(netfaults.describe(exc)) from None
            return response.status, response.headers, data, _final_url(url, response)

        status, resp_headers, data, final_url = self._with_retries(url, attempt)
        if status == 304 and cached is not None:
            _log.debug("%s: cached copy still valid (304)", url)
            meta, body = cached
            control_header = resp_headers.get("Cache-Control", meta.get("cache_control"))
            meta.update(stored=time.time(), cache_control=control_header, age=_age(resp_headers))
            if resp_headers.get("ETag"):
                meta["etag"] = resp_headers["ETag"]
            if not _CacheControl(control_header).no_store:
                self._store_cached(path, meta, body)
            return Page(meta.get("url", url), meta.get("content_type", ""), body, True)
        if status in (404, 410):
            return None
        if status != 200:
            raise CpkError(_status_message(url, status))
        content_type = resp_headers.get("Content-Type", "")
        control = _CacheControl(resp_headers.get("Cache-Control"))
        if control.no_store:
            try:
                os.unlink(path)
            except OSError:
                pass
        else:
            # Kept even without validators: offline mode serves whatever is here.
            meta = {
                "url": final_url,
                "content_type": content_type,
                "etag": resp_headers.get("ETag"),
                "last_modified": resp_headers.get("Last-Modified"),
                "cache_control": resp_headers.get("Cache-Control"),
                "age": _age(resp_headers),
                "stored": time.time(),
            }
            self._store_cached(path, meta, data)
        return Page(final_url, content_type, data)

    def _file_page(self, url: str) -> Page | None:
        path = file_url_path(url)
        if path.is_dir():
            # A static PEP 503 index keeps each page as index.html in its directory.
            index = path / "index.html"
            if not index.is_file():
                return None
            path = index
        try:
            return Page(path.as_uri(), "text/html", path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CpkError(f"{path}: cannot read ({exc.strerror or exc})") from None

    # -- small immutable files --------------------------------------------

    def fetch_bytes(self, url: str, *, limit: int | None = None) -> bytes | None:
        """GET a small file (a PEP 658 metadata file) with retries, uncached.

        None on 404/410. Truncated bodies are retried like server errors.
        With ``limit``, a body longer than that many bytes raises
        :class:`BodyTooLarge` once ``limit + 1`` bytes are read: the rest is
        never read into memory (the connection is closed, not drained), so
        an index cannot make this hold more than the caller allowed.
        """
        if is_file_url(url):
            try:
                data = file_url_path(url).read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise CpkError(f"{url}: cannot read ({exc.strerror or exc})") from None
            if limit is not None and len(data) > limit:
                raise BodyTooLarge(f"{url}: larger than {limit} bytes", limit=limit)
            return data
        self._check_online(url, "downloading")

        def attempt() -> tuple[int, bytes]:
            import urllib3

            if limit is None:
                response = self._request(url, {"Accept": "*/*"})
                try:
                    return response.status, response.data
                except urllib3.exceptions.HTTPError as exc:
                    raise _Retryable(netfaults.describe(exc)) from None
            response = self._request(url, {"Accept": "*/*"}, stream=True)
            try:
                data = response.read(limit + 1)
            except urllib3.exceptions.HTTPError as exc:
                response.close()
                raise _Retryable(netfaults.describe(exc)) from None
            if len(data) > limit:
                response.close()
                raise BodyTooLarge(f"{redact(url)}: larger than {limit} bytes", limit=limit)
            response.release_conn()
            return response.status, data

        status, data = self._with_retries(url, attempt)
        if status in (404, 410):
            return None
        if status != 200:
            raise CpkError(_status_message(url, status))
        return data

    # -- byte ranges --------------------------------------------------------

    def fetch_range(
        self, url: str, start: int | None, length: int | None
    ) -> tuple[int, bytes | None]:
        """GET part of a remote file: (file size, bytes), or (0, None) without ranges.

        ``start=None`` asks for the last ``length`` bytes (a suffix range);
        ``length=None`` for everything from ``start``. A server that answers
        with the whole file (200) or without a ``Content-Range`` gives
        (0, None) and its connection is closed rather than drained, so the
        caller can fall back to a download without paying for this one.
        """
        self._check_online(url, "downloading")
        if start is None:
            spec = f"bytes=-{length}"
        elif length is None:
            spec = f"bytes={start}-"
        else:
            spec = f"bytes={start}-{start + length - 1}"

        def attempt() -> tuple[int, bytes | None]:
            import urllib3

            response = self._request(
                url, {"Accept": "*/*", "Range": spec, "Accept-Encoding": "identity"}, stream=True
            )
            try:
                if response.status in (404, 410):
                    raise CpkError(_status_message(url, response.status))
                total = _range_total(response.headers.get("Content-Range"))
                if response.status != 206 or total is None:
                    response.close()
                    return 0, None
                try:
                    data = response.read(decode_content=False)
                except urllib3.exceptions.HTTPError as exc:
                    raise _Retryable(netfaults.describe(exc)) from None
                return total, data
            finally:
                response.release_conn()

        return self._with_retries(url, attempt)

    # -- downloads --------------------------------------------------------

    def download(
        self,
        url: str,
        dest: Path,
        *,
        sha256: str | None,
        size: int | None = None,
        reporter: Reporter = QUIET,
    ) -> str:
        """Stream url into dest, verifying sha256; return the file's sha256.

        The bytes go to a temporary file in dest's directory, which is renamed
        over dest only once the whole file is there and its hash matches, so a
        failure leaves nothing behind and a reader never sees a partial file.
        """
        name = dest.name
        try:
            with self._transfers:
                return self._download(url, dest, sha256=sha256, size=size, reporter=reporter)
        except OSError as exc:
            # Reads (a file: URL, the network) become CpkError or _Retryable
            # below; an OSError here is the cache failing to take the bytes.
            raise write_failed(exc, dest.parent, f"downloading {name}") from None

    def _download(
        self, url: str, dest: Path, *, sha256: str | None, size: int | None, reporter: Reporter
    ) -> str:
        name = dest.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if sha256 is not None and dest.is_file() and hash_file(dest)[0] == sha256:
            return sha256
        if not is_file_url(url):
            self._check_online(url, f"downloading {name}")
        task = reporter.task(name, size)
        shown = 0

        # The archive cache is a cache (fs's rule): renamed into place whole,
        # not fsynced; a crash costs a download, and the store verifies
        # what it takes from here by hash anyway.
        with writing_atomic(dest, durable=False) as out:
            os.fchmod(out.fileno(), 0o644)

            def attempt() -> str:
                nonlocal shown
                out.seek(0)
                out.truncate()
                digest = hashlib.sha256()
                received = 0
                for chunk in self._stream(url, name, size):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if received > shown:
                        # After a retry, only bytes beyond what was shown count.
                        task.advance(received - shown)
                        shown = received
                return digest.hexdigest()

            actual = self._with_retries(url, attempt, label=name)
            if sha256 is not None and actual != sha256.lower():
                task.done(None)
                raise HashMismatchError(
                    subject=name, expected=sha256, actual=actual, origin=redact(url)
                )
        task.done(f"downloaded {name}")
        return actual

    def _stream(self, url: str, name: str, size: int | None) -> Iterable[bytes]:
        """Yield a file's bytes; truncation and resets raise _Retryable."""
        if is_file_url(url):
            path = file_url_path(url)
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield chunk
            except OSError as exc:
                raise CpkError(f"{path}: cannot read ({exc.strerror or exc})") from None
            return
        import urllib3

        response = self._request(url, {"Accept": "*/*"}, stream=True)
        try:
            if response.status in (404, 410):
                raise CpkError(f"{name}: not found at {redact(url)} (HTTP {response.status})")
            if response.status != 200:
                raise CpkError(f"{name}: {_status_message(url, response.status)}")
            expected = _content_length(response.headers.get("Content-Length"))
            received = 0
            try:
                # read1, not stream(): stream(n) waits for n bytes, so a body
                # that stalls after 1,000 would lose them in the timeout and
                # the message would say "got 0"; read1 yields what arrived.
                while chunk := response.read1(_CHUNK, decode_content=False):
                    received += len(chunk)
                    yield chunk
            except urllib3.exceptions.HTTPError as exc:
                got = f" (got {received} of {expected} bytes)" if expected is not None else ""
                raise _Retryable(f"{netfaults.describe(exc)}{got}") from None
            # enforce_content_length catches short bodies; this also catches a
            # server whose Content-Length disagrees with the size the index gave.
            want = expected if expected is not None else size
            if want is not None and received != want:
                raise _Retryable(f"truncated download (got {received} of {want} bytes)")
        finally:
            response.release_conn()

    def map(self, fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
        """fn over items on the download threads, results in input order.

        Every item runs even when one fails, so no download is abandoned
        half-written; the first failure in input order is then raised.
        ``threads`` (default ``jobs``) may be more than ``jobs`` when fn
        also waits on something other than the network; downloads still
        run at most ``jobs`` at a time.
        """
        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(threads or self.jobs, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]


def _final_url(url: str, response: Any) -> str:
    """The URL a response came from after redirects, which relative links need.

    urllib3 records each hop; a Location header may itself be relative to
    the URL of its hop.
    """
    history = response.retries.history if response.retries is not None else ()
    if not history:
        return url
    last = history[-1]
    return urllib.parse.urljoin(last.url or url, last.redirect_location or "")


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _range_total(value: str | None) -> int | None:
    """The full size from ``Content-Range: bytes a-b/total``; None if absent or ``*``."""
    if not value or "/" not in value:
        return None
    try:
        return int(value.rsplit("/", 1)[1])
    except ValueError:
        return None


def _age(headers: Any) -> float:
    try:
        return float(headers.get("Age") or 0)
    except ValueError:
        return 0.0
