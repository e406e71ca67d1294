"""``cpk cache dir|clean|prune`` and ``cpk store du``: what takes space, and
freeing it (the cache here; the store's entries only through ``store gc``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from contentpkg.cli.render import counted, human, table

if TYPE_CHECKING:
    import argparse


def add_housekeeping_commands(commands: Any) -> None:
    """``cpk cache ...`` (``store du`` is added with the store's commands)."""
    cache = commands.add_parser(
        "cache",
        help="show, clean or prune the download and build cache",
        description="The cache holds index pages, downloads, metadata and built wheels: "
        "all of it can be made again, and none of it is the store (whose entries only "
        "'cpk store gc' removes).",
    )
    cache_cmds = cache.add_subparsers(dest="cache_command", metavar="SUBCOMMAND")
    cache.set_defaults(func=lambda _args: _usage(cache))

    p = cache_cmds.add_parser(
        "dir",
        help="print the cache directory",
        description="Print the cache directory ($CPK_CACHE_DIR, else "
        "$XDG_CACHE_HOME/contentpkg, else ~/.cache/contentpkg); with -v, each bucket's size.",
    )
    p.set_defaults(func=cmd_cache_dir)

    p = cache_cmds.add_parser(
        "clean",
        help="remove the cache, or some of its buckets",
        description="Remove everything in the cache, or only the buckets named "
        "(http, archives, metadata, built-wheels, interpreters, run-locks, run-memo, "
        "parsed-locks). The store is not touched.",
    )
    p.add_argument("buckets", nargs="*", metavar="BUCKET", help="a bucket to remove")
    p.set_defaults(func=cmd_cache_clean)

    p = cache_cmds.add_parser(
        "prune",
        help="remove what no current cpk reads",
        description="Remove old versions of buckets, anything else no bucket names, and "
        "scratch directories a killed command left behind (older than an hour).",
    )
    p.set_defaults(func=cmd_cache_prune)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def add_store_du(store_cmds: Any) -> None:
    p = store_cmds.add_parser(
        "du",
        help="show what each gc root keeps alive",
        description="List every gc root (links under $CPK_HOME/roots, profile "
        "generations) with the entries it reaches, their size, and the size only it "
        "keeps alive (what removing it would let 'cpk store gc' free); then what no "
        "root reaches. Nothing is changed.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_store_du)


def cmd_cache_dir(args: argparse.Namespace) -> int:
    print(args.ctx.cache_dir)
    if args.ctx.output.verbose:
        from contentpkg.store.cache import bucket_sizes

        for bucket, size in bucket_sizes(args.ctx):
            print(f"  {bucket.value:<16} {human(size)}", file=sys.stderr)
    return 0


def _print_cleaned(args: argparse.Namespace, report: Any, what: str) -> None:
    if args.ctx.output.verbose:
        for name, size in report.removed:
            print(f"removed {name} ({human(size)})", file=sys.stderr)
    if not args.ctx.output.quiet:
        print(
            f"{what}: removed {counted(len(report.removed), 'item')}, "
            f"{human(report.freed)} from {args.ctx.cache_dir}",
            file=sys.stderr,
        )


def cmd_cache_clean(args: argparse.Namespace) -> int:
    from contentpkg.store.cache import clean

    _print_cleaned(args, clean(args.ctx, args.buckets or None), "cache clean")
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from contentpkg.store.cache import prune

    _print_cleaned(args, prune(args.ctx), "cache prune")
    return 0


def cmd_store_du(args: argparse.Namespace) -> int:
    import json

    from contentpkg.cli.store import open_store
    from contentpkg.namespaces import registry
    from contentpkg.store.usage import store_usage

    usage = store_usage(open_store(args.ctx), registry())
    if args.json:
        print(
            json.dumps(
                {
                    "roots": [
                        {
                            "name": r.name,
                            "target": r.target,
                            "entries": sorted(r.entries),
                            "size": r.size,
                            "only": r.only,
                            "dangling": r.dangling,
                        }
                        for r in usage.roots
                    ],
                    "unreachable": usage.unreachable,
                    "unreachable_size": usage.unreachable_size,
                    "total_size": usage.total_size,
                },
                indent=1,
            )
        )
        return 0
    rows = [
        [
            r.name,
            "dangling" if r.dangling else str(len(r.entries)),
            human(r.size),
            human(r.only),
            r.target,
        ]
        for r in usage.roots
    ]
    if rows:
        print(table(rows, ["ROOT", "ENTRIES", "SIZE", "ONLY IT", "TARGET"]))
    else:
        print("no gc roots", file=sys.stderr)
    print(
        f"user store: {human(usage.total_size)}; "
        f"{counted(len(usage.unreachable), 'entry', 'entries')} ({human(usage.unreachable_size)}) "
        "reached by no root ('cpk store gc' removes them)",
        file=sys.stderr,
    )
    return 0
