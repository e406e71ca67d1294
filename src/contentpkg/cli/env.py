"""Profiles, bindings and shells: `cpk profile`, `env`, `exec`, `shell ENV`, `path add`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from contentpkg.cli.render import local_time, table
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse


def _profile_args(args: argparse.Namespace) -> tuple[str, list[int]]:
    """[NAME] N... → the profile name (default "default") and the numbers."""
    from contentpkg.env.profiles import DEFAULT_PROFILE

    words = list(args.args)
    name = words.pop(0) if words and not words[0].isdigit() else DEFAULT_PROFILE
    numbers = []
    for word in words:
        if not word.isdigit():
            raise CpkError(f"{word!r}: not a generation number")
        numbers.append(int(word))
    return name, numbers


def cmd_profile_list(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import generations, list_profiles

    names = list_profiles(args.ctx.home)
    if not names:
        print("no profiles yet ('cpk install' makes the default one)", file=sys.stderr)
        return 0
    rows = []
    for name in names:
        gens = generations(name, home=args.ctx.home)
        current = next((g for g in gens if g.current), None)
        rows.append(
            [
                name,
                str(current.number) if current else "?",
                str(len(gens)),
                local_time(current.created) if current else "-",
                (current.description if current else "") or "-",
            ]
        )
    print(table(rows, ["PROFILE", "CURRENT", "GENERATIONS", "SINCE", "DESCRIPTION"]))
    return 0


def cmd_profile_generations(args: argparse.Namespace) -> int:
    import json

    from contentpkg.env.profiles import DEFAULT_PROFILE, generations

    name = args.name or DEFAULT_PROFILE
    gens = generations(name, home=args.ctx.home)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "number": g.number,
                        "created": g.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "description": g.description,
                        "changes": list(g.changes),
                        "current": g.current,
                        "user": g.user,
                        "command": g.command,
                        "path": str(g.path),
                    }
                    for g in gens
                ],
                indent=1,
            )
        )
        return 0
    # Like nix-env --list-generations: number, local date, what it was; and
    # what changed, read from the manifests, so an upgrade says from what.
    rows = [
        [str(g.number), local_time(g.created), g.description or "-", ", ".join(g.changes)]
        for g in gens
    ]
    widths = [max([len(r[i]) for r in rows], default=0) for i in range(4)]
    for g, row in zip(gens, rows, strict=True):
        line = (
            f"{row[0]:>{widths[0] + 3}}   {row[1]}   {row[2]:<{widths[2]}}   {row[3]:<{widths[3]}}"
        )
        print((line + "   (current)" if g.current else line).rstrip())
    return 0


def cmd_profile_switch(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import DEFAULT_PROFILE, switch

    name = args.name or DEFAULT_PROFILE
    before = switch(name, args.number, home=args.ctx.home)
    if before == args.number:
        print(f"profile {name}: generation {args.number} is already current", file=sys.stderr)
    else:
        print(
            f"profile {name}: switched from generation {before} to {args.number}", file=sys.stderr
        )
    return 0


def cmd_profile_rollback(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import DEFAULT_PROFILE, rollback

    name = args.name or DEFAULT_PROFILE
    before, after = rollback(name, home=args.ctx.home)
    print(f"profile {name}: rolled back from generation {before} to {after}", file=sys.stderr)
    return 0


def cmd_profile_delete_generations(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import delete_generations, parse_age

    name, numbers = _profile_args(args)
    if numbers and args.older_than:
        raise CpkError("delete-generations: give generation numbers or --older-than, not both")
    older = parse_age(args.older_than) if args.older_than else None
    deleted = delete_generations(name, numbers or None, older, home=args.ctx.home)
    if not deleted:
        print(f"profile {name}: no generation to delete", file=sys.stderr)
        return 0
    listed = ", ".join(map(str, deleted))
    print(
        f"profile {name}: deleted generation{'s' if len(deleted) > 1 else ''} {listed}; "
        "'cpk store gc' frees what only they used",
        file=sys.stderr,
    )
    return 0


def _warn_missing(args: argparse.Namespace, env: Any) -> int:
    """Report required plain files the env's search paths lack; return how many."""
    from contentpkg.env.bindings import check_requirements

    missing = check_requirements(env, args.ctx.environ)
    for item in missing:
        print(f"cpk: warning: {item.message()}", file=sys.stderr)
    return len(missing)


