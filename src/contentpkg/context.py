"""Settings resolved once, at the command line's edge, and passed down.

A :class:`Context` says where everything lives (the user's home, each cache
bucket, the store's layers) and which indexes to use, read once from the
process environment; the core takes it as an argument and never reads
``os.environ`` itself. Tests build one over a temporary directory instead of
patching the environment.

The cache's buckets are named in :class:`Bucket`, the one place that knows
the cache's layout (as uv's ``CacheBucket`` does), so renaming or versioning
a bucket is a one-line change.

The run memo (``python/run/memo.py``) is the one other reader of the
environment: it must decide before anything but the standard library is
loaded, and keys its decision on the same variables listed in
:data:`SETTINGS_VARIABLES`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Every environment variable a Context reads. The run memo keys on these,
#: so a change to any of them makes ``cpk run`` decide afresh.
SETTINGS_VARIABLES = (
    "CPK_HOME",
    "CPK_CACHE_DIR",
    "CPK_STORE_PATH",
    "CPK_INDEX_URL",
    "CPK_EXTRA_INDEX_URL",
    "CPK_FIND_LINKS",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "CPK_APT_SOURCES",
    "CPK_STRICT_COMMAND",
)


class Bucket(enum.Enum):
    """The cache's buckets: each value is the directory's name under the cache.

    A bucket's name carries a version; bump it when its format changes and
    old readers will simply miss.
    """

    #: Downloaded wheels and sdists, by their sha256.
    ARCHIVES = "archives-v1"
    #: HTTP responses (index pages) and their validators.
    HTTP = "http-v1"
    #: Core metadata read from wheels and sdists, by the file's hash.
    METADATA = "metadata-v1"
    #: Wheels built from sdists.
    BUILT_WHEELS = "built-wheels"
    #: Facts about interpreters (version, tags, paths), by executable stat.
    INTERPRETERS = "interpreters-v2"
    #: Locks derived for scripts and ``--with`` requests, by input fingerprint.
    RUN_LOCKS = "run-locks"
    #: ``cpk run``'s memo of decisions, keyed by its inputs.
    RUN_MEMO = "run-memo"
    #: Parsed lock files (``marshal``), by the sha256 of the lock's bytes.
    PARSED_LOCKS = "locks"
    #: The Debian archive: verified InRelease files, Packages indexes by
    #: sha256 (and what was read from them), downloaded .debs by sha256.
    DEBIAN = "debian-v1"
    #: The project's own builds (metadata, editable and regular wheels, the
    #: backend's log), by the build key of its files and interpreter.
    PROJECT_BUILDS = "project-builds-v1"
    #: Git mirrors (by repository URL) and the source archives of commits.
    GIT = "git-v1"
    #: Archives named by direct URL requirements, by URL, until hashed and locked.
    DIRECT_ARCHIVES = "direct-v1"
    #: What the system's ld.so reports about itself (``ld.so --help``), by
    #: the loader's stat and the machine.
    LOADER = "loader-v2"
    #: Index pages as parsed into file lists (``marshal``), by the page's hash.
    PARSED_PAGES = "parsed-pages-v1"


@dataclass(frozen=True)
class IndexEnvironment:
    """Index places given through the environment (command line and project may add)."""

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()


#: Defaults of the HTTP settings, shown in ``--help``.
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_HTTP_RETRIES = 3


@dataclass(frozen=True)
class Output:
    """How the command line talks: set by the global options, with the
    colour conventions ``NO_COLOR`` and ``FORCE_COLOR`` read here."""

    #: -q given n times: no progress, summary or status lines.
    quiet: int = 0
    #: -v given n times (1: decisions at debug level; 2: everything).
    verbose: int = 0
    #: ``auto``, ``always`` or ``never``.
    color: str = "auto"
    #: No progress bars even on a terminal (summary lines stay).
    progress: bool = True
    #: ``NO_COLOR`` was set (https://no-color.org): auto means never.
    no_color_env: bool = False
    #: ``FORCE_COLOR`` was set: auto means always.
    force_color_env: bool = False

    def colored(self, isatty: bool) -> bool:
        """Whether to colour a stream; ``--color`` wins over the variables."""
        if self.color != "auto":
            return self.color == "always"
        if self.no_color_env:
            return False
        return self.force_color_env or isatty


@dataclass(frozen=True)
class RemoteEnvironment:
    """Remote-store settings from the environment (``cpk remote`` adds its own list).

    Registry credentials follow the Docker config file's rule (``DOCKER_CONFIG``
    names its directory, else ``~/.docker``), as every registry client reads it;
    ``CPK_REGISTRY_USERNAME`` / ``CPK_REGISTRY_PASSWORD`` override it for CI.
    """

    #: ``CPK_REMOTES``: space-separated ``oci://`` URLs, consulted in order.
    remotes: tuple[str, ...] = ()
    #: ``CPK_SIGNING_KEY``: the private key ``cpk store push`` signs with.
    signing_key: Path | None = None
    #: The Docker config file (``$DOCKER_CONFIG/config.json``).
    docker_config: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    #: ``SSL_CERT_FILE``: extra CA certificates to trust (a private registry's).
    ca_file: Path | None = None


@dataclass(frozen=True)
class Context:
    """Where things live and which settings apply, for one command."""

    #: The user's contentpkg directory: user store, roots, views, profiles.
    home: Path
    #: The download and build cache (separate from the store).
    cache_dir: Path
    #: Read-only system stores, searched after the project and user stores.
    system_stores: tuple[Path, ...] = ()
    #: Index settings from ``CPK_INDEX_URL``, ``CPK_EXTRA_INDEX_URL``, ``CPK_FIND_LINKS``.
    index: IndexEnvironment = field(default_factory=IndexEnvironment)
    #: Where index credentials are looked up by host: ``NETRC``, else ``~/.netrc``
    #: (curl's and pip's rule).
    netrc: Path | None = None
    #: ``CPK_STRICT_COMMAND``: a command missing from a project's environment
    #: is an error rather than run from ``PATH`` with a warning.
    strict_command: bool = False
    #: The process environment as it was read: what children inherit, and
    #: what loader emulation and shell integration look at (``PATH``,
    #: ``LD_LIBRARY_PATH``, ``SHELL``, ``HOME``...).
    environ: Mapping[str, str] = field(default_factory=dict)
    #: Remote stores and how to reach them (``CPK_REMOTES``, ``CPK_SIGNING_KEY``...).
    remote: RemoteEnvironment = field(default_factory=lambda: RemoteEnvironment())
    #: apt sources files or directories to read instead of the machine's
    #: (``CPK_APT_SOURCES``, colon-separated).
    apt_sources: tuple[Path, ...] = ()
    #: Seconds to wait for an index's answer (``CPK_HTTP_TIMEOUT``).
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    #: Extra attempts after a failed request (``CPK_HTTP_RETRIES``).
    http_retries: int = DEFAULT_HTTP_RETRIES
    #: ``--offline``: cached index pages and the store only.
    offline: bool = False
    #: ``--no-cache``: the download and build caches are neither read nor
    #: kept (a temporary cache serves the one command).
    no_cache: bool = False
    #: The global output options.
    output: Output = field(default_factory=Output)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Context:
        """Resolve every setting from an environment (default: this process's)."""
        env = dict(os.environ if environ is None else environ)
        return cls(
            home=_home(env),
            cache_dir=_cache_dir(env),
            system_stores=tuple(
                Path(p).expanduser().absolute()
                for p in env.get("CPK_STORE_PATH", "").split(":")
                if p
            ),
            index=IndexEnvironment(
                index_url=env.get("CPK_INDEX_URL", "").strip(),
                extra_index_urls=tuple(env.get("CPK_EXTRA_INDEX_URL", "").split()),
                find_links=tuple(env.get("CPK_FIND_LINKS", "").split()),
            ),
            netrc=Path(env["NETRC"]).expanduser()
            if env.get("NETRC")
            else Path(env.get("HOME") or os.path.expanduser("~")) / ".netrc",
            strict_command=env.get("CPK_STRICT_COMMAND", "").strip().lower()
            in ("1", "true", "yes", "on"),
            environ=env,
            remote=_remote_environment(env),
            apt_sources=tuple(Path(p) for p in env.get("CPK_APT_SOURCES", "").split(":") if p),
            http_timeout=_number(env, "CPK_HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT, float),
            http_retries=int(_number(env, "CPK_HTTP_RETRIES", DEFAULT_HTTP_RETRIES, int)),
            output=Output(
                no_color_env=bool(env.get("NO_COLOR")),
                force_color_env=bool(env.get("FORCE_COLOR")),
            ),
        )

    @property
    def store_dir(self) -> Path:
        """The user store: the only layer cpk writes to."""
        return self.home / "store"

    def bucket(self, bucket: Bucket) -> Path:
        """A cache bucket's directory (not created here)."""
        return self.cache_dir / bucket.value


def _remote_environment(env: Mapping[str, str]) -> RemoteEnvironment:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    docker_dir = Path(env["DOCKER_CONFIG"]).expanduser() if env.get("DOCKER_CONFIG") else (
        home / ".docker"
    )
    return RemoteEnvironment(
        remotes=tuple(env.get("CPK_REMOTES", "").split()),
        signing_key=Path(env["CPK_SIGNING_KEY"]).expanduser()
        if env.get("CPK_SIGNING_KEY")
        else None,
        docker_config=docker_dir / "config.json",
        username=env.get("CPK_REGISTRY_USERNAME", ""),
        password=env.get("CPK_REGISTRY_PASSWORD", ""),
        ca_file=Path(env["SSL_CERT_FILE"]) if env.get("SSL_CERT_FILE") else None,
    )
def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    """A non-negative number from the environment; a bad value is an error
    naming the variable, not a silent default (a ValueError: the layer of
    ``errors`` is above this one; the CLI gives it the usual form)."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}={text!r}: expected a non-negative {kind.__name__}")
    return value


# platformdirs would read os.environ itself; a Context built from a given
# mapping must not, so the XDG base-directory rule (the one platformdirs
# applies on Linux) is written out for the two directories cpk uses.
def _home(env: Mapping[str, str]) -> Path:
    return _user_dir(env, "CPK_HOME", "XDG_DATA_HOME", ".local/share")


def _cache_dir(env: Mapping[str, str]) -> Path:
    return _user_dir(env, "CPK_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def _user_dir(env: Mapping[str, str], own: str, xdg: str, default: str) -> Path:
    """``$own``, else ``$xdg/contentpkg`` (absolute values only, as the spec
    says), else ``$HOME/<default>/contentpkg``."""
    given = env.get(own)
    if given:
        return Path(given).expanduser().absolute()
    base = env.get(xdg)
    if base and os.path.isabs(base):
        return Path(base) / "contentpkg"
    return Path(env.get("HOME") or os.path.expanduser("~")) / default / "contentpkg"
