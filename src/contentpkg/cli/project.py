"""``cpk init``, ``add``, ``remove``, ``tree`` and ``export``: the project
commands uv users type every day, with uv's meaning."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.python import print_items, print_lock, python_options
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse


def add_project_commands(
    commands: Any, _add_index_options: Any, add_selection_options: Any
) -> None:
    """The parsers of the project commands (called by ``build_parser``, which
    passes its functions adding the index and the selection options)."""
    p = commands.add_parser(
        "init",
        help="create a new project (pyproject.toml, .gitignore)",
        description="Create a project in DIR (default: here): a pyproject.toml with a "
        "[project] table whose requires-python is the interpreter's version, and .venv "
        "in .gitignore. An application gets main.py; a library (--lib) a src/ package "
        "and a build backend.",
    )
    p.add_argument("directory_arg", metavar="DIR", nargs="?", help="where (default: here)")
    p.add_argument("--name", help="the project's name (default: the directory's)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--lib", action="store_true", help="a library: src/ layout, build backend")
    kind.add_argument("--app", action="store_true", help="an application (the default)")
    p.add_argument("--python", metavar="PY", help="the interpreter whose version to require")
    p.set_defaults(func=cmd_init)

    p = commands.add_parser(
        "add",
        help="add requirements to pyproject.toml, then lock and sync",
        description="Add each REQ to the project's dependencies (or a group, or an "
        "extra), keeping pyproject.toml's comments and formatting, then lock and sync. "
        "A package already listed is replaced. If locking or syncing fails, "
        "pyproject.toml and pylock.toml are left exactly as they were.",
    )
    p.add_argument("requirements", nargs="*", metavar="REQ", help="a PEP 508 requirement")
    _add_target_options(p, dev=True)
    p.add_argument(
        "--editable",
        metavar="PATH",
        action="append",
        help="add the project at PATH, used in place ([tool.cpk.sources]); repeatable",
    )
    p.add_argument(
        "--no-sync", action="store_true", help="only edit pyproject.toml (no lock, no sync)"
    )
    _add_index_options(p)
    p.set_defaults(func=cmd_add)

    p = commands.add_parser(
        "remove",
        help="remove requirements from pyproject.toml, then lock and sync",
        description="Remove each NAME from the project's dependencies (or a group, or "
        "an extra), keeping the file's comments and formatting, then lock and sync. "
        "To remove a package from an env dir or a profile, use 'cpk uninstall'.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="a package name")
    _add_target_options(p, dev=True)
    p.add_argument("--from", dest="where", metavar="WHERE", help=argparse_suppress())
    p.add_argument("--profile", "-p", metavar="NAME", help=argparse_suppress())
    p.add_argument("--no-sync", action="store_true", help="only edit pyproject.toml")
    _add_index_options(p)
    p.set_defaults(func=cmd_remove)

    p = commands.add_parser(
        "tree",
        help="show the locked dependency graph",
        description="Show the packages of pylock.toml as a tree, from the project's "
        "direct requirements down; a package already shown is marked (*). Locks first "
        "when the inputs changed, unless --frozen.",
    )
    p.add_argument("--depth", "-d", type=_levels, metavar="N", help="show N levels below the roots")
    p.add_argument("--invert", metavar="NAME", help="show what depends on NAME instead")
    p.add_argument("--outdated", action="store_true", help="show the newest version the index has")
    p.add_argument("--frozen", action="store_true", help="read pylock.toml as it is")
    add_selection_options(p)
    _add_index_options(p)
    p.set_defaults(func=cmd_tree)

    p = commands.add_parser(
        "export",
        help="write the lock as requirements.txt or pylock.toml",
        description="Print the locked packages (those the selected extras and groups "
        "take) as a requirements.txt with a --hash for every file (pip install "
        "--require-hashes -r), or as a PEP 751 pylock.toml. Locks first when the inputs "
        "changed, unless --frozen.",
    )
    p.add_argument(
        "--format",
        choices=("requirements.txt", "pylock.toml"),
        default="requirements.txt",
        help="the output format (default: requirements.txt)",
    )
    p.add_argument("--output-file", "-o", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--frozen", action="store_true", help="read pylock.toml as it is")
    add_selection_options(p)
    _add_index_options(p)
    p.set_defaults(func=cmd_export)


def argparse_suppress() -> str:
    """Hidden from help: options kept only to answer the old spelling."""
    import argparse

    return argparse.SUPPRESS


def _add_target_options(p: argparse.ArgumentParser, dev: bool) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--group", dest="edit_group", metavar="G", help="a dependency group")
    where.add_argument(
        "--optional", metavar="EXTRA", help="an extra ([project.optional-dependencies])"
    )
    if dev:
        where.add_argument("--dev", action="store_true", help="the dev group (--group dev)")


def _where(args: argparse.Namespace) -> Any:
    from contentpkg.python.project.edit import Where

    group = "dev" if getattr(args, "dev", False) else args.edit_group
    # Syncing after the edit includes what was edited, as uv's does.
    args.group = [group] if group else None
    args.extra = [args.optional] if args.optional else None
    return Where(group=group, optional=args.optional)


def cmd_init(args: argparse.Namespace) -> int:
    from contentpkg.python.interpreter import interpreter_info
    from contentpkg.python.project.init import init_project

    root = Path(args.directory_arg or ".").absolute()
    info = interpreter_info(args.python, cache_dir=args.ctx.cache_dir)
    version = ".".join(info.version.split(".")[:2])
    created = init_project(root, version, name=args.name, lib=args.lib)
    if not args.ctx.output.quiet:
        print(f"Initialized {created.kind} {created.name!r} at {created.root}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace, changed: Any, verb: str) -> None:
    quiet = args.ctx.output.quiet > 0
    if not changed.changed:
        print(f"{changed.pyproject}: nothing to change", file=sys.stderr)
    elif not quiet:
        print(f"{verb} {changed.pyproject}", file=sys.stderr)
    if changed.sync is not None:
        if changed.sync.lock is not None:
            print_lock(changed.sync.lock, quiet)
        print_items(changed.sync.items, quiet=quiet)


def cmd_add(args: argparse.Namespace) -> int:
    from contentpkg.python.project.edit import add_requirements, project_name_at
    from contentpkg.python.run.change import change_project

    where = _where(args)
    editable: dict[str, str] = {}
    requirements = list(args.requirements)
    for path in args.editable or []:
        name = project_name_at(Path(path))
        editable[name] = path
        requirements.append(name)
    if not requirements:
        raise CpkError("add: name a requirement (cpk add REQ...) or --editable PATH")
    options = python_options(args)
    try:
        changed = change_project(
            options,
            lambda text, file: add_requirements(text, requirements, file, where, editable),
            sync=not args.no_sync,
        )
    finally:
        options.close()
    _report(args, changed, "updated")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    if args.where is not None or args.profile is not None or _names_a_dir(args.names):
        raise CpkError(
            "remove edits pyproject.toml; to remove packages from an env dir or a profile "
            "use 'cpk uninstall NAME... --from WHERE' (or --profile NAME)"
        )
    from contentpkg.python.project.edit import remove_requirements
    from contentpkg.python.run.change import change_project

    where = _where(args)
    options = python_options(args)
    try:
        changed = change_project(
            options,
            lambda text, file: remove_requirements(text, list(args.names), file, where),
            sync=not args.no_sync,
        )
    finally:
        options.close()
    _report(args, changed, "updated")
    return 0


def _levels(text: str) -> int:
    """--depth: a count of levels, 0 or more (argparse turns the error into one line)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        from argparse import ArgumentTypeError

        raise ArgumentTypeError(f"{text!r} is not a number of levels (0 or more)")
    return value


