"""The ``cpk`` command line: argument parsing and output formatting only.

Each command calls one function of the core and formats what it returns.
Core modules are imported inside the command functions, so a command pays
only for what it uses. This module itself stays tiny: ``cpk run`` on a warm
store decides from its memo before the parser is even imported.
"""

from __future__ import annotations

import os
import sys

# collections.abc is not imported at run time: ``cpk run``'s hot path goes
# through here, and ``collections`` costs more than its whole decision.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

#: A shell's status for a process killed by SIGPIPE (128 + 13), which is
#: what ``cpk store ls | head -1`` gives, as ``ls | head -1`` does.
_CLOSED_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        # Output still buffered is written here, not at exit, where a closed
        # pipe could no longer be answered quietly.
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    return status


def _closed_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as
    coreutils do. Whatever is still buffered goes to /dev/null, so the
    interpreter's flush at exit has nothing left to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return _CLOSED_PIPE


def _show_core_messages(verbose: int) -> None:
    """The core says what it repaired on its own (a rebuilt index) through
    ``logging``, and, under ``-v``, what it decided and why; here those
    lines get the form of every other cpk line."""
    import logging

    class _Lines(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            kind = "warning" if record.levelno >= logging.WARNING else "debug"
            return f"cpk: {kind}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    logger = logging.getLogger("contentpkg")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


def _status(exc: Exception) -> int:
    """The exit status of an error: a shell's for a command that cannot
    start (``ExecError``: 127 or 126), 1 for everything else."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else 1


#: The global flags that take no value, and those that take one, as
#: :func:`leading_globals` reads them (``cli/options.py`` defines them all).
_GLOBAL_FLAGS = ("--no-progress", "--offline", "--no-cache")
_GLOBAL_VALUED = ("--color", "--directory")


def leading_globals(raw: list[str]) -> tuple[dict[str, object], list[str]]:
    """The global options before the command, and the rest of the arguments.

    ``cpk -q run x`` must still take the hot path, which decides before any
    parser is built; this reads the simple forms only (``-q``, ``-vv``,
    ``--color never``, ``--color=never``, ``--directory DIR``, flags) and
    stops at anything else, which the parser then handles.
    """
    found: dict[str, object] = {}
    i = 0
    while i < len(raw):
        arg = raw[i]
        if len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"q", "v"}:
            for letter in arg[1:]:
                key = "quiet" if letter == "q" else "verbose"
                found[key] = _count(found, key) + 1
        elif arg in ("--quiet", "--verbose"):
            found[arg[2:]] = _count(found, arg[2:]) + 1
        elif arg in _GLOBAL_FLAGS:
            found[arg[2:].replace("-", "_")] = True
        elif arg in _GLOBAL_VALUED and i + 1 < len(raw):
            found[arg[2:]] = raw[i + 1]
            i += 1
        elif arg.split("=", 1)[0] in _GLOBAL_VALUED and "=" in arg:
            key, _, value = arg.partition("=")
            found[key[2:]] = value
        else:
            break
        i += 1
    return found, raw[i:]


def _count(found: dict[str, object], key: str) -> int:
    value = found.get(key, 0)
    return value if isinstance(value, int) else 0


def _main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    lead, rest = leading_globals(raw)
    if rest in (["-V"], ["--version"]):
        # Answered before the parser is built (which imports every command).
        from contentpkg import __version__

        print(f"cpk {__version__}")
        return 0
    run_argv = None
    if rest[:1] == ["run"] and not lead.get("no_cache"):
        # The hot path: exec straight from the memo of the last run when
        # nothing it depended on changed (no parser built, nothing parsed).
        # Output options before ``run`` do not change what runs.
        run_argv = (["--offline"] if lead.get("offline") else []) + rest[1:]
        from contentpkg.python.run.memo import try_fast

        if lead.get("directory") and not _moved_to(str(lead["directory"])):
            return 2
        try:
            try_fast(run_argv, quiet=bool(lead.get("quiet")))
        except Exception as exc:
            # Named here, not imported above: the memo's path loads nothing
            # it does not need, and an error is the rare case.
            from contentpkg.errors import CpkError

            if not isinstance(exc, CpkError):
                raise
            print(f"cpk: error: {exc}", file=sys.stderr)
            return _status(exc)
    if rest[:1] == ["lock"] and not set(lead) & {"no_cache", "directory", "verbose"}:
        # A no-op lock decides from its memo too (file stats, no parser).
        from contentpkg.python.run.memo import current_lock_memo

        current = current_lock_memo(rest[1:])
        if current is not None:
            if not lead.get("quiet"):
                name, count = current
                # Spelled as cli/render.py:counted does, without its import.
                print(f"{name} is up to date ({count} package{'' if count == 1 else 's'})",
                      file=sys.stderr)  # fmt: skip
            return 0
    if rest[:1] == ["ldd"]:
        # Run once per file, in loops: its common forms are read without
        # argparse (help, errors and anything unusual go to the parser).
        from contentpkg.cli.ldd import parse_fast

        fast = parse_fast(lead, rest[1:])
        if fast is not None:
            return _call(fast)
    from contentpkg.cli.options import settle
    from contentpkg.errors import CpkError

    if rest[:1] == ["enter"]:
        # A union's start-up: its one parser, none of the other commands' imports.
        from contentpkg.cli.union import build_enter_parser as build_parser
    elif rest[:1] == ["ldd"]:
        # Run once per file: its one parser, none of the other commands' imports.
        from contentpkg.cli.ldd import build_ldd_parser as build_parser
    else:
        from contentpkg.cli.parser import build_parser

    parser = build_parser(rest[0] if rest else None)
    args = parser.parse_args(raw)
    settle(args)
    args.raw_argv = raw
    args.run_argv = run_argv
    try:
        if run_argv is not None and lead.get("directory"):
            # Already there (changed to for the hot path): only a second
            # --directory after the command is left to follow.
            if args.sub_chdir:
                _change_directory(args.sub_chdir)
        elif args.chdir:
            _change_directory(args.chdir)
        args.ctx = _context(args)
    except CpkError as exc:
        print(f"cpk: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "core_logs", True):  # a command whose core never logs says so
        _show_core_messages(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        from contentpkg.cli.parser import usage

        return usage(parser)
    return _call(args)


def _call(args: Any) -> int:
    """Run the command args name, its failures as one line and a status."""
    from contentpkg.errors import CpkError

    try:
        return args.func(args)
    except CpkError as exc:
        print(f"{_error_prefix(args)}{exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return _status(exc)
    except BrokenPipeError:
        raise  # main's: a closed output pipe is no error
    except OSError as exc:
        # Files that vanish or refuse access are input problems, not bugs.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{_error_prefix(args)}{where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cpk: interrupted", file=sys.stderr)
        return 130
    finally:
        scratch = getattr(args, "scratch_cache", None)
        if scratch is not None:
            scratch.cleanup()


def _moved_to(directory: str) -> bool:
    """--directory for the hot path: False (said in one line) if it fails."""
    try:
        os.chdir(directory)
    except OSError as exc:
        print(f"cpk: error: --directory {directory}: {exc.strerror}", file=sys.stderr)
        return False
    return True


def _change_directory(directory: str) -> None:
    from contentpkg.errors import CpkError

    try:
        os.chdir(directory)
    except OSError as exc:
        raise CpkError(f"--directory {directory}: {exc.strerror}") from None


def _context(args: object) -> object:
    """The one Context of the command: settings read from the environment
    here, once, with the global options on top; the core takes them from
    it and never reads os.environ itself."""
    from contentpkg.context import Context
    from contentpkg.errors import CpkError

    try:
        ctx = Context.from_environ()
    except ValueError as exc:  # a setting's bad value, named by the context
        raise CpkError(str(exc)) from None
    a: dict = vars(args)
    output = ctx.output.replace(
        quiet=a["quiet"],
        verbose=a["verbose"],
        color=a["color"],
        progress=not a["no_progress"],
    )
    ctx = ctx.replace(offline=a["offline"], no_cache=a["no_cache"], output=output)
    if a["no_cache"]:
        # Imported here: tempfile (with shutil, random, weakref) is a
        # noticeable part of a short command's start, and only this needs it.
        import tempfile
        from pathlib import Path

        # A cache of this command's own, gone when it ends: nothing is read
        # from the user's cache, nothing kept in it (the store still is).
        scratch = tempfile.TemporaryDirectory(prefix="cpk-no-cache-")
        a["scratch_cache"] = scratch
        ctx = ctx.replace(cache_dir=Path(scratch.name))
    return ctx


def _error_prefix(args: object) -> str:
    """``cpk: error: ``, in red when colour is on for stderr."""
    ctx = getattr(args, "ctx", None)
    if ctx is not None and ctx.output.colored(sys.stderr.isatty()):
        return "cpk: \x1b[31merror\x1b[0m: "
    return "cpk: error: "
