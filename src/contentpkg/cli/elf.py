"""``cpk install``, ``cpk uninstall`` and ``cpk fetch --deb``: native programs and env dirs.

``cpk ldd`` is in ``cli/ldd.py``: it runs once per file, so it loads none of this.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.python import python_options
from contentpkg.cli.render import counted
from contentpkg.cli.store import open_store
from contentpkg.errors import CpkError, MissingLibraryError, NotFoundError

if TYPE_CHECKING:
    import argparse


def _split_libs(values: list[str] | None) -> list[Path]:
    return [Path(p) for v in values or [] for p in v.split(",") if p]


def _print_install(result: Any, verb: str) -> None:
    where = result.where
    if not result.changed:
        print(f"{where}: already up to date; nothing changed", file=sys.stderr)
        return
    for path, entry in result.programs:
        print(f"{verb} {where / path}  ({entry})", file=sys.stderr)
    for lib in result.libraries:
        origin = lib.entry or lib.source
        print(f"  {lib.placed}  <- {origin}", file=sys.stderr)
    if result.system:
        print(f"  from the system: {', '.join(sorted(set(result.system)))}", file=sys.stderr)
    for name in result.removed:
        print(f"removed {name} from {where}", file=sys.stderr)
    if getattr(result, "placed", None):
        ways = ", ".join(f"{n} by {how}" for how, n in sorted(result.placed.items()))
        print(f"  placed ({result.link_mode}): {ways}", file=sys.stderr)
    for path, readers, state in getattr(result, "compiled_paths", []):
        who = ", ".join(readers[:3]) + (f" (+{len(readers) - 3} more)" if len(readers) > 3 else "")
        print(f"  compiled-in path: {who} read {path} \u2014 {state}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


def _print_path_report(args: argparse.Namespace, result: Any) -> None:
    from contentpkg.env.pathreport import format_lines, report_path

    path_env = args.ctx.environ.get("PATH", "")
    shown: set[str] = set()  # "DIR is not on PATH" once, not once per program
    for path, _entry in result.programs:
        report = report_path(open_store(args.ctx), Path(path).name, result.where / "bin", path_env)
        for line in format_lines(report):
            if line not in shown:
                shown.add(line)
                print(line, file=sys.stderr)


def _change(args: argparse.Namespace, description: str, change: Any) -> Any:
    """Make change in WHERE or in a new generation of the profile the arguments name."""
    from contentpkg.env.profiles import change_env

    return change_env(
        change,
        home=args.ctx.home,
        where=Path(args.where) if args.where is not None else None,
        profile=args.profile,
        description=description,
        command=" ".join(["cpk", *args.raw_argv]),
    )


def cmd_fetch_any(args: argparse.Namespace) -> int:
    """``cpk fetch``: Python requirements, or with ``--deb`` Debian packages."""
    if not args.deb:
        from contentpkg.cli.python import cmd_fetch

        return cmd_fetch(args)
    if args.dry_run:
        from contentpkg.elf.archive.fetch import resolve_names

        resolution = resolve_names(args.ctx, args.requirements, recommends=args.with_recommends)
        for p in resolution.packages:
            print(f"{p.name} {p.version}")
        for name, why in sorted(resolution.system.items()):
            print(f"from the system: {name} ({why})", file=sys.stderr)
        for note in resolution.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    result = _fetch_debs(args, args.requirements)
    res = result.resolution
    print(
        f"{counted(len(res.packages), 'package')} needed: {len(result.added)} added, "
        f"{len(result.stored)} already in the store; "
        f"{counted(len(res.system), 'package')} left to the system",
        file=sys.stderr,
    )
    return 0


def _fetch_debs(args: argparse.Namespace, names: list[str]) -> Any:
    """Resolve names against the Debian archive and store what the store lacks."""
    from contentpkg.cli.render import command_reporter
    from contentpkg.elf.archive.fetch import fetch_debs

    reporter = command_reporter(args.ctx)
    try:
        result = fetch_debs(
            args.ctx,
            open_store(args.ctx),
            names,
            recommends=args.with_recommends,
            reporter=reporter,
            jobs=getattr(args, "jobs", None),
        )
    finally:
        close = getattr(reporter, "close", None)
        if close is not None:
            close()
    for p in result.downloaded:
        print(f"fetched {p.name} {p.version}", file=sys.stderr)
    for dirname in result.added:
        print(f"added: {dirname}", file=sys.stderr)
    if result.resolution.system:
        system = ", ".join(sorted(result.resolution.system))
        print(f"from the system (not fetched): {system}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return result


def _fetch_if_missing(args: argparse.Namespace, store: Any) -> None:
    """``cpk install NAME`` of a package the store lacks: fetch it and its
    closure from the Debian archive first (the install then goes on as for a
    stored package). A spec with a version or hash names a stored entry."""
    from contentpkg.elf.envdir import find_package

    try:
        find_package(store, args.spec)
        return
    except CpkError as exc:
        if "," in args.spec or "/" in args.spec:
            raise
        missing = exc
    try:
        _fetch_debs(args, [args.spec])
    except NotFoundError:
        # Neither the store nor the archive has it (or no archive is
        # configured): the store's own message says what was looked for.
        raise missing from None


def cmd_install(args: argparse.Namespace) -> int:
    store = open_store(args.ctx)
    if not args.python_tool:
        # Configured remotes come before every other source, the archive included.
        from contentpkg.cli.remote import substitute_specs

        substitute_specs(store, args.ctx, [args.spec])
        _fetch_if_missing(args, store)
    tools = []
    specs = [args.spec]
    if args.python_tool:
        from contentpkg.python.envs.tools import tool_environment

        options = python_options(args)
        try:
            tools = [tool_environment(options, args.spec)]
        finally:
            options.close()
        for note in tools[0].notes:
            print(f"cpk: warning: {note}", file=sys.stderr)
        specs = []
    try:
        result = _install(args, store, specs, tools)
    except MissingLibraryError as exc:
        from contentpkg.elf.archive.missing import name_missing
        from contentpkg.elf.envdir import find_package

        entries = [find_package(store, s) for s in specs]
        exc.details += name_missing(args.ctx, store, entries, exc.missing)
        raise
    _print_install(result, "installed")
    if result.programs and result.changed:
        _print_path_report(args, result)
    return 0


def _install(args: argparse.Namespace, store: Any, specs: list[str], tools: list[Any]) -> Any:
    from contentpkg.elf.envdir import install

    return _change(
        args,
        f"install {args.spec}",
        lambda where, base, root: install(
            store,
            specs,
            where,
            tools=tools,
            libs=_split_libs(args.libs),
            system_libs=args.system_libs,
            base=base,
            root=root,
            link_mode=args.link_mode,
            with_docs=args.with_docs,
        ),
    )


def cmd_uninstall(args: argparse.Namespace) -> int:
    from contentpkg.elf.envdir import remove

    store = open_store(args.ctx)
    result = _change(
        args,
        f"remove {' '.join(args.names)}",
        lambda where, base, root: remove(store, args.names, where, base=base, root=root),
    )
    _print_install(result, "kept")
    return 0
