"""One merged lower layer for a union: a farm of hard links into the store.

Overlayfs looks a missing name up in every lower layer, so cold lookups
grow with the number of layers (2,000 missing names: 6 ms on a plain
directory, 72 ms through 10 layers, up to 2 s through 500), and each new
mount starts cold. A union is therefore never one layer per entry: the
entries' trees are merged here into one directory, and the overlay has two
layers whatever the number of entries: this farm, then the host's own
directory beneath. Per-entry layers were weighed for small unions and
measured (2,000 missing names under ``/usr/share``, against the host's):
one layer above the host 1.42x, two 1.68x, four 2.66x, eight 4.07x, while a
farm costs about 10 ms once for one entry and 0.3 ms on reuse. One entry's
own tree as the only layer would tie with its farm on lookups, save that
one build, but lose the store's fixed path and show the entry's metadata
directory in ``/usr``; two or more lose on every lookup. So the threshold
is one, and every union gets a farm.

The farm's files are hard links to the store's files (the farm lives in
the user's home, on the store's file system): a lookup under the union is a
plain directory lookup in the farm, with no symlink to follow into the
store, and the files are the store's own read-only inodes (same ``st_ino``,
no copy). The entries' own symlinks are copied as symlinks, so they resolve
in the merged tree as they would in a Debian system. Where a file cannot be
linked (the store on another file system, a read-only system store whose
files the kernel's ``protected_hardlinks`` keeps from being linked), the
farm falls back to a symlink to the store's fixed path inside the namespace
(:data:`STORE_MOUNT`), never to the user's home, so it stays valid for every
process tree; a note says so, once.

Farms are cached by the exact entry list, as views are: a union entered
again with the same entries reuses its farm (a ``stat``), and a farm is
published whole (staged, then one rename) or not at all. Each farm lists its
entries in ``.cpk/refs`` and is rooted as ``roots/union-<key>``, touched on
each use: ``cpk store gc`` keeps those entries while the farm is used, and
removes a farm (and its root) unused for :data:`FARM_MAX_AGE`. A root says
"used lately", not "in use now": a union running longer than that, or one
whose root was removed, is protected by its hold instead (``compose(...,
hold=True)``: a shared lock on the farm that the command inherits, which
gc will not take from it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError
from contentpkg.fs import make_tmp_dir, publish_dir, remove_tree
from contentpkg.store.hashing import META_DIR

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry
    from contentpkg.store.layers import Store

#: Where a farm lists its entries for gc (the store's refs-file convention).
REFS = ".cpk/refs"

#: Where the user store appears inside every union. Under ``/usr`` because
#: ``/usr`` is always overlaid, so the farm can hold the mount point (an
#: unprivileged process cannot create a directory in the host's ``/``).
STORE_MOUNT = "/usr/lib/contentpkg/store"
#: Read-only system stores appear as numbered siblings of the user store.
SYSTEM_STORE_MOUNT = "/usr/lib/contentpkg/system-store-{}"

#: Where an entry mounted from its image appears (instead of its store tree).
IMAGE_MOUNT = "/usr/lib/contentpkg/images/{}"

#: The host directories an entry's top-level directories are overlaid onto;
#: everything else in an entry goes under ``/usr`` (entries use a prefix
#: layout: ``bin/``, ``lib/``, ``share/``).
AREAS = ("usr", "etc", "opt")
#: Top-level directories a union does not place: state and runtime data
#: belong to the machine, not to a package.
_NOT_PLACED = frozenset({"var", "run", "srv", "home", "root", "tmp", "boot", "dev", "proc", "sys"})

_FORMAT = "union-farm-2"
_MANIFEST = "union.json"

#: The folder of the user's home holding farms (an environment area gc sweeps).
#: In the home, not the cache (``context.Bucket``): a farm's files are hard
#: links into the store, so it must sit on the store's file system, and the
#: cache may be elsewhere (``CPK_CACHE_DIR``); and gc, which owns the home,
#: must see a farm's refs to keep its entries.
UNIONS = "unions"
#: Roots of farms are named ``union-<key>``.
ROOT_PREFIX = "union-"
#: A farm unused this long is collected by gc with its root (30 days).
FARM_MAX_AGE = 30 * 24 * 3600.0


@dataclass
class Farm:
    """A composed lower layer: one directory per area, and what composing said."""

    path: Path
    areas: list[str]
    notes: list[str] = field(default_factory=list)
    #: Real store layer roots and where each appears inside the namespace.
    stores: dict[str, str] = field(default_factory=dict)
    #: Entries (dirnames) reached through their mounted image, not the store.
    images: list[str] = field(default_factory=list)
    reused: bool = False
    #: Files placed as symlinks because they could not be hard-linked.
    symlinked: int = 0
    #: The descriptor holding the farm in use (``store.locks.hold_in_use``),
    #: when composed to be entered: the command inherits it.
    held: int | None = None

    def lower(self, area: str) -> Path:
        """The farm directory overlaid onto ``/<area>``."""
        return self.path / area


def mount_points(ctx: Context, entries: Sequence[Entry]) -> dict[str, str]:
    """Each store layer root the entries live in, and its fixed path inside."""
    system = {os.path.realpath(p): i for i, p in enumerate(ctx.system_stores)}
    out: dict[str, str] = {}
    for e in entries:
        root = _layer_root(e)
        if root in out:
            continue
        out[root] = SYSTEM_STORE_MOUNT.format(system[root]) if root in system else STORE_MOUNT
    return out


def _base(e: Entry, stores: dict[str, str], images: Collection[str]) -> str:
    """Where an entry's tree is seen inside the namespace."""
    if e.dirname in images:
        return IMAGE_MOUNT.format(e.dirname)
    return stores[_layer_root(e)] + "/" + e.dirname


