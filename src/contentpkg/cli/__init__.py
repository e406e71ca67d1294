"""The ``cpk`` command line: argument parsing and output formatting only.

Each command calls one function of the core and formats what it returns.
Core modules are imported inside the command functions, so a command pays
only for what it uses. This module itself stays tiny: ``cpk run`` on a warm
store decides from its memo before the parser is even imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

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


def _show_core_warnings() -> None:
    """The core says what it repaired on its own (a rebuilt index) through
    ``logging``; here those lines get the form of every other cpk line."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cpk: warning: %(message)s"))
    logger = logging.getLogger("contentpkg")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def _status(exc: Exception) -> int:
    """The exit status of an error: a shell's for a command that cannot
    start (``ExecError``: 127 or 126), 1 for everything else."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else 1


def _main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["run"]:
        # The hot path: exec straight from the memo of the last run when
        # nothing it depended on changed (no parser built, nothing parsed).
        from contentpkg.python.run.memo import try_fast

        try:
            try_fast(raw[1:])
        except Exception as exc:
            # Named here, not imported above: the memo's path loads nothing
            # it does not need, and an error is the rare case.
            from contentpkg.errors import CpkError

            if not isinstance(exc, CpkError):
                raise
            print(f"cpk: error: {exc}", file=sys.stderr)
            return _status(exc)
    from contentpkg.cli.parser import build_parser, usage
    from contentpkg.context import Context
    from contentpkg.errors import CpkError

    parser = build_parser()
    args = parser.parse_args(raw)
    args.raw_argv = raw
    # Settings are read from the environment here, once; the core takes them
    # from this Context and never reads os.environ itself.
    args.ctx = Context.from_environ()
    _show_core_warnings()
    func = getattr(args, "func", None)
    if func is None:
        return usage(parser)
    try:
        return func(args)
    except CpkError as exc:
        print(f"cpk: error: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return _status(exc)
    except BrokenPipeError:
        raise  # main's: a closed output pipe is no error
    except OSError as exc:
        # Files that vanish or refuse access are input problems, not bugs.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cpk: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cpk: interrupted", file=sys.stderr)
        return 130
