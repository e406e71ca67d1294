"""Private and hostile indexes, served for real on loopback.

A private index on 127.0.0.1 answers only with HTTP Basic credentials; a
second server on 127.0.0.2 (another host) serves a file the private page
links to and logs whether anyone sent it credentials. A remote page that
links ``file:`` URLs must never make cpk read a local file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from support.cli import run_cpk, tree_snapshot
from support.wheels import make_wheel

USER = "alice"
PASSWORD = "s3cr:et@x/y"  # every character that needs quoting in a URL
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class Server:
    """Serve ``pages`` (path -> (content type, bytes)) on host, logging every request.

    With ``auth``, anything without the right Basic credentials gets 401.
    """

    def __init__(self, host: str, auth: tuple[str, str] | None = None) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.log: list[tuple[str, str | None]] = []
        server = self
        expected = (
            "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        )

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Authorization")
                server.log.append((self.path, header))
                if expected is not None and header != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found = server.pages.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", found[0])
                self.send_header("Content-Length", str(len(found[1])))
                self.end_headers()
                self.wfile.write(found[1])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add_file(self, path: Path) -> tuple[str, str]:
        data = path.read_bytes()
        self.pages[f"/files/{path.name}"] = ("application/octet-stream", data)
        return f"{self.base}/files/{path.name}", hashlib.sha256(data).hexdigest()

    def add_project(self, name: str, files: list[dict[str, object]]) -> None:
        page = {"meta": {"api-version": "1.1"}, "name": name, "files": files}
        self.pages[f"/simple/{name}/"] = (JSON_TYPE, json.dumps(page).encode())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    private = Server("127.0.0.1", (USER, PASSWORD))
    other = Server("127.0.0.2")
    dists = tmp_path / "dists"
    priv = make_wheel(dists, "privpkg", "1.0", requires_dist=["otherpkg"])
    othr = make_wheel(dists, "otherpkg", "1.0")
    nohash = make_wheel(dists, "nohash", "1.0")
    local = make_wheel(tmp_path / "planted", "planted", "1.0")
    url, sha = private.add_file(priv)
    # Relative link, as PyPI and most private indexes write them.
    private.add_project(
        "privpkg",
        [{"filename": priv.name, "url": f"../../files/{priv.name}", "hashes": {"sha256": sha}}],
    )
    url, sha = other.add_file(othr)
    private.add_project(
        "otherpkg", [{"filename": othr.name, "url": url, "hashes": {"sha256": sha}}]
    )
    private.add_file(nohash)
    private.add_project(
        "nohash", [{"filename": nohash.name, "url": f"../../files/{nohash.name}", "hashes": {}}]
    )
    data = local.read_bytes()
    private.add_project(
        "planted",
        [
            {
                "filename": local.name,
                "url": local.as_uri(),
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            }
        ],
    )
    for s in (private, other):
        s.thread.start()
    yield private, other
    for s in (private, other):
        s.stop()


def _index_url(server: Server) -> str:
    host = server.base.removeprefix("http://")
    return f"http://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@{host}/simple/"


def _project(tmp_path: Path, dependency: str) -> Path:
    work = tmp_path / f"project-{dependency}"
    work.mkdir()
    (work / "pyproject.toml").write_text(
        f'[project]\nname = "p"\nversion = "0"\ndependencies = ["{dependency}"]\n'
    )
    return work


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def test_credentials_in_the_index_url_are_sent_to_that_host_only(
    servers: tuple[Server, Server], tmp_path: Path, cpk_home: Path
) -> None:
    private, other = servers
    work = _project(tmp_path, "privpkg")
    proc = run_cpk("sync", "--index-url", _index_url(private), cwd=work)
    assert proc.returncode == 0, proc.stderr
    _no_secret(proc.stdout, proc.stderr)
    paths = [p for p, _ in private.log]
    assert "/simple/privpkg/" in paths and "/files/privpkg-1.0-py3-none-any.whl" in paths
    # Every request that was answered carried the credentials (no 401 loop).
    assert all(header is not None for _, header in private.log)
    # The file linked on another host was fetched, without the credentials.
    assert [p for p, _ in other.log] == ["/files/otherpkg-1.0-py3-none-any.whl"]
    assert all(header is None for _, header in other.log)
    lock = (work / "pylock.toml").read_text()
    _no_secret(lock)
    assert f"{USER}@" not in lock and f"{USER}:" not in lock
    # Nothing on disk holds the password either (cache, store metadata).
    for root in (cpk_home, Path(os.environ["CPK_CACHE_DIR"])):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
                _no_secret(path.read_bytes().decode("latin-1"))


@pytest.mark.parametrize("found_by", ["HOME", "NETRC"])
def test_netrc_credentials_are_used(
    servers: tuple[Server, Server], tmp_path: Path, found_by: str
) -> None:
    """~/.netrc, or the file NETRC names, as curl and pip read it."""
    private, other = servers
    home = tmp_path / "userhome"
    home.mkdir()
    netrc = home / (".netrc" if found_by == "HOME" else "credentials")
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    netrc.chmod(0o600)
    work = _project(tmp_path, "privpkg")
    env = {"HOME": str(home)} if found_by == "HOME" else {"NETRC": str(netrc)}
    proc = run_cpk("sync", "--index-url", f"{private.base}/simple/", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    _no_secret(proc.stdout, proc.stderr)
    assert all(header is None for _, header in other.log)


def test_missing_credentials_say_how_to_give_them(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    private, _ = servers
    work = _project(tmp_path, "privpkg")
    home = tmp_path / "emptyhome"
    home.mkdir()
    proc = run_cpk(
        "lock", "--index-url", f"{private.base}/simple/", cwd=work, env={"HOME": str(home)}
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "HTTP 401" in lines[0] and ".netrc" in lines[0]
    assert not (work / "pylock.toml").exists()


def test_wrong_credentials_are_never_printed(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    private, _ = servers
    work = _project(tmp_path, "privpkg")
    host = private.base.removeprefix("http://")
    proc = run_cpk("lock", "--index-url", f"http://{USER}:wrong-secret@{host}/simple/", cwd=work)
    assert proc.returncode == 1
    assert "wrong-secret" not in proc.stderr + proc.stdout
    assert "HTTP 401" in proc.stderr


@pytest.mark.parametrize("command", ["lock", "fetch"])
def test_index_without_sha256_is_refused_saying_how_to_proceed(
    servers: tuple[Server, Server], tmp_path: Path, command: str
) -> None:
    """Both ways in: a lock refuses to record the file, a fetch to install it."""
    private, _ = servers
    work = _project(tmp_path, "nohash")
    args = ["nohash"] if command == "fetch" else []
    # -q: the summary lines before the error are not what is checked here.
    proc = run_cpk("-q", command, "--index-url", _index_url(private), *args, cwd=work)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no sha256" in lines[0] and "--find-links" in lines[0]
    _no_secret(proc.stderr)


def test_remote_page_linking_a_local_file_is_refused(
    servers: tuple[Server, Server], tmp_path: Path, cpk_home: Path
) -> None:
    private, _ = servers
    work = _project(tmp_path, "planted")
    before = tree_snapshot(cpk_home)
    proc = run_cpk("sync", "--index-url", _index_url(private), cwd=work)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "planted-1.0-py3-none-any.whl" in lines[0]
    assert "never local files" in lines[0]
    _no_secret(proc.stderr)
    assert not (work / "pylock.toml").exists()
    assert tree_snapshot(cpk_home) == before


def _files_holding_the_secret(*roots: Path) -> list[str]:
    secrets = (PASSWORD.encode(), quote(PASSWORD, safe="").encode())
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(s in data for s in secrets):
                    found.append(str(path.relative_to(root)))
    return found


def test_a_run_with_credentials_writes_them_nowhere(
    servers: tuple[Server, Server], tmp_path: Path, cpk_home: Path
) -> None:
    """Given through CPK_INDEX_URL, as CI does: not in the lock, the cache, the
    store, nor the run memo (whose key records the settings it is valid for)."""
    private, _ = servers
    work = _project(tmp_path, "privpkg")
    probe = ("run", "python", "-c", "import privpkg; print('ran')")
    env = {"CPK_INDEX_URL": _index_url(private)}
    for _ in range(2):  # cold, then warm from the memo
        proc = run_cpk(*probe, cwd=work, env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr
        _no_secret(proc.stdout, proc.stderr)
    cache = Path(os.environ["CPK_CACHE_DIR"])
    memos = list((cache / "run-memo").iterdir())
    assert memos and all(oct(m.stat().st_mode & 0o777) == "0o600" for m in memos)
    assert _files_holding_the_secret(cache, cpk_home, work) == []


def test_another_token_keeps_the_lock_fresh(servers: tuple[Server, Server], tmp_path: Path) -> None:
    """Credentials choose nothing that is resolved: a CI token beside a
    developer's, or a rotated one, must not make the lock out of date."""
    private, _ = servers
    work = _project(tmp_path, "privpkg")
    assert run_cpk("lock", "--index-url", _index_url(private), cwd=work).returncode == 0
    host = private.base.removeprefix("http://")
    other_token = f"http://ci:another-token@{host}/simple/"
    check = run_cpk("lock", "--check", "--index-url", other_token, cwd=work)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "url", ["http://{auth}@[::1/simple/", "http://{auth}@127.0.0.1:notaport/simple/"]
)
def test_a_malformed_index_url_is_one_line_without_its_secret(tmp_path: Path, url: str) -> None:
    work = _project(tmp_path, "privpkg")
    auth = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
    proc = run_cpk("lock", "--index-url", url.format(auth=auth), cwd=work)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a valid URL" in lines[0], proc.stderr
    _no_secret(proc.stderr)


def test_a_netrc_that_is_not_text_is_one_line(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    private, _ = servers
    netrc = tmp_path / "netrc"
    netrc.write_bytes(b"machine 127.0.0.1 login a password \xff\xfe\n")
    work = _project(tmp_path, "privpkg")
    proc = run_cpk(
        "lock", "--index-url", f"{private.base}/simple/", cwd=work, env={"NETRC": str(netrc)}
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(netrc) in lines[0] and ".netrc" in lines[0], proc.stderr
