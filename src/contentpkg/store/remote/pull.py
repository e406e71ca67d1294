"""Pulling entries from a registry into the user store, checked at every step.

:class:`RemoteStore` is a store reader over a registry, in the way Nix's
binary caches are substituters: asking it for an entry (by name, spec or
source hash) brings that entry into the user store and returns it there.

A pull checks, before anything is published: the manifest's digest; the
signature artifact against the trusted keys (an unsigned entry, an unknown
key or a bad signature is refused); the layer's digest while it streams;
then, unpacked in a staging slot, that the metadata hashes to the signed
manifest's config digest and names the entry asked for, that the content
hash of the tree equals the metadata's (and the name's), and every derived
file (bytecode) its record. Only then is the slot renamed into the store,
so a failure at any point leaves nothing but staging debris.

Round trips are few because on loopback or a LAN they, not bytes, are what
a pull of many small entries waits on: the index table is read once per
pull; the signature is asked for beside the manifest when the index named
the manifest's digest (else beside the layer), and a bad one stops the
layer's stream; the signed payload is rebuilt rather than downloaded when
its digest says it is the standard one; the config is the layer's own
``entry.json``, checked against the config digest, not fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.fs import fsync_dir, sync_filesystem
from contentpkg.store import lookup
from contentpkg.store.entry import ENTRY_JSON, Entry, Spec, parse_dirname
from contentpkg.store.hashing import META_DIR, SHORT_HASH_LEN
from contentpkg.store.remote import layout, signing
from contentpkg.store.remote.oci import Registry, RemoteError, RemoteUrl, TransferError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from contentpkg.context import Context
    from contentpkg.progress import Reporter, Task
    from contentpkg.store.hashing import FileRecord
    from contentpkg.store.layers import Store
    from contentpkg.store.staging import Slot

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ref:
    """Where one entry is on a registry."""

    repository: str  # without the remote's prefix
    tag: str
    dirname: str = ""  # name,version,hash when known before the manifest is read
    #: Found through the index of unmodified entries: the hash asked for is
    #: the entry's ``unmodified_of``, not its source hash.
    unmodified: bool = False
    #: What the entry was asked for by, checked against its signed metadata.
    spec: Spec | None = None
    #: The entry manifest's digest, when the index named it: its signature
    #: can then be asked for before the manifest arrives.
    digest: str = ""


#: Index tables read by this process, by their blob's digest: a table is
#: content-addressed, so a second pull (or a second remote's reader in one
#: command) asks only for the small manifest naming it.
_TABLES: dict[str, dict[str, layout.IndexRow]] = {}
_TABLES_LOCK = threading.Lock()
_MAX_TABLE = 256 << 20


def read_index_table(
    registry: Registry, index_repo: str, manifest: tuple[bytes, str], where: str
) -> dict[str, layout.IndexRow]:
    """The rows of the index table that manifest names, its blob fetched
    unless this process has read that digest already."""
    parsed = layout.parse_manifest(manifest[0], where)
    layers = parsed.get("layers") or []
    if (
        parsed.get("artifactType") != layout.INDEX_TABLE_TYPE
        or len(layers) != 1
        or layers[0].get("mediaType") != layout.INDEX_TABLE_LAYER
    ):
        raise RemoteError(f"{where}: not a cpk index table", remote=str(registry.url))
    digest = str(layers[0].get("digest"))
    with _TABLES_LOCK:
        cached = _TABLES.get(digest)
    if cached is not None:
        return cached
    table = layout.parse_table(registry.get_blob_bytes(index_repo, digest, _MAX_TABLE), where)
    with _TABLES_LOCK:
        _TABLES[digest] = table
    return table


@dataclass
class PullStats:
    """What a reader's pulls did, counted: for the tests to assert the
    mechanisms (files linked not written, bytes hashed once, unpacks
    overlapping) and for anyone profiling a pull."""

    entries: int = 0
    files_written: int = 0
    files_linked: int = 0
    bytes_hashed: int = 0
    #: The most unpacks that ran at once.
    most_unpacking: int = 0


@dataclass
class _Staged:
    """An entry unpacked and checked in its staging slot, not yet published."""

    slot: Slot
    dirname: str
    records: list[FileRecord]
    meta: dict[str, Any]


class RemoteStore:
    """Entries of one registry, pulled into ``store`` on demand."""

    def __init__(
        self,
        url: RemoteUrl,
        store: Store,
        ctx: Context,
        *,
        reporter: Reporter | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        jobs: int = 8,
    ) -> None:
        self.url = url
        self.store = store
        self.ctx = ctx
        self.reporter = reporter
        self.jobs = jobs
        self.registry = Registry(url, ctx.remote, retries=retries, backoff=backoff, jobs=jobs)
        self._keys: dict[str, Ed25519PublicKey] | None = None
        #: True during :meth:`pull_many`: staged entries are returned, to be
        #: published together.
        self._batch = False
        self._lock = threading.Lock()
        self._table: dict[str, layout.IndexRow] | None = None
        #: Signature checks run here, beside the manifest or the layer they vouch for.
        self._side: ThreadPoolExecutor | None = None
        #: The files a batch has written, which its later files may link to;
        #: only within a batch, whose slots stay where they are until all
        #: are published (a published slot's paths have moved).
        self._same: layout.SameFiles | None = None
        self.stats = PullStats()
        self._unpacking = 0

    def close(self) -> None:
        with self._lock:
            side, self._side = self._side, None
        if side is not None:
            side.shutdown(wait=True)
        self.registry.close()

    def _side_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._side is None:
                self._side = ThreadPoolExecutor(
                    max_workers=self.jobs, thread_name_prefix="cpk-signature"
                )
            return self._side

    @property
    def keys(self) -> dict[str, Ed25519PublicKey]:
        if self._keys is None:
            self._keys = signing.trusted_keys(self.ctx.home)
        return self._keys

    # -- finding --------------------------------------------------------------

    def index_table(self) -> dict[str, layout.IndexRow]:
        """The remote's index table (empty when it has none): asked once per
        reader, its blob once per process (see :data:`_TABLES`)."""
        with self._lock:
            if self._table is not None:
                return self._table
        repo = self.url.repository(layout.INDEX_REPOSITORY)
        found = self.registry.get_manifest(repo, layout.INDEX_TABLE_TAG)
        where = f"{self.url}/{layout.INDEX_REPOSITORY}:{layout.INDEX_TABLE_TAG}"
        table = read_index_table(self.registry, repo, found, where) if found else {}
        with self._lock:
            self._table = table
        return table

    def refs_for_sources(self, hashes: list[str], *, unmodified: bool = False) -> list[Ref | None]:
        """Each hash's entry ref (None where the remote has none): the index
        table for all of them, then the per-hash manifests, in parallel, for
        any the table lacks (rows a racing push dropped, or a remote filled
        before the table existed)."""
        table = self.index_table()
        refs: list[Ref | None] = []
        for h in hashes:
            tag = layout.index_tag(h, unmodified=unmodified)
            row = table.get(tag) if tag is not None else None
            refs.append(_ref_of(row, unmodified) if row is not None else None)
        missing = [i for i, ref in enumerate(refs) if ref is None]

        def one(i: int) -> Ref | None:
            return self._ref_from_manifest(hashes[i], unmodified)

        if len(missing) <= 1:
            found = [one(i) for i in missing]
        else:
            with ThreadPoolExecutor(max_workers=min(self.jobs, len(missing))) as pool:
                found = list(pool.map(one, missing))
        for i, ref in zip(missing, found, strict=True):
            refs[i] = ref
        return refs

    def ref_for_source(self, source_hash: str, *, unmodified: bool = False) -> Ref | None:
        """The entry the index maps source_hash to, if this remote has one
        (with unmodified, the ``.deb``'s entry stored as shipped)."""
        return self.refs_for_sources([source_hash], unmodified=unmodified)[0]

    def ref_for_any(self, hashes: list[str]) -> tuple[Ref, str] | None:
        """The first of hashes (one package's files, as a lock lists every
        platform's) the remote has an entry for, with that hash: the index
        table's rows first, then the per-hash manifests one by one."""
        table = self.index_table()
        for h in sorted(hashes, key=lambda h: layout.index_tag(h) not in table):
            ref = self.ref_for_source(h)
            if ref is not None:
                return ref, h
        return None

    def _ref_from_manifest(self, source_hash: str, unmodified: bool) -> Ref | None:
        """source_hash's per-hash index manifest, read."""
        tag = layout.index_tag(source_hash, unmodified=unmodified)
        if tag is None:
            return None
        found = self.registry.get_manifest(self.url.repository(layout.INDEX_REPOSITORY), tag)
        if found is None:
            return None
        manifest = layout.parse_manifest(found[0], f"{self.url}: index {tag}")
        notes = manifest.get("annotations") or {}
        repo, entry_tag = notes.get(layout.A_REPOSITORY), notes.get(layout.A_TAG)
        if not isinstance(repo, str) or not isinstance(entry_tag, str):
            raise RemoteError(f"{self.url}: index {tag} names no entry", remote=str(self.url))
        digest = notes.get(layout.A_DIGEST)
        return Ref(
            repo,
            entry_tag,
            str(notes.get(layout.A_ENTRY, "")),
            unmodified,
            digest=digest if isinstance(digest, str) else "",
        )

    def refs_for_spec(self, spec: Spec) -> list[Ref]:
        """The tags of spec's repository that can match it (version, hash prefix).

        A tag is ``<version>-<hash>`` with the version sanitised, so the
        hash is exact and the version is checked again on the config.
        """
        repo = layout.repository_for(spec.name)
        refs = []
        for tag in self.registry.list_tags(self.url.repository(repo)):
            version, _, short = tag.rpartition("-")
            if len(short) != SHORT_HASH_LEN or not version:
                continue
            if spec.hash_prefix and not short.startswith(spec.hash_prefix):
                continue
            if spec.version and version != layout.tag_for(spec.version, short).rpartition("-")[0]:
                continue
            refs.append(Ref(repo, tag))
        return refs

    def newest_refs(self, specs: list[Spec]) -> list[Ref | None]:
        """Each spec's newest matching ref (None where the remote has none),
        the tag lists asked in parallel: one small request per package."""
        from concurrent.futures import ThreadPoolExecutor

        def one(spec: Spec) -> Ref | None:
            refs = self.refs_for_spec(spec)
            return replace(_newest(refs), spec=spec) if refs else None

        if len(specs) <= 1:
            return [one(s) for s in specs]
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(specs))) as pool:
            return list(pool.map(one, specs))

    # -- the StoreReader interface, pulling what is asked for ----------------

    def entry(self, dirname: str) -> Entry | None:
        parts = parse_dirname(dirname)
        if parts is None:
            return None
        local = self.store.entry(dirname)
        if local is not None:
            return local
        name, version, short = parts
        ref = Ref(layout.repository_for(name), layout.tag_for(version, short), dirname)
        return self.pull(ref)

    def entries(self) -> list[Entry]:
        """A registry is not listed whole (catalogs are often disabled): none."""
        return []

    def match(self, spec: Spec) -> list[Entry]:
        """Pull the newest entry matching spec (with what it references)."""
        entry = self.newest(spec)
        return [entry] if entry is not None else []

    def find_source(self, source_hash: str) -> Entry | None:
        ref = self.ref_for_source(source_hash)
        if ref is None:
            return None
        return self.pull(ref, source_hash=source_hash)

    def find_files(self, sha256: str) -> list[tuple[Entry, str]]:
        return []

    def newest(self, spec: Spec) -> Entry | None:
        refs = self.refs_for_spec(spec)
        if not refs:
            return None
        return self.pull(_newest(refs), spec=spec)

    # -- pulling ---------------------------------------------------------------

    def pull(
        self,
        ref: Ref,
        *,
        source_hash: str | None = None,
        spec: Spec | None = None,
        closure: bool = True,
    ) -> Entry:
        """Bring ref's entry (and, with closure, what it references) into the store."""
        entry = self._pull_one(ref, source_hash=source_hash, spec=spec)
        assert isinstance(entry, Entry)  # not in a batch
        if closure:
            self._pull_closure([entry])
        return entry

    def pull_many(self, refs: Iterable[tuple[Ref, str | None]]) -> list[Entry | RemoteError]:
        """Pull several entries in parallel; each result an entry or its error.

        The entries are staged in parallel, then published together after
        one flush to disk (see :meth:`_publish`).
        """
        from contentpkg.store.locks import collector_lock
        from contentpkg.store.staging import clean_stale

        items = list(refs)

        def one(item: tuple[Ref, str | None]) -> Entry | _Staged | RemoteError:
            try:
                return self._pull_one(item[0], source_hash=item[1])
            except RemoteError as exc:
                return exc
            except CpkError as exc:
                return RemoteError(str(exc), remote=str(self.url))

        root = self.store.user.root
        self.store.ensure()
        clean_stale(root)
        staged: list[Entry | _Staged | RemoteError] = []
        with collector_lock(root):
            self._batch = True
            self._same = layout.SameFiles()
            try:
                if len(items) <= 1:
                    staged = [one(i) for i in items]
                else:
                    with ThreadPoolExecutor(max_workers=min(self.jobs, len(items))) as pool:
                        staged = list(pool.map(one, items))
            finally:
                self._batch = False
                self._same = None
            published = iter(self._publish([r for r in staged if isinstance(r, _Staged)]))
        results: list[Entry | RemoteError] = [
            next(published) if isinstance(r, _Staged) else r for r in staged
        ]
        self._pull_closure([r for r in results if isinstance(r, Entry)])
        return results

    def _pull_closure(self, entries: list[Entry]) -> None:
        """Entries referenced by those pulled (bytecode markers, ELF packages'
        declared dependencies) that the store lacks, transitively."""
        seen = {e.dirname for e in entries}
        pending = list(entries)
        while pending:
            entry = pending.pop()
            for dirname in _references(entry):
                if dirname in seen:
                    continue
                seen.add(dirname)
                found = self.store.entry(dirname) or self.entry(dirname)
                if found is not None:
                    pending.append(found)
            for name in _declared_packages(entry):
                if name in seen or self.store.match(Spec(name)):
                    continue
                seen.add(name)
                try:
                    refs = self.refs_for_spec(Spec(name))
                except CpkError:
                    refs = []
                if refs:
                    found = self._pull_one(_newest(refs), spec=Spec(name))
                    assert isinstance(found, Entry)  # not in a batch
                    pending.append(found)

    def _pull_one(
        self, ref: Ref, *, source_hash: str | None = None, spec: Spec | None = None
    ) -> Entry | _Staged:
        if ref.dirname:
            local = self.store.entry(ref.dirname)
            if local is not None:
                return local
        repo = self.url.repository(ref.repository)
        where = f"{self.url}/{ref.repository}:{ref.tag}"
        # The index named the manifest's digest: its signature is asked for
        # now, beside the manifest, and checked against the manifest served.
        signature: Future[None] | None = None
        if ref.digest and ref.dirname:
            signature = self._side_pool().submit(
                self._check_signature, repo, ref.digest, ref.dirname, where
            )
        try:
            return self._pull_manifest(ref, repo, where, signature, source_hash, spec)
        finally:
            # Not left running past the pull that asked for it (its outcome,
            # when it matters, was read in _receive).
            if signature is not None and not signature.cancel():
                signature.exception()

    def _pull_manifest(
        self,
        ref: Ref,
        repo: str,
        where: str,
        signature: Future[None] | None,
        source_hash: str | None,
        spec: Spec | None,
    ) -> Entry | _Staged:
        found = self.registry.get_manifest(repo, ref.tag)
        if found is None:
            raise RemoteError(f"{where}: no such entry on the remote", remote=str(self.url))
        data, digest = found
        manifest = layout.parse_manifest(data, where)
        if manifest.get("artifactType") != layout.ENTRY_TYPE:
            raise RemoteError(f"{where}: not a cpk entry", remote=str(self.url))
        dirname = str((manifest.get("annotations") or {}).get(layout.A_ENTRY, ""))
        parts = parse_dirname(dirname)
        if parts is None or layout.tag_for(parts[1], parts[2]) != ref.tag:
            raise RemoteError(
                f"{where}: the manifest names entry {dirname!r}, not this tag's",
                remote=str(self.url),
            )
        spec = spec or ref.spec
        local = self.store.entry(dirname)
        if local is not None:
            return local
        if signature is None or (digest, dirname) != (ref.digest, ref.dirname):
            # No digest from the index (or the tag now names another
            # manifest): the signature goes beside the layer instead.
            signature = self._side_pool().submit(
                self._check_signature, repo, digest, dirname, where
            )
        config_desc = manifest.get("config") or {}
        layers = manifest["layers"]
        if (
            config_desc.get("mediaType") != layout.CONFIG_TYPE
            or not isinstance(config_desc.get("size"), int)
            or len(layers) != 1
        ):
            raise RemoteError(f"{where}: not a cpk entry's layout", remote=str(self.url))
        name, version, short = parts

        def accept(meta: dict[str, Any]) -> None:
            """The signed metadata names the entry asked for."""
            if (meta.get("name"), meta.get("version")) != (name, version) or not str(
                meta.get("content_hash", "")
            ).startswith("sha256:" + short):
                raise RemoteError(
                    f"{where}: the signed metadata names another entry", remote=str(self.url)
                )
            made_from = meta.get("unmodified_of" if ref.unmodified else "source_hash")
            if source_hash is not None and layout.plain_sha256(
                str(made_from or "")
            ) != layout.plain_sha256(source_hash):
                raise RemoteError(
                    f"{where}: the index maps {source_hash[:19]}... to an entry"
                    " made from something else",
                    remote=str(self.url),
                )
            if spec is not None and not spec.matches(name, version, short):
                raise RemoteError(
                    f"{where}: the entry is {dirname}, which {spec} does not match",
                    remote=str(self.url),
                )

        layer = layers[0]
        for n in range(self.registry.retries + 1):
            try:
                return self._receive(repo, layer, dirname, config_desc, accept, signature, where)
            except TransferError as exc:
                if signature.done() and signature.exception() is not None:
                    raise signature.exception() from None  # type: ignore[misc]
                if n == self.registry.retries:
                    raise RemoteError(
                        f"{exc} (gave up after {n + 1} attempts)", remote=str(self.url)
                    ) from None
                time.sleep(self.registry.backoff * 2**n)
        raise AssertionError("unreachable")

    def _check_signature(self, repo: str, digest: str, dirname: str, where: str) -> None:
        tag = signing.signature_tag(digest)
        found = self.registry.get_manifest(repo, tag)
        if found is None:
            raise RemoteError(f"{where}: unsigned (no {tag}); refused", remote=str(self.url))
        sig_manifest = layout.parse_manifest(found[0], f"{where} signature")
        layers = sig_manifest.get("layers") or []
        if sig_manifest.get("artifactType") != signing.SIGNATURE_TYPE or len(layers) != 1:
            raise RemoteError(f"{where}: {tag} is not a cpk signature", remote=str(self.url))
        # The payload is a function of (digest, entry): when the descriptor's
        # digest is that of the payload expected, those are its bytes, and
        # the request for them is saved. Anything else is fetched and checked.
        payload = signing.payload(digest, dirname)
        if layers[0].get("digest") != "sha256:" + hashlib.sha256(payload).hexdigest():
            payload = self.registry.get_blob_bytes(repo, str(layers[0].get("digest")), 1 << 16)
        try:
            signing.check(self.keys, sig_manifest, payload, digest, dirname, where)
        except RemoteError:
            raise
        except CpkError as exc:
            raise RemoteError(str(exc), remote=str(self.url)) from None

    def _receive(
        self,
        repo: str,
        layer: dict[str, Any],
        dirname: str,
        config_desc: dict[str, Any],
        accept: Callable[[dict[str, Any]], None],
        signature: Future[None],
        where: str,
    ) -> Entry | _Staged:
        """Download, unpack and check one entry's layer in a staging slot.

        The signature check runs meanwhile (a failure stops the stream) and
        is waited for before the slot can be published. In a batch
        (:meth:`pull_many`) the checked slot is returned, to be published
        with the others after one flush; otherwise it is published here.
        """
        from contentpkg.store.add import _check_staged
        from contentpkg.store.locks import collector_lock
        from contentpkg.store.staging import Slot, clean_stale

        digest, size = str(layer.get("digest")), layer.get("size")
        if layer.get("mediaType") != layout.LAYER_TYPE or not isinstance(size, int):
            raise RemoteError(f"{where}: the layer is not a cpk tarball", remote=str(self.url))
        root = self.store.user.root
        self.store.ensure()
        if not self._batch:
            clean_stale(root)
        task = (
            self.reporter.task(f"pull {dirname.rsplit(',', 1)[0]}", size) if self.reporter else None
        )
        slot = Slot(root)
        try:
            # Streamed: the layer is unpacked as it arrives, its digest
            # checked at the end of the stream and the tree after it, all
            # before the slot is published; a failure discards the slot.
            chunks = self.registry.blob_chunks(repo, digest, size)
            with self._lock:
                self._unpacking += 1
                self.stats.most_unpacking = max(self.stats.most_unpacking, self._unpacking)
            try:
                unpacked = layout.unpack(
                    _Stream(chunks, task, signature), slot.path, where, self._same
                )
            finally:
                with self._lock:
                    self._unpacking -= 1
                chunks.close()
                if task is not None:
                    task.done()
            with self._lock:
                self.stats.files_written += unpacked.written
                self.stats.files_linked += unpacked.linked
                self.stats.bytes_hashed += unpacked.hashed
            signature.result()  # verified before anything else is believed
            try:
                config = (slot.path / META_DIR / ENTRY_JSON).read_bytes()
            except OSError:
                config = b""
            if "sha256:" + hashlib.sha256(config).hexdigest() != config_desc.get("digest") or len(
                config
            ) != config_desc.get("size"):
                raise RemoteError(
                    f"{where}: the layer's metadata differs from the signed config",
                    remote=str(self.url),
                )
            meta = _parse_config(config, where)
            accept(meta)
            name, version, short = dirname.split(",")
            staged = Entry(slot.path, name, version, short, layer=self.store.user)
            problem = _check_unpacked(staged, meta, unpacked)
            if problem:
                raise RemoteError(f"{where}: refused: {problem}", remote=str(self.url))
            _check_staged(slot.path, unpacked.records)
            # Files were written with their final modes; directories bottom-up,
            # the metadata directory last, as seal() orders it.
            for rel in sorted(unpacked.dirs, key=lambda d: (d == META_DIR, -d.count("/"))):
                os.chmod(slot.path / rel, 0o555)
        except BaseException:
            slot.close()
            raise
        result = _Staged(slot, dirname, unpacked.records, meta)
        if self._batch:
            return result
        with collector_lock(root):
            return self._publish([result])[0]

    def _publish(self, batch: list[_Staged]) -> list[Entry]:
        """Flush the staged slots once, record their files, rename them into place.

        One ``syncfs`` and one files-table transaction for the whole batch:
        per entry, those were most of what a pull spent beyond the bytes.
        """
        root = self.store.user.root
        entries = []
        try:
            if batch:
                sync_filesystem(batch[0].slot.path)
                rows: dict[str, list[tuple[str, str]]] = {}
                for item in batch:
                    extra = [
                        (str(r[0]), str(r[1]))
                        for r in item.meta.get(lookup.EXTRA_ROWS_KEY, [])
                        if isinstance(r, list) and len(r) == 2
                    ]
                    rows[item.dirname] = [
                        *((r.value, r.path) for r in item.records if r.kind in "fx"),
                        *extra,
                    ]
                lookup.record_entries(root, rows)
            for item in batch:
                final = root / item.dirname
                # Not durable one by one: the store directory is flushed once
                # after the batch's renames (below), before anything is
                # reported pulled, instead of once per entry.
                item.slot.publish(final, durable=False)  # sealed as it appears
            if batch:
                fsync_dir(root)
            for item in batch:
                final = root / item.dirname
                source_hash = item.meta.get("source_hash")
                if isinstance(source_hash, str) and source_hash:
                    lookup.link_source(root, source_hash, final)
                entry = self.store.user.entry(item.dirname)
                if entry is None:
                    raise CpkError(f"{item.dirname}: vanished from the store as it was pulled")
                if self.reporter is not None:
                    self.reporter.note(f"pulled {entry.name} {entry.version}")
                entries.append(entry)
            self.stats.entries += len(entries)
        finally:
            for item in batch:
                item.slot.close()
        return entries


