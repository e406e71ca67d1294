"""Entries as squashfs images whose sha256 is in the entry's metadata.

An image is made from the entry's staged tree while the entry is added (so
its hash goes into the metadata with everything else, and is covered by
whatever signs the metadata) and kept beside the store under its own
sha256, read-only. ``mksquashfs`` runs with every varying input pinned
(owner, times, no extended attributes, one thread), so the same tree
always gives the same bytes and the hash can be checked by anyone who
rebuilds it.

Before a union mounts an image, the image is hashed again and compared with
the metadata; a mismatch is refused before anything is mounted. The
trade-off: hashing costs one read of the image per union (about a second
per GB); trusting a file once verified would save it, but a file its owner
can write is only as immutable as its owner's care, and this kernel has no
fs-verity to make the check cheap and lasting. So every mount verifies.

Run by the machine's real root, an image is mounted by the kernel's own
squashfs through a loop device (``mount -o loop``, which sets the device to
free itself when the last mount of it goes, so the namespace's end releases
it); if the kernel refuses (no loop devices in a container), squashfuse is
used and a warning says so. Inside an unprivileged namespace, images are
mounted with ``squashfuse`` (the kernel's squashfs needs real root), which
needs ``/dev/fuse`` to be accessible; each ``squashfuse`` is a child of the
command, killed by the kernel when the command ends (``PR_SET_PDEATHSIG``),
so it never keeps the namespace alive.

Images are derived from entries: ``cpk store gc`` removes, through
:class:`ImageGarbage`, the image of every entry it removes, unless an entry
it keeps has the same image (the same tree gives the same bytes), and every
image no entry names (left by an add that failed after making it).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError, HashMismatchError
from contentpkg.fs import make_tmp_dir, remove_tree, tmp_owner_alive
from contentpkg.store.hashing import hash_file

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.store.entry import Entry
    from contentpkg.store.layers import Store

_log = logging.getLogger(__name__)

FORMAT = "squashfs"
#: Every input mksquashfs would otherwise take from the moment or the machine.
_REPRODUCIBLE = ["-noappend", "-quiet", "-no-progress", "-all-root", "-mkfs-time", "0",
                 "-all-time", "0", "-no-xattrs", "-processors", "1"]  # fmt: skip
_PR_SET_PDEATHSIG = 1


#: The images' directory under the home, beside ``store/``.
IMAGES = "images"


def images_dir(ctx: Context) -> Path:
    return ctx.home / IMAGES


def _image_under(home: Path, sha256: str) -> Path:
    return home / IMAGES / f"{sha256}.{FORMAT}"


def image_path(ctx: Context, sha256: str) -> Path:
    """Where the image with this sha256 is kept (named by its hash)."""
    return _image_under(ctx.home, sha256)


def make_image(ctx: Context, tree: Path) -> dict[str, Any]:
    """Build tree's image, keep it under its hash; return its metadata record."""
    tool = shutil.which("mksquashfs")
    if tool is None:
        raise CpkError("images need mksquashfs (Debian: squashfs-tools), which is not installed")
    where = images_dir(ctx)
    where.mkdir(parents=True, exist_ok=True)
    tmp = make_tmp_dir(where, "image")
    try:
        out = tmp / f"image.{FORMAT}"
        run = subprocess.run([tool, str(tree), str(out), *_REPRODUCIBLE],
                             capture_output=True, text=True, check=False)  # fmt: skip
        if run.returncode != 0:
            raise CpkError(f"mksquashfs {tree}: {run.stderr.strip() or run.stdout.strip()}")
        sha256, size = hash_file(out)
        os.chmod(out, 0o444)
        os.replace(out, image_path(ctx, sha256))
    finally:
        remove_tree(tmp)
    return {"format": FORMAT, "sha256": sha256, "size": size}


def image_of(entry: Entry) -> dict[str, Any] | None:
    """The image record of an entry's metadata, if it has one."""
    image = entry.metadata.get("image")
    return image if isinstance(image, dict) and image.get("sha256") else None


def _image_hash(entry: Entry) -> str | None:
    try:
        record = image_of(entry)
    except Exception:  # unreadable metadata: verify reports it, gc goes on
        return None
    return str(record["sha256"]) if record is not None else None


