"""``cpk run --union``: a Python environment's packages overlaid into one site-packages.

A view's site-packages holds one symlink per top-level name of each entry;
here the entries' own ``site-packages`` directories are instead stacked by
overlayfs onto the view's, inside a private namespace, so the interpreter
sees one real directory made of the store's files (seed 003's union per
process, literally). The view stays beneath, for what it writes itself
(``.dist-info`` records naming scripts, merged namespace directories).

The layers come from the view's own links, so the union holds exactly the
entries the lock put in the view, in its order; it needs no knowledge of
locks or wheels, and the Python side needs none of namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path

from contentpkg.env.union.namespace import MountApi, mount_overlay, unshare_user_mount
from contentpkg.errors import CpkError


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


def overlay_site_packages(env: Path, api: MountApi = "auto") -> int:
    """Enter a new namespace with env's site-packages made one overlay; return layers."""
    site = site_packages_of(env)
    layers = site_layers(site)
    if not layers:
        raise CpkError(f"{env}: no store entries to overlay into its site-packages")
    unshare_user_mount()
    try:
        mount_overlay(str(site), [*layers, str(site)], api)
    except OSError as exc:
        raise CpkError(f"cannot overlay {site}: {exc.strerror}") from None
    return len(layers)
