"""Remote stores against a real registry (Debian's docker-registry on loopback).

Push from one home, pull into another: entries verify and are byte-identical;
a project then runs with the index gone; every fault named in one line with
nothing half-written; concurrent pulls; auth (basic over TLS, bearer).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.debs import Deb
from support.index import LocalIndex
from support.registry import Fault, FaultProxy, Registry, need_registry
from support.wheels import make_wheel

from contentpkg.context import Context
from contentpkg.store import Store
from contentpkg.store.hashing import tree_hash
from contentpkg.store.remote import layout
from contentpkg.store.remote.oci import RemoteUrl
from contentpkg.store.remote.pull import Ref
from contentpkg.store.verify import verify_entry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    need_registry()
    with Registry(tmp_path_factory.mktemp("registry")) as served:
        yield served


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "keys" / "team.key"
    key.parent.mkdir()
    run_cpk("key", "generate", key, check=True)
    return key, key.with_name("team.key.pub")


class Home:
    """One machine's cpk: its own home and cache, its own environment."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = {
            "CPK_HOME": str(root / "home"),
            "CPK_CACHE_DIR": str(root / "cache"),
            "HOME": str(root),
            "CPK_REMOTES": "",
            **env,
        }

    def cpk(self, *args: object, check: bool = True, **kw: object):
        return run_cpk(*args, env=self.env, check=check, **kw)  # type: ignore[arg-type]

    @property
    def store_dir(self) -> Path:
        return Path(self.env["CPK_HOME"]) / "store"

    def store(self) -> Store:
        return Store.open(self.root, ctx=Context.from_environ(self.env))

    def entries(self) -> dict[str, str]:
        return {e.dirname: e.content_hash for e in self.store().entries()}


def _prefix(tmp_path: Path, name: str, text: str) -> Path:
    tree = tmp_path / f"src-{name}"
    (tree / "bin").mkdir(parents=True)
    (tree / "share" / "doc").mkdir(parents=True)
    script = tree / "bin" / name
    script.write_text(f"#!/bin/sh\necho {text}\n")
    script.chmod(0o755)
    (tree / "share" / "doc" / "README").write_text(text * 100)
    os.symlink(name, tree / "bin" / f"{name}-link")
    return tree


def _url(host: str, prefix: str) -> str:
    return f"oci://{host}/{prefix}"


def _staging_debris(home: Home) -> list[str]:
    staging = home.store_dir / ".staging"
    return sorted(os.listdir(staging)) if staging.exists() else []


# -- keys and configuration ---------------------------------------------------------


def test_key_generate_writes_a_private_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k"
    run_cpk("key", "generate", key, check=True)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    again = run_cpk("key", "generate", key)
    assert again.returncode == 1 and "already exists" in again.stderr
    trust_private = run_cpk("key", "trust", key)
    assert trust_private.returncode == 1 and "private key" in trust_private.stderr
    run_cpk("key", "trust", tmp_path / "k.pub", check=True)
    assert len(run_cpk("key", "list", check=True).stdout.split()) == 1