class ImageGarbage:
    """The images gc removes (registered with gc).

    Those of the entries gc removes, and every image no entry names at all:
    an add that failed (refused, interrupted, out of room) after building
    its image leaves a file nobody will ever mount or remove otherwise.
    An image is kept while any entry of any layer names it, or an entry
    still being staged does (a batch publishes its entries only at its
    end). gc asks under its exclusive collector lock, and images are made
    only inside an add, which holds that lock shared, so no image is being
    made while this runs: a staging directory left in ``images/`` belongs
    to a process that died, and goes too.
    """

    def doomed(self, store: Store, dead: Sequence[Entry]) -> list[Path]:
        where = store.home / IMAGES
        try:
            names = sorted(os.listdir(where))
        except (FileNotFoundError, NotADirectoryError):
            return []
        if not names:
            return []
        dead_names = {e.dirname for e in dead}
        named: set[str] = set(_staged_images(store))
        for layer in store.layers:
            for entry in layer.entries():
                if entry.dirname not in dead_names or layer is not store.user:
                    named.add(_image_hash(entry) or "")
        out: list[Path] = []
        for name in names:
            if name.endswith(f".{FORMAT}"):
                if name.removesuffix(f".{FORMAT}") not in named:
                    out.append(where / name)
            elif name.startswith(".tmp-") and not tmp_owner_alive(name):
                out.append(where / name)
        return out


def _staged_images(store: Store) -> list[str]:
    """Images named by entries staged but not yet published."""
    from contentpkg.store.entry import ENTRY_JSON
    from contentpkg.store.hashing import META_DIR
    from contentpkg.store.staging import STAGING

    found: list[str] = []
    for meta in (store.user.root / STAGING).glob(f"*/{META_DIR}/{ENTRY_JSON}"):
        try:
            image = json.loads(meta.read_bytes()).get("image")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(image, dict) and image.get("sha256"):
            found.append(str(image["sha256"]))
    return found


def verify_image(ctx: Context, entry: Entry) -> Path:
    """The entry's image, hashed and found equal to its metadata; else refused."""
    record = image_of(entry)
    if record is None:
        raise CpkError(f"{entry.dirname}: has no image")
    path = image_path(ctx, record["sha256"])
    try:
        actual = hash_file(path)[0]
    except OSError as exc:
        raise CpkError(f"{path}: image of {entry.dirname} unreadable ({exc.strerror})") from None
    if actual != record["sha256"]:
        raise HashMismatchError(
            subject=str(path),
            expected=record["sha256"],
            actual=actual,
            expected_from=f"the metadata of {entry.dirname}",
            hint="refusing to mount it",
        )
    return path


def fuse_unusable() -> str | None:
    """Why images cannot be mounted here, or None when they can.

    Real root mounts them with the kernel (falling back to squashfuse).
    """
    from contentpkg.env.union.namespace import privileged

    if privileged() and shutil.which("mount") is not None:
        return None
    if shutil.which("squashfuse") is None:
        return "squashfuse is not installed"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not accessible to this user"
    return None


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def mount_image(image: Path, target: str) -> str:
    """Mount image on target (inside the namespace); return how: kernel or squashfuse."""
    from contentpkg.env.union.namespace import privileged

    if privileged():
        run = subprocess.run(
            ["mount", "-t", FORMAT, "-o", "loop,ro,nodev,nosuid", str(image), target],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode == 0:
            return "kernel"
        if shutil.which("squashfuse") is None:
            raise CpkError(f"mount {image}: {run.stderr.strip()}")
        _log.warning("the kernel cannot mount %s (%s); squashfuse mounts it",
                     image.name, run.stderr.strip())  # fmt: skip
    _squashfuse(image, target)
    return "squashfuse"


def _squashfuse(image: Path, target: str) -> None:
    """Mount image on target with squashfuse, in the foreground of a child.

    Foreground, so the process stays our child: the kernel kills it when
    this process (soon the command it execs) ends. Mounted when target
    becomes a mount point; a squashfuse that exits first has failed.
    """
    proc = subprocess.Popen(
        ["squashfuse", "-f", str(image), target],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent, close_fds=True,
    )  # fmt: skip
    while not os.path.ismount(target):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise CpkError(f"squashfuse {image}: {err or f'exit status {proc.returncode}'}")
        time.sleep(0.001)
    if proc.stderr is not None:
        proc.stderr.close()
