"""``cpk enter``: parse, print the notes, hand over to the union."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.store import open_store
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse


def split_enter_args(
    rest: list[str], debs: list[str], profiles: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """(specs, --deb names, command) from ``SPEC... [--deb NAME]... [-- CMD...]``;
    ``--profile NAME`` words are added to profiles.

    argparse cannot tell specs before ``--`` from a command after it when
    both are positional, so the words are split here.
    """
    head, command = rest, []
    if "--" in rest:
        i = rest.index("--")
        head, command = rest[:i], rest[i + 1 :]
    specs: list[str] = []
    names = list(debs)
    words = iter(head)
    for word in words:
        option = word.partition("=")[0]
        if option in ("--deb", "--profile"):
            value = word.partition("=")[2] or next(words, "")
            if not value:
                raise CpkError(f"enter: {option} needs a name")
            (names if option == "--deb" else profiles).append(value)
        elif word.startswith("-"):
            raise CpkError(f"enter: unknown option {word} (a command goes after --)")
        else:
            specs.append(word)
    return specs, names, command


def cmd_enter(args: argparse.Namespace) -> int:
    from contentpkg.env.union.launch import exec_in_union, prepare

    ctx = args.ctx
    profiles = list(args.profile or [])
    specs, debs, command = split_enter_args(list(args.rest), list(args.deb or []), profiles)
    union = prepare(ctx, open_store(ctx), specs, debs, profiles=profiles, images=args.image)
    for note in union.notes:
        print(f"cpk: {note}", file=sys.stderr)
    if not command:
        command = [ctx.environ.get("SHELL") or "/bin/sh"]
        if sys.stdin.isatty():
            print(
                f"cpk: entering a union of {len(union.entries)} entries; exit to leave",
                file=sys.stderr,
            )
    exec_in_union(union, command, ctx.environ, api=args.mount_api)


def exec_run_union(args: argparse.Namespace, launch: Any) -> None:
    """``cpk run --union``: the launch's environment, its site-packages the union."""
    from contentpkg.env.union.sites import mount_site_packages

    ctx = args.ctx
    mount_site_packages(Path(launch.env), api="auto", store=open_store(ctx), home=ctx.home)
    launch.exec()
