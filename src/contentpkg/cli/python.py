"""``cpk lock``, ``sync``, ``fetch``, ``run`` and ``shell``: the Python project commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.env import env_shell
from contentpkg.cli.store import open_store
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse


def _python_options(args: argparse.Namespace) -> Any:
    from contentpkg.progress import terminal_reporter
    from contentpkg.python.run.operations import Options

    return Options(
        project=Path(args.project).absolute() if getattr(args, "project", None) else None,
        python=args.python,
        index_url=args.index_url,
        extra_index_urls=args.extra_index_url or [],
        find_links=args.find_links or [],
        offline=args.offline,
        prereleases=args.prerelease,
        prefer_store=args.prefer_store,
        extras=getattr(args, "extra", None) or [],
        groups=getattr(args, "group", None) or [],
        reporter=terminal_reporter(sys.stderr),
    )


def close_options(options: Any) -> None:
    """Stop the progress display, if one was started."""
    # A run's reporter is made lazily: never create one just to close it.
    reporter = options._reporter if isinstance(options, RunOptions) else options.reporter
    close = getattr(reporter, "close", None)
    if close is not None:
        close()


def _print_lock(outcome: Any) -> None:
    name = outcome.path.name
    if outcome.fresh:
        print(f"{name} is up to date ({outcome.packages} packages)", file=sys.stderr)
    elif outcome.changed:
        print(f"locked {outcome.packages} packages into {name}", file=sys.stderr)
    else:
        print(f"{name} unchanged after re-locking ({outcome.packages} packages)", file=sys.stderr)


def _print_items(items: list[Any], every: bool = False) -> None:
    for item in items:
        if every:
            print(f"{item.name} {item.version}  {item.entry.path}")
        elif item.how != "present":
            print(f"{item.how} {item.name} {item.version}  {item.entry.dirname}")
    fetched = sum(1 for i in items if i.how == "fetched")
    built = sum(1 for i in items if i.how == "built")
    present = sum(1 for i in items if i.how == "present")
    print(
        f"{len(items)} packages in the store: {fetched} fetched, {built} built, "
        f"{present} already present",
        file=sys.stderr,
    )


def cmd_lock(args: argparse.Namespace) -> int:
    from contentpkg.python.run.operations import lock_project

    options = _python_options(args)
    try:
        outcome = lock_project(
            options,
            upgrade=args.upgrade,
            upgrade_packages=args.upgrade_package or [],
            check=args.check,
        )
    finally:
        close_options(options)
    if args.check and not outcome.fresh:
        print(f"{outcome.path.name} is out of date; run 'cpk lock'", file=sys.stderr)
        return 1
    _print_lock(outcome)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from contentpkg.python.run.operations import sync_project

    options = _python_options(args)
    try:
        outcome = sync_project(options, frozen=args.frozen, locked=args.locked)
    finally:
        close_options(options)
    if outcome.lock is not None:
        _print_lock(outcome.lock)
    _print_items(outcome.items)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from contentpkg.python.run.operations import fetch

    options = _python_options(args)
    try:
        outcome = fetch(args.requirements, options)
    finally:
        close_options(options)
    _print_items(outcome.items, every=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The hot path: nothing heavy is imported unless something must be made."""
    from contentpkg.python.run.plan import RunRequest, exec_in, prepare

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CpkError("run: name a command to run (cpk run CMD...)")
    request = RunRequest(
        command,
        args.with_ or [],
        frozen=args.frozen,
        locked=args.locked,
        with_elf=args.with_elf or [],
    )
    options = RunOptions(args)
    prepared = prepare(options, request)
    close_options(options)
    if args.with_elf:
        _bind_elf(args.with_elf)
    elif args.raw_argv[:1] == ["run"]:
        from contentpkg.python.run.memo import write_memo

        prefix = ["python"] if command[0].endswith(".py") and os.path.isfile(command[0]) else []
        write_memo(args.raw_argv[1:], os.fspath(prepared.env), *prepared.memo_facts(), prefix)
    for note in prepared.notes:
        print(f"cpk: {note}", file=sys.stderr)
    for conflict in prepared.conflicts:
        print(
            f"cpk: warning: {conflict.path} is installed by both {conflict.winner} and "
            f"{conflict.loser}; using {conflict.winner.split(',')[0]}'s (declared first)",
            file=sys.stderr,
        )
    if command[0].endswith(".py") and os.path.isfile(command[0]):
        command = ["python", *command]  # a script runs with the environment's python
    exec_in(prepared.env, command)
    return 0  # not reached: exec replaced this process


def _bind_elf(specs: list[str]) -> None:
    """Put native packages into this process's environment, for the exec.

    Libraries go on LD_LIBRARY_PATH: a name given to dlopen (ctypes.CDLL)
    is searched there, and not through any RUNPATH of the interpreter's.
    """
    from contentpkg.elf.envdir import shared_env

    env = shared_env(open_store(), specs)
    for var, value in (("LD_LIBRARY_PATH", env / "lib"), ("PATH", env / "bin")):
        old = os.environ.get(var)
        os.environ[var] = os.fspath(value) + (os.pathsep + old if old else "")


def cmd_shell(args: argparse.Namespace) -> int:
    """A subshell in the environment: nothing to source, exit to leave it."""
    if args.env is not None:  # a profile or env dir, not the project's environment
        return env_shell(args)
    from contentpkg.python.run.plan import RunRequest, exec_in, prepare

    shell = args.shell or os.environ.get("SHELL") or "/bin/sh"
    request = RunRequest([shell], frozen=args.frozen, locked=args.locked)
    options = RunOptions(args)
    prepared = prepare(options, request)
    close_options(options)
    for note in prepared.notes:
        print(f"cpk: {note}", file=sys.stderr)
    os.environ["CPK_SHELL"] = os.fspath(prepared.env)
    os.environ["VIRTUAL_ENV_PROMPT"] = (prepared.inputs and prepared.inputs.name) or "cpk"
    if sys.stdin.isatty():
        print(f"cpk: entering {prepared.env}; exit to leave", file=sys.stderr)
    exec_in(prepared.env, [shell])
    return 0  # not reached


class RunOptions:
    """Options for run, with the progress reporter made only if needed.

    The hot path never touches ``reporter``, so ``rich`` is never imported
    when the environment is already there.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.project = Path(args.project).absolute() if args.project else None
        self.python = args.python
        self.index_url = args.index_url
        self.extra_index_urls = args.extra_index_url or []
        self.find_links = args.find_links or []
        self.offline = args.offline
        self.prereleases = args.prerelease
        self.prefer_store = args.prefer_store
        self.extras = args.extra or []
        self.groups = args.group or []
        self._reporter: Any = None
        self.with_requirements = getattr(args, "with_", None) or []

    @property
    def reporter(self) -> Any:
        if self._reporter is None:
            from contentpkg.progress import terminal_reporter

            self._reporter = terminal_reporter(sys.stderr)
        return self._reporter

