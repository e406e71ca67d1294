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

import os

# Nothing here is imported at run time beyond ``os``: every command builds a
# Context first, and ``cpk ldd FILE`` (run once per file, in loops) reads two
# settings through :func:`loader_settings` without building one. dataclasses
# (with inspect, ast, dis, tokenize), enum and pathlib (with urllib.parse and
# ipaddress) cost together more than that command's whole answer, so the
# classes below are plain ones with ``__slots__``, and pathlib is imported
# when a Context is built. ``TYPE_CHECKING = False`` is the idiom type
# checkers recognise without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path
    from typing import Any

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


class _Members(type):
    """``for bucket in Bucket`` lists the buckets, in the order they are named."""

    def __iter__(cls) -> Iterator[Bucket]:
        return iter(cls._members)  # type: ignore[attr-defined]

    def __len__(cls) -> int:
        return len(cls._members)  # type: ignore[attr-defined]


class Bucket(metaclass=_Members):
    """The cache's buckets: each value is the directory's name under the cache.

    A bucket's name carries a version; bump it when its format changes and
    old readers will simply miss. Each bucket has ``name`` and ``value`` and
    the class iterates over them, as an ``enum.Enum`` would, without the
    import (see the note at the top).
    """

    __slots__ = ("name", "value")
    _members: tuple[Bucket, ...] = ()

    #: Downloaded wheels and sdists, by their sha256.
    ARCHIVES: Bucket
    #: HTTP responses (index pages) and their validators.
    HTTP: Bucket
    #: Core metadata read from wheels and sdists, by the file's hash.
    METADATA: Bucket
    #: Wheels built from sdists.
    BUILT_WHEELS: Bucket
    #: Facts about interpreters (version, tags, paths), by executable stat.
    INTERPRETERS: Bucket
    #: Locks derived for scripts and ``--with`` requests, by input fingerprint.
    RUN_LOCKS: Bucket
    #: ``cpk run``'s memo of decisions, keyed by its inputs.
    RUN_MEMO: Bucket
    #: Parsed lock files (``marshal``), by the sha256 of the lock's bytes.
    PARSED_LOCKS: Bucket
    #: The Debian archive: verified InRelease files, Packages indexes by
    #: sha256 (and what was read from them), downloaded .debs by sha256.
    DEBIAN: Bucket
    #: The project's own builds (metadata, editable and regular wheels, the
    #: backend's log), by the build key of its files and interpreter.
    PROJECT_BUILDS: Bucket
    #: Git mirrors (by repository URL) and the source archives of commits.
    GIT: Bucket
    #: Archives named by direct URL requirements, by URL, until hashed and locked.
    DIRECT_ARCHIVES: Bucket
    #: What the system's ld.so reports about itself (``ld.so --help``), by
    #: the loader's stat and the machine.
    LOADER: Bucket
    #: Index pages as parsed into file lists (``marshal``), by the page's hash.
    PARSED_PAGES: Bucket

    def __init__(self, name: str, value: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a bucket is a constant: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"<Bucket.{self.name}: {self.value!r}>"

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled by name (process pools), so the copy is the same member.
        return (getattr, (Bucket, self.name))


_BUCKETS = (
    ("ARCHIVES", "archives-v1"),
    ("HTTP", "http-v1"),
    ("METADATA", "metadata-v1"),
    ("BUILT_WHEELS", "built-wheels"),
    ("INTERPRETERS", "interpreters-v2"),
    ("RUN_LOCKS", "run-locks"),
    ("RUN_MEMO", "run-memo"),
    ("PARSED_LOCKS", "locks"),
    ("DEBIAN", "debian-v1"),
    ("PROJECT_BUILDS", "project-builds-v1"),
    ("GIT", "git-v1"),
    ("DIRECT_ARCHIVES", "direct-v1"),
    ("LOADER", "loader-v2"),
    ("PARSED_PAGES", "parsed-pages-v1"),
)
for _name, _value in _BUCKETS:
    type.__setattr__(Bucket, _name, Bucket(_name, _value))
type.__setattr__(Bucket, "_members", tuple(getattr(Bucket, n) for n, _ in _BUCKETS))
del _name, _value


class _Settings:
    """A frozen record of settings: equality, hash, repr and ``replace``
    from the names in ``__slots__``, as a frozen dataclass gives them."""

    __slots__ = ()
    #: Fields left out of ``repr`` (secrets).
    _hidden: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: use replace() to change {name!r}")

    # Pickled (a Context goes to process pools) and copied field by field:
    # the default for slots would set them with the refused __setattr__.
    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._set(**state)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name not in self._hidden
        )
        return f"{type(self).__name__}({shown})"

    def replace(self, **changes: Any) -> Any:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return type(self)(**values)