def _names_a_dir(names: list[str]) -> bool:
    """The old ``cpk remove NAME WHERE`` form: an argument that is an env dir."""
    return any((Path(n) / ".cpk").is_dir() for n in names)


def _lock_for(args: argparse.Namespace) -> Any:
    """The project's lock, made current first unless --frozen."""
    from contentpkg.python.lock import LOCK_FILENAME, read_lock
    from contentpkg.python.run.change import project_file
    from contentpkg.python.run.sync import lock_project

    options = python_options(args)
    try:
        if args.frozen:
            # As it is: the project is only found, not read (a selection the
            # project does not declare may still name a group the lock has).
            path = project_file(options).parent / LOCK_FILENAME
            if not path.exists():
                raise CpkError(f"{path}: no lock (run 'cpk lock', or drop --frozen)")
        else:
            path = lock_project(options).path
    finally:
        options.close()
    return read_lock(path, cache_dir=args.ctx.cache_dir), options


def _declared(path: Path) -> list[str]:
    """The names the project requires directly (roots of the tree)."""
    from contentpkg.python.project import requirement_name

    try:
        import tomllib

        data = tomllib.loads((path.parent / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    deps = data.get("project", {}).get("dependencies", [])
    return [requirement_name(d) for d in deps if isinstance(d, str)]


def cmd_tree(args: argparse.Namespace) -> int:
    from contentpkg.python.lock.selection import applicable
    from contentpkg.python.lockview.tree import dependency_tree, render_tree

    lock, options = _lock_for(args)
    # The same flags, defaults and choice as `cpk sync` (default groups included).
    packages = applicable(lock, options.chosen(lock))
    forest = dependency_tree(packages, _declared(lock.path), depth=args.depth, invert=args.invert)
    if args.outdated:
        _mark_latest(options, forest)
    for line in render_tree(forest):
        print(line)
    return 0


def _mark_latest(options: Any, forest: list[Any]) -> None:
    """Ask the index for each package's newest release (not pre-releases)."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import Version

    from contentpkg.python.index.client import IndexClient
    from contentpkg.python.run.options import index_places

    indexes, links = index_places(options, None)
    ctx = options.ctx
    client = IndexClient(
        indexes,
        links,
        cache_dir=ctx.cache_dir,
        offline=ctx.offline,
        netrc=ctx.netrc,
        retries=ctx.http_retries,
        timeout=ctx.http_timeout,
    )
    latest: dict[str, str | None] = {}
    try:
        pending = list(forest)
        while pending:
            node = pending.pop()
            pending.extend(node.children)
            if node.version is None:
                continue
            if node.name not in latest:
                versions = []
                for file in client.project_files(node.name):
                    try:
                        if file.is_wheel:
                            versions.append(parse_wheel_filename(file.filename)[1])
                        else:
                            versions.append(parse_sdist_filename(file.filename)[1])
                    except (InvalidWheelFilename, InvalidSdistFilename):
                        continue
                stable = [v for v in versions if not v.is_prerelease]
                latest[node.name] = str(max(stable)) if stable else None
            newest = latest[node.name]
            if newest and Version(newest) > Version(node.version):
                node.latest = newest
    finally:
        client.close()


def cmd_export(args: argparse.Namespace) -> int:
    from contentpkg.fs import write_atomic
    from contentpkg.python.lock.selection import applicable
    from contentpkg.python.lockview.export import to_pylock, to_requirements

    lock, options = _lock_for(args)
    packages = applicable(lock, options.chosen(lock))
    if args.format == "pylock.toml":
        text = to_pylock(lock, packages)
    else:
        base = Path(args.output_file).absolute().parent if args.output_file else Path.cwd()
        text = to_requirements(lock, packages, base)
    if args.output_file:
        write_atomic(args.output_file, text)
        print(f"exported {len(packages)} packages to {args.output_file}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