_resolved: dict[str, str] = {}


def _layer_root(e: Entry) -> str:
    """The real path of the store layer holding e (resolved once per layer)."""
    parent = str(e.path.parent)
    real = _resolved.get(parent)
    if real is None:
        real = _resolved[parent] = os.path.realpath(parent)
    return real


def farm_key(entries: Sequence[Entry], stores: dict[str, str], images: Collection[str]) -> str:
    """The cache key: the ordered entry list and where each entry appears."""
    h = hashlib.sha256(_FORMAT.encode())
    for e in entries:
        h.update(f"\0{_base(e, stores, images)}".encode())
    return h.hexdigest()[:32]


def compose(
    ctx: Context,
    entries: Sequence[Entry],
    images: Collection[str] = (),
    store: Store | None = None,
    *,
    hold: bool = False,
) -> Farm:
    """The farm for entries (first listed wins a path), built or reused.

    ``images`` names the entries (dirnames) that will be mounted from their
    images: their files are reached through the image's mount point instead.
    The farm is rooted in ``store`` (the user store of ``ctx`` if not given).
    With ``hold``, the farm is also held in use (:attr:`Farm.held`) before
    gc could run again: a root alone can be lost or lapse while a union
    runs for days, and gc would then take the farm and the entries it links
    from under the running command.
    """
    from contentpkg.store.layers import Store
    from contentpkg.store.locks import collector_lock, hold_in_use

    images = sorted(set(images))
    stores = mount_points(ctx, entries)
    store = store or Store.open(ctx=ctx)
    base = ctx.home / UNIONS
    key = farm_key(entries, stores, images)
    final = base / key
    manifest = final / _MANIFEST
    store.ensure()
    # Shared with other builders, exclusive for gc: a farm is never swept
    # between being found (or built) and being rooted.
    with collector_lock(store.user.root):
        farm = _cached(final, manifest)
        if farm is None:
            farm = _publish(base, final, manifest, entries, stores, images)
        keep_rooted(store, key, final)
        if hold:
            farm.held = hold_in_use(final)
    return farm


def keep_rooted(store: Store, key: str, final: Path) -> None:
    """Root a farm or merged site for gc, and mark its use.

    The root is written once (durably), so reusing one costs no fsync; the
    mtime says when it was last used, and gc ages unused ones out. Called
    under the collector lock, so gc never sweeps it between build and root.
    """
    try:
        rooted = os.readlink(store.roots_dir / (ROOT_PREFIX + key)) == os.path.abspath(final)
    except OSError:
        rooted = False
    if not rooted:
        from contentpkg.store.gc import add_root  # the first use only: gc is a heavy import

        add_root(store, ROOT_PREFIX + key, final)
    try:
        os.utime(final)
    except OSError:
        pass


