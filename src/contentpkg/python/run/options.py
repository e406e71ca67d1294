"""What a Python command was asked: the one settings type, and run's request.

Every Python command (``lock``, ``sync``, ``fetch``, ``run``, ``shell``,
``install --python``) and ``contentpkg.use()`` describe their settings with
one :class:`Options`, so each function below the command line knows which
fields it gets instead of probing an object for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contentpkg.context import Context
from contentpkg.progress import QUIET, Reporter


class Options:
    """Where to look, for which Python, with which context.

    A plain class rather than a dataclass: every ``cpk run`` that misses its
    memo imports this module, and generating twenty fields' methods cost it
    more than a millisecond. Treated as immutable: :meth:`replace` makes a
    changed copy."""

    __slots__ = (
        "all_extras", "all_groups", "ctx", "extra_index_urls", "extras", "find_links",
        "groups", "index_url", "no_default_groups", "no_dev", "no_editable", "offline",
        "only_groups", "prefer_store", "prereleases", "project", "python", "refresh",
        "reporter", "strict_command",
    )  # fmt: skip

    def __init__(
        self,
        *,
        ctx: Context,
        project: Path | None = None,
        python: str | None = None,
        index_url: str | None = None,
        extra_index_urls: tuple[str, ...] = (),
        find_links: tuple[str, ...] = (),
        offline: bool = False,
        refresh: bool = False,
        prereleases: bool = False,
        prefer_store: bool = False,
        extras: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        no_editable: bool = False,
        strict_command: bool = False,
        all_extras: bool = False,
        all_groups: bool = False,
        no_default_groups: bool = False,
        only_groups: tuple[str, ...] = (),
        no_dev: bool = False,
        reporter: Reporter = QUIET,
    ) -> None:
        #: Where things live and the environment's settings, read once.
        self.ctx = ctx
        #: The project directory (None: found upward from the working directory).
        self.project = project
        #: The target interpreter: a path, a command or a version (None: this one).
        self.python = python
        self.index_url = index_url
        self.extra_index_urls = extra_index_urls
        self.find_links = find_links
        self.offline = offline
        self.refresh = refresh  # revalidate every cached index page
        self.prereleases = prereleases
        self.prefer_store = prefer_store
        self.extras = extras
        self.groups = groups
        #: Install the project itself as a built wheel entry, not editable.
        self.no_editable = no_editable
        #: A command missing from the environment is an error (``--strict-command``).
        self.strict_command = strict_command
        #: The rest of the selection from a universal lock, as uv's flags
        #: (``--all-extras``, ``--all-groups``, ``--no-default-groups``,
        #: ``--only-group``, ``--no-dev``).
        self.all_extras = all_extras
        self.all_groups = all_groups
        self.no_default_groups = no_default_groups
        self.only_groups = only_groups
        self.no_dev = no_dev
        #: Progress of downloads and builds; the CLI's starts ``rich`` only when
        #: first used, so a run that makes nothing never imports it.
        self.reporter = reporter

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` (field names as keywords), as ``dataclasses.replace``."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Options(**fields)

    def __repr__(self) -> str:
        given = (
            f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n not in ("ctx", "reporter")
        )
        return f"Options({', '.join(given)})"

    @property
    def default_selection(self) -> bool:
        """Whether no selection flag was given: what ``.venv`` holds."""
        return not (
            self.extras
            or self.groups
            or self.all_extras
            or self.all_groups
            or self.no_default_groups
            or self.only_groups
            or self.no_dev
        )

    def chosen(self, lock: object) -> object:
        """The extras and groups the flags select from a universal lock
        (a :class:`~contentpkg.python.lock.selection.Chosen`); None for a
        single-environment lock (a script's, a ``--with`` run's), which
        holds the selection it was made for."""
        from contentpkg.python.lock.selection import choose

        if not getattr(lock, "universal", False):
            return None

        return choose(
            extras=self.extras,
            groups=self.groups,
            all_extras=self.all_extras,
            all_groups=self.all_groups,
            no_default_groups=self.no_default_groups,
            only_groups=self.only_groups,
            no_dev=self.no_dev,
            known_extras=getattr(lock, "extras", ()),
            known_groups=getattr(lock, "dependency_groups", ()),
            default_groups=getattr(lock, "default_groups", ()),
        )

    def close(self) -> None:
        """Stop the progress display, if one was started."""
        close = getattr(self.reporter, "close", None)
        if close is not None:
            close()


class RunRequest:
    """What ``cpk run`` (or ``cpk shell``) was asked, beyond the options.

    A plain class, as :class:`Options` is."""

    __slots__ = ("command", "frozen", "isolated", "locked", "native", "with_requirements")

    def __init__(
        self,
        command: tuple[str, ...],
        with_requirements: tuple[str, ...] = (),
        *,
        frozen: bool = False,
        locked: bool = False,
        native: Path | None = None,
        isolated: bool = False,
    ) -> None:
        self.command = command
        #: Requirements added for this run only (``--with``); the lock is not changed.
        self.with_requirements = with_requirements
        #: Use the project's lock as it is (``--frozen``).
        self.frozen = frozen
        #: Fail when the project's lock is out of date (``--locked``).
        self.locked = locked
        #: An env dir of native packages (``--with-elf``): its ``bin/`` and
        #: ``lib/`` go on ``PATH`` and ``LD_LIBRARY_PATH`` of the command.
        self.native = native
        #: The working directory's project plays no part: the environment is
        #: the ``--with`` requirements alone (a tool's, as ``uv tool`` makes it).
        self.isolated = isolated

    def __repr__(self) -> str:
        return f"RunRequest({self.command!r}, {self.with_requirements!r})"


def index_places(options: Options, inputs: object | None) -> tuple[list[str], list[str]]:
    """The indexes and find-links a command uses: its options, then the
    environment, then the project's ``[tool.cpk]`` (``inputs``, a
    ``ProjectInputs`` or None); the lock's fingerprint records the answer."""
    from contentpkg.python.project.settings import command_line_places

    return command_line_places(options, inputs, options.ctx.index)


def selection_arguments(options: Options) -> dict[str, object]:
    """``load_project``'s selection arguments for the flags: the inputs as
    selected (their order decides which of two distributions installing the
    same file wins); the lock itself holds every extra and group."""
    if options.only_groups:
        return {"groups": list(options.only_groups), "no_default_groups": True}
    return {
        "extras": list(options.extras),
        "groups": list(options.groups),
        "all_extras": options.all_extras,
        "all_groups": options.all_groups,
        "no_default_groups": options.no_default_groups,
    }
