"""``cpk install``, ``cpk remove`` and ``cpk ldd``: native programs and env dirs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.python import python_options
from contentpkg.cli.store import open_store

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


def cmd_install(args: argparse.Namespace) -> int:
    from contentpkg.elf.envdir import install

    store = open_store(args.ctx)
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
    result = _change(
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
        ),
    )
    _print_install(result, "installed")
    if result.programs and result.changed:
        _print_path_report(args, result)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from contentpkg.elf.envdir import remove

    store = open_store(args.ctx)
    result = _change(
        args,
        f"remove {' '.join(args.names)}",
        lambda where, base, root: remove(store, args.names, where, base=base, root=root),
    )
    _print_install(result, "kept")
    return 0


def cmd_ldd(args: argparse.Namespace) -> int:
    import json

    from contentpkg.elf.loader import resolve

    report = resolve(args.file, args.ctx.environ, explain=True)
    if args.json:
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