def _print_bindings(env: Any) -> None:
    from contentpkg.env.bindings import IF_SET, REPORT

    print(f"{env.label}: {env.path}")
    installed = env.manifest.get("installed") or []
    if installed:
        names = [f"{i.get('name', '?')} {i.get('version', '')}".strip() for i in installed]
        print(f"installed: {', '.join(names)}")
    how = {IF_SET: "prepended only if already set", REPORT: "not exported"}
    rows = [
        [b.namespace, b.variable, ":".join(b.directories) or "-", how.get(b.how, "prepended")]
        for b in env.bindings
    ]
    if rows:
        print(table(rows, ["NAMESPACE", "VARIABLE", "WHERE", "HOW"]))
    for b in env.bindings:
        if b.note:
            print(f"  {b.namespace}: {b.note}")


def cmd_env(args: argparse.Namespace) -> int:
    from contentpkg.env.bindings import default_shell, open_env, render

    env = open_env(args.env, args.ctx.home)
    missing = _warn_missing(args, env)
    changed: list[str] = []
    if args.check:
        from contentpkg.env.integrity import changed_files

        changed = changed_files(env.path, env.manifest)
        for line in changed:
            print(f"cpk: warning: {env.label}: {line}", file=sys.stderr)
    if args.list:
        _print_bindings(env)
    else:
        sys.stdout.write(render(env, args.shell or default_shell(args.ctx.environ)))
    return 1 if (missing or changed) and args.check else 0


def _exec_in_env(args: argparse.Namespace, env: Any, command: list[str]) -> int:
    """Replace this process by command with env's bindings; 127 if it is not found."""
    from contentpkg.cli.options import drop_scratch_cache
    from contentpkg.env.bindings import child_environ
    from contentpkg.env.execution import exec_command
    from contentpkg.errors import ExecError

    drop_scratch_cache(args)
    try:
        exec_command(command, child_environ(env, args.ctx.environ), where=env.label)
    except ExecError as exc:
        print(f"cpk: error: {exc}", file=sys.stderr)
        return exc.status


def cmd_exec(args: argparse.Namespace) -> int:
    from contentpkg.env.bindings import open_env

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CpkError("exec: name a command to run (cpk exec ENV -- CMD...)")
    env = open_env(args.env, args.ctx.home)
    _warn_missing(args, env)
    return _exec_in_env(args, env, command)


def env_shell(args: argparse.Namespace) -> int:
    """cpk shell ENV: a subshell with ENV's bindings; the caller's shell is untouched.

    The bindings go into the child's environment only (exec of a new shell,
    nothing sourced), so exiting the subshell is all it takes to leave.
    """
    from contentpkg.env.bindings import open_env

    env = open_env(args.env, args.ctx.home)
    _warn_missing(args, env)
    shell = args.shell or args.ctx.environ.get("SHELL") or "/bin/sh"
    if sys.stdin.isatty():
        print(f"cpk: entering {env.label} ({env.path}); exit to leave", file=sys.stderr)
    return _exec_in_env(args, env, [shell])


def cmd_path_add(args: argparse.Namespace) -> int:
    from contentpkg.env.shellrc import add_to_path

    result = add_to_path(args.directory, args.shell, dry_run=args.dry_run, environ=args.ctx.environ)
    for change in result.changes:
        shells = ", ".join(change.shells)
        if change.action == "unchanged":
            print(f"unchanged: {change.path} ({shells}) already adds {result.directory}")
            continue
        verb = {"created": "create", "updated": "update"}[change.action]
        print(f"{'would ' + verb if args.dry_run else change.action}: {change.path} ({shells})")
        if args.dry_run:
            print("".join(f"    {line}\n" for line in change.block.splitlines()), end="")
    if not result.exists:
        print(f"note: {result.directory} does not exist (yet)", file=sys.stderr)
    if result.changed and not args.dry_run:
        if result.on_path_now:
            print(f"{result.directory} is already on this shell's PATH", file=sys.stderr)
        else:
            print(
                "to use it in this terminal: exec $SHELL (or open a new terminal)",
                file=sys.stderr,
            )
    return 0
