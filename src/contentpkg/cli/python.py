"""``cpk lock``, ``sync``, ``fetch``, ``run`` and ``shell``: the Python project commands.

Each command turns its arguments into :class:`~contentpkg.python.run.options.Options`,
calls one function of :mod:`contentpkg.python.run`, and prints what it returns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.env import env_shell
from contentpkg.cli.options import drop_scratch_cache
from contentpkg.cli.render import command_reporter, counted
from contentpkg.cli.store import open_store
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse

    from contentpkg.python.run.options import Options


def python_options(args: argparse.Namespace) -> Options:
    """The one settings object of every Python command, from its arguments."""
    from contentpkg.python.run.options import Options

    return Options(
        ctx=args.ctx,
        project=Path(args.project).absolute() if getattr(args, "project", None) else None,
        python=args.python,
        index_url=args.index_url,
        extra_index_urls=tuple(args.extra_index_url or ()),
        find_links=tuple(args.find_links or ()),
        offline=args.ctx.offline,
        refresh=bool(getattr(args, "refresh", False)),
        prereleases=args.prerelease,
        prefer_store=args.prefer_store,
        extras=tuple(getattr(args, "extra", None) or ()),
        groups=tuple(getattr(args, "group", None) or ()),
        no_editable=bool(getattr(args, "no_editable", False)),
        strict_command=bool(getattr(args, "strict_command", False)),
        all_extras=bool(getattr(args, "all_extras", False)),
        all_groups=bool(getattr(args, "all_groups", False)),
        no_default_groups=bool(getattr(args, "no_default_groups", False)),
        only_groups=tuple(getattr(args, "only_group", None) or ()),
        no_dev=bool(getattr(args, "no_dev", False)),
        # Bars start on first use: a run that makes nothing never imports rich.
        reporter=command_reporter(args.ctx),
    )


def print_lock(outcome: Any, quiet: bool = False) -> None:
    """What locking did, on stderr (not under -q)."""
    if quiet:
        return
    name = outcome.path.name
    if outcome.fresh:
        print(f"{name} is up to date ({counted(outcome.packages, 'package')})", file=sys.stderr)
    elif outcome.changed:
        print(f"locked {counted(outcome.packages, 'package')} into {name}", file=sys.stderr)
    else:
        packages = counted(outcome.packages, "package")
        print(f"{name} unchanged after re-locking ({packages})", file=sys.stderr)


def print_items(items: list[Any], every: bool = False, quiet: bool = False) -> None:
    """What syncing did: each package made (every package with ``every``,
    which is the output of ``cpk fetch`` and printed even under -q)."""
    if quiet and not every:
        return
    for item in items:
        if every:
            print(f"{item.name} {item.version}  {item.entry.path}")
        elif item.how != "present":
            print(f"{item.how} {item.name} {item.version}  {item.entry.dirname}")
    fetched = sum(1 for i in items if i.how == "fetched")
    built = sum(1 for i in items if i.how == "built")
    present = sum(1 for i in items if i.how == "present")
    pulled = sum(1 for i in items if i.how == "pulled")
    if quiet:
        return
    print(
        f"{counted(len(items), 'package')} in the store: {fetched} fetched, {built} built, "
        + (f"{pulled} pulled from remotes, " if pulled else "")
        + f"{present} already present",
        file=sys.stderr,
    )


def _print_launch(launch: Any, conflicts: bool = True) -> None:
    for note in launch.notes:
        print(f"cpk: {note}", file=sys.stderr)
    for conflict in launch.conflicts if conflicts else ():
        print(f"cpk: warning: {conflict.describe()}", file=sys.stderr)


def cmd_lock(args: argparse.Namespace) -> int:
    from contentpkg.python.run.lockstate import current_lock

    options = python_options(args)
    try:
        # The common case first, without loading the resolution's modules.
        outcome = None if args.upgrade or args.upgrade_package else current_lock(options)
        if outcome is None:
            from contentpkg.python.run.sync import lock_project

            outcome = lock_project(
                options,
                upgrade=args.upgrade,
                upgrade_packages=args.upgrade_package or [],
                check=args.check,
                known_stale=True,
            )
    finally:
        options.close()
    if args.check and not outcome.fresh:
        print(f"{outcome.path.name} is out of date; run 'cpk lock'", file=sys.stderr)
        return 1
    print_lock(outcome, args.ctx.output.quiet > 0)
    if not args.ctx.no_cache:
        _remember_lock(args, options, outcome)
    return 0


def _remember_lock(args: argparse.Namespace, options: Options, outcome: Any) -> None:
    """Let the next identical ``cpk lock`` answer from file stats (the
    memo's arguments are those after the command, as the fast path sees them)."""
    from contentpkg.cli import leading_globals
    from contentpkg.python.run.lockstate import remember_current

    _, rest = leading_globals(args.raw_argv)
    if rest[:1] == ["lock"]:
        remember_current(options, rest[1:], outcome)


def cmd_sync(args: argparse.Namespace) -> int:
    from contentpkg.python.run.sync import sync_project

    options = python_options(args)
    try:
        outcome = sync_project(options, frozen=args.frozen, locked=args.locked)
    finally:
        options.close()
    if outcome.lock is not None:
        print_lock(outcome.lock, args.ctx.output.quiet > 0)
    print_items(outcome.items, quiet=args.ctx.output.quiet > 0)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from contentpkg.python.run.sync import fetch

    options = python_options(args)
    try:
        outcome = fetch(args.requirements, options)
    finally:
        options.close()
    print_items(outcome.items, every=True, quiet=args.ctx.output.quiet > 0)
    return 0


def with_lines(args: argparse.Namespace) -> tuple[str, ...]:
    """``--with``, ``--with-editable P`` and ``--with-requirements F`` as the
    requirement lines the core reads (``-e P``, ``-r F``)."""
    import shlex

    lines = list(args.with_ or ())
    lines += [f"-e {shlex.quote(p)}" for p in getattr(args, "with_editable", None) or ()]
    lines += [f"-r {shlex.quote(f)}" for f in getattr(args, "with_requirements", None) or ()]
    return tuple(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """Parse, call :func:`~contentpkg.python.run.plan.run`, print its notes, exec."""
    from contentpkg.python.run.options import RunRequest
    from contentpkg.python.run.plan import run

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CpkError("run: name a command to run (cpk run CMD...)")
    native = None
    if args.with_elf:
        # Native packages come from the ELF side of the store, composed here
        # at the edge so that neither namespace imports the other.
        from contentpkg.elf.envdir import shared_env

        native = shared_env(open_store(args.ctx), args.with_elf)
    request = RunRequest(
        tuple(command),
        with_lines(args),
        frozen=args.frozen,
        locked=args.locked,
        native=native,
    )
    options = python_options(args)
    union = getattr(args, "union", False)
    try:
        # The memo is written only for the arguments the hot path will see;
        # a union is entered per run: no memo, whose fast path would skip it.
        launch = run(options, request, None if union else getattr(args, "run_argv", None))
    finally:
        options.close()
    _print_launch(launch)
    drop_scratch_cache(args)
    if union:
        from contentpkg.cli.union import exec_run_union

        exec_run_union(args, launch)
    launch.exec()
    return 0  # not reached: exec replaced this process


def cmd_shell(args: argparse.Namespace) -> int:
    """A subshell in the environment: nothing to source, exit to leave it."""
    if args.env is not None:  # a profile or env dir, not the project's environment
        return env_shell(args)
    from contentpkg.python.run.options import RunRequest
    from contentpkg.python.run.plan import shell

    program = args.shell or args.ctx.environ.get("SHELL") or "/bin/sh"
    request = RunRequest((program,), frozen=args.frozen, locked=args.locked)
    options = python_options(args)
    try:
        launch = shell(options, request)
    finally:
        options.close()
    _print_launch(launch, conflicts=False)
    if sys.stdin.isatty():
        print(f"cpk: entering {launch.env}; exit to leave", file=sys.stderr)
    drop_scratch_cache(args)
    launch.exec()
    return 0  # not reached