def test_remotes_are_kept_in_order_and_the_environment_replaces_them(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.cpk("remote", "add", "a", "oci://127.0.0.1:1/x")
    home.cpk("remote", "add", "b", "oci://registry.example.com/team/cpk")
    listed = home.cpk("remote", "list").stdout.splitlines()
    assert listed == [
        "a oci://127.0.0.1:1/x (plain http)",
        "b oci://registry.example.com/team/cpk",
    ]
    dup = home.cpk("remote", "add", "a", "oci://127.0.0.1:2/y", check=False)
    assert dup.returncode == 1 and "exists" in dup.stderr
    home.cpk("remote", "remove", "a")
    assert home.cpk("remote", "list").stdout.split()[0] == "b"
    env_home = Home(tmp_path, CPK_REMOTES="oci://127.0.0.1:9/p oci://127.0.0.1:8/q")
    env_home.env["CPK_HOME"] = home.env["CPK_HOME"]
    assert len(env_home.cpk("remote", "list").stdout.splitlines()) == 2


def test_remote_urls_use_https_except_on_loopback_or_when_insecure() -> None:
    assert RemoteUrl.parse("oci://ghcr.io/org/cpk").base == "https://ghcr.io"
    assert RemoteUrl.parse("oci://127.0.0.1:5000/p").base == "http://127.0.0.1:5000"
    assert RemoteUrl.parse("oci://ci:5000/p", insecure=True).base == "http://ci:5000"
    for bad in ("https://ghcr.io/x", "oci://user:pw@ghcr.io/x", "oci://ghcr.io/Upper"):
        with pytest.raises(Exception) as info:
            RemoteUrl.parse(bad)
        assert "pw" not in str(info.value)


def test_tags_and_repositories_follow_the_registry_grammar() -> None:
    assert layout.tag_for("1.0+local.2", "a" * 32) == "1.0_local.2-" + "a" * 32
    assert layout.tag_for("1:2.3~rc1", "b" * 32) == "1_2.3_rc1-" + "b" * 32
    assert len(layout.tag_for("9" * 300, "c" * 32)) <= 128
    assert layout.repository_for("Foo_Bar..baz") == "foo-bar-baz"


# -- push and pull --------------------------------------------------------------------


def test_push_then_pull_into_an_empty_home_is_byte_identical(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    one, two = Home(tmp_path / "one"), Home(tmp_path / "two")
    one.cpk("store", "add", _prefix(tmp_path, "hello", "hi"), "--name", "hello", "--version", "1.0")
    one.cpk("store", "add", _prefix(tmp_path, "bye", "ciao"), "--name", "bye", "--version", "2.0")
    url = _url(registry.host, "roundtrip")
    pushed = one.cpk("store", "push", url, "--all", "--sign-key", key)
    assert "pushed 2 entries" in pushed.stderr
    # Pushing again uploads nothing: tags (and blobs) are there.
    again = one.cpk("store", "push", url, "--all", "--sign-key", key)
    assert "pushed 0 entries (0 B uploaded), 2 already" in again.stderr
    # Deterministic layers: the same entry packs to the same blob.
    entry = one.store().resolve("hello")
    a = layout.pack(entry, tmp_path / "a.tar.zst")
    b = layout.pack(entry, tmp_path / "b.tar.zst")
    assert a.layer_digest == b.layer_digest and a.layer.read_bytes() == b.layer.read_bytes()

    two.cpk("key", "trust", pub)
    pulled = two.cpk("store", "pull", url, "hello", "bye")
    assert len(pulled.stdout.splitlines()) == 2
    assert two.entries() == one.entries()
    for entry in two.store().entries():
        original = one.store_dir / entry.dirname
        assert verify_entry(entry) == []
        assert tree_hash(entry.path) == tree_hash(original)
        for meta in ("entry.json", "files.json"):
            assert (entry.path / ".cpk" / meta).read_bytes() == (
                original / ".cpk" / meta
            ).read_bytes()
    assert two.cpk("store", "verify").returncode == 0
    assert two.cpk("identify", two.store_dir / pulled.stdout.split()[0] / "bin" / "hello").stdout


def test_a_pull_refuses_unsigned_untrusted_and_unknown_keys_writing_nothing(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    one, two = Home(tmp_path / "one"), Home(tmp_path / "two")
    one.cpk("store", "add", _prefix(tmp_path, "tool", "t"), "--name", "tool", "--version", "1")
    url = _url(registry.host, "trust")
    one.cpk("store", "push", url, "tool", "--sign-key", key)

    none = two.cpk("store", "pull", url, "tool", check=False)
    assert none.returncode == 1 and "no trusted keys" in none.stderr
    other = tmp_path / "other.key"
    two.cpk("key", "generate", other)
    two.cpk("key", "trust", f"{other}.pub")
    unknown = two.cpk("store", "pull", url, "tool", check=False)
    assert unknown.returncode == 1
    assert "signed by an unknown key" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert two.entries() == {} and _staging_debris(two) == []

    # Unsigned: the signature artifact is gone.
    entry = one.store().resolve("tool")
    repo = f"trust/{layout.repository_for('tool')}"
    tag = layout.tag_for(entry.version, entry.short_hash)
    from contentpkg.store.remote.oci import Registry as Client

    client = Client(RemoteUrl.parse(url))
    _, digest = client.get_manifest(repo, tag)
    from contentpkg.store.remote.signing import signature_tag

    sig = client.get_manifest(repo, signature_tag(digest))
    import urllib.request

    request = urllib.request.Request(
        f"{registry.base}/v2/{repo}/manifests/{sig[1]}", method="DELETE"
    )
    urllib.request.urlopen(request).close()
    two.cpk("key", "trust", pub)
    unsigned = two.cpk("store", "pull", url, "tool", check=False)
    assert unsigned.returncode == 1 and "unsigned" in unsigned.stderr
    assert two.entries() == {}


def test_push_without_a_key_is_refused(tmp_path: Path, registry: Registry) -> None:
    one = Home(tmp_path)
    one.cpk("store", "add", _prefix(tmp_path, "x", "x"), "--name", "x", "--version", "1")
    proc = one.cpk("store", "push", _url(registry.host, "nokey"), "--all", check=False)
    assert proc.returncode == 1 and "no signing key" in proc.stderr


# -- substitution -----------------------------------------------------------------


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalIndex]:
    root = tmp_path / "dists"
    make_wheel(
        root,
        "alpha",
        "1.0",
        requires_dist=["beta>=1"],
        files={"alpha/__init__.py": "import beta\nVALUE = 'alpha ' + beta.V\n"},
    )
    make_wheel(root, "beta", "1.0", files={"beta/__init__.py": "V = 'beta'\n"})
    with LocalIndex(root) as served:
        yield served


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\ndependencies = ["alpha"]\n'
    )
    return root


def test_a_project_runs_offline_from_entries_substituted_by_a_remote(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, pub = keys
    url = _url(registry.host, "py")
    one = Home(tmp_path / "one")
    two = Home(tmp_path / "two", CPK_REMOTES=url)
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    two.cpk("key", "trust", pub)
    index_url = index.url
    index.stop()
    proc = two.cpk(
        "run",
        "--offline",
        "--index-url",
        index_url,
        "python",
        "-c",
        "import alpha; print(alpha.VALUE)",
        cwd=root,
    )
    assert proc.stdout.strip() == "alpha beta"
    assert two.entries() == one.entries()
    # The bytecode came along: the entries hold it and verify it.
    for entry in two.store().entries():
        assert entry.derived_records() and verify_entry(entry) == []


@pytest.mark.slow  # seconds of retries and TLS set-up: with the long variants
def test_a_failing_remote_is_named_and_the_next_one_serves(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, pub = keys
    url = _url(registry.host, "next")
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    with FaultProxy(registry.base) as proxy:
        proxy.add(Fault("/blobs/", "status", times=-1, status=503, retry_after="0"))
        two = Home(tmp_path / "two", CPK_REMOTES=f"{_url(proxy.host, 'next')} {url}")
        two.cpk("key", "trust", pub)
        index_url = index.url
        index.stop()
        proc = two.cpk("sync", "--offline", "--index-url", index_url, cwd=root)
    assert "2 pulled from remotes" in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings and all(proxy.host in w and "HTTP 503" in w for w in warnings)
    assert "gave up after 4 attempts" in warnings[0]
    assert two.entries() == one.entries()


# -- faults -----------------------------------------------------------------------


@pytest.fixture
def published(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> tuple[Home, str, Path]:
    """An entry pushed under a fresh prefix: (the pushing home, prefix, public key)."""
    key, pub = keys
    prefix = f"f{abs(hash(str(tmp_path))) % 10**8}"  # a repository of its own per test
    one = Home(tmp_path / "one")
    one.cpk("store", "add", _prefix(tmp_path, "pkg", "p" * 50), "--name", "pkg", "--version", "1")
    one.cpk("store", "push", _url(registry.host, prefix), "pkg", "--sign-key", key)
    return one, prefix, pub


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("/blobs/sha256:", "truncate", times=-1), "after"),
        (Fault("/blobs/sha256:", "alter", times=-1), "sha256 mismatch"),
        # The two that wait out bounded retries run with the slow variants.
        pytest.param(
            Fault("/blobs/sha256:", "drop", times=-1), "connection", marks=pytest.mark.slow
        ),
        pytest.param(
            Fault("/manifests/", "status", times=-1, status=429, retry_after="0"),
            "HTTP 429",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["truncated", "altered", "down", "429"],
)
def test_faults_are_one_line_and_write_nothing(
    tmp_path: Path,
    registry: Registry,
    published: tuple[Home, str, Path],
    fault: Fault,
    message: str,
) -> None:
    _one, prefix, pub = published
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    before = tree_snapshot(two.store_dir)
    with FaultProxy(registry.base) as proxy:
        proxy.add(fault)
        proc = two.cpk("store", "pull", _url(proxy.host, prefix), "pkg", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpk: error:") and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert two.entries() == {} and _staging_debris(two) == []
    assert {k: v for k, v in tree_snapshot(two.store_dir).items() if not k.startswith(".")} == {
        k: v for k, v in before.items() if not k.startswith(".")
    }
    if fault.kind == "status":
        assert len(proxy.requests("GET", "/manifests/")) == 4  # bounded: 1 + 3 retries


def test_retryable_answers_are_retried_then_the_pull_succeeds(
    tmp_path: Path, registry: Registry, published: tuple[Home, str, Path]
) -> None:
    one, prefix, pub = published
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    with FaultProxy(registry.base) as proxy:
        proxy.add(Fault("/manifests/", "status", times=2, status=503, retry_after="0"))
        proxy.add(Fault("/blobs/", "status", times=1, status=429, retry_after="0"))
        two.cpk("store", "pull", _url(proxy.host, prefix), "pkg")
        assert sum(1 for row in proxy.state.log if row[2]) == 3
    assert two.entries() == one.entries()


def test_a_manifest_naming_a_missing_blob_is_refused(
    tmp_path: Path, registry: Registry, published: tuple[Home, str, Path]
) -> None:
    one, prefix, pub = published
    entry = one.store().resolve("pkg")
    repo = f"{prefix}/pkg"
    packed = layout.pack(entry, tmp_path / "l.tar.zst")
    registry.delete_blob(repo, packed.layer_digest)
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    proc = two.cpk("store", "pull", _url(registry.host, prefix), "pkg", check=False)
    assert proc.returncode == 1 and "missing blob" in proc.stderr
    assert two.entries() == {} and _staging_debris(two) == []


def test_eight_concurrent_pulls_of_overlapping_entries_leave_one_entry_each(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    one = Home(tmp_path / "one")
    names = ["a1", "b2", "c3"]
    for name in names:
        one.cpk(
            "store", "add", _prefix(tmp_path, name, name * 20), "--name", name, "--version", "1"
        )
    url = _url(registry.host, "concurrent")
    one.cpk("store", "push", url, "--all", "--sign-key", key)
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    env = {**os.environ, **two.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "contentpkg", "store", "pull", url, *names[i % 3 :], names[0]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert [r[2] for r in results] == [0] * 8, [r[1] for r in results]
    assert two.entries() == one.entries()
    visible = sorted(n for n in os.listdir(two.store_dir) if not n.startswith("."))
    assert visible == sorted(one.entries())
    assert _staging_debris(two) == []
    assert all(verify_entry(e) == [] for e in two.store().entries())


def test_install_pulls_a_missing_package_from_a_remote(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    one = Home(tmp_path / "one")
    one.cpk(
        "store", "add", _prefix(tmp_path, "greet", "hello"), "--name", "greet", "--version", "3.1"
    )
    url = _url(registry.host, "install")
    one.cpk("store", "push", url, "greet", "--sign-key", key)
    two = Home(tmp_path / "two", CPK_REMOTES=url)
    two.cpk("key", "trust", pub)
    where = tmp_path / "env"
    two.cpk("install", "greet", where)
    out = subprocess.run([where / "bin" / "greet"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hello"
    assert two.entries() == one.entries()


# -- auth -------------------------------------------------------------------------


@pytest.mark.slow  # seconds of retries and TLS set-up: with the long variants
def test_basic_auth_over_tls_with_docker_config_credentials(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    with Registry(tmp_path / "reg", user="ci", password="s3cret-pw", tls=True) as reg:
        assert reg.ca is not None
        docker = tmp_path / "docker"
        docker.mkdir()
        auth = {"auths": {reg.host: {"auth": "Y2k6czNjcmV0LXB3"}}}  # ci:s3cret-pw
        (docker / "config.json").write_text(json.dumps(auth))
        one = Home(tmp_path / "one", DOCKER_CONFIG=str(docker), SSL_CERT_FILE=str(reg.ca))
        one.cpk("store", "add", _prefix(tmp_path, "sec", "s"), "--name", "sec", "--version", "1")
        url = _url(reg.host, "secure")
        one.cpk("store", "push", url, "--all", "--sign-key", key)

        anonymous = Home(tmp_path / "anon", SSL_CERT_FILE=str(reg.ca))
        anonymous.cpk("key", "trust", pub)
        refused = anonymous.cpk("store", "pull", url, "sec", check=False)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        untrusted_ca = Home(tmp_path / "noca", DOCKER_CONFIG=str(docker))
        untrusted_ca.cpk("key", "trust", pub)
        tls = untrusted_ca.cpk("store", "pull", url, "sec", check=False)
        assert tls.returncode == 1 and "TLS" in tls.stderr

        env_creds = Home(
            tmp_path / "two",
            SSL_CERT_FILE=str(reg.ca),
            CPK_REGISTRY_USERNAME="ci",
            CPK_REGISTRY_PASSWORD="s3cret-pw",
        )
        env_creds.cpk("key", "trust", pub)
        proc = env_creds.cpk("store", "pull", url, "sec")
        assert env_creds.entries() == one.entries()
        for text in (proc.stderr, refused.stderr, tls.stderr):
            assert "s3cret" not in text and "Y2k6" not in text


@pytest.mark.slow  # seconds of retries and TLS set-up: with the long variants
def test_bearer_token_flow_from_www_authenticate(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    with FaultProxy(registry.base, account=("robot", "tok-pw")) as proxy:
        one = Home(tmp_path / "one", CPK_REGISTRY_USERNAME="robot", CPK_REGISTRY_PASSWORD="tok-pw")
        one.cpk("store", "add", _prefix(tmp_path, "br", "b"), "--name", "br", "--version", "1")
        url = _url(proxy.host, "bearer")
        one.cpk("store", "push", url, "--all", "--sign-key", key)
        two = Home(tmp_path / "two", CPK_REGISTRY_USERNAME="robot", CPK_REGISTRY_PASSWORD="tok-pw")
        two.cpk("key", "trust", pub)
        two.cpk("store", "pull", url, "br")
        assert two.entries() == one.entries()
        wrong = Home(tmp_path / "three", CPK_REGISTRY_USERNAME="robot", CPK_REGISTRY_PASSWORD="x")
        wrong.cpk("key", "trust", pub)
        refused = wrong.cpk("store", "pull", url, "br", check=False)
        assert refused.returncode == 1 and "token service refused" in refused.stderr


def _credential_helper(directory: Path, name: str, host: str, user: str, secret: str) -> Path:
    """A ``docker-credential-NAME`` as docker runs it: ``get``, the host on stdin,
    JSON out; for any other host the helpers' own "not found" answer."""
    log = directory / f"{name}.log"
    script = directory / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 2\nread -r host\necho "$host" >> {log}\n'
        f'if [ "$host" = "{host}" ]; then\n'
        f'  printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\' "$host"\n'
        "else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
    )
    script.chmod(0o755)
    return log


def test_credentials_come_from_docker_credential_helpers(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    path = f"{helpers}:{os.environ.get('PATH', '')}"
    with FaultProxy(registry.base, account=("robot", "helper-s3cret")) as proxy:
        url = _url(proxy.host, "helped")
        per_host = _credential_helper(helpers, "pass", proxy.host, "robot", "helper-s3cret")
        store_log = _credential_helper(
            helpers, "secretservice", proxy.host, "robot", "helper-s3cret"
        )
        _credential_helper(helpers, "other", "elsewhere.example:5000", "robot", "helper-s3cret")

        def home(tag: str, config: dict[str, object]) -> Home:
            docker = tmp_path / f"docker-{tag}"
            docker.mkdir()
            (docker / "config.json").write_text(json.dumps(config))
            made = Home(tmp_path / tag, DOCKER_CONFIG=str(docker), PATH=path)
            made.cpk("key", "trust", pub)
            return made

        # credHelpers names the host's helper, which wins over a stale auths entry.
        stale = {proxy.host: {"auth": "cm9ib3Q6b2xk"}}  # robot:old
        one = home("one", {"credHelpers": {proxy.host: "pass"}, "auths": stale})
        one.cpk("store", "add", _prefix(tmp_path, "hp", "h"), "--name", "hp", "--version", "1")
        pushed = one.cpk("store", "push", url, "--all", "--sign-key", key)
        assert per_host.read_text().split() == [proxy.host]  # asked once, with the host

        # credsStore serves every host that has no helper of its own.
        two = home("two", {"credsStore": "secretservice"})
        pulled = two.cpk("store", "pull", url, "hp")
        assert two.entries() == one.entries()
        assert store_log.read_text().split() == [proxy.host]

        # A helper that holds nothing for this host: anonymous, refused with the hint.
        three = home("three", {"credsStore": "other"})
        refused = three.cpk("store", "pull", url, "hp", check=False)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        assert "docker login" in refused.stderr and len(refused.stderr.splitlines()) == 1

        # A helper that is not installed is named in one line.
        four = home("four", {"credHelpers": {proxy.host: "absent"}})
        missing = four.cpk("store", "pull", url, "hp", check=False)
        assert missing.returncode == 1
        assert (
            "docker-credential-absent" in missing.stderr and "not found on PATH" in missing.stderr
        )
        assert not (four.store_dir.exists() and any(four.store_dir.glob("hp,*")))
        for proc in (pushed, pulled, refused, missing):
            assert "s3cret" not in proc.stderr + proc.stdout


def test_chunked_uploads_resume_where_the_registry_says_they_stopped(
    tmp_path: Path, registry: Registry
) -> None:
    import hashlib
    import io

    from contentpkg.store.remote.oci import Registry as Client

    data = os.urandom(5000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with FaultProxy(registry.base) as proxy:
        proxy.add(Fault("/blobs/uploads/", "status", times=1, status=503, method="PATCH"))
        client = Client(RemoteUrl.parse(_url(proxy.host, "chunks")), chunk=1024, backoff=0)
        assert client.push_blob("chunks/blob", digest, len(data), lambda: io.BytesIO(data))
        assert not client.push_blob("chunks/blob", digest, len(data), lambda: io.BytesIO(data))
        patches = proxy.requests("PATCH", "/blobs/uploads/")
        # Five chunks, one refused and sent again after asking where the upload stood.
        assert len(patches) == 6 and sum(1 for row in patches if row[2]) == 1
        assert len(proxy.requests("GET", "/blobs/uploads/")) == 1
        assert client.get_blob_bytes("chunks/blob", digest) == data


def _deb(path: Path, name: str, depends: str, files: dict[str, bytes]) -> Path:
    """A minimal .deb as dpkg writes it: ar of debian-binary, control and data tars."""
    fields = {"Depends": depends} if depends else {}
    return Deb(name, "1.0-1", "all", fields, dict(files)).build(path)


def test_a_debian_package_travels_with_its_dependencies_and_is_found_by_its_hash(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    import hashlib

    key, pub = keys
    one = Home(tmp_path / "one")
    app = _deb(
        tmp_path / "app.deb", "app", "libdata (>= 1)", {"usr/bin/app": b"#!/bin/sh\ncat $0\n"}
    )
    lib = _deb(tmp_path / "libdata.deb", "libdata", "", {"usr/share/libdata/x": b"x" * 99})
    one.cpk("store", "add", app)
    one.cpk("store", "add", lib)
    url = _url(registry.host, "debs")
    pushed = one.cpk("store", "push", url, "app", "--sign-key", key)
    assert "pushed 2 entries" in pushed.stderr  # app, and libdata it depends on

    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    two.cpk("store", "pull", url, "app")
    assert two.entries() == one.entries()
    # The index maps the .deb's own sha256 to its entry.
    from contentpkg.store.remote.pull import RemoteStore

    three = Home(tmp_path / "three")
    three.cpk("key", "trust", pub)
    ctx = Context.from_environ(three.env)
    remote = RemoteStore(RemoteUrl.parse(url), three.store(), ctx)
    entry = remote.find_source("sha256:" + hashlib.sha256(lib.read_bytes()).hexdigest())
    remote.close()
    assert entry is not None and entry.name == "libdata"
    assert three.store().find_source(entry.metadata["source_hash"]) is not None


def test_pull_a_lock_then_run_offline_with_no_remote_configured(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, pub = keys
    url = _url(registry.host, "bylock")
    one, two = Home(tmp_path / "one"), Home(tmp_path / "two")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    two.cpk("key", "trust", pub)
    pulled = two.cpk("store", "pull", url, "--lock", root / "pylock.toml")
    assert len(pulled.stdout.splitlines()) == 2
    assert two.entries() == one.entries()
    index_url = index.url
    index.stop()
    proc = two.cpk(
        "run",
        "--offline",
        "--index-url",
        index_url,
        "python",
        "-c",
        "import alpha; print(alpha.VALUE)",
        cwd=root,
    )
    assert proc.stdout.strip() == "alpha beta"


def test_push_a_lock_notes_packages_for_other_platforms_and_refuses_an_unsynced_one(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, _pub = keys
    make_wheel(index.root, "winonly", "1.0", files={"winonly/__init__.py": ""})
    url = _url(registry.host, "marked")
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\n'
        'dependencies = ["alpha", "winonly; sys_platform == \'win32\'"]\n'
    )
    one.cpk("sync", "--index-url", index.url, cwd=root)
    assert "winonly" in (root / "pylock.toml").read_text()
    pushed = one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    assert "pushed 2 entries" in pushed.stderr
    assert "1 package" in pushed.stderr and "winonly 1.0" in pushed.stderr

    # A package every platform installs but this store lacks: the lock was not synced here.
    fresh = Home(tmp_path / "fresh")
    refused = fresh.cpk(
        "store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key, check=False
    )
    assert refused.returncode == 1 and "run 'cpk sync'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_push_a_profile_pushes_what_its_generation_holds(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    one = Home(tmp_path / "one")
    for name in ("p1", "p2"):
        one.cpk("store", "add", _prefix(tmp_path, name, name), "--name", name, "--version", "1")
    one.cpk("install", "p1")  # into the profile "default"; p2 stays out
    url = _url(registry.host, "profile")
    pushed = one.cpk("store", "push", url, "--profile", "default", "--sign-key", key)
    assert "pushed 1 entry" in pushed.stderr
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    assert two.cpk("store", "pull", url, "p2", check=False).returncode == 1
    two.cpk("store", "pull", url, "p1")
    assert list(two.entries()) == [one.store().resolve("p1").dirname]


def test_layers_round_trip_long_and_non_ascii_names(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    deep = tree / ("d" * 90) / ("é" * 40) / "__pycache__"
    deep.mkdir(parents=True)
    (deep.parent / ("f" * 120 + ".py")).write_text("x = 1\n")
    (deep / "m.cpython-311.pyc").write_bytes(b"\0" * 1000)
    os.symlink("f" * 120 + ".py", deep.parent / ("l" * 110))
    store = Home(tmp_path / "h").store()
    from contentpkg.store.add import add_path

    entry = add_path(store, tree, "names", "1").entry
    packed = layout.pack(entry, tmp_path / "l.tar.zst")
    dest = tmp_path / "out"
    dest.mkdir()
    with open(packed.layer, "rb") as f:
        unpacked = layout.unpack(f, dest, "test")
    from contentpkg.store.hashing import content_hash, scan_tree

    assert content_hash(unpacked.records) == entry.content_hash == content_hash(scan_tree(dest))
    # __pycache__ is never copied in by add: nothing derived here.
    assert unpacked.derived == {} and not (dest / deep.relative_to(tree)).exists()


def test_a_remote_without_trusted_keys_is_skipped_in_one_line(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, _ = keys
    url = _url(registry.host, "nokeys")
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    two = Home(tmp_path / "two", CPK_REMOTES=url)
    proc = two.cpk("sync", "--index-url", index.url, cwd=root)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no trusted keys" in warnings[0]
    assert "2 fetched" in proc.stderr  # from the index instead


def test_a_remote_store_is_a_store_reader(tmp_path: Path) -> None:
    from contentpkg.store.interfaces import StoreReader
    from contentpkg.store.remote.pull import RemoteStore

    home = Home(tmp_path)
    remote = RemoteStore(
        RemoteUrl.parse("oci://127.0.0.1:9/x"), home.store(), Context.from_environ(home.env)
    )
    assert isinstance(remote, StoreReader)
    assert remote.entries() == [] and remote.find_files("0" * 64) == []


# -- round trips --------------------------------------------------------------------


def _entry_requests(proxy: FaultProxy, prefix: str) -> dict[str, int]:
    """The proxy's GETs of one pull, by kind."""
    kinds: dict[str, int] = {}
    for method, path, _ in proxy.state.log:
        if not path.startswith(f"/v2/{prefix}/"):
            kind = "other"
        elif "/cpk-index/manifests/table" in path:
            kind = "table manifest"
        elif "/cpk-index/manifests/" in path:
            kind = "per-hash index"
        elif "/cpk-index/blobs/" in path:
            kind = "table blob"
        elif path.endswith(".sig"):
            kind = "signature manifest"
        elif "/manifests/" in path:
            kind = "entry manifest"
        else:
            kind = "blob"
        key = f"{method} {kind}"
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def test_a_sync_reads_the_index_table_once_and_asks_three_things_per_entry(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    key, pub = keys
    url = _url(registry.host, "trips")
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    entries = one.entries()
    with FaultProxy(registry.base) as proxy:
        # The signature is asked for beside the manifest (the index named
        # its digest): held until that overlap happens, it shows in max_inflight.
        proxy.hold(".sig")
        two = Home(tmp_path / "two", CPK_REMOTES=_url(proxy.host, "trips"))
        two.cpk("key", "trust", pub)
        proc = two.cpk("sync", "--offline", "--index-url", index.url, cwd=root)
        assert f"{len(entries)} pulled from remotes" in proc.stderr
        counts = _entry_requests(proxy, "trips")
        assert proxy.state.max_inflight >= 2
        # Connections are kept alive and reused, not opened per request.
        assert len(proxy.state.peers) < len(proxy.state.log)
    assert two.entries() == entries
    # One index table for the pull, not one request per hash; per entry its
    # manifest, its signature's manifest and its layer: no config blob (the
    # layer's own entry.json is checked against the signed digest) and no
    # signature blob (the standard payload is rebuilt and verified).
    assert counts == {
        "GET table manifest": 1,
        "GET table blob": 1,
        "GET entry manifest": len(entries),
        "GET signature manifest": len(entries),
        "GET blob": len(entries),
    }, counts


def test_a_pull_by_name_asks_for_the_signature_beside_the_layer(
    tmp_path: Path, registry: Registry, published: tuple[Home, str, Path]
) -> None:
    one, prefix, pub = published
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    with FaultProxy(registry.base) as proxy:
        proxy.hold(".sig")
        two.cpk("store", "pull", _url(proxy.host, prefix), "pkg")
        # One entry: only the overlap of its own requests can make two at once.
        assert proxy.state.max_inflight == 2
        assert len(proxy.requests("GET", ".sig")) == 1
        assert len(proxy.requests("GET", "/blobs/")) == 1  # the layer only
    assert two.entries() == one.entries()


def test_hashes_the_index_table_lacks_are_found_through_their_own_manifests(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    """A table another push overwrote (registries have no compare-and-swap)
    or a remote filled before tables existed: the per-hash manifests serve."""
    from contentpkg.store.remote.oci import MANIFEST_TYPE
    from contentpkg.store.remote.oci import Registry as Client
    from contentpkg.store.remote.push import merge_table

    key, pub = keys
    url = _url(registry.host, "stale")
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk("store", "push", url, "--lock", root / "pylock.toml", "--sign-key", key)
    entries = one.entries()
    client = Client(RemoteUrl.parse(url))
    table_manifest = client.get_manifest("stale/cpk-index", layout.INDEX_TABLE_TAG)
    assert table_manifest is not None
    rows = layout.parse_table(
        client.get_blob_bytes(
            "stale/cpk-index", json.loads(table_manifest[0])["layers"][0]["digest"]
        ),
        "table",
    )
    assert len(rows) == 2 and all(r.entry in entries for r in rows.values())
    # Another push's table, holding only one of the two rows, won the race.
    kept = dict(list(rows.items())[:1])
    blob = layout.table_bytes(kept)
    import hashlib
    import io

    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    client.push_blob("stale/cpk-index", digest, len(blob), lambda: io.BytesIO(blob))
    client.put_manifest(
        "stale/cpk-index",
        layout.INDEX_TABLE_TAG,
        layout.manifest_bytes(
            layout.INDEX_TABLE_TYPE,
            layout.descriptor(layout.EMPTY_TYPE, layout.EMPTY_DIGEST, 2),
            [layout.descriptor(layout.INDEX_TABLE_LAYER, digest, len(blob))],
        ),
        MANIFEST_TYPE,
    )
    with FaultProxy(registry.base) as proxy:
        two = Home(tmp_path / "two", CPK_REMOTES=_url(proxy.host, "stale"))
        two.cpk("key", "trust", pub)
        two.cpk("sync", "--offline", "--index-url", index.url, cwd=root)
        counts = _entry_requests(proxy, "stale")
    assert two.entries() == entries
    assert counts["GET table manifest"] == 1 and counts["GET per-hash index"] == 1
    # The next push merges its rows back into the table.
    merge_table(client, RemoteUrl.parse(url), rows)
    client.close()
    found = client.get_manifest("stale/cpk-index", layout.INDEX_TABLE_TAG)
    assert found is not None
    digest = json.loads(found[0])["layers"][0]["digest"]
    assert layout.parse_table(client.get_blob_bytes("stale/cpk-index", digest), "t") == rows


def test_the_index_table_is_fetched_once_per_process(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path], index: LocalIndex
) -> None:
    from contentpkg.store.remote.pull import RemoteStore

    key, _pub = keys
    one = Home(tmp_path / "one")
    root = _project(tmp_path)
    one.cpk("sync", "--index-url", index.url, cwd=root)
    one.cpk(
        "store", "push", _url(registry.host, "once"), "--lock", root / "pylock.toml",
        "--sign-key", key,
    )  # fmt: skip
    two = Home(tmp_path / "two")
    with FaultProxy(registry.base) as proxy:
        url = RemoteUrl.parse(_url(proxy.host, "once"))
        ctx = Context.from_environ(two.env)
        for _ in range(3):
            reader = RemoteStore(url, two.store(), ctx)
            try:
                assert len(reader.index_table()) == 2
                reader.index_table()  # a reader asks once
            finally:
                reader.close()
        assert len(proxy.requests("GET", "/cpk-index/manifests/table")) == 3
        assert len(proxy.requests("GET", "/cpk-index/blobs/")) == 1


# -- what one pull does per file ------------------------------------------------------


def test_an_unpack_links_files_an_earlier_one_wrote_and_hashes_each_byte_once(
    tmp_path: Path,
) -> None:
    store = Home(tmp_path / "h").store()
    from contentpkg.store.add import add_path

    entry = add_path(store, _prefix(tmp_path, "same", "s" * 30), "same", "1").entry
    packed = layout.pack(entry, tmp_path / "l.tar.zst")
    files = [p for p in entry.path.rglob("*") if p.is_file() and not p.is_symlink()]
    same = layout.SameFiles()
    first, second = tmp_path / "first", tmp_path / "second"
    results = []
    for dest in (first, second):
        dest.mkdir()
        with open(packed.layer, "rb") as f:
            results.append(layout.unpack(f, dest, "test", same))
    # The first writes every file; the second, the same bytes with the same
    # modes, writes none and links all, and neither reads a file back to
    # hash it: each member's bytes are hashed once, from the stream.
    size = sum(p.stat().st_size for p in files)
    assert (results[0].written, results[0].linked, results[0].hashed) == (len(files), 0, size)
    assert (results[1].written, results[1].linked, results[1].hashed) == (0, len(files), size)
    for p in files:
        rel = p.relative_to(entry.path)
        a, b = (first / rel).stat(), (second / rel).stat()
        assert a.st_ino == b.st_ino and stat.S_IMODE(b.st_mode) in (0o444, 0o555)
    assert results[0].records == results[1].records

    # A target gone (its slot discarded) or none offered: the file is written.
    from contentpkg.fs import remove_tree

    remove_tree(first)
    third = tmp_path / "third"
    third.mkdir()
    with open(packed.layer, "rb") as f:
        again = layout.unpack(f, third, "test", same)
    assert (again.written, again.linked) == (len(files), 0)


def _refs(home: Home, names: list[str]) -> list[tuple[Ref, None]]:
    """Where home's entries of these names are on a registry it pushed to."""
    refs = []
    for name in names:
        e = home.store().resolve(name)
        tag = layout.tag_for(e.version, e.short_hash)
        refs.append((Ref(layout.repository_for(name), tag, e.dirname), None))
    return refs


def test_a_pull_links_files_shared_between_its_entries_and_unpacks_them_in_parallel(
    tmp_path: Path, registry: Registry, keys: tuple[Path, Path]
) -> None:
    from contentpkg.store.entry import Entry
    from contentpkg.store.remote.pull import RemoteStore

    key, pub = keys
    one = Home(tmp_path / "one")
    names = ["l1", "l2", "l3"]
    for name in names:
        # The same text: each entry's README and script have the same bytes
        # and modes as the others' (under other names).
        one.cpk("store", "add", _prefix(tmp_path, name, "shared"), "--name", name, "--version", "1")
    prefix = "links"
    one.cpk("store", "push", _url(registry.host, prefix), "--all", "--sign-key", key)

    # In turn (one job): the first entry writes, the next two link.
    two = Home(tmp_path / "two")
    two.cpk("key", "trust", pub)
    url = RemoteUrl.parse(_url(registry.host, prefix))
    reader = RemoteStore(url, two.store(), Context.from_environ(two.env), jobs=1)
    try:
        pulled = reader.pull_many(_refs(one, names))
    finally:
        reader.close()
    assert all(isinstance(e, Entry) for e in pulled), pulled
    entries = [e for e in pulled if isinstance(e, Entry)]
    files = [p for e in entries for p in e.path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert reader.stats.entries == 3
    assert reader.stats.files_linked == 2 * 2
    assert reader.stats.files_written == len(files) - 4
    assert reader.stats.bytes_hashed == sum(p.stat().st_size for p in files)
    readmes = {(e.path / "share" / "doc" / "README").stat().st_ino for e in entries}
    assert len(readmes) == 1
    assert all(verify_entry(e) == [] for e in entries)
    assert two.entries() == {k: v for k, v in one.entries().items() if k.split(",")[0] in names}

    # In parallel: each layer's request is held until another layer's is in
    # flight, which only happens once a second unpack has started (a layer
    # is requested from inside its unpack). Any other request releasing it
    # let a loaded machine finish the first unpack before the second began.
    three = Home(tmp_path / "three")
    three.cpk("key", "trust", pub)
    with FaultProxy(registry.base) as proxy:
        proxy.hold("/blobs/", alike=True)
        url = RemoteUrl.parse(_url(proxy.host, prefix))
        reader = RemoteStore(url, three.store(), Context.from_environ(three.env))
        try:
            pulled = reader.pull_many(_refs(one, names))
        finally:
            reader.close()
    assert all(isinstance(e, Entry) for e in pulled), pulled
    assert reader.stats.most_unpacking >= 2
    assert proxy.state.max_inflight >= 2
    assert three.entries() == two.entries()


def _layer(members: list[tuple[str, str, bytes]]) -> bytes:
    """A tar.zst of (name, type "f"/"d"/"l"/"h", data or link target) members."""
    import io
    import tarfile

    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in "lh":
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor().compress(raw.getvalue())


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../evil", "f", b"x")], "unsafe path"),
        ([("/abs", "f", b"x")], "unsafe path"),
        ([("a", "d", b""), ("a/../../evil", "f", b"x")], "unsafe path"),
        ([("a", "d", b""), ("a/./b", "f", b"x")], "unsafe path"),
        # Through a symlink the layer made: its parent is no directory it created.
        ([("up", "l", b".."), ("up/evil", "f", b"x")], "unsafe path"),
        ([("nodir/f", "f", b"x")], "unsafe path"),
        ([("f", "f", b"x"), ("f", "f", b"y")], "path twice"),
        ([("d", "d", b""), ("d", "d", b"")], "unsafe path"),
        ([("f", "f", b"x"), ("g", "h", b"f")], "of type"),
    ],
)
def test_an_unpack_refuses_layers_that_reach_outside_or_repeat_a_path(
    tmp_path: Path, members: list[tuple[str, str, bytes]], message: str
) -> None:
    import io

    from contentpkg.errors import CpkError

    dest = tmp_path / "slot" / "entry"
    dest.mkdir(parents=True)
    with pytest.raises(CpkError, match=message):
        layout.unpack(io.BytesIO(_layer(members)), dest, "test", layout.SameFiles())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slot"]
    assert sorted(p.name for p in (tmp_path / "slot").iterdir()) == ["entry"]
