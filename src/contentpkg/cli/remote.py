"""``cpk key ...``, ``cpk remote ...``, ``cpk store push`` and ``cpk store pull``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.cli.render import counted, human
from contentpkg.errors import CpkError, NotFoundError

if TYPE_CHECKING:
    import argparse

    from contentpkg.context import Context
    from contentpkg.store import Entry, Store


def cmd_key_generate(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.signing import generate

    path = Path(args.file)
    ident = generate(path)
    print(f"wrote {path} (private, keep it secret) and {path}.pub; key id {ident}", file=sys.stderr)
    return 0


def cmd_key_trust(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.signing import trust

    ident = trust(args.ctx.home, Path(args.file))
    print(f"trusted key {ident}", file=sys.stderr)
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.signing import trusted_keys

    for ident in trusted_keys(args.ctx.home):
        print(ident)
    return 0


def cmd_remote_add(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.remotes import add

    remote = add(args.ctx, args.name, args.url, insecure=args.insecure)
    print(f"added remote {remote}", file=sys.stderr)
    return 0


def cmd_remote_list(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.remotes import configured

    for remote in configured(args.ctx):
        print(remote)
    return 0


def cmd_remote_remove(args: argparse.Namespace) -> int:
    from contentpkg.store.remote.remotes import remove

    remove(args.ctx, args.name)
    return 0


def _store(ctx: Context) -> Store:
    from contentpkg.store import Store

    return Store.open(ctx=ctx)


def _lock_entries(store: Store, ctx: Context, path: Path) -> tuple[list[Entry], list[str]]:
    """The store's entries for every package a ``pylock.toml`` names, and the
    packages under a marker that this machine did not install.

    A universal lock names packages for other platforms, extras and groups
    (``colorama`` on Windows): those are pushed by the machine that installs
    them, so their absence here is a note, not an error. A package with no
    marker is installed everywhere, so its absence means the lock was never
    synced.
    """
    from contentpkg.python.lock import read_lock

    lock = read_lock(path, cache_dir=ctx.cache_dir)
    found: list[Entry] = []
    skipped: list[str] = []
    for package in lock.packages:
        if package.directory is not None:
            continue
        files = [package.file] if package.file else [*package.wheels, package.sdist]
        hashes = [f.sha256 for f in files if f is not None and f.sha256]
        entries = [e for h in hashes if (e := store.find_source(f"sha256:{h}")) is not None]
        if not entries and package.marker:
            skipped.append(f"{package.name} {package.version}")
        elif not entries:
            raise NotFoundError(
                f"{path}: {package.name} {package.version} is not in the store; run 'cpk sync'",
                what=package.name,
            )
        found += entries
    return found, skipped


def _lock_hashes(ctx: Context, path: Path) -> dict[str, list[str]]:
    """Each stored package of a lock with the source hashes that can stand for it."""
    from contentpkg.python.lock import read_lock

    lock = read_lock(path, cache_dir=ctx.cache_dir)
    hashes = {}
    for package in lock.packages:
        if package.directory is not None:
            continue
        files = [package.file] if package.file else [*package.wheels, package.sdist]
        hashes[f"{package.name} {package.version}"] = [
            f"sha256:{f.sha256}" for f in files if f is not None and f.sha256
        ]
    return hashes


def _profile_entries(store: Store, ctx: Context, name: str) -> list[Entry]:
    """The entries the profile's current generation references."""
    from contentpkg.env.profiles import PROFILES
    from contentpkg.store.gc import REFS

    refs = ctx.home / PROFILES / name / REFS
    try:
        lines = refs.read_text().split()
    except OSError:
        raise NotFoundError(f"no profile named {name!r} (no {refs})", what=name) from None
    entries = []
    for line in lines:
        entry = store.entry(Path(line).name)
        if entry is None:
            raise NotFoundError(f"profile {name}: {Path(line).name} is not in the store")
        entries.append(entry)
    return entries


