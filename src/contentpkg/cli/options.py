"""The global options, defined once and accepted by every command.

``-q``, ``-v``, ``--color``, ``--no-progress``, ``-V``, ``--directory``,
``--offline`` and ``--no-cache`` go before the command or after it (``cpk -q
sync`` and ``cpk sync -q``), as uv takes them. Every parser below the top
one is a :class:`CommandParser`, which adds them itself, so no command can
forget them.

The hot path's reader of the options before ``run`` is
``contentpkg.cli.leading_globals``, in the package's ``__init__`` so that a
warm ``cpk run`` loads no module more; it reads the same spellings. This
module imports nothing at the top: the parser is built only when needed.
"""

from __future__ import annotations

# typing is not imported at run time: with what it pulls in, it costs more
# than a short command's own work (``cpk ldd FILE``); the idiom below is the
# one type checkers recognise.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: Options after the command are parsed into these names and merged with
#: the top parser's by :func:`settle`: argparse would otherwise let the
#: command's defaults overwrite what was given before it.
_SUB = "global_"


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Add the global options to parser (the top one, or a command's)."""
    import argparse

    from contentpkg import __version__
    from contentpkg.context import DEFAULT_HTTP_RETRIES, DEFAULT_HTTP_TIMEOUT

    prefix = "" if top else _SUB
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options")
    group.add_argument(
        "-q",
        "--quiet",
        dest=prefix + "quiet",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="print less: no progress, summary or status lines (errors and warnings stay)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest=prefix + "verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="say what was decided and why: store layers, indexes, cache hits (repeatable)",
    )
    group.add_argument(
        "--color",
        dest=prefix + "color",
        choices=("auto", "always", "never"),
        default=default,
        help="colour output (default: auto; NO_COLOR and FORCE_COLOR are honoured)",
    )
    group.add_argument(
        "--no-progress",
        dest=prefix + "no_progress",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="no progress bars, even on a terminal (summary lines stay)",
    )
    group.add_argument(
        "--directory",
        # Not "directory": commands have positionals of that name (path add).
        dest=prefix + "chdir",
        metavar="DIR",
        default=default,
        help="change to DIR before doing anything",
    )
    group.add_argument(
        "--offline",
        dest=prefix + "offline",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="use only cached index pages and the store; no network",
    )
    group.add_argument(
        "--no-cache",
        dest=prefix + "no_cache",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="neither read nor keep the download and build caches (the store is used)",
    )
    group.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"cpk {__version__}",
        help="print cpk's version and exit",
    )
    if top:
        parser.epilog = (
            (parser.epilog + "\n\n" if parser.epilog else "")
            + f"environment: CPK_HTTP_TIMEOUT seconds per request (default "
            f"{DEFAULT_HTTP_TIMEOUT:g}), CPK_HTTP_RETRIES extra attempts (default "
            f"{DEFAULT_HTTP_RETRIES}), CPK_HOME, CPK_CACHE_DIR, CPK_STORE_PATH, "
            "CPK_INDEX_URL, NO_COLOR, FORCE_COLOR"
        )


def help_formatter_class() -> type[argparse.HelpFormatter]:
    """argparse's help formatter, asking the terminal's width only to format help.

    argparse makes a formatter for every ``add_argument`` (to check the
    metavar), and each asks ``shutil`` for the terminal's width: importing
    shutil (with zlib, bz2 and lzma) is then part of every command's start,
    though only ``--help`` and usage errors format anything.
    """
    import argparse

    class LazyWidthFormatter(argparse.HelpFormatter):
        def __init__(
            self,
            prog: str,
            indent_increment: int = 2,
            max_help_position: int = 24,
            width: int | None = None,
        ) -> None:
            self._asked = (max_help_position, width)
            # A placeholder width: format_help sets the real one first.
            super().__init__(prog, indent_increment, max_help_position, width or 80)

        def format_help(self) -> str:
            max_help_position, width = self._asked
            if width is None:
                import shutil

                width = shutil.get_terminal_size().columns - 2
            self._width = width
            self._max_help_position = min(
                max_help_position, max(width - 20, self._indent_increment * 2)
            )
            return super().format_help()

    return LazyWidthFormatter


def command_parser_class(examples: dict[str, str]) -> type[argparse.ArgumentParser]:
    """The parser class of every command (made on first use: see the module
    docstring for why argparse is not imported at the top); ``examples``
    gives each command, by its name after ``cpk``, the example its help ends with."""
    import argparse

    formatter = help_formatter_class()

    class CommandParser(argparse.ArgumentParser):
        """A command's parser: the global options come with it.

        ``conflict_handler="resolve"`` lets a command keep an option of its
        own that a global one also spells (``cpk store add --version`` is
        the package's version): the command's wins, the global keeps its
        other spelling (``-V``).
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("conflict_handler", "resolve")
            kwargs.setdefault("formatter_class", formatter)
            name = str(kwargs.get("prog", "")).partition(" ")[2]
            if name in examples and not kwargs.get("epilog"):
                kwargs["epilog"] = f"example: {examples[name]}"
            super().__init__(*args, **kwargs)
            add_global_options(self, top=False)

    return CommandParser


def settle(args: argparse.Namespace) -> None:
    """Merge the options given after the command into the top ones.

    Counts add up (``cpk -q sync -q`` is ``-qq``), flags are or-ed, and a
    value after the command wins over one before it.
    """
    for name in ("quiet", "verbose"):
        setattr(args, name, getattr(args, name, 0) + getattr(args, _SUB + name, 0))
    for name in ("no_progress", "offline", "no_cache"):
        setattr(args, name, bool(getattr(args, name, False) or getattr(args, _SUB + name, False)))
    for name in ("color", "chdir"):
        if getattr(args, _SUB + name, None) is not None:
            setattr(args, name, getattr(args, _SUB + name))
    args.sub_chdir = getattr(args, _SUB + "chdir", None)
    if args.color is None:
        args.color = "auto"


def drop_scratch_cache(args: argparse.Namespace) -> None:
    """Remove ``--no-cache``'s temporary cache now: before an exec, which
    replaces this process and would never reach the cleanup at the end.
    Nothing an exec'd environment uses lives in the cache (views and roots
    are in the home)."""
    scratch = getattr(args, "scratch_cache", None)
    if scratch is not None:
        scratch.cleanup()
