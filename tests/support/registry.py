"""A real OCI registry for tests: Debian's ``docker-registry`` on loopback.

:class:`Registry` starts the CNCF distribution server with a temporary
configuration (filesystem storage under the test's directory), optionally
with htpasswd auth and TLS from a test CA made with ``cryptography``, and
stops it by its process id. :class:`FaultProxy` sits in front of it and
injects what real registries and networks do: 429/503 answers, truncated or
altered blobs, dropped connections, and a bearer-token service.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_registry() -> None:
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cpk test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


class Registry:
    """``docker-registry serve`` on 127.0.0.1, stopped by pid."""

    def __init__(
        self, directory: Path, *, user: str | None = None, password: str = "", tls: bool = False
    ) -> None:
        need_registry()
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.ca: Path | None = None
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {directory / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: cpk-test",
        ]
        if tls:
            self.ca, cert, key = make_ca(directory / "tls")
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if user is not None:
            if shutil.which("htpasswd") is None:
                pytest.skip("htpasswd is not installed (apt-get install apache2-utils)")
            htpasswd = subprocess.run(
                ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
            ).stdout
            (directory / "htpasswd").write_text(htpasswd)
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: cpk-test",
                f"    path: {directory / 'htpasswd'}",
            ]
        self.config = directory / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> Registry:
        self.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "registry.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError((self.directory / "registry.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def blob_paths(self) -> list[Path]:
        return sorted((self.directory / "data").rglob("blobs/sha256/*/*/data"))

    def delete_blob(self, repo: str, digest: str) -> None:
        request = urllib.request.Request(f"{self.base}/v2/{repo}/blobs/{digest}", method="DELETE")
        with urllib.request.urlopen(request) as response:
            assert response.status == 202


@dataclass
class Fault:
    """What to do to requests whose path contains ``match``, ``times`` times (-1: always)."""

    match: str
    kind: str  # "status", "truncate", "alter", "drop"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    method: str = "GET"


@dataclass
class _State:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    token: str | None = None  # a bearer token demanded of every /v2/ request
    account: tuple[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Requests being served now, and the most served at once.
    inflight: int = 0
    max_inflight: int = 0
    #: Requests whose path contains this are held until another request is
    #: in flight beside them (or 5 s pass): a client that asks for two
    #: things at once gets both answered, one that asks in turn does not
    #: overlap and shows it in max_inflight.
    gate: str | None = None
    #: Hold a gated request until another *gated* request is in flight
    #: (or 10 s pass), not just any request: a client's other requests
    #: (a manifest, a signature) cannot release it.
    gate_alike: bool = False
    gated: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    #: The client ends (address, port) that requests came from: one per connection.
    peers: set[tuple[str, int]] = field(default_factory=set)


class FaultProxy:
    """A loopback HTTP proxy in front of a registry, injecting faults.

    With ``token=`` set it also plays a token service: /v2/ requests without
    ``Authorization: Bearer <token>`` get a Bearer challenge pointing at
    ``/token``, which hands out the token to the right basic credentials.
    """

    def __init__(self, upstream: str, *, account: tuple[str, str] | None = None) -> None:
        self.state = _State(upstream)
        if account is not None:
            self.state.account = account
            self.state.token = "tok-" + base64.b16encode(os.urandom(8)).decode()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def requests(self, method: str, part: str) -> list[tuple[str, str, int]]:
        return [row for row in self.state.log if row[0] == method and part in row[1]]

    def hold(self, part: str, *, alike: bool = False) -> None:
        """Hold requests for paths containing part until another is in
        flight, or with ``alike`` until another such request is."""
        self.state.gate = part
        self.state.gate_alike = alike

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _take(self) -> Fault | None:
            with state.lock:
                for fault in state.faults:
                    if fault.match in self.path and fault.method == self.command and fault.times:
                        fault.times -= 1 if fault.times > 0 else 0
                        return fault
            return None

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _auth(self) -> bool:
            if state.token is None:
                return True
            if self.path.startswith("/token"):
                wanted = "Basic " + base64.b64encode(":".join(state.account).encode()).decode()
                if self.headers.get("Authorization") == wanted:
                    self._reply(200, b'{"token": "%s"}' % state.token.encode())
                else:
                    self._reply(401, b"{}")
                return False
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                realm = f"http://{self.headers.get('Host')}/token"
                self._reply(
                    401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="cpk-test"'}
                )
                return False
            return True

        def _forward(self) -> None:
            with state.changed:
                state.peers.add(self.client_address[:2])
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
                gated = state.gate is not None and state.gate in self.path
                state.gated += gated
                state.changed.notify_all()
                if gated and state.gate_alike:
                    state.changed.wait_for(lambda: state.gated > 1, timeout=10)
                elif gated:
                    state.changed.wait_for(lambda: state.inflight > 1, timeout=5)
            try:
                self._serve()
            finally:
                with state.changed:
                    state.inflight -= 1
                    state.gated -= gated

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if not self._auth():
                return
            fault = self._take()
            with state.lock:
                state.log.append((self.command, self.path, fault is not None))
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._reply(fault.status, b'{"errors":[]}', headers)
                return
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            host = state.upstream.split("://", 1)[1]
            conn = http.client.HTTPConnection(host, timeout=30)
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "authorization", "connection")
            }
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if fault is not None and fault.kind == "truncate":
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None and fault.kind == "alter" and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() in ("connection", "transfer-encoding", "content-length"):
                    continue
                if k.lower() == "location":
                    v = v.replace(state.upstream, f"http://{self.headers.get('Host')}")
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    return Handler
