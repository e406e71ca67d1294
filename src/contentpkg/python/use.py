"""``contentpkg.use()``: a running interpreter adds packages to itself.

``contentpkg.use("rich>=13")`` resolves the requirements for *this*
interpreter together with everything it can already import, makes what is
missing present in the store (fetched or built, bytecode compiled), and
appends a small private site-packages of links to the new entries to
``sys.path``. Only this process sees the packages: nothing is written to
``sys.prefix``, the base site-packages or the user site, and other
processes (even children started with ``sys.executable``) are unchanged.

Why it works this way:

* Every distribution ``importlib.metadata`` sees on ``sys.path`` is pinned
  at its installed version, from its installed metadata, without asking the
  index (which may not even list that version: an editable checkout, a
  local build). A module that is already imported cannot be replaced in a
  running process, and one that is merely importable would be shadowed by
  the copy earlier on ``sys.path`` anyway, so another version of either
  could only ever be half-used. A requirement that such a pin cannot meet is
  an error naming both.
* The new packages get a site-packages directory of their own, built with
  the views' link farm (one symlink per top-level name, see
  :mod:`contentpkg.python.envs.views`) and added with :func:`site.addsitedir`,
  so their ``.pth`` files run and imports cost one more directory on
  ``sys.path``, whatever the number of packages. It is appended, after the
  paths the process already had, so nothing already importable changes.
* The farm lives under ``$CPK_HOME/runtime/<key>``, keyed by its exact list
  of entries: a second process (or a second run of the same script) asking
  for the same packages reuses it. It is built in a staging directory and
  renamed into place, so it is whole or absent, and a gc root keeps its
  entries alive for as long as the farm exists; removing the farm directory
  releases them.
* When everything asked for is already importable at a satisfying version,
  ``use()`` only reads installed metadata: no resolver, no index, no store.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError

if TYPE_CHECKING:
    from importlib.metadata import Distribution

    from packaging.requirements import Requirement

    from contentpkg.python.run.sync import Materialized
    from contentpkg.store import Entry, Store

#: Where the per-process site-packages farms live, under the user's home.
RUNTIME_DIR = "runtime"
RUNTIME_JSON = "runtime.json"
SITE = "site-packages"
#: Bumped when a farm's layout changes, so older farms are not reused.
_FORMAT = 2  # 2: bytecode linked only from the winning distribution

# One use() at a time per process: two threads adding packages at once
# would each pin the other's half-added distributions. Re-entrant, because
# a new package's .pth file, run by addsitedir, may call use() itself.
_lock = threading.RLock()


@dataclass(frozen=True)
class _Present:
    """A distribution this process can already import (the first on sys.path)."""

    name: str  # as its metadata spells it
    version: str  # as installed (may not be a valid PEP 440 version)
    dist: Distribution

    @property
    def location(self) -> str:
        return os.fspath(self.dist.locate_file(""))


def use(
    *requirements: str,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    find_links: Sequence[str] = (),
    offline: bool = False,
    prereleases: bool = False,
) -> list[Materialized]:
    """Make the requirements importable in this running interpreter.

    ``requirements`` are PEP 508 strings (``"rich>=13"``, ``"httpx[http2]"``).
    Indexes and find-links are the CLI's: the arguments, else
    ``CPK_INDEX_URL`` / ``CPK_EXTRA_INDEX_URL`` / ``CPK_FIND_LINKS``, else
    PyPI. ``offline`` uses only what the cache and the store hold.

    Returns the packages this call made importable, sorted by name, as
    :class:`~contentpkg.python.run.sync.Materialized` items (``name``,
    ``version``, store ``entry``, and ``how``: ``"present"`` when the store
    already had it, ``"fetched"`` or ``"built"``); an empty list when
    everything was importable already, which is then all it checked.

    Raises :class:`~contentpkg.errors.CpkError` when a requirement conflicts
    with a version this process already has, when nothing satisfies the
    requirements, or when a package cannot be fetched or built; the process
    is then unchanged.
    """
    texts = _texts(requirements)
    with _lock:
        from packaging.markers import default_environment

        env = default_environment()
        reqs = [_parse(text) for text in texts]
        if _satisfied(reqs, env):
            return []
        present = _present()
        _check_conflicts(texts, reqs, env, present)
        return _add(texts, present, index_url, extra_index_urls, find_links, offline, prereleases)


def _texts(requirements: Iterable[object]) -> list[str]:
    texts = []
    for req in requirements:
        if not isinstance(req, str):
            raise CpkError(f"use: requirements are strings such as 'rich>=13', not {req!r}")
        if req.strip():
            texts.append(req.strip())
    if not texts:
        raise CpkError("use: name at least one requirement")
    return texts


def _parse(text: str) -> Requirement:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        # packaging's message draws a caret under the text on further lines.
        why = str(exc).splitlines()[0]
        raise CpkError(f"use: invalid requirement {text!r}: {why}") from None


# --- what is already here ------------------------------------------------------------


def _satisfied(reqs: Sequence[Requirement], env: dict[str, str]) -> bool:
    """Whether installed distributions already meet reqs and everything they need.

    Follows each distribution's own requirements (and those of the extras
    asked for), so a requirement whose dependency is missing is not taken
    as met. Reads only installed metadata: this is ``use()``'s fast path.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    base_env = {**env, "extra": ""}
    pending = [r for r in reqs if r.marker is None or r.marker.evaluate(base_env)]
    seen: set[str] = set()
    while pending:
        req = pending.pop()
        if req.url:
            return False  # the resolver says what it thinks of URLs
        key = f"{canonicalize_name(req.name)}{sorted(req.extras)}{req.specifier}"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
            version = Version(dist.version)
        except (PackageNotFoundError, InvalidVersion, TypeError):
            return False
        if not req.specifier.contains(version, prereleases=True):
            return False
        for line in dist.requires or ():
            try:
                dep = Requirement(line)
            except InvalidRequirement:
                return False
            envs = [base_env, *({**env, "extra": e} for e in req.extras)]
            if dep.marker is None or any(dep.marker.evaluate(e) for e in envs):
                pending.append(dep)
    return True