def _cached(final: Path, manifest: Path) -> Farm | None:
    try:
        data = json.loads(manifest.read_bytes())
        return Farm(
            final, data["areas"], data["notes"], data["stores"], data["images"], reused=True,
            symlinked=data.get("symlinked", 0),
        )  # fmt: skip
    except (OSError, ValueError, KeyError):
        return None


def _publish(
    base: Path,
    final: Path,
    manifest: Path,
    entries: Sequence[Entry],
    stores: dict[str, str],
    images: list[str],
) -> Farm:
    from contentpkg.store.gc import write_refs
    from contentpkg.store.locks import IN_USE

    base.mkdir(parents=True, exist_ok=True)
    tmp = make_tmp_dir(base, final.name)
    try:
        farm = _build(tmp, entries, stores, images)
        if farm.symlinked:
            farm.notes.append(
                f"{farm.symlinked} files of the union could not be hard-linked from the store "
                "(another file system, or files this user may not link); they are symlinks, "
                "and lookups through them are slower"
            )
        (tmp / _MANIFEST).write_text(
            json.dumps(
                {
                    "areas": farm.areas,
                    "notes": farm.notes,
                    "stores": stores,
                    "images": images,
                    "entries": [e.dirname for e in entries],
                    "symlinked": farm.symlinked,
                },
                indent=1,
            )
        )
        # Not durable: a farm is derived from the store; a crash costs a rebuild.
        write_refs(tmp / REFS, list(entries))
        (tmp / IN_USE).touch()
        if not publish_dir(tmp, final, durable=False):
            remove_tree(tmp)  # an equal farm was published meanwhile
            return _cached(final, manifest) or farm
    except BaseException:
        remove_tree(tmp)
        raise
    farm.path = final
    return farm


def _build(root: Path, entries: Sequence[Entry], stores: dict[str, str], images: list[str]) -> Farm:
    farm = Farm(root, ["usr"], stores=dict(stores), images=images)
    owner: dict[str, str] = {}  # farm path -> the entry that placed it
    # The mount points of the stores, inside the /usr layer.
    for where in sorted(set(stores.values())):
        os.makedirs(root / where.lstrip("/"), exist_ok=True)
    for dirname in images:
        os.makedirs(root / IMAGE_MOUNT.format(dirname).lstrip("/"), exist_ok=True)
    skipped: dict[str, set[str]] = {}
    for e in entries:
        base = _base(e, stores, images)
        for top in sorted(os.listdir(e.path)):
            if top == META_DIR:
                continue
            if top in _NOT_PLACED:
                skipped.setdefault(top, set()).add(e.name)
                continue
            area = top if top in AREAS and top != "usr" else "usr"
            rel = "" if top in AREAS else top
            if area not in farm.areas:
                farm.areas.append(area)
            _place(
                e,
                e.path / top,
                f"{base}/{top}",
                root / area / rel if rel else root / area,
                f"/{area}/{rel}".rstrip("/"),
                owner,
                farm,
            )
    for top, names in sorted(skipped.items()):
        farm.notes.append(
            f"/{top} is not overlaid; files there from {', '.join(sorted(names))} are left out"
        )
    _alternatives(root, entries, owner, farm.notes)
    if ldconfig(root, entries, farm.notes) and "etc" not in farm.areas:
        farm.areas.append("etc")
    return farm


