"""Substitution: the configured remotes asked, in order, for entries the store lacks.

The namespaces call these before they go to their own sources (the Python
index, a build, the Debian archive). A remote that fails (down, refusing,
serving bad or unsigned bytes) is named in one warning line, and the next
remote, then the namespace's own source, is tried: a broken cache must
never be worse than no cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry, Spec
from contentpkg.store.remote.oci import RemoteError
from contentpkg.store.remote.pull import Ref, RemoteStore
from contentpkg.store.remote.remotes import ConfiguredRemote, configured

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.progress import Reporter
    from contentpkg.store.layers import Store

_log = logging.getLogger("contentpkg.remote")


def by_source(
    store: Store,
    ctx: Context,
    source_hashes: Iterable[str],
    reporter: Reporter | None = None,
    *,
    unmodified: bool = False,
    remotes: list[ConfiguredRemote] | None = None,
) -> dict[str, Entry]:
    """Pull the entries made from source_hashes that some remote has.

    Returns what was found, by source hash; what is missing from the result
    is for the caller's own source. Nothing is asked when no remote is
    configured. With unmodified, the hashes are ``.deb``\\ s' and the
    entries their unmodified (union) form. ``remotes`` (default: every
    configured one) lets a caller asking twice pass the trusted ones once.
    """
    wanted = [h for h in dict.fromkeys(source_hashes) if h]
    if not wanted:
        remotes = []
    elif remotes is None:
        remotes = configured(ctx)
    found: dict[str, Entry] = {}
    for remote in remotes:
        missing = [h for h in wanted if h not in found]
        if not missing:
            break
        reader = RemoteStore(remote.url, store, ctx, reporter=reporter)
        if not _trusting(reader):
            continue
        try:
            refs: list[tuple[Ref, str | None]] = []
            try:
                for ref, h in zip(_index_refs(reader, missing, unmodified), missing, strict=True):
                    if ref is not None:
                        refs.append((ref, h))
            except CpkError as exc:
                _log.warning("%s (remote skipped)", exc)
                continue
            results = reader.pull_many(refs)
            for (_, h), result in zip(refs, results, strict=True):
                if isinstance(result, Entry):
                    found[str(h)] = result
                else:
                    _log.warning("%s", result)
        finally:
            reader.close()
    return found


def _trusting(reader: RemoteStore) -> bool:
    """Whether any key is trusted; said once per remote, not once per entry."""
    if reader.keys:
        return True
    _log.warning(
        "%s: skipped, no trusted keys (add the publisher's with 'cpk key trust KEY.pub')",
        reader.url,
    )
    reader.close()
    return False


def _trusted(store: Store, ctx: Context) -> list[ConfiguredRemote]:
    """The configured remotes with a trusted key; each other one warned about once."""
    trusted = []
    for remote in configured(ctx):
        reader = RemoteStore(remote.url, store, ctx)
        if _trusting(reader):
            trusted.append(remote)
            reader.close()
    return trusted


def _index_refs(reader: RemoteStore, hashes: list[str], unmodified: bool) -> list[Ref | None]:
    """Each hash's entry on the remote: the index table read once, the
    per-hash manifests only for what it lacks (see :meth:`refs_for_sources`)."""
    return reader.refs_for_sources(hashes, unmodified=unmodified)


def by_spec(
    store: Store, ctx: Context, spec: Spec, reporter: Reporter | None = None
) -> Entry | None:
    """The newest entry spec matches on the first remote that has one, pulled."""
    for remote in configured(ctx):
        reader = RemoteStore(remote.url, store, ctx, reporter=reporter)
        if not _trusting(reader):
            continue
        try:
            entry = reader.newest(spec)
        except CpkError as exc:
            _log.warning("%s", exc)
            continue
        finally:
            reader.close()
        if entry is not None:
            return entry
    return None


def for_union(
    ctx: Context, store: Store, packages: Callable[[], Iterable[Any]]
) -> dict[str, Entry]:
    """The unmodified entries of the ``.deb``\\ s packages() lists (objects
    with a ``sha256``) that configured remotes have, pulled, by sha256, with
    their patched twins where the remote has those too (so the archive is
    not asked for them either). packages is called only when a remote is
    configured: without one, nothing is resolved twice."""
    if not configured(ctx):
        return {}
    wanted = [str(p.sha256) for p in packages() if p.sha256]
    # Both passes below ask the same remotes: sorted out (and an untrusted
    # one named) once, not once per pass.
    remotes = _trusted(store, ctx)
    if not remotes:
        return {}
    by_source(store, ctx, [h for h in wanted if store.find_source(h) is None], remotes=remotes)
    found = by_source(store, ctx, wanted, unmodified=True, remotes=remotes)
    for h in wanted:
        patched = store.find_source(h) if h not in found else None
        # A package with no ELF file had nothing rewritten: its one entry is
        # the package as shipped (adding it unmodified makes the same entry).
        if patched is not None and not (
            patched.metadata.get("kind") == "elf" and patched.metadata.get("elf")
        ):
            found[h] = patched
    return found


__all__ = ["RemoteError", "by_source", "by_spec", "for_union"]
