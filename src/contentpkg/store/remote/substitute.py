"""Substitution: the configured remotes asked, in order, for entries the store lacks.

The namespaces call these before they go to their own sources (the Python
index, a build, the Debian archive). A remote that fails (down, refusing,
serving bad or unsigned bytes) is named in one warning line, and the next
remote, then the namespace's own source, is tried: a broken cache must
never be worse than no cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry, Spec
from contentpkg.store.remote.oci import RemoteError
from contentpkg.store.remote.pull import Ref, RemoteStore
from contentpkg.store.remote.remotes import configured

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
) -> dict[str, Entry]:
    """Pull the entries made from source_hashes that some remote has.

    Returns what was found, by source hash; what is missing from the result
    is for the caller's own source. Nothing is asked when no remote is
    configured.
    """
    wanted = [h for h in dict.fromkeys(source_hashes) if h]
    remotes = configured(ctx) if wanted else []
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
                for ref, h in zip(_index_refs(reader, missing), missing, strict=True):
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


def _index_refs(reader: RemoteStore, hashes: list[str]) -> list[Ref | None]:
    """Each hash's index lookup, in parallel (one small GET each)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(hashes) <= 1:
        return [reader.ref_for_source(h) for h in hashes]
    with ThreadPoolExecutor(max_workers=min(reader.jobs, len(hashes))) as pool:
        return list(pool.map(reader.ref_for_source, hashes))


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


__all__ = ["RemoteError", "by_source", "by_spec"]
