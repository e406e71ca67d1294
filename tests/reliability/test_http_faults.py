"""A faulty index on loopback: 503s, resets, truncated bodies and a stall.

Each fault is made by a real server (the test's ``LocalIndex``, or a
socket server that stops sending mid-body), and ``cpk`` runs as a user
runs it. What must hold: a bounded number of attempts (counted in the
server's log), one line naming the file and the fault, and nothing
half-written in the cache or the store.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.index import LocalIndex
from support.wheels import make_wheel

from contentpkg.errors import CpkError
from contentpkg.python.index.http import HttpSession

WHEEL = "faulty-1.0-py3-none-any.whl"
PAGE = "/simple/faulty/"
FILE = f"/files/{WHEEL}"
#: cpk's default: one attempt and three retries.
ATTEMPTS = 4


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalIndex]:
    with LocalIndex(tmp_path / "dists") as served:
        make_wheel(served.root, "faulty", "1.0", files={"faulty.py": os.urandom(200_000)})
        yield served


def _cache() -> Path:
    return Path(os.environ["CPK_CACHE_DIR"])


def _half_written(root: Path) -> list[str]:
    """Temporary files, partial downloads and staging debris below root."""
    return [
        str(p)
        for p in root.rglob("*")
        if p.name.startswith(".tmp-") or p.name.endswith(".whl") or ".staging/" in str(p)
        if not p.is_dir()
    ]


def _store_state(home: Path) -> dict:
    """The store's snapshot, without its lock files (taken by any command)."""
    snap = tree_snapshot(home / "store")
    return {k: v for k, v in snap.items() if not k.startswith(".locks")}


def _fetch(index: LocalIndex) -> tuple[int, list[str]]:
    proc = run_cpk("fetch", "faulty", "--index-url", index.url)
    return proc.returncode, proc.stderr.strip().splitlines()


def _count(index: LocalIndex, path: str) -> int:
    return sum(1 for p in index.paths() if p == path)


def test_503_on_the_page_is_retried_a_bounded_number_of_times(
    index: LocalIndex, cpk_home: Path
) -> None:
    index.fail(PAGE, times=1000, status=503)
    before = _store_state(cpk_home)
    rc, lines = _fetch(index)
    assert rc == 1
    assert len(lines) == 1, lines
    assert "HTTP 503" in lines[0] and f"gave up after {ATTEMPTS} attempts" in lines[0]
    assert _count(index, PAGE) == ATTEMPTS
    assert _store_state(cpk_home) == before
    assert _half_written(_cache()) == []


def test_a_passing_503_is_retried_and_succeeds(index: LocalIndex) -> None:
    index.fail(PAGE, times=2, status=503)
    rc, lines = _fetch(index)
    assert rc == 0, lines
    assert _count(index, PAGE) == 3


@pytest.mark.parametrize("fault", ["reset", "truncate", "503"])
def test_download_faults_end_in_one_line_and_nothing_half_written(
    index: LocalIndex, cpk_home: Path, fault: str
) -> None:
    if fault == "reset":
        index.reset(FILE, times=1000)
    elif fault == "truncate":
        index.truncate(FILE, times=1000)
    else:
        index.fail(FILE, times=1000, status=503)
    before = _store_state(cpk_home)
    rc, lines = _fetch(index)
    assert rc == 1
    # The CLI adds the URL on a second, indented line ("from <url>").
    errors = [line for line in lines if line.startswith("cpk: error:")]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"cpk: error: {WHEEL}: ")
    assert f"gave up after {ATTEMPTS} attempts" in errors[0]
    assert "Traceback" not in "\n".join(lines)
    assert _count(index, FILE) == ATTEMPTS
    assert _store_state(cpk_home) == before
    assert _half_written(_cache()) == []


class StallingServer:
    """Send headers promising ``size`` bytes, then ``sent`` of them, then nothing.

    The connection is held open until the test ends (an Event, not a
    timer), so the client's read timeout is what ends each attempt.
    """

    def __init__(self, size: int, sent: int) -> None:
        self.size, self.sent = size, sent
        self.release = threading.Event()
        self.attempts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/files/{WHEEL}"

    def _serve(self) -> None:
        held = []
        while not self.release.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            self.attempts += 1
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                + f"Content-Length: {self.size}\r\n\r\n".encode()
                + b"x" * self.sent
            )
            held.append(conn)
        for conn in held:
            conn.close()

    def stop(self) -> None:
        self.release.set()
        self.sock.close()


def test_a_stalled_download_reports_the_bytes_really_received(tmp_path: Path) -> None:
    server = StallingServer(size=5000, sent=1000)
    session = HttpSession(tmp_path / "cache", retries=1, backoff=0.0, timeout=0.5)
    dest = tmp_path / "cache" / "archives" / WHEEL
    try:
        with pytest.raises(CpkError) as caught:
            session.download(server.url, dest, sha256=None, size=5000)
    finally:
        session.close()
        server.stop()
    message = str(caught.value)
    assert "\n" not in message
    assert "timed out" in message
    assert "got 1000 of 5000 bytes" in message
    assert "gave up after 2 attempts" in message
    assert server.attempts == 2
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == []
