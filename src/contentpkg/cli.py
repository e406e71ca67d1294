"""The ``cpk`` command line: argument parsing and output formatting only.

Each command calls one function of the core and formats what it returns.
Core modules are imported inside the command functions, so a command pays
only for what it uses (``cpk run`` must stay light).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg import __version__
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse

Handler = Callable[["argparse.Namespace"], int]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _open_store() -> Any:
    from contentpkg.store import Store

    return Store.open()


# --- store -------------------------------------------------------------------


def cmd_store_add(args: argparse.Namespace) -> int:
    import json

    from contentpkg.elf.package import add_package

    requires = []
    for text in args.requires or []:
        namespace, sep, path = text.partition(":")
        if not sep or not namespace or not path:
            raise CpkError(f"--requires {text!r}: expected NAMESPACE:PATH, e.g. XDG_DATA_DIRS:x/y")
        requires.append((namespace, path))
    result, notes = add_package(
        _open_store(), Path(args.path), args.name, args.version, requires=requires
    )
    entry = result.entry
    if args.json:
        print(json.dumps({"path": str(entry.path), "created": result.created, "notes": notes}))
    else:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        verb = "added" if result.created else "already present"
        print(f"{verb}: {entry.dirname}", file=sys.stderr)
        print(entry.path)
    return 0


def _version_key(version: str) -> tuple[int, Any]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def cmd_store_ls(args: argparse.Namespace) -> int:
    import json
    from fnmatch import fnmatchcase

    store = _open_store()
    entries = [
        e
        for e in store.entries()
        if args.pattern is None
        or fnmatchcase(e.name, args.pattern)
        or fnmatchcase(e.dirname, args.pattern)
    ]
    entries.sort(key=lambda e: (e.name, _version_key(e.version), e.short_hash))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "version": e.version,
                        "hash": e.short_hash,
                        "size": e.size,
                        "kind": e.kind,
                        "layer": e.layer.role,
                        "path": str(e.path),
                    }
                    for e in entries
                ],
                indent=1,
            )
        )
        return 0
    if not entries:
        print("no entries" + (f" match {args.pattern!r}" if args.pattern else ""), file=sys.stderr)
        return 0
    rows = [
        [e.name, e.version, e.short_hash[:12], _human(e.size), e.kind, e.layer.role]
        for e in entries
    ]
    print(_table(rows, ["NAME", "VERSION", "HASH", "SIZE", "KIND", "LAYER"]))
    return 0


def cmd_store_path(args: argparse.Namespace) -> int:
    print(_open_store().resolve(args.spec).path)
    return 0


def cmd_store_info(args: argparse.Namespace) -> int:
    import json

    entry = _open_store().resolve(args.spec)
    meta = dict(entry.metadata)
    if args.json:
        meta["path"] = str(entry.path)
        meta["layer"] = entry.layer.role
        print(json.dumps(meta, indent=1, sort_keys=True))
        return 0
    lines = [
        ("entry", entry.dirname),
        ("path", str(entry.path)),
        ("layer", entry.layer.role),
        ("kind", entry.kind),
        ("content hash", entry.content_hash),
        ("size", f"{_human(entry.size)} in {meta.get('file_count', '?')} files"),
        ("source", str(meta.get("source") or "-")),
        ("source hash", str(meta.get("source_hash") or "-")),
        ("created", str(meta.get("created", "-"))),
    ]
    for key in ("dependencies", "references"):
        if meta.get(key):
            lines.append((key, ", ".join(map(str, meta[key]))))
    if meta.get("provides"):
        lines.append(("provides", json.dumps(meta["provides"], sort_keys=True)))
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in lines))
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    from contentpkg.store.entry import Spec
    from contentpkg.store.verify import verify

    store = _open_store()
    entries = store.match(Spec.parse(args.spec)) if args.spec else store.entries()
    if args.spec and not entries:
        raise CpkError(f"no entry matches {args.spec!r}")
    problems = verify(entries)
    for p in problems:
        print(f"corrupt: {p.entry.dirname} [{p.entry.layer.role}]: {p.message}")
    bad = len({p.entry.dirname for p in problems})
    print(
        f"verified {len(entries)} entries: {len(entries) - bad} intact, {bad} corrupt",
        file=sys.stderr,
    )
    return 1 if problems else 0


def cmd_store_gc(args: argparse.Namespace) -> int:
    from contentpkg.store.gc import collect

    report = collect(_open_store(), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for name in report.pruned_roots:
        print(f"{'would prune' if args.dry_run else 'pruned'} dangling root: {name}")
    for name, size in [*report.removed_environments, *report.removed]:
        print(f"{verb}: {name} ({_human(size)})")
    print(
        f"{verb} {len(report.removed)} entries, {_human(report.freed)}; "
        f"{report.live} entries reachable from roots",
        file=sys.stderr,
    )
    return 0


# --- native packages -----------------------------------------------------------


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


def _print_path_report(result: Any) -> None:
    try:
        from contentpkg.env.pathreport import format_lines, report_path
    except ImportError:  # pragma: no cover - until the module lands
        return
    for path, _entry in result.programs:
        report = report_path(_open_store(), Path(path).name, result.where / "bin")
        for line in format_lines(report):
            print(line, file=sys.stderr)


def _in_where_or_profile(args: argparse.Namespace, description: str, change: Any) -> Any:
    """Run change(where, base, root) on WHERE, or on a new generation of a profile.

    A profile's new generation is built complete beside the old one and
    switched to with one rename; a change that turns out to be a no-op
    leaves no generation behind.
    """
    if args.where is not None:
        if args.profile is not None:
            raise CpkError("give WHERE or --profile, not both")
        return change(Path(args.where), None, True)
    from contentpkg.env.profiles import Profile

    profile = Profile(args.profile or "default")
    with profile.begin(description, " ".join(["cpk", *args.raw_argv])) as tx:
        result = change(tx.path, tx.previous, False)
        if not result.changed:
            tx.discard()
            return result
        result.where = profile.alias
    return result


def cmd_install(args: argparse.Namespace) -> int:
    from contentpkg.elf.envdir import install

    store = _open_store()
    tools = []
    specs = [args.spec]
    if args.python_tool:
        from contentpkg.python.tools import tool_environment

        options = _RunOptions(args)
        try:
            tools = [tool_environment(options, args.spec)]
        finally:
            _close(options)
        specs = []
    result = _in_where_or_profile(
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
        _print_path_report(result)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from contentpkg.elf.envdir import remove

    store = _open_store()
    result = _in_where_or_profile(
        args,
        f"remove {' '.join(args.names)}",
        lambda where, base, root: remove(store, args.names, where, base=base, root=root),
    )
    _print_install(result, "kept")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    store = _open_store()
    status = 0
    for name in args.files:
        path = Path(name)
        sha256, found = store.identify(path)
        inside = store.containing(path)
        if inside is not None and all(e.dirname != inside[0].dirname for e, _ in found):
            # A path inside the store but not (yet) in the files table.
            found.insert(0, inside)
        if not found:
            print(f"{name}: unknown (sha256 {sha256})")
            status = 1
        for entry, rel in found:
            print(
                f"{name}: {entry.name} {entry.version} {entry.short_hash[:12]} "
                f"[{entry.layer.role}] {entry.path / rel}"
            )
    return status


def cmd_ldd(args: argparse.Namespace) -> int:
    import json

    from contentpkg.elf.loader import resolve

    report = resolve(args.file, explain=True)
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


# --- python ------------------------------------------------------------------


def _python_options(args: argparse.Namespace) -> Any:
    from contentpkg.progress import terminal_reporter
    from contentpkg.python.operations import Options

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


def _close(options: Any) -> None:
    """Stop the progress display, if one was started."""
    # A run's reporter is made lazily: never create one just to close it.
    reporter = options._reporter if isinstance(options, _RunOptions) else options.reporter
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
    from contentpkg.python.operations import lock_project

    options = _python_options(args)
    try:
        outcome = lock_project(
            options,
            upgrade=args.upgrade,
            upgrade_packages=args.upgrade_package or [],
            check=args.check,
        )
    finally:
        _close(options)
    if args.check and not outcome.fresh:
        print(f"{outcome.path.name} is out of date; run 'cpk lock'", file=sys.stderr)
        return 1
    _print_lock(outcome)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from contentpkg.python.operations import sync_project

    options = _python_options(args)
    try:
        outcome = sync_project(options, frozen=args.frozen, locked=args.locked)
    finally:
        _close(options)
    if outcome.lock is not None:
        _print_lock(outcome.lock)
    _print_items(outcome.items)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from contentpkg.python.operations import fetch

    options = _python_options(args)
    try:
        outcome = fetch(args.requirements, options)
    finally:
        _close(options)
    _print_items(outcome.items, every=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The hot path: nothing heavy is imported unless something must be made."""
    from contentpkg.python.run import RunRequest, exec_in, prepare

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
    options = _RunOptions(args)
    prepared = prepare(options, request)
    _close(options)
    if args.with_elf:
        _bind_elf(args.with_elf)
    elif args.raw_argv[:1] == ["run"]:
        from contentpkg.python.runmemo import write_memo

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

    env = shared_env(_open_store(), specs)
    for var, value in (("LD_LIBRARY_PATH", env / "lib"), ("PATH", env / "bin")):
        old = os.environ.get(var)
        os.environ[var] = os.fspath(value) + (os.pathsep + old if old else "")


