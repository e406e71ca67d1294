"""From specs to a command running in a union: the one path ``cpk enter`` takes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from contentpkg.env.execution import exec_command
from contentpkg.env.union.compose import Farm, compose
from contentpkg.env.union.entries import (
    Matcher,
    add_unmodified_deb,
    deb_of,
    union_entry,
    with_dependencies,
)
from contentpkg.env.union.namespace import (
    MountApi,
    UnionUnavailableError,
    bind_read_only,
    mount_overlay,
    unshare_user_mount,
)
from contentpkg.errors import CpkError

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry
    from contentpkg.store.layers import Store


@dataclass
class Union:
    """What a union will hold, its farm, and what the user should be told."""

    entries: list[Entry]
    farm: Farm
    notes: list[str] = field(default_factory=list)
    #: Entry dirname -> its image, verified against the metadata.
    images: dict[str, Path] = field(default_factory=dict)


def prepare(
    ctx: Context,
    store: Store,
    specs: Sequence[str],
    debs: Sequence[str] = (),
    *,
    profiles: Sequence[str] = (),
    images: bool = False,
) -> Union:
    """Find (or make) the unmodified entries and compose their farm.

    ``debs`` are Debian package names fetched through the archive source
    when the store lacks them, with their dependencies as the archive
    resolves them (packages every Debian system has are left to the host).
    """
    if not specs and not debs and not profiles:
        raise CpkError("nothing to enter: name entries, .deb files, --deb or --profile")
    specs = [*specs, *_profile_specs(ctx, store, profiles)]
    entries: list[Entry] = []
    notes: list[str] = []
    matcher = Matcher(store)
    for text in specs:
        entry, more = union_entry(ctx, store, text, image=images, matcher=matcher)
        entries.append(entry)
        notes += more
    if debs:
        from contentpkg.elf.archive.fetch import fetch_debs, resolve_names
        from contentpkg.store.remote.substitute import for_union

        # Configured remotes come before the archive's downloads, as for install.
        pulled = for_union(ctx, store, lambda: resolve_names(ctx, list(debs)).packages)
        fetched = fetch_debs(ctx, store, list(debs))
        notes += fetched.notes
        for p in fetched.resolution.packages:
            if p.sha256 in pulled:
                entries.append(pulled[p.sha256])
                continue
            patched = store.find_source(p.sha256)
            path = deb_of(ctx, patched) if patched is not None else None
            if path is None:
                raise CpkError(f"{p.name}: its .deb is no longer on disk to store unmodified")
            entry, more = add_unmodified_deb(store, path, image_in=ctx if images else None)
            entries.append(entry)
            notes += more
    entries, more = with_dependencies(ctx, store, entries, image=images, matcher=matcher)
    notes += more
    seen: set[str] = set()
    unique = [e for e in entries if not (e.dirname in seen or seen.add(e.dirname))]
    verified = _verified_images(ctx, unique, notes) if images else {}
    farm = compose(ctx, unique, verified, store, hold=True)
    return Union(unique, farm, notes + farm.notes, verified)


def _profile_specs(ctx: Context, store: Store, names: Sequence[str]) -> list[str]:
    """The entries each profile's current generation was asked to hold."""
    if not names:
        return []  # and the env-dir modules below stay unimported
    from contentpkg.elf.envdir import installed_requests
    from contentpkg.env.profiles import check_profile_name, profiles_dir

    out: list[str] = []
    for name in names:
        where = profiles_dir(ctx.home) / check_profile_name(name)
        if not where.exists():
            raise CpkError(f"profile {name!r} does not exist (cpk profile list)")
        out += [e.dirname for e in installed_requests(store, where)]
    return out


def _verified_images(ctx: Context, entries: Sequence[Entry], notes: list[str]) -> dict[str, Path]:
    """Each entry's image, verified now, before anything is mounted.

    A tampered image is refused whether or not it could be mounted; an
    image that cannot be mounted here (no usable ``/dev/fuse``) leaves its
    entry's tree in use, and a note says why.
    """
    from contentpkg.env.union.images import fuse_unusable, image_of, verify_image

    found = {e.dirname: verify_image(ctx, e) for e in entries if image_of(e) is not None}
    why = fuse_unusable()
    if found and why:
        notes.append(f"images verified but not mounted ({why}); the store's trees are used")
        return {}
    return found


def overlay_plan(farm: Farm, area: str) -> list[tuple[str, str]]:
    """(mount point, farm directory) for each overlay an area needs.

    ``/usr`` is overlaid directory by directory, only where the farm adds
    something (``/usr/bin``, ``/usr/lib``, ``/usr/share`` ...): the host's
    other directories (``/usr/local``, ``/usr/include``, often ``/usr/sbin``)
    then stay plain, and a lookup there, such as every command search
    through ``/usr/local/bin``, costs what it costs outside (under one
    overlay of all ``/usr`` it cost about 1.4x: ``bench/union.py``). Each
    mount point must be a real directory of the host (a mount on a symlink
    would land on its target, and an unprivileged process cannot create
    one); where one is not, all of ``/usr`` is overlaid as one. ``/etc``
    and ``/opt`` are overlaid whole.
    """
    lower = farm.lower(area)
    whole = [("/" + area, str(lower))]
    if area != "usr":
        return whole
    try:
        tops = sorted(os.listdir(lower))
    except OSError:
        return whole
    plan: list[tuple[str, str]] = []
    for top in tops:
        target = f"/usr/{top}"
        mine = lower / top
        if mine.is_symlink() or not mine.is_dir():
            return whole  # it replaces the host's directory: only a /usr overlay shows that
        if os.path.islink(target) or not os.path.isdir(target):
            return whole
        plan.append((target, str(lower / top)))
    return plan or whole


def exec_in_union(
    union: Union, command: Sequence[str], environ: Mapping[str, str], *, api: MountApi = "auto"
) -> NoReturn:
    """Enter a new namespace, mount the union, and replace this process by command."""
    cwd = os.getcwd()
    for area in union.farm.areas:
        if not os.path.isdir("/" + area):
            raise UnionUnavailableError(f"/{area} does not exist on this machine to overlay")
    plan = [m for area in union.farm.areas for m in overlay_plan(union.farm, area)]
    unshare_user_mount()
    try:
        for target, lower in plan:
            mount_overlay(target, [lower, target], api)
        for real, where in union.farm.stores.items():
            bind_read_only(real, where)
        if union.images:
            from contentpkg.env.union.compose import IMAGE_MOUNT
            from contentpkg.env.union.images import mount_image

            for dirname, image in union.images.items():
                mount_image(image, IMAGE_MOUNT.format(dirname))
    except OSError as exc:
        raise UnionUnavailableError(f"cannot mount the union: {exc.strerror}") from None
    try:
        os.chdir(cwd)  # the same path, now seen through the overlays
    except OSError:
        os.chdir("/")
    if union.farm.held is not None:
        # The command holds the farm for gc as long as it (or a child that
        # kept the descriptor) runs: no process stays behind to wait.
        os.set_inheritable(union.farm.held, True)
    exec_command(command, environ, where="the union")
