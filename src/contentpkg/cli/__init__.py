"""The ``cpk`` command line: argument parsing and output formatting only.

Each command calls one function of the core and formats what it returns.
Core modules are imported inside the command functions, so a command pays
only for what it uses. This module itself stays tiny: ``cpk run`` on a warm
store decides from its memo before the parser is even imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
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
            return 1
    from contentpkg.cli.parser import build_parser, usage
    from contentpkg.context import Context
    from contentpkg.errors import CpkError

    parser = build_parser()
    args = parser.parse_args(raw)
    args.raw_argv = raw
    # Settings are read from the environment here, once; the core takes them
    # from this Context and never reads os.environ itself.
    args.ctx = Context.from_environ()
    func = getattr(args, "func", None)
    if func is None:
        return usage(parser)
    try:
        return func(args)
    except CpkError as exc:
        print(f"cpk: error: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Files that vanish or refuse access are input problems, not bugs.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cpk: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cpk: interrupted", file=sys.stderr)
        return 130

