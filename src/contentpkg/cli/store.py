"""``cpk store ...`` and ``cpk identify``: the store's own commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.cli.render import counted, human, table, version_key
from contentpkg.errors import CpkError, NotFoundError

if TYPE_CHECKING:
    import argparse

    from contentpkg.context import Context
    from contentpkg.store import Store


def open_store(ctx: Context) -> Store:
    """The layered store the command's context names."""
    from contentpkg.store import Store

    return Store.open(ctx=ctx)


def cmd_store_add(args: argparse.Namespace) -> int:
    import json

    from contentpkg.elf.package import add_packages

    requires = []
    for text in args.requires or []:
        namespace, sep, path = text.partition(":")
        if not sep or not namespace or not path:
            raise CpkError(f"--requires {text!r}: expected NAMESPACE:PATH, e.g. XDG_DATA_DIRS:x/y")
        requires.append((namespace, path))
    added = add_packages(
        args.ctx, [Path(p) for p in args.paths], args.name, args.version,
        requires=requires, jobs=args.jobs,
    )  # fmt: skip
    if args.json:
        rows = [
            {"path": str(a.result.entry.path), "created": a.result.created, "notes": a.notes}
            if a.result is not None
            else {"source": str(a.path), "error": a.error}
            for a in added
        ]
        print(json.dumps(rows[0] if len(rows) == 1 else rows))
    else:
        for a in added:
            if a.result is None:
                continue
            for note in a.notes:
                print(f"note: {note}", file=sys.stderr)
            verb = "added" if a.result.created else "already present"
            print(f"{verb}: {a.result.entry.dirname}", file=sys.stderr)
            print(a.result.entry.path)
    failed = [a for a in added if a.error is not None]
    for a in failed:
        print(f"cpk: error: {a.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_store_ls(args: argparse.Namespace) -> int:
    import json
    from fnmatch import fnmatchcase

    store = open_store(args.ctx)
    entries = [
        e
        for e in store.entries()
        if args.pattern is None
        or fnmatchcase(e.name, args.pattern)
        or fnmatchcase(e.dirname, args.pattern)
    ]
    entries.sort(key=lambda e: (e.name, version_key(e.version), e.short_hash))
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
        [e.name, e.version, e.short_hash[:12], human(e.size), e.kind, e.layer.role] for e in entries
    ]
    print(table(rows, ["NAME", "VERSION", "HASH", "SIZE", "KIND", "LAYER"]))
    return 0


def cmd_store_path(args: argparse.Namespace) -> int:
    print(open_store(args.ctx).resolve(args.spec).path)
    return 0


def cmd_store_info(args: argparse.Namespace) -> int:
    import json

    entry = open_store(args.ctx).resolve(args.spec)
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
        ("size", f"{human(entry.size)} in {_files(meta.get('file_count'))}"),
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
    from contentpkg.namespaces import registry
    from contentpkg.store.entry import Spec
    from contentpkg.store.verify import verify

    store = open_store(args.ctx)
    entries = store.match(Spec.parse(args.spec)) if args.spec else store.entries()
    if args.spec and not entries:
        raise NotFoundError(f"no entry matches {args.spec!r}", what=args.spec)
    problems = verify(entries, registry().checks)
    for p in problems:
        print(f"corrupt: {p.entry.dirname} [{p.entry.layer.role}]: {p.message}")
    bad = len({p.entry.dirname for p in problems})
    print(
        f"verified {counted(len(entries), 'entry', 'entries')}: "
        f"{len(entries) - bad} intact, {bad} corrupt",
        file=sys.stderr,
    )
    if not args.spec:
        # Named, but they fail verify only through the entries they changed:
        # a replaced file in a copy-mode env dir leaves the store intact.
        _changed_env_files(args, store)
    return 1 if problems else 0


def _changed_env_files(args: argparse.Namespace, store: Any) -> list[Any]:
    """The env dirs' side of verify: each changed file and the entry it came from."""
    from contentpkg.env.integrity import store_changes
    from contentpkg.env.roots import ProfileGenerations

    changed = store_changes(store.roots_dir, ProfileGenerations().root_dirs(args.ctx.home))
    for c in changed:
        entry = f" [entry {c.entry}]" if c.entry else ""
        print(f"changed env-dir file: {c.where}/{c.problem}{entry}")
    if changed:
        dirs = counted(len({c.where for c in changed}), "env dir")
        print(f"{counted(len(changed), 'changed env-dir file')} in {dirs}", file=sys.stderr)
    return changed


def _files(count: object) -> str:
    return counted(count, "file") if isinstance(count, int) else "? files"


def cmd_store_gc(args: argparse.Namespace) -> int:
    from contentpkg.namespaces import registry
    from contentpkg.store.gc import collect

    report = collect(open_store(args.ctx), registry(), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for name in report.pruned_roots:
        print(f"{'would prune' if args.dry_run else 'pruned'} dangling root: {name}")
    for name, size in [*report.removed_environments, *report.removed]:
        print(f"{verb}: {name} ({human(size)})")
    for name in report.in_use:
        print(f"cpk: kept {name}: no root reaches it, but a running process uses it",
              file=sys.stderr)  # fmt: skip
    # Derived files (pool links, images) come by the thousand: counted per
    # folder in the summary, not listed.
    areas: dict[str, int] = {}
    for name, _ in report.removed_derived:
        area = name.split(os.sep, 1)[0]
        areas[area] = areas.get(area, 0) + 1
    derived = "".join(f", {counted(n, 'file')} under {a}/" for a, n in sorted(areas.items()))
    print(
        f"{verb} {counted(len(report.removed), 'entry', 'entries')}{derived}, "
        f"{human(report.freed)}; "
        f"{counted(report.live, 'entry', 'entries')} reachable from roots",
        file=sys.stderr,
    )
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    store = open_store(args.ctx)
    status = 0
    for name in args.files:
        path = Path(name)
        try:
            os.stat(path)
        except OSError as exc:
            # "not a regular file" would send the user looking at a file
            # that is not there: name what stat found (ENOENT, EACCES, ...).
            raise CpkError(f"{name}: {exc.strerror}") from None
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