class IndexEnvironment(_Settings):
    """Index places given through the environment (command line and project may add)."""

    __slots__ = ("extra_index_urls", "find_links", "index_url")
    index_url: str
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]

    def __init__(
        self,
        index_url: str = "",
        extra_index_urls: tuple[str, ...] = (),
        find_links: tuple[str, ...] = (),
    ) -> None:
        self._set(index_url=index_url, extra_index_urls=extra_index_urls, find_links=find_links)


#: Defaults of the HTTP settings, shown in ``--help``.
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_HTTP_RETRIES = 3


class Output(_Settings):
    """How the command line talks: set by the global options, with the
    colour conventions ``NO_COLOR`` and ``FORCE_COLOR`` read here."""

    __slots__ = ("color", "force_color_env", "no_color_env", "progress", "quiet", "verbose")
    #: -q given n times: no progress, summary or status lines.
    quiet: int
    #: -v given n times (1: decisions at debug level; 2: everything).
    verbose: int
    #: ``auto``, ``always`` or ``never``.
    color: str
    #: No progress bars even on a terminal (summary lines stay).
    progress: bool
    #: ``NO_COLOR`` was set (https://no-color.org): auto means never.
    no_color_env: bool
    #: ``FORCE_COLOR`` was set: auto means always.
    force_color_env: bool

    def __init__(
        self,
        quiet: int = 0,
        verbose: int = 0,
        color: str = "auto",
        progress: bool = True,
        no_color_env: bool = False,
        force_color_env: bool = False,
    ) -> None:
        self._set(
            quiet=quiet,
            verbose=verbose,
            color=color,
            progress=progress,
            no_color_env=no_color_env,
            force_color_env=force_color_env,
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **options: Any) -> Output:
        """The output settings: the colour variables of environ, the global
        options given (``quiet``, ``verbose``, ``color``, ``progress``) on top."""
        return cls(
            no_color_env=bool(environ.get("NO_COLOR")),
            force_color_env=bool(environ.get("FORCE_COLOR")),
            **options,
        )

    def colored(self, isatty: bool) -> bool:
        """Whether to colour a stream; ``--color`` wins over the variables."""
        if self.color != "auto":
            return self.color == "always"
        if self.no_color_env:
            return False
        return self.force_color_env or isatty


class RemoteEnvironment(_Settings):
    """Remote-store settings from the environment (``cpk remote`` adds its own list).

    Registry credentials follow the Docker config file's rule (``DOCKER_CONFIG``
    names its directory, else ``~/.docker``), as every registry client reads it;
    ``CPK_REGISTRY_USERNAME`` / ``CPK_REGISTRY_PASSWORD`` override it for CI.
    """

    __slots__ = ("ca_file", "docker_config", "password", "remotes", "signing_key", "username")
    _hidden = ("password",)
    #: ``CPK_REMOTES``: space-separated ``oci://`` URLs, consulted in order.
    remotes: tuple[str, ...]
    #: ``CPK_SIGNING_KEY``: the private key ``cpk store push`` signs with.
    signing_key: Path | None
    #: The Docker config file (``$DOCKER_CONFIG/config.json``).
    docker_config: Path | None
    username: str
    password: str
    #: ``SSL_CERT_FILE``: extra CA certificates to trust (a private registry's).
    ca_file: Path | None

    def __init__(
        self,
        remotes: tuple[str, ...] = (),
        signing_key: Path | None = None,
        docker_config: Path | None = None,
        username: str = "",
        password: str = "",
        ca_file: Path | None = None,
    ) -> None:
        self._set(
            remotes=remotes,
            signing_key=signing_key,
            docker_config=docker_config,
            username=username,
            password=password,
            ca_file=ca_file,
        )