def _place(
    entry: Entry,
    src: Path,
    target: str,
    dest: Path,
    shown: str,
    owner: dict[str, str],
    farm: Farm,
) -> None:
    """Mirror src at dest: directories made, files hard-linked, symlinks copied."""
    notes = farm.notes
    is_link = src.is_symlink()
    if is_link or not src.is_dir():
        if os.path.lexists(dest):
            notes.append(
                f"{shown}: {owner.get(shown, '?')} and {entry.name} both ship it; "
                f"{owner.get(shown, '?')}'s is used"
            )
            return
        if is_link:
            # The package's own link, as dpkg would unpack it: a relative
            # target resolves in the merged tree, an absolute one in the union.
            os.symlink(os.readlink(src), dest)
        elif target.startswith(IMAGE_MOUNT.format("")):
            os.symlink(target, dest)  # the image's file, not the store's
        else:
            try:
                os.link(src, dest)
            except OSError:
                os.symlink(target, dest)
                farm.symlinked += 1
        owner[shown] = entry.name
        return
    if os.path.lexists(dest) and not (dest.is_dir() and not dest.is_symlink()):
        notes.append(
            f"{shown}: a directory in {entry.name}, a file in {owner.get(shown, '?')}; "
            f"{owner.get(shown, '?')}'s is used"
        )
        return
    os.makedirs(dest, exist_ok=True)
    owner.setdefault(shown, entry.name)
    with os.scandir(src) as it:
        names = sorted(d.name for d in it)
    for name in names:
        _place(entry, src / name, f"{target}/{name}", dest / name, f"{shown}/{name}", owner, farm)


def _alternatives(
    root: Path, entries: Sequence[Entry], owner: dict[str, str], notes: list[str]
) -> None:
    """The ``update-alternatives`` links the entries' scripts would make.

    The highest priority wins, as in ``auto`` mode; a link a package ships
    itself, or that the host already has, is left as it is (the host's
    choice beneath stays visible).
    """
    best: dict[str, dict[str, Any]] = {}
    for e in entries:
        try:
            alts = e.metadata.get("alternatives") or []
        except CpkError:  # unreadable metadata: verify names it; no alternatives here
            continue
        for a in alts:
            cur = best.get(a["name"])
            if cur is None or int(a["priority"]) > int(cur["priority"]):
                best[a["name"]] = dict(a, entry=e.name)
    for name, a in sorted(best.items()):
        link = a["link"]
        area = link.lstrip("/").split("/", 1)[0]
        if area not in AREAS or link in owner or os.path.lexists(link):
            continue
        dest = root / link.lstrip("/")
        os.makedirs(dest.parent, exist_ok=True)
        os.symlink(a["path"], dest)
        owner[link] = a["entry"]
        notes.append(f"alternative {name}: {link} -> {a['path']} (from {a['entry']})")


def ldconfig(root: Path, entries: Sequence[Entry], notes: list[str]) -> bool:
    """A loader cache with the directories the entries' ``ld.so.conf.d`` add.

    What a package's trigger would do with ``ldconfig``: libraries in the
    default directories need nothing (the loader searches them after its
    cache), but a package that puts its libraries elsewhere lists the
    directory in ``/etc/ld.so.conf.d/``. The cache is built by ``ldconfig``
    itself (``-C`` to a file of the farm, ``-X`` to touch no links), from the
    host's configuration plus those directories at their real store paths,
    which the namespace shows too. True when the farm got a cache.
    """
    extra: list[str] = []
    named: list[str] = []
    for e in entries:
        conf_dir = e.path / "etc" / "ld.so.conf.d"
        if not conf_dir.is_dir():
            continue
        for conf in sorted(conf_dir.glob("*.conf")):
            for line in conf.read_text(errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if not line.startswith("/usr/") or line.startswith("include"):
                    continue
                real = e.path / line.removeprefix("/usr/")
                if real.is_dir() and str(real) not in extra:
                    extra.append(str(real))
                    named.append(e.name)
    if not extra:
        return False
    import shutil
    import subprocess

    tool = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if tool is None:
        notes.append(f"ldconfig not found: library directories of {', '.join(named)} "
                     "are not in the loader's cache")  # fmt: skip
        return False
    (root / "etc").mkdir(exist_ok=True)
    conf = root / "ld.so.conf"
    conf.write_text("include /etc/ld.so.conf\n" + "".join(f"{d}\n" for d in extra))
    run = subprocess.run([tool, "-X", "-C", str(root / "etc" / "ld.so.cache"), "-f", str(conf)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    if run.returncode != 0 or not (root / "etc" / "ld.so.cache").exists():
        notes.append(f"ldconfig failed ({run.stderr.strip()[:200]}); library directories of "
                     f"{', '.join(named)} are not in the loader's cache")  # fmt: skip
        return False
    notes.append(f"ldconfig: library directories of {', '.join(sorted(set(named)))} "
                 f"added to the union's loader cache ({len(extra)})")  # fmt: skip
    return True
