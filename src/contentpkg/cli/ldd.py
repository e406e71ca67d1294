"""``cpk ldd``: where the loader finds each library of a program, and why.

A command run once per file, often in loops over many files: its start-up
is most of its cost. So its common forms (``cpk ldd FILE``, with ``--json``
and the global options before the command) are read by :func:`parse_fast`
without argparse, and without a Context (``context.loader_settings`` gives
the two settings it needs); help, errors and anything else go to its parser
alone (:func:`build_ldd_parser`), so messages and ``--help`` are argparse's.
This module imports nothing of the other commands, nor anything of the core
until the command runs.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


#: The global options before ``ldd`` that change nothing ldd does (-q, -v:
#: its report is its output; --offline and --no-progress: no network, no
#: progress) or only the colour of an error line (--color). --directory and
#: --no-cache (a scratch cache for the loader's configuration) go to the parser.
_FAST_GLOBALS = frozenset({"quiet", "verbose", "no_progress", "offline", "color"})
_COLORS = ("auto", "always", "never")


class LddSettings:
    """What ``cpk ldd`` reads of a Context: where the loader's configuration
    is cached, the environment the loader would see, and the output options
    (the colour of an error line)."""

    __slots__ = ("cache_dir", "environ", "output")

    def __init__(self, cache_dir: Any, environ: Any, output: Any) -> None:
        self.cache_dir = cache_dir
        self.environ = environ
        self.output = output


class LddArgs:
    """The arguments of ``cpk ldd``, by the names its parser gives them."""

    __slots__ = ("ctx", "file", "json")

    def __init__(self, file: str, json: bool, ctx: LddSettings) -> None:
        self.file = file
        self.json = json
        self.ctx = ctx

    def func(self, args: Any) -> int:
        """What the parser's ``set_defaults(func=...)`` gives: the command."""
        return cmd_ldd(args)


def parse_fast(lead: dict[str, object], args: list[str]) -> LddArgs | None:
    """``cpk [globals] ldd FILE [--json]`` read without argparse; None for
    anything else (``--help``, a typo, two files, an option after FILE that
    is not ``--json``), which the parser then reads and answers."""
    if not set(lead) <= _FAST_GLOBALS or lead.get("color", "auto") not in _COLORS:
        return None
    files = [a for a in args if a != "--json"]
    if len(files) != 1 or files[0].startswith("-"):
        return None
    from contentpkg.context import Output, loader_settings

    try:
        cache_dir, environ = loader_settings()
    except ValueError:
        return None  # a setting's bad value: the full path says which, as for any command
    output = Output.from_environ(environ, color=lead.get("color", "auto"))
    return LddArgs(files[0], len(files) != len(args), LddSettings(cache_dir, environ, output))


def build_ldd_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top parser with ``ldd`` alone under it (what ``cpk ldd ...`` parses with)."""
    import argparse

    from contentpkg.cli.examples import EXAMPLES
    from contentpkg.cli.options import (
        add_global_options,
        command_parser_class,
        help_formatter_class,
    )

    parser = argparse.ArgumentParser(prog="cpk", formatter_class=help_formatter_class())
    add_global_options(parser, top=True)
    # prog given: argparse would otherwise format the top parser's usage
    # (with the terminal's width) only to find "cpk" again.
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=command_parser_class(EXAMPLES),
        prog="cpk",
    )
    add_ldd_command(commands)
    return parser


def add_ldd_command(commands: Any) -> None:
    """``cpk ldd FILE [--json]``."""
    p = commands.add_parser(
        "ldd",
        help="explain where the loader finds each library of a program",
        description="List every object glibc's loader maps for FILE, in its order, with "
        "the path and the reason (which RPATH/RUNPATH element, LD_LIBRARY_PATH, "
        "ld.so.cache, a system directory, glibc-hwcaps, already loaded) and what is "
        "missing; exit 1 when something is missing. Programs are examined as the kernel "
        "starts them, libraries as 'ld.so --list' does. Nothing is executed.",
    )
    p.add_argument("file", metavar="FILE", help="an ELF program or shared library")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    # The loader emulation logs nothing, so the command line's logging
    # handler (and the logging module) is not set up for it.
    p.set_defaults(func=cmd_ldd, core_logs=False)


def _through_launcher(file: Any) -> Any:
    """The program a cpk launcher in an env dir runs, said on stderr; else file.

    The launcher is a shell script: what the loader does is the program's."""
    import os
    import stat

    try:
        # Only a regular file is read: a FIFO would block (launcher_of's rule).
        shell = stat.S_ISREG(os.stat(file).st_mode)
        if shell:
            with open(file, "rb") as f:
                shell = f.read(10) == b"#!/bin/sh\n"
    except OSError:
        shell = False
    if not shell:
        # Not even a shell script: the launcher module (a third of what
        # ``cpk ldd FILE`` would import) is not needed to say so.
        return file
    from contentpkg.elf.launchers import launcher_of

    launched = launcher_of(file)
    if launched is None:
        return file
    real, variables = launched
    print(
        f"{file}: a cpk launcher; it sets {', '.join(variables) or 'nothing'} and runs {real}",
        file=sys.stderr,
    )
    return real


def cmd_ldd(args: argparse.Namespace) -> int:
    from contentpkg.elf.loader import cached_system_config, resolve

    tunables = args.ctx.environ.get("GLIBC_TUNABLES", "")
    config = cached_system_config(args.ctx.cache_dir, tunables)
    report = resolve(_through_launcher(args.file), args.ctx.environ, explain=True, config=config)
    if args.json:
        import json  # only here: a third of a plain report's imports

        print(json.dumps(report.to_json(), indent=1))
        return 0 if report.ok else 1
    kind = "program" if report.mode == "exec" else "examined as ld.so --list does"
    head = [kind, f"$ORIGIN {report.origin}"]
    if report.interpreter:
        head.append(f"interpreter {report.interpreter}")
    print(f"{report.file} ({'; '.join(head)})")
    if report.static:
        how = "no DT_NEEDED entries" if report.interpreter else "the kernel runs it, no loader"
        print(f"  statically linked: {how}")
    for obj in report.objects:
        if obj.path is None:
            print(f"  {obj.name} => not found")
            why = f"searched {'; '.join(obj.searched)}" if obj.searched else "searched nothing"
        else:
            print(f"  {obj.name}" + (f" => {obj.path}" if obj.path != obj.name else ""))
            why = obj.detail + (f" (in {obj.hwcaps})" if obj.hwcaps else "")
        who = f"needed by {obj.requested_by}" if obj.requested_by else "not named by any DT_NEEDED"
        if obj.also_requested_by:
            who += f" (and {len(obj.also_requested_by)} more)"
        print(f"      {who}; {why}")
        for skipped in obj.skipped:
            print(f"      passed over {skipped}")
    overridden = [r for r in report.shared if r.would_find]
    if overridden:
        print("already loaded, ahead of the requester's own search:")
        for r in overridden:
            print(
                f"  {r.name} needed by {r.requested_by}: uses {r.path}; "
                f"its own search finds {r.would_find} ({r.would_reason})"
            )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    mapped = sum(1 for o in report.objects if o.path is not None)
    missing = len(report.missing)
    print(
        f"{mapped} objects mapped" + (f", {missing} not found" if missing else ""),
        file=sys.stderr,
    )
    if report.error:
        print(f"cpk: error: the loader stops: {report.error}", file=sys.stderr)
    return 0 if report.ok else 1