class _Stream:
    """A blob's chunks as a file to read, counted on the progress task.

    Reading to the end runs the generator's digest check; the unpack reads
    the zstd frame to its end, and :meth:`drain` makes sure of it."""

    def __init__(
        self, chunks: Iterator[bytes], task: Task | None, stop: Future[None] | None = None
    ) -> None:
        self._chunks = chunks
        self._task = task
        self._buffer = b""
        #: The signature check: once it has failed, the rest is not worth reading.
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes: the next chunk (or what is left of it), short
        reads as a socket gives, so no chunk is copied into a growing buffer."""
        if size < 0:
            parts = [self._buffer]
            while chunk := self._next():
                parts.append(chunk)
            self._buffer = b""
            return b"".join(parts)
        if not self._buffer:
            self._buffer = self._next()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _next(self) -> bytes:
        """The next non-empty chunk, counted; b"" at the end."""
        for chunk in self._chunks:
            stop = self._stop
            if stop is not None and stop.done() and stop.exception() is not None:
                raise stop.exception()  # type: ignore[misc]
            if chunk:
                if self._task is not None:
                    self._task.advance(len(chunk))
                return chunk
        return b""

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _check_unpacked(staged: Entry, meta: dict[str, Any], unpacked: layout.Unpacked) -> str:
    """What verify would say of the staged entry, from the hashes taken while
    unpacking (so no file is read twice): content hash, file list, bytecode."""
    from contentpkg.store.hashing import content_hash, short_hash
    from contentpkg.store.verify import _derived_problems

    recorded = str(meta.get("content_hash", ""))
    if ":" not in recorded or short_hash(recorded) != staged.short_hash:
        return f"metadata hash {recorded!r} does not match the entry's name"
    if content_hash(unpacked.records) != recorded:
        return "content hash mismatch: the unpacked tree is not what the metadata says"
    try:
        stored = staged.file_records()
    except CpkError as exc:
        return str(exc)
    if content_hash(stored) != recorded:
        return "file list does not match the content hash"
    problems = _derived_problems(staged, unpacked.derived)
    return problems[0] if problems else ""


def _parse_config(config: bytes, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(config)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise CpkError(f"{where}: the entry's metadata is not a JSON object")
    return meta


def _references(entry: Entry) -> list[str]:
    try:
        refs = entry.metadata.get("references", [])
    except CpkError:
        return []
    return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []


_DEP_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*")


def _declared_packages(entry: Entry) -> list[str]:
    """A Debian package's ``Pre-Depends`` and ``Depends`` by name (first alternative).

    These are what its programs need at run time and are found by name in
    the store at install time, so a pull brings them along as Nix's
    closures do.
    """
    try:
        deb = entry.metadata.get("deb")
    except CpkError:
        return []
    if not isinstance(deb, dict):
        return []
    names = []
    for group in [*(deb.get("pre_depends") or []), *(deb.get("depends") or [])]:
        if isinstance(group, list) and group:
            first = group[0]
            name = first[0] if isinstance(first, list) and first else None
            if isinstance(name, str) and _DEP_NAME.fullmatch(name):
                names.append(name)
    return names


def _ref_of(row: layout.IndexRow, unmodified: bool) -> Ref:
    return Ref(row.repository, row.tag, row.entry, unmodified, digest=row.manifest)


def _newest(refs: list[Ref]) -> Ref:
    """The ref of the highest version (PEP 440, else Debian's ordering)."""
    from debian.debian_support import Version as DebianVersion
    from packaging.version import InvalidVersion, Version

    def key(ref: Ref) -> tuple[int, Any]:
        text = ref.tag.rpartition("-")[0]
        try:
            return (1, Version(text))
        except InvalidVersion:
            pass
        try:
            return (0, DebianVersion(text.replace("_", "+")))
        except ValueError:
            return (-1, text)

    groups: dict[int, list[Ref]] = {}
    for ref in refs:
        groups.setdefault(key(ref)[0], []).append(ref)
    best_kind = max(groups)
    return max(groups[best_kind], key=lambda r: key(r)[1])
