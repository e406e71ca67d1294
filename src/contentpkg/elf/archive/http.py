"""HTTP for the archive: whole small files (indexes) and streamed downloads.

urllib, not the Python index's client: that one lives in ``python/``, which
``elf/`` may not import, and the archive needs only plain GETs with
revalidation (``If-None-Match``/``If-Modified-Since``) and streaming. Every
failure is one line naming the URL.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from contentpkg.errors import CpkError

_TIMEOUT = 60
_CHUNK = 1 << 18
_AGENT = "contentpkg (Debian archive source)"


class TransientError(CpkError):
    """A failure worth one more try: the connection broke, or the server said 5xx."""


@dataclass
class Response:
    """A GET's outcome: 304 means the cached copy still holds."""

    status: int
    body: bytes
    etag: str = ""
    last_modified: str = ""


def _open(url: str, headers: dict[str, str]) -> urllib.request.addinfourl | None:
    request = urllib.request.Request(url, headers={"User-Agent": _AGENT, **headers})
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None
        kind = TransientError if exc.code >= 500 else CpkError
        raise kind(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"{url}: cannot fetch: {reason}") from None


def get(url: str, etag: str = "", last_modified: str = "") -> Response:
    """GET url whole; with validators, a 304 returns an empty body."""
    if not url.startswith(("http://", "https://")):
        raise CpkError(f"{url}: only http and https sources are supported")
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    response = _open(url, headers)
    if response is None:
        return Response(304, b"")
    with response:
        try:
            body = response.read()
        except OSError as exc:
            raise CpkError(f"{url}: download cut short: {exc}") from None
        return Response(
            response.status,
            body,
            response.headers.get("ETag", ""),
            response.headers.get("Last-Modified", ""),
        )


def stream(url: str, out: BinaryIO, progress: Callable[[int], None]) -> int:
    """Copy url's body into out, calling progress(bytes) per chunk; return the size."""
    if not url.startswith(("http://", "https://")):
        raise CpkError(f"{url}: only http and https sources are supported")
    response = _open(url, {})
    assert response is not None
    total = 0
    with response:
        try:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                total += len(chunk)
                progress(len(chunk))
        except OSError as exc:
            raise TransientError(f"{url}: download cut short: {exc}") from None
    return total
