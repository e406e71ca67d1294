"""``cpk run --union``: a Python environment's packages overlaid into one site-packages.

A view's site-packages holds one symlink per top-level name of each entry;
here the same names are instead made one merged directory of hard links
into the store (directories made, files linked, the packages' own symlinks
copied) and mounted over the view's site-packages inside a private
namespace, so the interpreter sees one real directory made of the store's
own files (the union of the entries, per process) and each import is a
plain directory lookup, with no symlink to follow into the store. Why it is
bound rather than overlaid: see :func:`mount_site_packages`.

The layer is made from the view's own listing, so the union holds exactly
the entries the lock put in the view, in its order, and what the view
wrote itself (``.dist-info`` records naming scripts, merged namespace
directories) is linked too; it needs no knowledge of locks or wheels, and
the Python side needs none of namespaces. Merged sites are cached like the
unions' farms (``unions/site-<key>``, rooted as ``roots/union-site-<key>``,
touched per use, collected by gc once unused).

A store on another file system than the home cannot be hard-linked: then
each entry's ``site-packages`` is its own overlay layer above the view's,
and one warning says so (imports are slower, the more so the more entries).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.env.union.namespace import (
    MountApi,
    bind_read_only,
    mount_overlay,
    unshare_user_mount,
)
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    from contentpkg.store.layers import Store

_log = logging.getLogger(__name__)

_FORMAT = "union-site-1"
#: The merged site inside its cached directory (beside ``.cpk/refs``).
_SITE = "site-packages"


def site_packages_of(env: Path) -> Path:
    """The one ``lib/pythonX.Y/site-packages`` of a virtualenv-shaped env."""
    real = Path(os.path.realpath(env))
    found = sorted(real.glob("lib/python*/site-packages"))
    if len(found) != 1:
        raise CpkError(f"{env}: not a virtualenv-shaped environment (no one site-packages)")
    return found[0]


def site_layers(site: Path) -> list[str]:
    """The store entries' site-packages directories that site links into, in order."""
    layers: list[str] = []
    seen: set[str] = set()
    for name in sorted(os.listdir(site)):
        path = site / name
        if not path.is_symlink():
            continue
        parent = os.path.dirname(os.path.realpath(path))
        if os.path.basename(parent) != "site-packages" or parent in seen:
            continue
        seen.add(parent)
        layers.append(parent)
    return layers


def site_key(site: Path) -> str:
    """The merged site's cache key: the view's path and its top-level listing.

    Views are immutable once published and keyed by their entry list, so
    the listing (names and link targets) names the entries exactly.
    """
    h = hashlib.sha256(f"{_FORMAT}\0{os.path.realpath(site)}".encode())
    for name in sorted(os.listdir(site)):
        path = site / name
        target = os.readlink(path) if path.is_symlink() else ""
        h.update(f"\0{name}\0{target}".encode())
    return h.hexdigest()[:32]


def merged_site(store: Store, home: Path, site: Path, *, hold: bool = False) -> Path | None:
    """The cached merged site of hard links for site, built if missing.

    None when the store's files cannot be hard-linked from the home (another
    file system): the caller falls back to a layer per entry. With ``hold``,
    it is held in use (``store.locks.hold_in_use``) by a descriptor the command
    inherits, as a union's farm is.
    """
    from contentpkg.env.union.compose import UNIONS, keep_rooted
    from contentpkg.fs import make_tmp_dir, publish_dir, remove_tree
    from contentpkg.store.gc import write_refs
    from contentpkg.store.locks import IN_USE, collector_lock, hold_in_use

    base = home / UNIONS
    store.ensure()
    base.mkdir(parents=True, exist_ok=True)
    if os.stat(base).st_dev != os.stat(store.user.root).st_dev:
        return None
    key = "site-" + site_key(site)
    final = base / key
    with collector_lock(store.user.root):
        if not (final / _SITE).is_dir():
            tmp = make_tmp_dir(base, key)
            try:
                _link_tree(site, tmp / _SITE)
                entries = [e for e in (store.containing(Path(p)) for p in site_layers(site)) if e]
                write_refs(tmp / ".cpk" / "refs", [e[0] for e in entries])
                (tmp / IN_USE).touch()
                if not publish_dir(tmp, final, durable=False):
                    remove_tree(tmp)  # an equal one was published meanwhile
            except BaseException:
                remove_tree(tmp)
                raise
        keep_rooted(store, key, final)
        if hold:
            os.set_inheritable(hold_in_use(final), True)
    return final


def _link_tree(src: Path, dest: Path) -> None:
    """Mirror src at dest, following its links to the store once, at the top.

    The view's links (to an entry's package, or inside a merged namespace
    directory) are followed; the packages' own symlinks below them are
    copied as they are. Files are hard-linked; a file that cannot be (a
    read-only system store's, which ``protected_hardlinks`` keeps from other
    users) is a symlink to its real path, which the namespace still shows.
    """
    dest.mkdir()
    with os.scandir(src) as it:
        items = sorted(it, key=lambda d: d.name)
    for item in items:
        path = Path(item.path)
        to = dest / item.name
        if item.is_symlink():
            real = Path(os.path.realpath(path))
            if real.is_dir():
                _copy_tree(real, to)
            elif real.exists():
                _link_file(real, to)
            else:
                os.symlink(os.readlink(path), to)  # dangling in the view too
        elif item.is_dir():
            _link_tree(path, to)
        else:
            _link_file(path, to)


def _copy_tree(src: Path, dest: Path) -> None:
    """Directories made, files hard-linked, symlinks copied (an entry's tree)."""
    dest.mkdir()
    with os.scandir(src) as it:
        for item in it:
            to = dest / item.name
            if item.is_symlink():
                os.symlink(os.readlink(item.path), to)
            elif item.is_dir():
                _copy_tree(Path(item.path), to)
            else:
                _link_file(Path(item.path), to)


def _link_file(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        os.symlink(src, dest)


def mount_site_packages(
    env: Path, api: MountApi = "auto", *, store: Store | None = None, home: Path | None = None
) -> int:
    """Enter a new namespace with env's site-packages made the union; return its layers.

    With a store and home on one file system, the merged site of hard links
    is mounted (bound, read-only) over the view's site-packages: one layer.
    It holds everything the view shows, so an overlay of it above an empty
    layer would show the same tree, and was measured slower (``bench/union.py``:
    1.36x a view's import time at 50 and 200 packages, against about 1.0x
    bound): an overlay's dentries belong to its mount, so each run's overlay
    starts cold and every import pays a lookup in both layers, where the
    bound directory's dentries stay warm between runs, as the view's do.
    Otherwise each entry's ``site-packages`` is a layer of an overlay, the
    view beneath.
    """
    site = site_packages_of(env)
    layers = site_layers(site)
    if not layers:
        raise CpkError(f"{env}: no store entries to overlay into its site-packages")
    merged = (
        merged_site(store, home, site, hold=True)
        if store is not None and home is not None
        else None
    )
    if merged is None and store is not None:
        _log.warning(
            "the store is on another file system than %s: --union overlays one layer "
            "per entry (%d), and imports are slower",
            home,
            len(layers),
        )
    unshare_user_mount()
    try:
        if merged is not None:
            bind_read_only(str(merged / _SITE), str(site))
            return 1
        mount_overlay(str(site), [*layers, str(site)], api)
    except OSError as exc:
        raise CpkError(f"cannot mount the union on {site}: {exc.strerror}") from None
    return len(layers)