class Context(_Settings):
    """Where things live and which settings apply, for one command."""

    __slots__ = (
        "apt_sources",
        "cache_dir",
        "environ",
        "home",
        "http_retries",
        "http_timeout",
        "index",
        "netrc",
        "no_cache",
        "offline",
        "output",
        "remote",
        "strict_command",
        "system_stores",
    )
    #: The environment is left out of repr: it holds whatever secrets the
    #: user's shell does (the registry password among them).
    _hidden = ("environ",)
    #: The user's contentpkg directory: user store, roots, views, profiles.
    home: Path
    #: The download and build cache (separate from the store).
    cache_dir: Path
    #: Read-only system stores, searched after the project and user stores.
    system_stores: tuple[Path, ...]
    #: Index settings from ``CPK_INDEX_URL``, ``CPK_EXTRA_INDEX_URL``, ``CPK_FIND_LINKS``.
    index: IndexEnvironment
    #: Where index credentials are looked up by host: ``NETRC``, else ``~/.netrc``
    #: (curl's and pip's rule).
    netrc: Path | None
    #: ``CPK_STRICT_COMMAND``: a command missing from a project's environment
    #: is an error rather than run from ``PATH`` with a warning.
    strict_command: bool
    #: The process environment as it was read: what children inherit, and
    #: what loader emulation and shell integration look at (``PATH``,
    #: ``LD_LIBRARY_PATH``, ``SHELL``, ``HOME``...).
    environ: Mapping[str, str]
    #: Remote stores and how to reach them (``CPK_REMOTES``, ``CPK_SIGNING_KEY``...).
    remote: RemoteEnvironment
    #: apt sources files or directories to read instead of the machine's
    #: (``CPK_APT_SOURCES``, colon-separated).
    apt_sources: tuple[Path, ...]
    #: Seconds to wait for an index's answer (``CPK_HTTP_TIMEOUT``).
    http_timeout: float
    #: Extra attempts after a failed request (``CPK_HTTP_RETRIES``).
    http_retries: int
    #: ``--offline``: cached index pages and the store only.
    offline: bool
    #: ``--no-cache``: the download and build caches are neither read nor
    #: kept (a temporary cache serves the one command).
    no_cache: bool
    #: The global output options.
    output: Output

    def __init__(
        self,
        home: Path,
        cache_dir: Path,
        system_stores: tuple[Path, ...] = (),
        index: IndexEnvironment | None = None,
        netrc: Path | None = None,
        strict_command: bool = False,
        environ: Mapping[str, str] | None = None,
        remote: RemoteEnvironment | None = None,
        apt_sources: tuple[Path, ...] = (),
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        http_retries: int = DEFAULT_HTTP_RETRIES,
        offline: bool = False,
        no_cache: bool = False,
        output: Output | None = None,
    ) -> None:
        self._set(
            home=home,
            cache_dir=cache_dir,
            system_stores=system_stores,
            index=IndexEnvironment() if index is None else index,
            netrc=netrc,
            strict_command=strict_command,
            environ={} if environ is None else environ,
            remote=RemoteEnvironment() if remote is None else remote,
            apt_sources=apt_sources,
            http_timeout=http_timeout,
            http_retries=http_retries,
            offline=offline,
            no_cache=no_cache,
            output=Output() if output is None else output,
        )

    def __hash__(self) -> int:
        # The environment is a mapping: a Context is compared, never hashed
        # (as the frozen dataclass it replaces, whose hash failed on the dict).
        raise TypeError("unhashable type: 'Context'")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Context:
        """Resolve every setting from an environment (default: this process's)."""
        from pathlib import Path  # here, not at the top: see the note there

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
            output=Output.from_environ(env),
        )

    @property
    def store_dir(self) -> Path:
        """The user store: the only layer cpk writes to."""
        return self.home / "store"

    def bucket(self, bucket: Bucket) -> Path:
        """A cache bucket's directory (not created here)."""
        return self.cache_dir / bucket.value


def loader_settings(environ: Mapping[str, str] | None = None) -> tuple[str, Mapping[str, str]]:
    """(the cache directory, the process environment) without a Context.

    ``cpk ldd FILE`` needs only these two: where the loader's configuration
    is kept between runs, and the variables the loader reads
    (``LD_LIBRARY_PATH``, ``LD_PRELOAD``, ``GLIBC_TUNABLES``) and the output
    reads (``NO_COLOR``, ``FORCE_COLOR``). It runs once per file, in loops,
    and building a Context (pathlib, every setting parsed) would cost more
    than its answer. The directory is the Context's ``cache_dir``, by the
    same rule, as a string. A bad value of a setting every command checks
    (``CPK_HTTP_TIMEOUT``...) is the same ValueError as from a Context.
    """
    env = os.environ if environ is None else environ
    _number(env, "CPK_HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT, float)
    _number(env, "CPK_HTTP_RETRIES", DEFAULT_HTTP_RETRIES, int)
    return _user_dir_str(env, "CPK_CACHE_DIR", "XDG_CACHE_HOME", ".cache"), env


def _remote_environment(env: Mapping[str, str]) -> RemoteEnvironment:
    from pathlib import Path

    home = Path(env.get("HOME") or os.path.expanduser("~"))
    docker_dir = (
        Path(env["DOCKER_CONFIG"]).expanduser() if env.get("DOCKER_CONFIG") else (home / ".docker")
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
    from pathlib import Path

    given = env.get(own)
    if given:
        return Path(given).expanduser().absolute()
    base = env.get(xdg)
    if base and os.path.isabs(base):
        return Path(base) / "contentpkg"
    return Path(env.get("HOME") or os.path.expanduser("~")) / default / "contentpkg"


def _user_dir_str(env: Mapping[str, str], own: str, xdg: str, default: str) -> str:
    """:func:`_user_dir`'s rule as a string, for :func:`loader_settings`
    (the same directory; ``..`` in ``$own`` is folded here, not there)."""
    given = env.get(own)
    if given:
        return os.path.abspath(os.path.expanduser(given))
    base = env.get(xdg)
    if base and os.path.isabs(base):
        return os.path.join(base, "contentpkg")
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), default, "contentpkg")