def cmd_store_push(args: argparse.Namespace) -> int:
    from contentpkg.cli.render import command_reporter
    from contentpkg.store.remote.push import push
    from contentpkg.store.remote.remotes import resolve
    from contentpkg.store.remote.signing import load_private

    ctx = args.ctx
    url = resolve(ctx, args.remote, insecure=args.insecure)
    key_path = Path(args.sign_key) if args.sign_key else ctx.remote.signing_key
    if key_path is None:
        raise CpkError(
            "no signing key: give --sign-key FILE or set CPK_SIGNING_KEY"
            " (make one with 'cpk key generate FILE')"
        )
    key = load_private(key_path)
    store = _store(ctx)
    entries: list[Entry] = [store.resolve(text) for text in args.specs]
    if args.all:
        entries += store.entries()
    if args.lock:
        locked, skipped = _lock_entries(store, ctx, Path(args.lock))
        entries += locked
        if skipped:
            print(
                f"note: {counted(len(skipped), 'package')} of {args.lock} not installed here"
                f" (their markers exclude this machine or its selection): {', '.join(skipped)}",
                file=sys.stderr,
            )
    if args.profile:
        entries += _profile_entries(store, ctx, args.profile)
    if not entries:
        raise CpkError("nothing to push: give SPEC..., --all, --lock FILE or --profile NAME")
    reporter = command_reporter(args.ctx)
    try:
        outcome = push(store, ctx, url, entries, key=key, reporter=reporter, jobs=args.jobs)
    finally:
        getattr(reporter, "close", lambda: None)()
    print(
        f"pushed {counted(len(outcome.pushed), 'entry', 'entries')}"
        f" ({human(outcome.uploaded)} uploaded), {len(outcome.present)} already on {url}",
        file=sys.stderr,
    )
    return 0


def cmd_store_pull(args: argparse.Namespace) -> int:
    from contentpkg.cli.render import command_reporter
    from contentpkg.store import Spec
    from contentpkg.store.remote.pull import RemoteStore
    from contentpkg.store.remote.remotes import resolve

    ctx = args.ctx
    url = resolve(ctx, args.remote, insecure=args.insecure)
    if not args.specs and not args.lock:
        raise CpkError("nothing to pull: give SPEC... or --lock FILE")
    store = _store(ctx)
    reporter = command_reporter(args.ctx)
    remote = RemoteStore(url, store, ctx, reporter=reporter, jobs=args.jobs)
    pulled: list[Entry] = []
    try:
        # Every spec's tags listed, then every entry pulled, in parallel:
        # a Debian closure is hundreds of packages.
        found = remote.newest_refs([Spec.parse(text) for text in args.specs])
        for text, ref in zip(args.specs, found, strict=True):
            if ref is None:
                raise NotFoundError(f"{url}: no entry matches {text!r}", what=text)
        for result in remote.pull_many([(ref, None) for ref in found if ref is not None]):
            if isinstance(result, CpkError):
                raise result
            pulled.append(result)
        if args.lock:
            absent = []
            refs = []
            wanted = {
                package: hashes
                for package, hashes in _lock_hashes(ctx, Path(args.lock)).items()
                if not any(store.find_source(h) is not None for h in hashes)
            }
            for package, hashes in wanted.items():
                found = remote.ref_for_any(hashes)
                if found is None:
                    absent.append(package)
                else:
                    refs.append(found)
            for result in remote.pull_many(refs):
                if isinstance(result, CpkError):
                    raise result
                pulled.append(result)
            if absent:
                print(
                    f"note: {counted(len(absent), 'package')} of {args.lock} not on {url}:"
                    f" {', '.join(absent)}",
                    file=sys.stderr,
                )
    finally:
        remote.close()
        getattr(reporter, "close", lambda: None)()
    for entry in pulled:
        print(entry.path)
    return 0


def substitute_specs(store: Store, ctx: Context, specs: list[str]) -> None:
    """Pull from the configured remotes what specs name and the store lacks,
    before the install looks anywhere else (remotes come before every source)."""
    from contentpkg.store import Spec
    from contentpkg.store.remote.substitute import by_spec

    for text in specs:
        if "/" in text:
            continue  # an entry's path: local by definition
        spec = Spec.parse(text)
        if not store.match(spec):
            by_spec(store, ctx, spec)
