"""What a project's inputs are, whichever file they were read from.

``pyproject.toml``, a requirements file and a PEP 723 script header all
become one :class:`ProjectInputs`, so locking and running never care which
kind they came from. Plain classes with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: The ``[project]`` fields a build backend may supply (PEP 621 ``dynamic``).
BACKEND_FIELDS = ("name", "version", "dependencies", "optional-dependencies", "requires-python")


@dataclass(frozen=True)
class IndexSettings:
    """Where the project files say packages are looked for, as written.

    ``index_url`` None means they do not say. ``find_links`` holds URLs and
    absolute local paths (relative ones are resolved against the file that
    named them when it is read). What is used in the end, after the command
    line and the environment have their say, is decided in one place only:
    :func:`contentpkg.python.project.settings.index_settings`, given
    :attr:`ProjectInputs.index_table`.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False


@dataclass(frozen=True)
class Source:
    """A requirement served from a local checkout or file instead of an index."""

    name: str  # PEP 503 normalized
    path: Path  # absolute
    editable: bool = False


@dataclass
class ProjectInputs:
    """Everything a project declares that determines its lock.

    ``requirements`` are the PEP 508 strings of the selected dependencies
    (the project's own, the selected extras, the selected dependency groups),
    stripped, deduplicated, in declaration order. ``hashes`` holds the
    ``--hash`` options of a requirements file, by normalized name, as
    ``"algorithm:hexdigest"``: the resolver must accept only files with one
    of those hashes. ``files`` lists every file read, so a caller can cache
    on their stat results.
    """

    root: Path
    input_file: Path
    kind: Literal["pyproject", "requirements", "script"]
    name: str | None = None
    version: str | None = None
    installable: bool = False
    requirements: list[str] = field(default_factory=list)
    requires_python: str | None = None
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    index: IndexSettings = field(default_factory=IndexSettings)
    sources: dict[str, Source] = field(default_factory=dict)
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tool: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    #: The ``[project]`` fields the build backend supplies (PEP 621
    #: ``dynamic``, or all of them when there is no ``[project]``): until
    #: :func:`contentpkg.python.build.project.with_backend_metadata` fills
    #: them in, ``requirements`` lacks what the backend adds, and ``extras``
    #: holds the extras asked for, unchecked ("*": all).
    dynamic: tuple[str, ...] = ()
    #: What the build backend said, once it has: (version, Requires-Dist,
    #: Requires-Python), so a requirement on the project's own name can be
    #: resolved to the checkout without reading ``[project]`` again.
    backend_metadata: tuple[str, tuple[str, ...], str | None] | None = None
    #: Requirements that narrow versions without adding packages: a
    #: requirements file's ``-c`` files, ``[tool.uv] constraint-dependencies``.
    constraints: list[str] = field(default_factory=list)
    #: ``[tool.uv] override-dependencies``: each replaces every requirement
    #: on its name, wherever in the graph it is made.
    overrides: list[str] = field(default_factory=list)
    #: Names pinned to one index (``[tool.uv.sources] x = { index = "name" }``):
    #: normalized name -> that index's URL; no other index is asked for them.
    index_pins: dict[str, str] = field(default_factory=dict)
    #: A requirements file expanded ``${VAR}`` from the environment: the
    #: inputs depend on variables the run memo does not watch.
    uses_environment: bool = False

    @property
    def lock_name(self) -> str:
        """The lock's file name beside the inputs: ``pylock.toml``, except
        for a requirements file other than ``requirements.txt``, whose lock
        is ``pylock.<stem>.toml`` (PEP 751's named form), so locking
        ``requirements-dev.txt`` does not overwrite the project's lock."""
        name = self.input_file.name
        if self.kind != "requirements" or name in ("requirements.txt", "pyproject.toml"):
            return "pylock.toml"
        stem = name.removesuffix(".txt").removesuffix(".in").replace(".", "-")
        return f"pylock.{stem}.toml"

    @property
    def index_table(self) -> dict[str, Any]:
        """The index settings in ``[tool.cpk]`` shape, with a requirements
        file's ``--index-url``/``--extra-index-url``/``--find-links``/
        ``--no-index`` merged in: what :func:`.settings.index_settings` takes as
        ``pyproject_tool_cpk`` (find-links here are absolute)."""
        table: dict[str, Any] = {}
        if self.index.index_url:
            table["index-url"] = self.index.index_url
        if self.index.extra_index_urls:
            table["extra-index-url"] = list(self.index.extra_index_urls)
        if self.index.find_links:
            table["find-links"] = list(self.index.find_links)
        if self.index.no_index:
            table["no-index"] = True
        return table


class ScriptInputs(ProjectInputs):
    """The inputs of a PEP 723 script; ``input_file`` is the script."""

    @property
    def script(self) -> Path:
        return self.input_file


# --------------------------------------------------------------------------
# finding and loading


class Selection:
    """What the caller asked for: extras and dependency groups. A plain
    class: a dataclass costs ~0.5 ms of import time on the hot path, for
    nothing here."""

    __slots__ = ("all_extras", "all_groups", "extras", "groups", "no_default_groups")

    def __init__(
        self,
        *,
        extras: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        all_extras: bool = False,
        all_groups: bool = False,
        no_default_groups: bool = False,
    ) -> None:
        self.extras = extras
        self.groups = groups
        self.all_extras = all_extras
        self.all_groups = all_groups
        self.no_default_groups = no_default_groups

    @property
    def any(self) -> bool:
        """Whether anything beyond the defaults was asked for."""
        return bool(self.extras or self.groups or self.all_extras or self.all_groups)
