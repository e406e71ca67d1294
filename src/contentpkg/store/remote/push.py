"""Pushing entries, and everything they reference, to a registry, signed.

For each entry of the closure, in parallel: skip it when its tag is there
already (an entry is immutable, so an equal tag is an equal entry); else
pack its deterministic layer, upload the config and the layer (each skipped
when the registry has the blob), store the manifest under its tag, sign the
manifest's digest into a ``sha256-<hex>.sig`` artifact, and map the
entry's source hash in the index. The signature is written before the index
entry, so nothing the index finds is ever unsigned. Last, the push's index
rows are merged into the index table (see :mod:`layout`), which pulls read
in one request instead of one per hash.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry, Spec
from contentpkg.store.remote import layout, signing
from contentpkg.store.remote.oci import MANIFEST_TYPE, Registry, RemoteUrl
from contentpkg.store.remote.pull import _declared_packages, _references, read_index_table

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from contentpkg.context import Context
    from contentpkg.progress import Reporter
    from contentpkg.store.layers import Store


@dataclass
class PushOutcome:
    pushed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    #: Bytes of blobs uploaded (blobs the registry had are not counted).
    uploaded: int = 0


def closure(store: Store, entries: Iterable[Entry]) -> list[Entry]:
    """entries and what they reference, transitively, from the local store.

    References are the ``references`` metadata (what gc follows) and, for
    Debian packages, their declared dependencies by name (the newest entry
    of that name, as ``cpk install`` would choose).
    """
    found: dict[str, Entry] = {}
    pending = list(entries)
    while pending:
        entry = pending.pop()
        if entry.dirname in found:
            continue
        found[entry.dirname] = entry
        for dirname in _references(entry):
            ref = store.entry(dirname)
            if ref is None:
                raise CpkError(f"{entry.dirname} references {dirname}, which the store lacks")
            pending.append(ref)
        for name in _declared_packages(entry):
            matches = store.match(Spec(name))
            if matches:
                pending.append(_newest_entry(matches))
    return sorted(found.values(), key=lambda e: e.dirname)


def _newest_entry(entries: list[Entry]) -> Entry:
    from contentpkg.store.remote.pull import Ref, _newest

    refs = {layout.tag_for(e.version, e.short_hash): e for e in entries}
    return refs[_newest([Ref("", tag) for tag in refs]).tag]


def push(
    store: Store,
    ctx: Context,
    url: RemoteUrl,
    entries: Iterable[Entry],
    *,
    key: Ed25519PrivateKey,
    reporter: Reporter | None = None,
    jobs: int = 8,
    retries: int = 3,
) -> PushOutcome:
    """Push the closure of entries to url, signed with key."""
    todo = closure(store, entries)
    outcome = PushOutcome()
    registry = Registry(url, ctx.remote, retries=retries, jobs=jobs)
    try:
        registry.ping()
        scratch = ctx.cache_dir / "remote-push"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="push-", dir=scratch) as tmp:

            def one(entry: Entry) -> tuple[str, int, tuple[str, layout.IndexRow] | None]:
                return _push_entry(registry, url, entry, key, Path(tmp), reporter)

            if len(todo) <= 1:
                results = [one(e) for e in todo]
            else:
                with ThreadPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
                    futures = [pool.submit(one, e) for e in todo]
                results = [f.result() for f in futures]
        for entry, (how, size, _row) in zip(todo, results, strict=True):
            (outcome.pushed if how == "pushed" else outcome.present).append(entry.dirname)
            outcome.uploaded += size
        merge_table(registry, url, dict(r[2] for r in results if r[2] is not None))
    finally:
        registry.close()
    return outcome


def _push_entry(
    registry: Registry,
    url: RemoteUrl,
    entry: Entry,
    key: Ed25519PrivateKey,
    tmp: Path,
    reporter: Reporter | None,
) -> tuple[str, int, tuple[str, layout.IndexRow] | None]:
    repo = url.repository(layout.repository_for(entry.name))
    tag = layout.tag_for(entry.version, entry.short_hash)
    existing = registry.get_manifest(repo, tag)
    if (
        existing is not None
        and registry.get_manifest(repo, signing.signature_tag(existing[1])) is not None
    ):
        row = _index(registry, url, entry, repo, tag, existing[1])
        return "present", 0, row
    packed = layout.pack(entry, tmp / f"{entry.dirname}.tar.zst")
    uploaded = 0
    try:
        config = packed.config
        if registry.push_blob(repo, packed.config_digest, len(config), lambda: io.BytesIO(config)):
            uploaded += len(config)
        task = (
            reporter.task(f"push {entry.name} {entry.version}", packed.layer_size)
            if reporter
            else None
        )
        try:
            if registry.push_blob(
                repo,
                packed.layer_digest,
                packed.layer_size,
                lambda: open(packed.layer, "rb"),  # noqa: SIM115 - push_blob closes it
                task.advance if task is not None else (lambda n: None),
            ):
                uploaded += packed.layer_size
        finally:
            if task is not None:
                task.done()
    finally:
        packed.layer.unlink(missing_ok=True)
    digest = registry.put_manifest(repo, tag, packed.manifest(), MANIFEST_TYPE)
    _sign(registry, repo, digest, entry.dirname, key)
    row = _index(registry, url, entry, repo, tag, digest)
    if reporter is not None:
        reporter.note(f"pushed {entry.name} {entry.version}")
    return "pushed", uploaded, row


def _sign(registry: Registry, repo: str, digest: str, dirname: str, key: Ed25519PrivateKey) -> None:
    payload = signing.payload(digest, dirname)
    key_id, signature = signing.sign(key, payload)
    payload_digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    registry.push_blob(repo, payload_digest, len(payload), lambda: io.BytesIO(payload))
    _empty(registry, repo)
    manifest = layout.manifest_bytes(
        signing.SIGNATURE_TYPE,
        layout.descriptor(layout.EMPTY_TYPE, layout.EMPTY_DIGEST, len(layout.EMPTY_BLOB)),
        [
            layout.descriptor(
                signing.PAYLOAD_TYPE,
                payload_digest,
                len(payload),
                annotations={signing.A_KEY: key_id, signing.A_SIGNATURE: signature},
            )
        ],
    )
    registry.put_manifest(repo, signing.signature_tag(digest), manifest, MANIFEST_TYPE)


def _empty(registry: Registry, repo: str) -> None:
    registry.push_blob(
        repo, layout.EMPTY_DIGEST, len(layout.EMPTY_BLOB), lambda: io.BytesIO(layout.EMPTY_BLOB)
    )


def _index(
    registry: Registry, url: RemoteUrl, entry: Entry, repo: str, tag: str, digest: str
) -> tuple[str, layout.IndexRow] | None:
    """Map entry's source hash to it (a manifest per hash); its row for the table."""
    source_hash = entry.metadata.get("source_hash")
    unmodified_of = entry.metadata.get("unmodified_of")
    if not source_hash and unmodified_of:
        source_hash = unmodified_of
        index_tag = layout.index_tag(str(source_hash), unmodified=True)
    else:
        index_tag = layout.index_tag(str(source_hash or ""))
    if index_tag is None:
        return None
    index_repo = url.repository(layout.INDEX_REPOSITORY)
    _empty(registry, index_repo)
    empty = layout.descriptor(layout.EMPTY_TYPE, layout.EMPTY_DIGEST, len(layout.EMPTY_BLOB))
    row = layout.IndexRow(
        entry.dirname, repo.removeprefix(url.prefix + "/") if url.prefix else repo, tag, digest
    )
    manifest = layout.manifest_bytes(
        layout.INDEX_TYPE,
        empty,
        [empty],
        {
            layout.A_ENTRY: row.entry,
            layout.A_REPOSITORY: row.repository,
            layout.A_TAG: row.tag,
            layout.A_DIGEST: row.manifest,
            layout.A_SOURCE: str(source_hash),
        },
    )
    existing = registry.get_manifest(index_repo, index_tag)
    if existing is None or existing[0] != manifest:
        registry.put_manifest(index_repo, index_tag, manifest, MANIFEST_TYPE)
    return index_tag, row


