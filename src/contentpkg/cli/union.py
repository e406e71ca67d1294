"""``cpk enter``: parse, print the notes, hand over to the union."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def add_enter_command(commands: Any) -> None:
    """``cpk enter``: unmodified packages overlaid in a private mount namespace."""
    import argparse

    p = commands.add_parser(
        "enter",
        help="run a command with store entries overlaid onto /usr, /etc and /opt",
        description="Run CMD (default: your shell) in a private user and mount namespace "
        "where the named entries, stored unmodified, are overlaid onto /usr (and /etc, "
        "/opt) above the host's own files, for that process tree only. Nothing stays "
        "mounted after it ends. SPECs are entry specs or .deb files.",
    )
    p.add_argument(
        "--deb", action="append", metavar="NAME",
        help="a Debian package, fetched from the archive with its dependencies if missing",
    )  # fmt: skip
    p.add_argument(
        "--profile", "-p", action="append", metavar="NAME",
        help="the packages of a profile's current generation (see cpk profile list)",
    )  # fmt: skip
    p.add_argument(
        "--image", action="store_true",
        help="store entries with squashfs images (sha256 in their metadata) and mount "
        "those, each verified first (squashfuse; needs an accessible /dev/fuse)",
    )  # fmt: skip
    p.add_argument(
        "--mount-api", choices=["auto", "fsconfig", "mount"], default="auto",
        help="how overlays are mounted: lowerdir+ through fsconfig (kernel 6.8), "
        "mount(2) with its one-page options, or auto (the first that works)",
    )  # fmt: skip
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="SPEC... [-- CMD...]",
        help="entries or .deb files, then -- and the command",
    )  # fmt: skip
    p.set_defaults(func=cmd_enter)


def build_enter_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top parser with ``enter`` alone under it.

    A union's start-up is what ``cpk enter`` costs over its command: the
    whole parser imports every command's module (measured about as much as
    the namespace and mounts together), and ``enter`` needs none of them.
    """
    import argparse

    from contentpkg.cli.examples import EXAMPLES
    from contentpkg.cli.options import add_global_options, command_parser_class

    parser = argparse.ArgumentParser(prog="cpk")
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=command_parser_class(EXAMPLES)
    )
    add_enter_command(commands)
    return parser


def cmd_enter(args: argparse.Namespace) -> int:
    from contentpkg.cli.store import open_store
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
    from contentpkg.cli.store import open_store
    from contentpkg.env.union.sites import mount_site_packages

    ctx = args.ctx
    mount_site_packages(Path(launch.env), api="auto", store=open_store(ctx), home=ctx.home)
    launch.exec()