def _present() -> dict[str, _Present]:
    """Every distribution on sys.path by normalized name, the first found for each.

    The first is the one ``import`` and ``importlib.metadata.version`` see;
    later copies are shadowed and play no part.
    """
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name

    found: dict[str, _Present] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        version = dist.version
        if not name or not version:
            continue  # a broken .dist-info: nothing can be required of it
        found.setdefault(canonicalize_name(name), _Present(name, version, dist))
    return found


def _imported(dist: Distribution) -> bool:
    """Whether a module of dist is already in sys.modules."""
    return any(name in sys.modules for name in _top_level(dist))


def _top_level(dist: Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return set(text.split())
    names = set()
    for path in dist.files or ():
        parts = path.parts
        if not parts or parts[0] in ("..", "__pycache__"):
            continue
        head = parts[0]
        if head.endswith((".dist-info", ".egg-info", ".data", ".pth")):
            continue
        if len(parts) > 1:
            names.add(head)
        elif head.endswith((".py", ".so", ".pyd")):
            names.add(head.split(".", 1)[0])
    return names


def _already(present: _Present) -> str:
    if _imported(present.dist):
        return "already imported in this process"
    return f"already importable in this process from {present.location}"


def _check_conflicts(
    texts: Sequence[str],
    reqs: Sequence[Requirement],
    env: dict[str, str],
    present: dict[str, _Present],
) -> None:
    """A requirement that an installed version fails is an error naming both."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    base_env = {**env, "extra": ""}
    for text, req in zip(texts, reqs, strict=True):
        if req.marker is not None and not req.marker.evaluate(base_env):
            continue
        found = present.get(canonicalize_name(req.name))
        if found is None:
            continue
        try:
            ok = req.specifier.contains(Version(found.version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            raise CpkError(f"{text} conflicts with {found.name} {found.version}, {_already(found)}")


def _installed(present: dict[str, _Present]) -> dict[str, tuple[str, bytes]]:
    """(version, core metadata) of each present distribution, for the resolver.

    The metadata is rewritten from what ``importlib.metadata`` reads, so an
    old ``.egg-info`` (whose requirements live in ``requires.txt``) reads
    like a wheel's METADATA. Versions that are not PEP 440 cannot be pinned
    and are left out; :func:`_add` refuses to add a second copy of them.
    """
    from packaging.version import InvalidVersion, Version

    installed = {}
    for key, found in present.items():
        try:
            version = str(Version(found.version))
        except InvalidVersion:
            continue
        meta = found.dist.metadata
        lines = ["Metadata-Version: 2.1", f"Name: {found.name}", f"Version: {version}"]
        if meta["Requires-Python"]:
            lines.append(f"Requires-Python: {meta['Requires-Python']}")
        lines += [f"Provides-Extra: {e}" for e in meta.get_all("Provides-Extra") or ()]
        lines += [f"Requires-Dist: {r}" for r in found.dist.requires or ()]
        installed[key] = (version, ("\n".join(lines) + "\n\n").encode())
    return installed


# --- adding what is missing -------------------------------------------------------------


def _add(
    texts: list[str],
    present: dict[str, _Present],
    index_url: str | None,
    extra_index_urls: Sequence[str],
    find_links: Sequence[str],
    offline: bool,
    prereleases: bool,
) -> list[Materialized]:
    from contentpkg.context import Context
    from contentpkg.python.run.options import Options
    from contentpkg.python.run.sync import materialize_requirements
    from contentpkg.store import Store
    from contentpkg.store.locks import collector_lock

    installed = _installed(present)
    # use() is an entry point of its own, like the command line: its
    # settings are read here, once, and passed down.
    ctx = Context.from_environ()
    options = Options(
        ctx=ctx,
        index_url=index_url,
        extra_index_urls=tuple(extra_index_urls),
        find_links=tuple(find_links),
        offline=offline,
        prereleases=prereleases,
    )
    store = Store.open(ctx=ctx)
    store.ensure()
    # Shared collector lock from fetching to rooting the farm, so a
    # concurrent gc cannot sweep the new entries in between.
    with collector_lock(store.user.root):
        try:
            items = materialize_requirements(
                texts,
                options,
                constraints=[f"{key}=={version}" for key, (version, _) in installed.items()],
                installed=installed,
                # Spawned workers would re-run this program's __main__.
                bytecode_jobs=1,
            )
        except CpkError as exc:
            raise _explained(exc, present) from None
        for item in items:
            shadowed = present.get(item.name)
            if shadowed is not None:  # only a non-PEP 440 installed version gets here
                raise CpkError(
                    f"{item.name} {item.version} is needed, but {shadowed.name} "
                    f"{shadowed.version} is {_already(shadowed)}"
                )
        if not items:
            return []
        site = ensure_farm(store, [item.entry for item in items])
    _activate(site)
    return items


def _explained(exc: CpkError, present: dict[str, _Present]) -> CpkError:
    """The resolver's message, saying which of its projects cannot change here.

    The resolver sees an installed distribution as a project with one
    release; the user needs to know that release is the one in this process.
    """
    text = " ".join([str(exc), *exc.details])
    notes = []
    for key in sorted(present):
        if re.search(rf"(?<![\w.-]){re.escape(key)}(?![\w.-]|\[)", text, re.IGNORECASE):
            found = present[key]
            notes.append(f"{found.name} {found.version} is {_already(found)}; it cannot change")
    if not notes:
        return exc
    return CpkError(f"{exc} ({notes[0]})", details=[*exc.details, *notes[1:]])


# --- the farm --------------------------------------------------------------------------


def farm_key(entries: Sequence[str]) -> str:
    """The name of the farm of entries (dirnames, in order)."""
    from contentpkg.store.hashing import b32

    h = hashlib.sha256(f"cpk-runtime-{_FORMAT}\0".encode())
    for dirname in entries:
        h.update(dirname.encode() + b"\0")
    return b32(h.digest())[:32]


def ensure_farm(store: Store, entries: Sequence[Entry]) -> Path:
    """The site-packages of links to entries, built if missing, and rooted.

    Concurrent builders race harmlessly, as views' do: each builds privately
    and renames; the loser discards its copy and uses the winner's. The
    caller holds the collector lock (shared).
    """
    from contentpkg.fs import discard, make_tmp_dir, publish_dir
    from contentpkg.store.gc import add_root

    key = farm_key([e.dirname for e in entries])
    base = store.home / RUNTIME_DIR
    final = base / key
    meta = final / ".cpk" / RUNTIME_JSON
    if not meta.is_file():
        staging = None
        try:
            staging = make_tmp_dir(base, key)
            _build_farm(staging, entries)
            # Not durable: a farm is derived from the store, and a crash
            # costs only building it again.
            publish_dir(staging, final, durable=False)
        except OSError as exc:
            if not meta.is_file():
                raise CpkError(f"cannot build the runtime environment in {base}: {exc}") from None
        finally:
            if staging is not None:
                discard(staging)
    # The root names the farm, whose .cpk/refs lists its entries: gc keeps
    # them while the farm exists and prunes the root once it is removed.
    add_root(store, f"runtime-{key}", final)
    try:
        os.utime(final)  # last use, for whoever ages farms out
    except OSError:
        pass
    return final / SITE


def _build_farm(root: Path, entries: Sequence[Entry]) -> None:
    import json

    from contentpkg.python.envs.views import link_merged
    from contentpkg.store.gc import write_refs

    for entry in entries:
        if entry.kind != "wheel":
            raise CpkError(f"{entry.dirname}: a {entry.kind} entry cannot be imported")
    site = root / SITE
    site.mkdir()
    conflicts: list[Any] = []
    link_merged(site, [(e.dirname, e.path / SITE) for e in entries], conflicts, "")
    write_refs(root / ".cpk" / "refs", list(entries))
    data = {
        "format": _FORMAT,
        "entries": [e.dirname for e in entries],
        "conflicts": [c.__dict__ for c in conflicts],
    }
    (root / ".cpk" / RUNTIME_JSON).write_text(json.dumps(data, indent=1) + "\n")


def _activate(site: Path) -> None:
    """Put site on sys.path (after what is there) and run its ``.pth`` files."""
    import site as site_module

    path = os.fspath(site)
    if path not in sys.path:
        site_module.addsitedir(path)
    # Finders cache directory listings, importlib.metadata too: both must
    # see the new directory now, not after their caches expire.
    importlib.invalidate_caches()