#: Read-merge-write rounds of the index table before leaving it to the next push.
_TABLE_ROUNDS = 3


def merge_table(registry: Registry, url: RemoteUrl, rows: dict[str, layout.IndexRow]) -> None:
    """Merge rows into the remote's index table.

    A registry has no compare-and-swap, so this reads the table, writes the
    merge, and reads the tag again: another push's table there instead means
    a race, and the merge is redone on top of it (a few rounds; past those,
    the rows are still found through their per-hash manifests, and the next
    push's merge brings them back, since every push merges all its rows).
    """
    if not rows:
        return
    index_repo = url.repository(layout.INDEX_REPOSITORY)
    where = f"{url}/{layout.INDEX_REPOSITORY}:{layout.INDEX_TABLE_TAG}"
    for _ in range(_TABLE_ROUNDS):
        current = registry.get_manifest(index_repo, layout.INDEX_TABLE_TAG)
        table = read_index_table(registry, index_repo, current, where) if current else {}
        merged = {**table, **rows}
        if merged == table:
            return
        blob = layout.table_bytes(dict(sorted(merged.items())))
        blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        registry.push_blob(index_repo, blob_digest, len(blob), lambda blob=blob: io.BytesIO(blob))
        _empty(registry, index_repo)
        manifest = layout.manifest_bytes(
            layout.INDEX_TABLE_TYPE,
            layout.descriptor(layout.EMPTY_TYPE, layout.EMPTY_DIGEST, len(layout.EMPTY_BLOB)),
            [layout.descriptor(layout.INDEX_TABLE_LAYER, blob_digest, len(blob))],
        )
        ours = registry.put_manifest(index_repo, layout.INDEX_TABLE_TAG, manifest, MANIFEST_TYPE)
        after = registry.get_manifest(index_repo, layout.INDEX_TABLE_TAG)
        if after is not None and after[1] == ours:
            return
