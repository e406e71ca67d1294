"""A small client of the OCI distribution API: blobs, manifests, tags, auth.

Why our own client rather than ``oras`` (the Python package): cpk needs to
check every byte against its digest while it streams into the store's
staging area, to resume chunked uploads, to honour ``Retry-After`` with one
bounded retry policy shared with the rest of cpk, and to keep credentials
out of every message. ``oras`` downloads whole files before any check,
uses ``requests`` (a second HTTP stack beside our urllib3) and uploads in
one request or in chunks it cannot resume. The distribution API is a dozen
endpoints; the part cpk uses is written out here on urllib3, the HTTP
client the project already depends on.

Only the standard library and urllib3 (lazily) are imported: a remote is
consulted from ``cpk run``'s slow path, never from the memo's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from contentpkg import netfaults
from contentpkg.errors import CpkError, HashMismatchError

if TYPE_CHECKING:
    import urllib3

    from contentpkg.context import RemoteEnvironment

T = TypeVar("T")

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_ACCEPT = ", ".join((MANIFEST_TYPE, "application/vnd.docker.distribution.manifest.v2+json"))
#: Uploads are sent in chunks of this size, each a PATCH that can be resumed.
CHUNK = 8 << 20
_READ = 1 << 16
#: 408/429 ask us to come back later; 5xx are the server's failures.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 10.0
_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|\[::1\])$")


class RemoteError(CpkError):
    """A registry failed us: unreachable, refusing, or serving bad bytes.

    ``remote`` names the registry (no credentials); callers that have another
    remote to try catch this and try it.
    """

    def __init__(self, message: str, *, remote: str) -> None:
        super().__init__(message)
        self.remote = remote


class TransferError(RemoteError):
    """A transfer broke midway (a reset, a truncated body): worth one more try."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RemoteUrl:
    """``oci://HOST[:PORT]/PREFIX`` parsed: where the registry is, which repositories."""

    host: str  # host[:port], as registries and Docker's config name them
    prefix: str
    secure: bool

    @classmethod
    def parse(cls, text: str, *, insecure: bool = False) -> RemoteUrl:
        scheme, sep, rest = text.partition("://")
        if not sep or scheme != "oci":
            raise CpkError(f"{text!r}: a remote is oci://HOST[:PORT]/PREFIX")
        host, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        if "@" in host:
            raise CpkError(
                f"{text.split('@')[-1]}: credentials do not belong in a remote's URL;"
                " put them in the Docker config file or CPK_REGISTRY_USERNAME/PASSWORD"
            )
        if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?", host):
            raise CpkError(f"{text!r}: no valid host in the remote's URL")
        if prefix and not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", prefix):
            raise CpkError(f"{text!r}: the prefix must be lowercase letters, digits and . _ - /")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return cls(host, prefix, secure=not (insecure or _LOOPBACK.match(hostname)))

    @property
    def base(self) -> str:
        """Where requests go when plain HTTP is allowed and the registry speaks it."""
        return f"{'https' if self.secure else 'http'}://{self.host}"

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.prefix}" if self.prefix else f"oci://{self.host}"


