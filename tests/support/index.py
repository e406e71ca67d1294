"""A package index on loopback, serving a directory of wheels and sdists.

It speaks the simple API the way PyPI does: PEP 691 JSON and PEP 503 HTML
by content negotiation, PEP 658/714 ``.metadata`` files, PEP 592 yanking,
``requires-python``, ``ETag`` with ``If-None-Match`` and ``Cache-Control``.
Every request is logged, so a test can assert what a client fetched (or
that it fetched nothing), and faults can be injected per path: server
errors, truncated bodies, connection resets, wrong bytes.

Layout served: ``/simple/`` (project list), ``/simple/<project>/`` (project
page), ``/files/<filename>`` (+ ``.metadata``), ``/links/`` (a flat HTML page
of every file, for find-links).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import socket
import struct
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class _Fault:
    kind: str  # "status", "truncate", "reset"
    times: int
    status: int = 500


@dataclass
class _FileInfo:
    yanked: str | None = None
    requires_python: str | None = None


# Cached: a benchmark's index lists a thousand files on every request.
@functools.cache
def _project_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return canonicalize_name(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return canonicalize_name(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def _metadata_of(path: Path) -> bytes | None:
    if not path.name.endswith(".whl"):
        return None
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                return zf.read(name)
    return None


@dataclass
class LocalIndex:
    """Serve root (a flat directory of distributions) on 127.0.0.1.

    ``metadata_files`` switches PEP 658 metadata off for the whole index;
    ``formats`` lists what the server can answer ("json", "html");
    ``cache_control`` is sent with every simple-API page (none when empty); ``ranges`` makes
    files answer ``Range`` requests (206), one ``bytes=a-b``/``-n``/``a-``
    range each, the way PyPI's file host does.
    """

    root: Path
    metadata_files: bool = True
    formats: tuple[str, ...] = ("json", "html")
    cache_control: str = "max-age=0, must-revalidate"
    ranges: bool = True
    latency: float = 0.0  # seconds slept before every answer (benchmarks)
    #: Requests being answered at once, and the most seen (for concurrency tests).
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[Request] = field(default_factory=list)
    _files: dict[str, _FileInfo] = field(default_factory=dict)
    _faults: dict[str, list[_Fault]] = field(default_factory=dict)
    _corrupt: set[str] = field(default_factory=set)
    _redirects: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- configuration ------------------------------------------------------

    def _info(self, filename: str) -> _FileInfo:
        return self._files.setdefault(filename, _FileInfo())

    def yank(self, filename: str, reason: str = "") -> None:
        self._info(filename).yanked = reason

    def set_requires_python(self, filename: str, spec: str | None) -> None:
        self._info(filename).requires_python = spec

    def fail(self, path: str, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` requests for path with HTTP status."""
        self._faults.setdefault(path, []).append(_Fault("status", times, status))

    def truncate(self, path: str, times: int = 1) -> None:
        """Send half the body (with the full Content-Length), then close."""
        self._faults.setdefault(path, []).append(_Fault("truncate", times))

    def reset(self, path: str, times: int = 1) -> None:
        """Reset the connection (RST) instead of answering."""
        self._faults.setdefault(path, []).append(_Fault("reset", times))

    def redirect(self, path: str, location: str) -> None:
        """Answer path with a 301 to location (which may be relative).

        Everything is also served under ``/mirror/``, a place to redirect to
        where relative links resolve differently than under the original.
        """
        self._redirects[path] = location

    def corrupt(self, filename: str) -> None:
        """Serve different bytes for a file from now on (its hash will not match)."""
        self._corrupt.add(filename)

    def file_path(self, filename: str) -> str:
        return f"/files/{filename}"

    # -- lifecycle ----------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "LocalIndex not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The simple API root, as a client is configured with it."""
        return f"{self.base_url}/simple/"

    @property
    def links_url(self) -> str:
        return f"{self.base_url}/links/"

    def start(self) -> LocalIndex:
        index = self

        class Handler(_Handler):
            owner = index

        self.root.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalIndex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the request log ----------------------------------------------------

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults.get(path, []):
                if fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # -- content ------------------------------------------------------------

    def _dists(self) -> list[Path]:
        # scandir's file type needs no stat per file: a benchmark's index of
        # a thousand files is listed on every request.
        with os.scandir(self.root) as entries:
            return sorted(
                Path(e.path) for e in entries if e.is_file() and _project_of(e.name) is not None
            )

    def projects(self) -> list[str]:
        return sorted({_project_of(p.name) or "" for p in self._dists()})

    def _file_entries(self, project: str) -> list[dict[str, object]]:
        entries = []
        for path in self._dists():
            if _project_of(path.name) != project:
                continue
            info = self._files.get(path.name, _FileInfo())
            data = path.read_bytes()
            entry: dict[str, object] = {
                "filename": path.name,
                "url": f"../../files/{path.name}",
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                "size": len(data),
            }
            if info.requires_python:
                entry["requires-python"] = info.requires_python
            if info.yanked is not None:
                entry["yanked"] = info.yanked or True
            meta = _metadata_of(path) if self.metadata_files else None
            if meta is not None:
                entry["core-metadata"] = {"sha256": hashlib.sha256(meta).hexdigest()}
            entries.append(entry)
        return entries

    def project_json(self, project: str) -> bytes:
        page = {
            "meta": {"api-version": "1.1"},
            "name": project,
            "files": self._file_entries(project),
        }
        return json.dumps(page, indent=1).encode()

    def project_html(self, project: str) -> bytes:
        lines = [
            "<!DOCTYPE html>",
            '<html><head><meta name="pypi:repository-version" content="1.1">',
            f"<title>Links for {project}</title></head><body>",
        ]
        for entry in self._file_entries(project):
            attrs = [f'href="{entry["url"]}#sha256={entry["hashes"]["sha256"]}"']  # type: ignore[index]
            if "requires-python" in entry:
                attrs.append(f'data-requires-python="{html.escape(str(entry["requires-python"]))}"')
            if "yanked" in entry:
                reason = entry["yanked"] if isinstance(entry["yanked"], str) else ""
                attrs.append(f'data-yanked="{html.escape(reason)}"')
            if "core-metadata" in entry:
                digest = entry["core-metadata"]["sha256"]  # type: ignore[index]
                attrs.append(f'data-dist-info-metadata="sha256={digest}"')
                attrs.append(f'data-core-metadata="sha256={digest}"')
            lines.append(f"<a {' '.join(attrs)}>{html.escape(str(entry['filename']))}</a><br>")
        lines.append("</body></html>")
        return "\n".join(lines).encode()

    def root_page(self, as_json: bool) -> bytes:
        projects = self.projects()
        if as_json:
            page = {"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in projects]}
            return json.dumps(page).encode()
        links = "".join(f'<a href="{p}/">{p}</a>\n' for p in projects)
        return f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode()

    def links_page(self) -> bytes:
        links = "".join(
            f'<a href="../files/{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">'
            f"{p.name}</a>\n"
            for p in self._dists()
        )
        return f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode()


def _negotiate(accept: str, formats: tuple[str, ...]) -> str | None:
    """Pick "json" or "html" by q-value, as PEP 691 describes."""
    best: tuple[float, str] | None = None
    for part in (accept or "text/html").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media in (JSON_TYPE, "application/vnd.pypi.simple.latest+json"):
            kind = "json"
        elif media in (HTML_TYPE, "application/vnd.pypi.simple.latest+html", "text/html", "*/*"):
            kind = "html"
        else:
            continue
        if kind in formats and q > 0 and (best is None or q > best[0]):
            best = (q, kind)
    return best[1] if best else None


def _byte_range(spec: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """Answer one ``bytes=`` range of body: 206 with Content-Range, or 416."""
    unit, _, value = spec.partition("=")
    first, _, last = value.strip().partition("-")
    size = len(body)
    try:
        if unit.strip() != "bytes" or "," in value:
            raise ValueError(spec)
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last)) if last else size - 1
    except ValueError:
        return 416, b"", {"Content-Range": f"bytes */{size}"}
    if start > end or start >= size:
        return 416, b"", {"Content-Range": f"bytes */{size}"}
    return 206, body[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{size}"}


class _Handler(BaseHTTPRequestHandler):
    owner: LocalIndex
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        index = self.owner
        with index._lock:
            index.in_flight += 1
            index.max_in_flight = max(index.max_in_flight, index.in_flight)
        try:
            self._get(index)
        finally:
            with index._lock:
                index.in_flight -= 1

    def _get(self, index: LocalIndex) -> None:
        if index.latency:
            time.sleep(index.latency)
        path = self.path.split("?", 1)[0]
        fault = index._take_fault(path)
        if fault is not None and fault.kind == "reset":
            index._log(Request("GET", path, dict(self.headers), 0))
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            self._send(fault.status, b"injected failure\n", "text/plain", path)
            return
        if path in index._redirects:
            self._send(301, b"", "text/plain", path, {"Location": index._redirects[path]})
            return
        status, body, content_type, extra = self._route(path.removeprefix("/mirror"))
        if status == 200 and fault is not None and fault.kind == "truncate":
            index._log(Request("GET", path, dict(self.headers), 200))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        wanted = self.headers.get("Range")
        if status == 200 and wanted and index.ranges and path.startswith("/files/"):
            status, body, extra = _byte_range(wanted, body)
        self._send(status, body, content_type, path, extra)

    def _route(self, path: str) -> tuple[int, bytes, str, dict[str, str]]:
        index = self.owner
        accept = self.headers.get("Accept", "")
        if path in ("/simple", "/simple/") or (
            path.startswith("/simple/") and path.count("/") == 3 and path.endswith("/")
        ):
            kind = _negotiate(accept, index.formats)
            if kind is None:
                return 406, b"not acceptable\n", "text/plain", {}
            project = path[len("/simple/") :].strip("/")
            if project:
                if canonicalize_name(project) != project:
                    return 404, b"not normalized\n", "text/plain", {}
                if project not in index.projects():
                    return 404, b"no such project\n", "text/plain", {}
                body = (
                    index.project_json(project) if kind == "json" else index.project_html(project)
                )
            else:
                body = index.root_page(kind == "json")
            ctype = JSON_TYPE if kind == "json" else "text/html; charset=utf-8"
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = {"ETag": etag, "Vary": "Accept"}
            if index.cache_control:
                headers["Cache-Control"] = index.cache_control
            if etag in [t.strip() for t in self.headers.get("If-None-Match", "").split(",")]:
                return 304, b"", ctype, headers
            return 200, body, ctype, headers
        if path == "/links/":
            return 200, index.links_page(), "text/html", {}
        if path.startswith("/files/"):
            name = path[len("/files/") :]
            if "/" in name or name.startswith("."):
                return 404, b"", "text/plain", {}
            if name.endswith(".metadata"):
                dist = index.root / name[: -len(".metadata")]
                meta = _metadata_of(dist) if index.metadata_files and dist.is_file() else None
                if meta is None:
                    return 404, b"no metadata\n", "text/plain", {}
                return 200, meta, "application/octet-stream", {}
            file = index.root / name
            if not file.is_file():
                return 404, b"no such file\n", "text/plain", {}
            data = file.read_bytes()
            if name in index._corrupt:
                data = bytes(b ^ 0x5A for b in data)
            return (
                200,
                data,
                "application/octet-stream",
                ({"Accept-Ranges": "bytes"} if index.ranges else {}),
            )
        return 404, b"not found\n", "text/plain", {}

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        path: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.owner._log(Request(self.command, path, dict(self.headers), status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304 and self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client went away mid-answer (uv drops a response it no
                # longer needs): theirs to decide, not a server error to print.
                self.close_connection = True

    def do_HEAD(self) -> None:
        """GET's headers without the body (uv asks this before range requests)."""
        self.do_GET()
