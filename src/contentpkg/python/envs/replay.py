"""A view's plan: how it was made, so that it can be made again by links alone.

Every file of a view is a hard link to an inode of the link pool
(:mod:`.links`): the symlinks into entries, the import finder, and the
files the builder writes (``pyvenv.cfg``, scripts, rewritten ``RECORD`` files,
``.cpk/refs``, ``view.json``), which it puts in the pool by the hash of
their bytes. So once a view is built, what it is can be written down as a
list of operations: make this directory, link this pool name here, and
(only where the pool could not serve) make this symlink. The builder
records that list when it publishes a view, in the pool beside the inodes
it names (``links/v-<view key>``).

When the view is gone (``views/`` deleted, a collected view needed again)
and its entries are where the plan says, the view is made again from the
plan: one ``mkdir`` per directory and one ``link(2)`` per name, no entry's
metadata read, no directory listed, no file written, and none of the
builder's modules imported. That is what lets ``cpk run`` remake a deleted
view from its memo (:mod:`.rebuild`) for little more than the interpreter's
own start. A plan makes exactly the view that was there: the view key
names the interpreter, the entries and :data:`VIEW_FORMAT`, and the pool's
names are hashes of the targets and bytes they hold. Anything missing (a
pool name gc removed, the pool itself) stops the replay, removes what it
staged, and the caller builds the view as the first time.

Standard library only, and only ``os``, ``marshal`` and ``fcntl``: the run
memo imports this on ``cpk run``'s path.
"""

from __future__ import annotations

import errno
import marshal
import os

# The view's layout, part of every view's key. Here rather than in
# views.py so that the replay can check a plan against it without
# importing the builder.
# 2: merged ``__pycache__`` per source owner; RECORD rewritten for ``.data``.
# 3: the import finder (_cpk_finder), links from the shared pool.
# 4: every file a hard link to the pool's (scripts 0555, the rest 0444).
VIEW_FORMAT = 4
#: The link pool's and the views' directories under the home (:mod:`.links`
#: and :mod:`.views` use these names; they are here so that a replay
#: imports neither).
LINKS = "links"
VIEWS = "views"
#: The plan file's own format.
PLAN_FORMAT = 1
#: How a plan's name begins in the pool: ``v-<view key>``.
PLAN_PREFIX = "v-"
#: The collector lock, as ``store/locks.py:collector_lock`` names it (a test
#: holds them equal): a view is made under it, held shared, as gc holds it
#: exclusively.
COLLECTOR_LOCK = ".locks/gc.lock"

# The three operations of a plan: (kind, path relative to the view, argument).
DIR = "d"  # make the directory (argument unused)
LINK = "l"  # hard link the pool's name (argument) here
SYMLINK = "s"  # a symlink to the argument, where the pool could not serve


def plan_path(pool_root: str, key: str) -> str:
    """Where the plan of the view named ``key`` is kept."""
    return f"{pool_root}/{PLAN_PREFIX}{key}"


def record(root: str, linked: dict[str, str]) -> list[tuple[str, str, str]] | None:
    """The operations that make the directory ``root`` again, or None when
    something in it did not come from the pool (a file written in place).

    ``linked`` is the pool's account of what it linked where
    (:attr:`.links.LinkPool.linked`, keyed by the path as built). Parents
    come before their children, names in sorted order.
    """
    ops: list[tuple[str, str, str]] = []
    pending = [("", root)]
    while pending:
        rel_dir, directory = pending.pop()
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda e: e.name)
        subdirs = []
        for child in children:
            rel = f"{rel_dir}{child.name}"
            if child.is_dir(follow_symlinks=False):
                ops.append((DIR, rel, ""))
                subdirs.append((f"{rel}/", child.path))
                continue
            name = linked.get(child.path)
            if name is not None:
                ops.append((LINK, rel, name))
            elif child.is_symlink():
                ops.append((SYMLINK, rel, os.readlink(child.path)))
            else:
                return None
        pending.extend(reversed(subdirs))
    return ops