class _Credentials:
    """Who to be at a registry: the environment's account, else Docker's config.

    Read the way docker, podman, skopeo and oras read ``config.json``: a
    credential helper named for the host in ``credHelpers``, else the one
    named by ``credsStore``, else ``auths[host]`` — its ``auth`` (base64
    ``user:password``) or ``username`` and ``password``, or an
    ``identitytoken`` (an OAuth refresh token). Looked up on the first
    challenge only, so an anonymous registry never runs a helper. Nothing
    here ever enters a message.
    """

    def __init__(self, settings: RemoteEnvironment | None, host: str) -> None:
        self._settings = settings
        self._host = host
        self._lock = threading.Lock()
        self._loaded = False
        self._basic: tuple[str, str] | None = None
        self._refresh_token: str | None = None

    @property
    def basic(self) -> tuple[str, str] | None:
        self._load()
        return self._basic

    @property
    def refresh_token(self) -> str | None:
        self._load()
        return self._refresh_token

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            settings = self._settings
            if settings is None:
                return
            if settings.username:
                self._basic = (settings.username, settings.password)
                return
            entry = _docker_auth(settings.docker_config, self._host)
            if not entry:
                return
            if entry.get("auth"):
                try:
                    decoded = base64.b64decode(entry["auth"]).decode()
                except (ValueError, UnicodeDecodeError):
                    raise CpkError(
                        f"{settings.docker_config}: the auth entry for {self._host} is not"
                        " base64 of user:password"
                    ) from None
                user, _, password = decoded.partition(":")
                self._basic = (user, password)
            elif entry.get("username"):
                self._basic = (str(entry["username"]), str(entry.get("password", "")))
            if entry.get("identitytoken"):
                self._refresh_token = str(entry["identitytoken"])

    def basic_header(self) -> dict[str, str]:
        basic = self.basic
        if basic is None:
            return {}
        raw = f"{basic[0]}:{basic[1]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _docker_auth(path: Path | None, host: str) -> dict[str, Any] | None:
    """host's credentials from Docker's config: a helper's, else ``auths``'."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CpkError(f"{path}: unreadable Docker config ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        return None
    helper = _matching(data.get("credHelpers"), host) or data.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _from_helper(helper, host, path)
        if found is not None:
            return found
    found = _matching(data.get("auths"), host)
    return found if isinstance(found, dict) else None


def _matching(table: object, host: str) -> Any:
    """table's value for host; Docker writes keys as bare hosts or as URLs
    (``https://host/v1/``)."""
    if not isinstance(table, dict):
        return None
    for key, value in table.items():
        if re.sub(r"^https?://", "", str(key)).split("/", 1)[0] == host:
            return value
    return None


#: What helpers print when they hold nothing for a host (docker-credential-helpers'
#: ``ErrCredentialsNotFound``): not an error, the next source is read.
_NOT_FOUND = "credentials not found"


def _from_helper(name: str, host: str, config: Path) -> dict[str, Any] | None:
    """``docker-credential-NAME get`` with host on stdin, as docker runs it.

    Its JSON answer (``Username``, ``Secret``) becomes an ``auths``-style
    entry; a ``<token>`` user means the secret is an identity token. The
    helper's output is never echoed: it may hold the secret.
    """
    import shutil
    import subprocess

    what = f"{config}: credential helper docker-credential-{name} for {host}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise CpkError(f"{config}: {name!r} is not a credential helper's name")
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        raise CpkError(f"{what}: not found on PATH")
    try:
        done = subprocess.run(
            [program, "get"], input=host.encode(), capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CpkError(f"{what}: could not run ({exc.__class__.__name__})") from None
    if done.returncode != 0:
        if _NOT_FOUND in (done.stdout + done.stderr).decode(errors="replace").lower():
            return None
        raise CpkError(f"{what}: failed (exit status {done.returncode})")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("Secret"), str):
        raise CpkError(f"{what}: answered something other than a JSON credential")
    user, secret = str(answer.get("Username") or ""), answer["Secret"]
    if user == "<token>":
        return {"identitytoken": secret}
    return {"username": user, "password": secret}


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` → ("bearer", params)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class Registry:
    """One registry: pooled connections, auth, bounded retries with backoff.

    ``retries`` extra attempts follow a retryable failure (a connection
    error, a truncated body, 408/429/5xx), waiting ``backoff * 2**n`` or
    what ``Retry-After`` asks (up to 10 s). Errors are :class:`RemoteError`
    naming the registry and what was asked, never a credential.
    """

    def __init__(
        self,
        url: RemoteUrl,
        settings: RemoteEnvironment | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.25,
        timeout: float = 30.0,
        jobs: int = 8,
        chunk: int = CHUNK,
    ) -> None:
        self.url = url
        self.chunk = chunk
        self.retries = max(0, retries)
        self.backoff = backoff
        self.timeout = timeout
        self.jobs = jobs
        self._creds = _Credentials(settings, url.host)
        self._ca_file = settings.ca_file if settings is not None else None
        self._tokens: dict[str, str] = {}
        self._basic = False  # the registry asked for basic auth once: send it always
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._scheme: str | None = "https" if url.secure else None
        self._blob_locks: dict[tuple[str, str], threading.Lock] = {}

    # -- plumbing -------------------------------------------------------------

    @property
    def pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._pool is None:
                import urllib3

                from contentpkg import __version__

                kwargs: dict[str, Any] = {}
                if self._ca_file is not None:
                    kwargs["ca_certs"] = os.fspath(self._ca_file)
                self._pool = urllib3.PoolManager(
                    num_pools=4,
                    # Kept alive for every transfer at once: a pull's jobs
                    # and the signature checks running beside them.
                    maxsize=max(10, 2 * self.jobs),
                    headers={"User-Agent": f"contentpkg/{__version__}"},
                    timeout=urllib3.Timeout(connect=min(10.0, self.timeout), read=self.timeout),
                    # Our own retries (below) cover truncated bodies and
                    # Retry-After too; urllib3's would only double them.
                    retries=urllib3.Retry(
                        total=None, connect=0, read=0, status=0, other=0, redirect=5
                    ),
                    **kwargs,
                )
            return self._pool

    @property
    def base(self) -> str:
        """``https://host``, unless plain HTTP is allowed and the registry speaks
        only that. As docker does for insecure registries, TLS is tried first
        and plain HTTP only when the server does not answer in TLS at all; a
        TLS failure of any other kind (an untrusted certificate) is an error."""
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.url.host}"

    def _probe_scheme(self) -> str:
        import urllib3

        try:
            self.pool.request(
                "GET",
                f"https://{self.url.host}/v2/",
                retries=False,
                timeout=urllib3.Timeout(connect=5.0, read=10.0),
            ).drain_conn()
        except urllib3.exceptions.SSLError as exc:
            text = str(exc).lower()
            if "wrong version number" in text or "record layer" in text or "http request" in text:
                return "http"
            return "https"
        except (urllib3.exceptions.HTTPError, OSError):
            return "http"
        return "https"

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None

    def _fail(self, what: str, why: str) -> RemoteError:
        return RemoteError(f"{self.url}: {what}: {why}", remote=str(self.url))

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run attempt, again after retryable failures, with exponential backoff."""
        for n in range(self.retries + 1):
            try:
                return attempt()
            except _Retryable as exc:
                if n == self.retries:
                    tries = "1 attempt" if n == 0 else f"{n + 1} attempts"
                    raise self._fail(what, f"{exc} (gave up after {tries})") from None
                delay = self.backoff * (2**n)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, _MAX_RETRY_AFTER))
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _scope(self, path: str, method: str) -> str:
        match = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", path)
        if not match:
            return ""
        action = "pull" if method in ("GET", "HEAD") else "pull,push"
        return f"repository:{match.group(1)}:{action}"

    def _auth_headers(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic:
            return self._creds.basic_header()
        return {}

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        stream: bool = False,
        what: str = "",
    ) -> urllib3.BaseHTTPResponse:
        """One request with auth (answering a 401 challenge once); no retries.

        Network failures and retryable statuses raise :class:`_Retryable`.
        """
        import urllib3

        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        path = urllib.parse.urlsplit(url).path
        scope = self._scope(path, method)
        for challenged in (False, True):
            sent = {**(headers or {}), **self._auth_headers(scope)}
            try:
                response = self.pool.request(
                    method,
                    url,
                    headers=sent,
                    body=body,
                    preload_content=not stream,
                    redirect=method in ("GET", "HEAD"),
                )
            except urllib3.exceptions.HTTPError as exc:
                raise _Retryable(netfaults.describe(exc)) from None
            except OSError as exc:
                raise _Retryable(netfaults.describe(exc)) from None
            if response.status == 401 and not challenged:
                header = response.headers.get("WWW-Authenticate", "")
                _release(response, stream)
                if self._authenticate(header, scope, what):
                    continue
                raise self._fail(what, "HTTP 401 unauthorized; " + _AUTH_HINT)
            break
        status = response.status
        if status in _RETRY_STATUS:
            retry_after = netfaults.retry_after(response.headers.get("Retry-After"))
            _release(response, stream)
            raise _Retryable(f"HTTP {status} {response.reason or ''}".rstrip(), retry_after)
        if status in (401, 403):
            _release(response, stream)
            raise self._fail(what, f"HTTP {status} {response.reason or ''}; " + _AUTH_HINT)
        return response

    def _authenticate(self, header: str, scope: str, what: str) -> bool:
        """Answer a challenge: remember to send basic auth, or fetch a bearer token."""
        scheme, params = _challenge(header)
        if scheme == "basic":
            if self._creds.basic is None:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"service": params.get("service", "")}
        wanted = params.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        realm = params["realm"]
        if not realm.startswith(("https://", "http://")):
            return False
        token_url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        import urllib3

        try:
            if self._creds.refresh_token:
                form = urllib.parse.urlencode(
                    {
                        **query,
                        "grant_type": "refresh_token",
                        "refresh_token": self._creds.refresh_token,
                        "client_id": "contentpkg",
                    }
                )
                response = self.pool.request(
                    "POST",
                    realm,
                    body=form.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            else:
                response = self.pool.request("GET", token_url, headers=self._creds.basic_header())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retryable(f"token service: {netfaults.describe(exc)}") from None
        if response.status in _RETRY_STATUS:
            raise _Retryable(f"token service: HTTP {response.status}")
        if response.status != 200:
            raise self._fail(
                what, f"the token service refused us (HTTP {response.status}); " + _AUTH_HINT
            )
        try:
            data = json.loads(response.data)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._fail(what, "the token service answered without a token")
        self._tokens[scope] = token
        return True

    # -- the API --------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: is this a registry we may talk to."""

        def attempt() -> None:
            response = self.send("GET", "/v2/", what="the registry")
            if response.status != 200:
                raise self._fail("the registry", f"HTTP {response.status} from /v2/")

        self.retrying("the registry", attempt)

    def has_blob(self, repo: str, digest: str) -> bool:
        what = f"{repo}@{digest[:19]}"

        def attempt() -> bool:
            response = self.send("HEAD", f"/v2/{repo}/blobs/{digest}", what=what)
            if response.status == 200:
                return True
            if response.status == 404:
                return False
            raise self._fail(what, f"HTTP {response.status} asking for a blob")

        return self.retrying(what, attempt)

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str] | None:
        """The manifest's bytes and digest, or None when the registry has none.

        A manifest asked for by digest is checked against it.
        """
        what = f"{repo}:{reference}"

        def attempt() -> tuple[bytes, str] | None:
            response = self.send(
                "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": _ACCEPT}, what=what
            )
            if response.status == 404:
                return None
            if response.status != 200:
                raise self._fail(what, f"HTTP {response.status} asking for a manifest")
            return response.data, "sha256:" + hashlib.sha256(response.data).hexdigest()

        found = self.retrying(what, attempt)
        if found is not None and reference.startswith("sha256:") and found[1] != reference:
            raise self._fail(what, f"the manifest served hashes to {found[1]}")
        return found

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        what = f"{repo}:{reference}"

        def attempt() -> str:
            response = self.send(
                "PUT",
                f"/v2/{repo}/manifests/{reference}",
                headers={"Content-Type": media_type},
                body=data,
                what=what,
            )
            if response.status not in (200, 201):
                raise self._fail(
                    what, f"HTTP {response.status} storing a manifest: " + _error_text(response)
                )
            return "sha256:" + hashlib.sha256(data).hexdigest()

        return self.retrying(what, attempt)

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of repo (following ``Link`` pages); empty when it has none."""
        what = f"{repo} tags"
        tags: list[str] = []
        url = f"/v2/{repo}/tags/list?n=1000"
        while url:

            def attempt(url: str = url) -> tuple[list[str], str]:
                response = self.send("GET", url, what=what)
                if response.status == 404:
                    return [], ""
                if response.status != 200:
                    raise self._fail(what, f"HTTP {response.status} listing tags")
                try:
                    found = json.loads(response.data).get("tags") or []
                except (ValueError, AttributeError):
                    raise self._fail(what, "the tag list is not JSON") from None
                link = re.match(r"\s*<([^>]+)>", response.headers.get("Link", ""))
                return [str(t) for t in found], link.group(1) if link else ""

            page, url = self.retrying(what, attempt)
            tags += page
        return tags

    def get_blob_bytes(self, repo: str, digest: str, limit: int = 16 << 20) -> bytes:
        """A small blob (a config, a signature) whole, checked against digest."""
        chunks: list[bytes] = []
        total = 0
        for chunk in self.blob_chunks(repo, digest):
            total += len(chunk)
            if total > limit:
                raise self._fail(f"{repo}@{digest}", f"blob larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def blob_chunks(self, repo: str, digest: str, size: int | None = None) -> Iterator[bytes]:
        """A blob's bytes as they stream, its digest and size checked at the end.

        Retried whole when the transfer breaks before anything was yielded;
        a break later raises :class:`RemoteError` (the caller has consumed
        part of it and must start over by itself).
        """
        what = f"{repo}@{digest[:19]}"
        algo, _, expected = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise self._fail(what, f"unsupported digest {digest!r}")

        def attempt() -> urllib3.BaseHTTPResponse:
            response = self.send("GET", f"/v2/{repo}/blobs/{digest}", stream=True, what=what)
            if response.status == 404:
                _release(response, True)
                raise self._fail(
                    what, "the registry has no such blob (the manifest names a missing blob)"
                )
            if response.status != 200:
                _release(response, True)
                raise self._fail(what, f"HTTP {response.status} fetching a blob")
            return response

        import urllib3

        response = self.retrying(what, attempt)
        h = hashlib.sha256()
        received = 0
        try:
            try:
                for chunk in response.stream(_READ):
                    h.update(chunk)
                    received += len(chunk)
                    yield chunk
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                why = f"{netfaults.describe(exc)} after {received} bytes"
                raise TransferError(f"{self.url}: {what}: {why}", remote=str(self.url)) from None
        finally:
            _release(response, True)
        if size is not None and received != size:
            why = f"truncated blob (got {received} of {size} bytes)"
            raise TransferError(f"{self.url}: {what}: {why}", remote=str(self.url))
        actual = h.hexdigest()
        if actual != expected:
            raise HashMismatchError(
                subject=what, expected=expected, actual=actual, origin=str(self.url)
            )

    def push_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        advance: Callable[[int], None] = lambda n: None,
    ) -> bool:
        """Upload a blob unless the registry has it; True when bytes were sent.

        Chunked (POST, then PATCH with ``Content-Range``, then PUT with the
        digest): when a chunk fails, the upload's status (``GET`` on its
        location, whose ``Range`` says what arrived) tells where to resume,
        so a broken connection costs one chunk, not the blob.
        """
        # One upload of a blob per repository at a time: distribution commits
        # concurrent uploads of one digest racily (one fails DIGEST_INVALID),
        # and the second uploader finds the blob there anyway.
        with self._lock:
            blob_lock = self._blob_locks.setdefault((repo, digest), threading.Lock())
        with blob_lock:
            if self.has_blob(repo, digest):
                return False
            self._upload(repo, digest, size, opener, advance)
            return True

    def _upload(
        self,
        repo: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        advance: Callable[[int], None],
    ) -> None:
        what = f"{repo}@{digest[:19]}"

        def start() -> str:
            response = self.send("POST", f"/v2/{repo}/blobs/uploads/", what=what)
            if response.status != 202 or "Location" not in response.headers:
                raise self._fail(
                    what, f"HTTP {response.status} starting an upload: " + _error_text(response)
                )
            return self._absolute(response.headers["Location"])

        location = self.retrying(what, start)
        offset = 0
        with opener() as f:
            for n in range(self.retries + 1):
                try:
                    while offset < size:
                        f.seek(offset)
                        chunk = f.read(self.chunk)
                        response = self.send(
                            "PATCH",
                            location,
                            body=chunk,
                            what=what,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                                "Content-Length": str(len(chunk)),
                            },
                        )
                        if response.status != 202:
                            raise self._fail(
                                what, f"HTTP {response.status} uploading: " + _error_text(response)
                            )
                        location = self._absolute(response.headers.get("Location", location))
                        offset += len(chunk)
                        advance(len(chunk))
                    break
                except _Retryable as exc:
                    if n == self.retries:
                        raise self._fail(what, f"{exc} (gave up after {n + 1} attempts)") from None
                    time.sleep(self.backoff * (2**n))
                    offset, location = self._upload_status(location, what)
        sep = "&" if "?" in location else "?"

        def finish() -> None:
            response = self.send("PUT", f"{location}{sep}digest={digest}", body=b"", what=what)
            if response.status == 400 and self.has_blob(repo, digest):
                return  # another machine's upload of the same bytes won the race
            if response.status != 201:
                raise self._fail(
                    what, f"HTTP {response.status} finishing an upload: " + _error_text(response)
                )

        self.retrying(what, finish)

    def _upload_status(self, location: str, what: str) -> tuple[int, str]:
        """How much of an interrupted upload arrived (the ``Range`` header)."""

        def attempt() -> tuple[int, str]:
            response = self.send("GET", location, what=what)
            if response.status != 204:
                raise self._fail(what, f"HTTP {response.status} resuming an upload")
            match = re.fullmatch(r"0-(\d+)", response.headers.get("Range", "").strip())
            # distribution answers "0-0" for an empty upload (its end is
            # size - 1, floored at 0), so "0-0" means nothing arrived.
            end = int(match.group(1)) if match else 0
            done = end + 1 if end > 0 else 0
            return done, self._absolute(response.headers.get("Location", location))

        return self.retrying(what, attempt)

    def _absolute(self, location: str) -> str:
        return urllib.parse.urljoin(self.base + "/", location)


_AUTH_HINT = (
    "log in with 'docker login' (its config.json is read) or set"
    " CPK_REGISTRY_USERNAME and CPK_REGISTRY_PASSWORD"
)


def _release(response: Any, stream: bool) -> None:
    if stream:
        response.drain_conn()
        response.release_conn()


def _error_text(response: Any) -> str:
    """The registry's own error code (``BLOB_UNKNOWN``, ``MANIFEST_INVALID``...)."""
    try:
        errors = json.loads(response.data).get("errors") or []
        return "; ".join(f"{e.get('code')} {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError, TypeError):
        return (response.reason or "").strip()