def cmd_shell(args: argparse.Namespace) -> int:
    """A subshell in the environment: nothing to source, exit to leave it."""
    if args.env is not None:  # a profile or env dir, not the project's environment
        return _env_shell(args)
    from contentpkg.python.run import RunRequest, exec_in, prepare

    shell = args.shell or os.environ.get("SHELL") or "/bin/sh"
    request = RunRequest([shell], frozen=args.frozen, locked=args.locked)
    options = _RunOptions(args)
    prepared = prepare(options, request)
    _close(options)
    for note in prepared.notes:
        print(f"cpk: {note}", file=sys.stderr)
    os.environ["CPK_SHELL"] = os.fspath(prepared.env)
    os.environ["VIRTUAL_ENV_PROMPT"] = (prepared.inputs and prepared.inputs.name) or "cpk"
    if sys.stdin.isatty():
        print(f"cpk: entering {prepared.env}; exit to leave", file=sys.stderr)
    exec_in(prepared.env, [shell])
    return 0  # not reached


class _RunOptions:
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


def _add_index_options(
    p: argparse.ArgumentParser, project: bool = True, interpreter: str = "--python"
) -> None:
    if project:
        p.add_argument(
            "--project",
            metavar="DIR",
            help="the project directory (default: found upward from here)",
        )
    p.add_argument(
        interpreter,
        dest="python",
        metavar="PY",
        help="target interpreter: a path, a command, or a version like 3.12",
    )
    p.add_argument("--index-url", metavar="URL", help="the main package index (default: PyPI)")
    p.add_argument(
        "--extra-index-url",
        metavar="URL",
        action="append",
        help="another index, asked before the main one (repeatable)",
    )
    p.add_argument(
        "--find-links",
        "-f",
        metavar="DIR|URL",
        action="append",
        help="a directory or page of wheels and sdists (repeatable)",
    )
    p.add_argument("--prerelease", action="store_true", help="allow pre-releases everywhere")
    p.add_argument(
        "--prefer-store", action="store_true", help="prefer versions already in the store"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="use only cached index pages and the store; no network",
    )