def save(
    pool_root: str,
    key: str,
    entries: list[str],
    ops: list[tuple[str, str, str]],
    conflicts: list[dict[str, str]],
    warnings: list[str],
) -> bool:
    """Keep the plan of the view ``key`` of ``entries`` (their paths, in
    order). A cache: renamed into place whole, never fsynced."""
    from contentpkg.fs import write_cache

    plan = {
        "format": PLAN_FORMAT,
        "view_format": VIEW_FORMAT,
        "builder": builder_stamp(),
        "entries": entries,
        "ops": ops,
        # As view.json records them, and the lines they are said in, so a
        # replay says them again without the builder's modules.
        "conflicts": conflicts,
        "warnings": warnings,
    }
    return write_cache(plan_path(pool_root, key), marshal.dumps(plan))


def load(pool_root: str, key: str, entries: list[str]) -> dict | None:
    """The plan of view ``key`` if there is one for exactly these entry paths."""
    try:
        with open(plan_path(pool_root, key), "rb") as f:
            plan = marshal.load(f)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if (
        not isinstance(plan, dict)
        or plan.get("format") != PLAN_FORMAT
        or plan.get("view_format") != VIEW_FORMAT
        or plan.get("entries") != entries
        or plan.get("builder") != builder_stamp()
        or not isinstance(plan.get("ops"), list)
        or not isinstance(plan.get("conflicts"), list)
        or not isinstance(plan.get("warnings"), list)
    ):
        return None
    return plan


def builder_stamp() -> list[tuple[str, int, int]]:
    """The builder's own modules, by name, size and modification time.

    Some of a view's bytes come from cpk's code, not from entries (the
    import finder, scripts' launchers, ``pyvenv.cfg``), and a change there
    need not change :data:`VIEW_FORMAT`. A plan made by other code is not
    replayed: the builder makes the view again, as it would have before
    plans existed. A stat per module, not a hash: this runs on ``cpk run``'s
    path.
    """
    here = os.path.dirname(__file__)
    stamp = []
    with os.scandir(here) as it:
        for item in it:
            if item.name.endswith(".py"):
                st = item.stat()
                stamp.append((item.name, st.st_size, st.st_mtime_ns))
    stamp.sort()
    return stamp


def make(plan: dict, pool_root: str, final: str) -> bool | None:
    """Make the view ``final`` from ``plan``: staged beside it, then renamed
    into place (whole or absent). True when this call made it, False when
    another process published it first, None when the plan cannot serve
    (a pool name missing): nothing is left behind, and the caller builds.
    Not durable, as the builder's views are not: a view is derived data."""
    parent, _, name = final.rpartition("/")
    # fs.make_tmp_dir's name, so that gc recognises one whose process is gone.
    staging = f"{parent}/.tmp-{name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        os.makedirs(staging)
    except OSError:
        return None
    mkdir, link, symlink = os.mkdir, os.link, os.symlink
    try:
        for kind, rel, arg in plan["ops"]:
            if kind == LINK:
                link(f"{pool_root}/{arg}", f"{staging}/{rel}", follow_symlinks=False)
            elif kind == DIR:
                mkdir(f"{staging}/{rel}")
            else:
                symlink(arg, f"{staging}/{rel}")
    except (OSError, KeyError, ValueError, TypeError):
        _discard(staging)
        return None
    except BaseException:  # ^C: leave nothing half-made behind
        _discard(staging)
        raise
    try:
        os.rename(staging, final)
    except OSError as exc:
        _discard(staging)
        # Lost to another builder of the same view: an equal view is there.
        return False if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) else None
    return True


def _discard(path: str) -> None:
    """Remove a staged copy (the failure path only, so fs's remover is
    loaded only then)."""
    from contentpkg.fs import discard

    discard(path)


def collector_lock(store_root: str) -> int | None:
    """The collector lock held shared (``store/locks.py:collector_lock``,
    without pathlib and contextlib); the descriptor to close, or None if it
    cannot be taken here, and the caller takes the builder's way."""
    import fcntl

    try:
        fd = os.open(f"{store_root}/{COLLECTOR_LOCK}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)  # fmt: skip
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return None
    return fd
