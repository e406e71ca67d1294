"""A wheel's METADATA read with HTTP range requests, without downloading the wheel.

When an index does not offer PEP 658 ``.metadata`` files, a resolver would
have to download every wheel it considers just to learn its dependencies. A
wheel is a zip file whose directory sits at its end, so two small requests
do instead (as uv does): the tail of the file (end-of-central-directory and
the central directory, which names every member and where it starts), then
the bytes of the ``.dist-info/METADATA`` member alone.

The reading of the zip format is left to :mod:`zipfile`, given a file object
whose reads become range requests: zipfile already handles zip64, archive
comments and every compression a wheel may use, which a parser written here
would have to repeat. Reads are cached in blocks, so the local header and
the member (adjacent bytes) cost one request between them.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import TYPE_CHECKING

from contentpkg.python.index.filenames import metadata_member

if TYPE_CHECKING:
    from contentpkg.python.index.http import HttpSession

# The tail asked for first: end-of-central-directory (22 bytes + comment)
# and, for all but the largest wheels, the whole central directory.
TAIL = 64 * 1024
# Wheels smaller than this are downloaded whole instead: two requests for
# the metadata of a wheel this small save nothing over one for all of it.
MIN_SIZE = 2 * TAIL
# Smallest read on a miss: a local file header and a typical METADATA.
BLOCK = 32 * 1024


class RangesUnsupported(Exception):
    """The server answered a range request with the whole file (or not at all)."""


class _RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file whose reads are range requests."""

    def __init__(self, http: HttpSession, url: str, size: int | None) -> None:
        super().__init__()
        self._http = http
        self._url = url
        self._pos = 0
        # Fetched spans as (start, bytes), few and large: a linear scan is enough.
        self._spans: list[tuple[int, bytes]] = []
        start = max(0, size - TAIL) if size is not None else None
        total, data = http.fetch_range(url, start, None if start is not None else TAIL)
        if data is None:
            raise RangesUnsupported(url)
        self.size = total
        self._spans.append((total - len(data), data))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), max(0, self.size - self._pos))
        if want == 0:
            return 0
        data = self._read(self._pos, want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read(self, start: int, length: int) -> bytes:
        for span_start, span in self._spans:
            if span_start <= start and start + length <= span_start + len(span):
                return span[start - span_start : start + length - span_start]
        end = min(self.size, start + max(length, BLOCK))
        total, data = self._http.fetch_range(self._url, start, end - start)
        if data is None or total != self.size:
            raise RangesUnsupported(self._url)
        self._spans.append((start, data))
        return data[:length]


def wheel_metadata_by_range(http: HttpSession, url: str, filename: str, size: int | None) -> bytes:
    """The METADATA of the wheel at url, read with range requests.

    Raises RangesUnsupported when the server does not answer them (the caller
    downloads the wheel instead) and InvalidInputError for a broken wheel.
    """
    from contentpkg.errors import InvalidInputError

    remote = _RangeFile(http, url, size)
    try:
        with zipfile.ZipFile(remote) as zf:  # type: ignore[arg-type]
            member = metadata_member(zf.namelist(), filename)
            if member is None:
                raise InvalidInputError(
                    f"{filename}: wheel has no single .dist-info/METADATA", path=filename
                )
            return zf.read(member)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise InvalidInputError(f"{filename}: not a valid wheel ({exc})", path=filename) from None