def _add_lock_use_options(p: argparse.ArgumentParser) -> None:
    """--frozen/--locked, and which extras and groups: for sync, run and shell."""
    frozen = p.add_mutually_exclusive_group()
    frozen.add_argument(
        "--frozen", action="store_true", help="use pylock.toml as it is, without checking it"
    )
    frozen.add_argument(
        "--locked",
        action="store_true",
        help="fail if pylock.toml is out of date instead of re-locking",
    )
    _add_selection_options(p)


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extra", metavar="NAME", action="append", help="include an extra")
    p.add_argument("--group", metavar="NAME", action="append", help="include a dependency group")


# --- environments: profiles, bindings, exec, shell ------------------------------


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


def _local_time(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cmd_profile_list(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import generations, list_profiles

    names = list_profiles()
    if not names:
        print("no profiles yet ('cpk install' makes the default one)", file=sys.stderr)
        return 0
    rows = []
    for name in names:
        gens = generations(name)
        current = next((g for g in gens if g.current), None)
        rows.append(
            [
                name,
                str(current.number) if current else "?",
                str(len(gens)),
                _local_time(current.created) if current else "-",
                (current.description if current else "") or "-",
            ]
        )
    print(_table(rows, ["PROFILE", "CURRENT", "GENERATIONS", "SINCE", "DESCRIPTION"]))
    return 0


def cmd_profile_generations(args: argparse.Namespace) -> int:
    import json

    from contentpkg.env.profiles import DEFAULT_PROFILE, generations

    name = args.name or DEFAULT_PROFILE
    gens = generations(name)
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
        [str(g.number), _local_time(g.created), g.description or "-", ", ".join(g.changes)]
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
    before = switch(name, args.number)
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
    before, after = rollback(name)
    print(f"profile {name}: rolled back from generation {before} to {after}", file=sys.stderr)
    return 0


def cmd_profile_delete_generations(args: argparse.Namespace) -> int:
    from contentpkg.env.profiles import delete_generations, parse_age

    name, numbers = _profile_args(args)
    if numbers and args.older_than:
        raise CpkError("delete-generations: give generation numbers or --older-than, not both")
    older = parse_age(args.older_than) if args.older_than else None
    deleted = delete_generations(name, numbers or None, older)
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


def _warn_missing(env: Any) -> int:
    """Report required plain files the env's search paths lack; return how many."""
    from contentpkg.env.bindings import check_requirements

    missing = check_requirements(env, os.environ)
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
        print(_table(rows, ["NAMESPACE", "VARIABLE", "WHERE", "HOW"]))
    for b in env.bindings:
        if b.note:
            print(f"  {b.namespace}: {b.note}")


def cmd_env(args: argparse.Namespace) -> int:
    from contentpkg.env.bindings import default_shell, open_env, render

    env = open_env(args.env)
    missing = _warn_missing(env)
    if args.list:
        _print_bindings(env)
    else:
        sys.stdout.write(render(env, args.shell or default_shell(os.environ)))
    return 1 if missing and args.check else 0


def _exec_in_env(env: Any, command: list[str]) -> int:
    """Replace this process by command with env's bindings; 127 if it is not found."""
    from contentpkg.env.bindings import child_environ

    child = child_environ(env, os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, child)
    except FileNotFoundError:
        print(f"cpk: error: {command[0]}: command not found in {env.label}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"cpk: error: {command[0]}: permission denied", file=sys.stderr)
        return 126
    return 0  # not reached


def cmd_exec(args: argparse.Namespace) -> int:
    from contentpkg.env.bindings import open_env

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CpkError("exec: name a command to run (cpk exec ENV -- CMD...)")
    env = open_env(args.env)
    _warn_missing(env)
    return _exec_in_env(env, command)


def _env_shell(args: argparse.Namespace) -> int:
    """cpk shell ENV: a subshell with ENV's bindings; the caller's shell is untouched.

    The bindings go into the child's environment only (exec of a new shell,
    nothing sourced), so exiting the subshell is all it takes to leave.
    """
    from contentpkg.env.bindings import open_env

    env = open_env(args.env)
    _warn_missing(env)
    shell = args.shell or os.environ.get("SHELL") or "/bin/sh"
    if sys.stdin.isatty():
        print(f"cpk: entering {env.label} ({env.path}); exit to leave", file=sys.stderr)
    return _exec_in_env(env, [shell])


# --- path --------------------------------------------------------------------


def cmd_path_add(args: argparse.Namespace) -> int:
    from contentpkg.env.shellrc import add_to_path

    result = add_to_path(args.directory, args.shell, dry_run=args.dry_run)
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


# --- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="cpk",
        description="contentpkg: every package version stored once, by content hash, "
        "and composed per process into the environment a program needs.",
    )
    parser.add_argument("--version", action="version", version=f"cpk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    store = commands.add_parser(
        "store",
        help="add, list, inspect, verify and collect store entries",
        description="The content-addressed store: entries name,version,hash, layered as "
        "project (.cpk/store), user ($CPK_HOME) and system ($CPK_STORE_PATH) stores.",
    )
    store_cmds = store.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    store.set_defaults(func=lambda _args: _usage(store))

    p = store_cmds.add_parser(
        "add",
        help="add a file, a directory prefix or a .deb as an entry",
        description="Copy a file, a directory tree (a prefix: bin/, lib/, share/...) or a "
        "Debian .deb into the user store as one immutable entry, atomically. Every ELF "
        "file in it gets RUNPATH $ORIGIN:$ORIGIN/<elfname>_deps:$ORIGIN/common_libs; "
        "the entry records its hashes before and after, SONAME and DT_NEEDED.",
    )
    p.add_argument("path", help="file, directory or .deb to add")
    p.add_argument("--name", help="package name (default: the .deb's, or the file's name)")
    p.add_argument("--version", help="package version (needed unless PATH is a .deb)")
    p.add_argument(
        "--requires",
        action="append",
        metavar="NAMESPACE:PATH",
        help="a plain file the package needs and the search path it is found on "
        "(e.g. XDG_DATA_DIRS:foo/data.txt); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_store_add)

    p = store_cmds.add_parser(
        "ls",
        help="list entries of every layer",
        description="List entries: name, version, short hash, size, kind and layer.",
    )
    p.add_argument("pattern", nargs="?", help="glob over the name or name,version,hash")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_store_ls)

    spec_help = "name[,version[,hash-prefix]], or an entry's path"
    p = store_cmds.add_parser(
        "path",
        help="print an entry's directory",
        description="Print the directory of the one entry SPEC names.",
    )
    p.add_argument("spec", help=spec_help)
    p.set_defaults(func=cmd_store_path)

    p = store_cmds.add_parser(
        "info",
        help="show an entry's metadata",
        description="Show the metadata of the one entry SPEC names.",
    )
    p.add_argument("spec", help=spec_help)
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=cmd_store_info)

    p = store_cmds.add_parser(
        "verify",
        help="recompute content hashes",
        description="Recompute the content hash of every entry (or "
        "those SPEC names) and list each corrupt one; exit 1 if any.",
    )
    p.add_argument("spec", nargs="?", help="name[,version[,hash-prefix]]")
    p.set_defaults(func=cmd_store_verify)

    p = store_cmds.add_parser(
        "gc",
        help="remove entries no root reaches",
        description="Remove user-store entries that no root under "
        "$CPK_HOME/roots reaches, and prune dangling roots.",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_store_gc)

    p = commands.add_parser(
        "lock",
        help="resolve the project's dependencies into pylock.toml",
        description="Resolve the project's declared dependencies (pyproject.toml or "
        "requirements.txt) for the target interpreter and write a PEP 751 pylock.toml. "
        "Does nothing when the lock is up to date with its inputs.",
    )
    _add_index_options(p)
    upgrade = p.add_mutually_exclusive_group()
    upgrade.add_argument(
        "--upgrade",
        "-U",
        action="store_true",
        help="re-resolve everything to the newest allowed versions",
    )
    upgrade.add_argument(
        "--upgrade-package",
        "-P",
        metavar="NAME",
        action="append",
        help="let only this package move (repeatable)",
    )
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the lock is out of date"
    )
    _add_selection_options(p)
    p.set_defaults(func=cmd_lock)

    p = commands.add_parser(
        "sync",
        help="make every package of the lock present in the store",
        description="Lock if the inputs changed, then fetch (or build) every locked "
        "package that the store lacks, and compile its bytecode.",
    )
    _add_index_options(p)
    _add_lock_use_options(p)
    p.set_defaults(func=cmd_sync)

    p = commands.add_parser(
        "fetch",
        help="resolve requirements and put them into the store",
        description="Resolve REQ... and fetch or build each resolved package into "
        "the store, without any lock file or environment.",
    )
    p.add_argument("requirements", nargs="+", metavar="REQ", help="a PEP 508 requirement")
    _add_index_options(p, project=False)
    p.set_defaults(func=cmd_fetch)

    p = commands.add_parser(
        "run",
        help="run a command in the project's environment",
        description="Find the project (or the PEP 723 script CMD runs), lock and sync "
        "if needed, compose its environment from the store, and exec CMD in it: a "
        "console script of the environment, python, or any program.",
    )
    _add_index_options(p)
    p.add_argument(
        "--with",
        dest="with_",
        metavar="REQ",
        action="append",
        help="add a requirement for this run only (the lock is not changed)",
    )
    p.add_argument(
        "--with-elf",
        dest="with_elf",
        metavar="SPEC",
        action="append",
        help="add a native package from the store: its programs on PATH, its libraries "
        "on the loader's path (so ctypes.CDLL('libfoo.so.1') finds them)",
    )
    _add_lock_use_options(p)
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="CMD...", help="the command and its arguments"
    )
    p.set_defaults(func=cmd_run)

    p = commands.add_parser(
        "shell",
        help="start a subshell in the project's environment, or in ENV",
        description="Start $SHELL with the project's environment first on PATH and "
        "VIRTUAL_ENV set, made as for 'cpk run'; or, given ENV (a profile name or an env "
        "dir), with ENV's bindings and CPK_ENV set. Nothing is sourced into your shell: "
        "exit the subshell and everything is as it was.",
    )
    p.add_argument("env", metavar="ENV", nargs="?", help="a profile name or a path to an env dir")
    p.add_argument("--shell", metavar="SHELL", help="the shell to start (default: $SHELL)")
    _add_index_options(p)
    _add_lock_use_options(p)
    p.set_defaults(func=cmd_shell)

    p = commands.add_parser(
        "install",
        help="install a package's programs with their libraries into an env dir",
        description="Assemble WHERE as a relocatable env dir: each program as a real file "
        "bin/<name>-<version> with bin/<name> linking to it, the shared library closure "
        "from the store in lib/ (glibc from the system), share/ files, and a manifest of "
        "back-references. Copy WHERE anywhere (cp -a, cp -rL, tar) and it keeps working.",
    )
    p.add_argument(
        "spec", metavar="SPEC", help="name[,version[,hash-prefix]] of a package or an executable"
    )
    p.add_argument("where", metavar="WHERE", nargs="?", help="env dir to install into")
    p.add_argument(
        "--libs",
        action="append",
        metavar="DIR[,DIR...]",
        help="env dirs whose libraries are reached by symlink instead of placed again",
    )
    p.add_argument(
        "--system-libs",
        action="store_true",
        help="leave libraries no store entry provides to the system's loader",
    )
    p.add_argument(
        "--profile",
        "-p",
        metavar="NAME",
        help="install into a new generation of this profile (the default without WHERE: 'default')",
    )
    p.add_argument(
        "--python",
        dest="python_tool",
        action="store_true",
        help="SPEC is a Python requirement: put its scripts in bin/, each running in "
        "the tool's own view (like pipx or uv tool, with nothing copied)",
    )
    _add_index_options(p, project=False, interpreter="--interpreter")
    p.set_defaults(func=cmd_install, project=None, extra=None, group=None)

    p = commands.add_parser(
        "remove",
        help="remove packages from an env dir",
        description="Remove the named packages from WHERE, with the libraries only they "
        "needed; files cpk did not install are left alone.",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--from", dest="where", metavar="WHERE", help="env dir to remove from")
    p.add_argument(
        "--profile", "-p", metavar="NAME", help="profile to remove from (default: 'default')"
    )
    p.set_defaults(func=cmd_remove)

    p = commands.add_parser(
        "identify",
        help="say which entry a file came from",
        description="Hash each FILE and name the store entries and "
        "paths that hold the same bytes; exit 1 if one is unknown.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_identify)

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
    p.set_defaults(func=cmd_ldd)

    _add_environment_commands(commands)
    _add_path_commands(commands)
    return parser


def _add_environment_commands(commands: Any) -> None:
    """cpk profile, cpk env and cpk exec (cpk shell ENV is with shell above)."""
    import argparse

    # Spelled out, not imported from env.bindings: building the parser must
    # not import the bindings module for every command (tests keep the two
    # lists equal).
    SHELLS = ("sh", "bash", "zsh", "fish")

    profile = commands.add_parser(
        "profile",
        help="list profiles, show their generations, switch, roll back, delete",
        description="A profile is an alias symlink ($CPK_HOME/profiles/NAME) to a numbered "
        "generation, each a complete env dir. Every install or remove makes a new "
        "generation and switches the alias atomically; old generations stay (and keep "
        "their store entries) until deleted. NAME defaults to 'default'.",
    )
    profile_cmds = profile.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")
    profile.set_defaults(func=lambda _args: _usage(profile))

    p = profile_cmds.add_parser("list", help="list profiles and their current generations")
    p.set_defaults(func=cmd_profile_list)

    p = profile_cmds.add_parser(
        "generations",
        help="show a profile's history",
        description="List every generation of the profile: number, date, what it was "
        "made for, what changed, and which one is current.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.set_defaults(func=cmd_profile_generations)

    p = profile_cmds.add_parser(
        "switch",
        help="make generation N current",
        description="Point the profile at generation N, with one atomic rename.",
    )
    p.add_argument("number", metavar="N", type=int, help="generation number")
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.set_defaults(func=cmd_profile_switch)

    p = profile_cmds.add_parser(
        "rollback",
        help="switch to the generation before the current one",
        description="Point the profile at the newest generation older than the current one.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.set_defaults(func=cmd_profile_rollback)

    p = profile_cmds.add_parser(
        "delete-generations",
        help="delete old generations (never the current one)",
        description="Delete generations N... of the profile, or every generation older "
        "than AGE except the current one. Run 'cpk store gc' afterwards to free the store "
        "entries only they used.",
    )
    p.add_argument("args", metavar="[NAME] N", nargs="*", help="profile name, then numbers")
    p.add_argument("--older-than", metavar="AGE", help="an age like 30d, 12h or 2w")
    p.set_defaults(func=cmd_profile_delete_generations)

    p = commands.add_parser(
        "env",
        help="print an environment's bindings as shell code",
        description="Print the bindings of ENV (a profile name, default 'default', or a "
        "path to an env dir): PATH, MANPATH where man-db cannot derive it, XDG_DATA_DIRS, "
        "and, as comments, what is found without a variable. Apply with "
        'eval "$(cpk env)" (sh, bash, zsh) or cpk env --shell fish | source.',
    )
    p.add_argument("env", metavar="ENV", nargs="?", help="a profile name or an env dir")
    p.add_argument(
        "--shell", choices=SHELLS, help="dialect to print (default: from $SHELL, else sh)"
    )
    p.add_argument(
        "--list", action="store_true", help="print a table of every binding instead of code"
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 when a required plain file is missing"
    )
    p.set_defaults(func=cmd_env)

    p = commands.add_parser(
        "exec",
        help="run one command in an environment",
        description="Run CMD with ENV's bindings (and CPK_ENV) in its environment; the "
        "exit status is CMD's.",
    )
    p.add_argument("env", metavar="ENV", help="a profile name or an env dir")
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command to run"
    )
    p.set_defaults(func=cmd_exec)


def _add_path_commands(commands: Any) -> None:
    """cpk path add."""
    path = commands.add_parser(
        "path",
        help="put a directory on PATH in your shell start-up files",
        description="Edit your shell start-up files so that new shells have a directory "
        "on PATH. A separate, explicit step: cpk install never does it.",
    )
    path_cmds = path.add_subparsers(dest="path_command", metavar="SUBCOMMAND")
    path.set_defaults(func=lambda _args: _usage(path))
    p = path_cmds.add_parser(
        "add",
        help="add DIR to PATH in sh/bash, zsh and fish start-up files",
        description="Add DIR (made absolute; symlinks kept) first on PATH, in a marked "
        "block of each start-up file: ~/.profile (sh), ~/.bashrc and bash's login file "
        "(bash), ${ZDOTDIR:-~}/.zshenv (zsh), ~/.config/fish/conf.d/cpk-path.fish (fish). "
        "Running it again changes nothing; another DIR joins the same block. Default "
        "shells: sh, $SHELL, and every shell whose start-up files exist.",
    )
    p.add_argument("directory", metavar="DIR", help="the directory to add, e.g. WHERE/bin")
    p.add_argument(
        "--shell",
        action="append",
        choices=("sh", "bash", "zsh", "fish"),
        help="a shell to configure (repeatable; default: see above)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    p.set_defaults(func=cmd_path_add)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["run"]:
        # The hot path: exec straight from the memo of the last run when
        # nothing it depended on changed (no parser built, nothing parsed).
        from contentpkg.python.runmemo import try_fast

        try:
            try_fast(raw[1:])
        except CpkError as exc:
            print(f"cpk: error: {exc}", file=sys.stderr)
            return 1
    parser = build_parser()
    args = parser.parse_args(raw)
    args.raw_argv = raw
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        return _usage(parser)
    try:
        return func(args)
    except CpkError as exc:
        print(f"cpk: error: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Files that vanish or refuse access are input problems, not bugs.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cpk: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cpk: interrupted", file=sys.stderr)
        return 130
