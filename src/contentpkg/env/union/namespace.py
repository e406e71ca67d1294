"""A private user + mount namespace for this process, and overlay mounts in it.

Python 3.11 has no ``os.unshare`` and no binding of the new mount API, so
``unshare(2)``, ``mount(2)`` and ``fsopen``/``fsconfig``/``fsmount``/
``move_mount`` are called through ``ctypes``. The ``unshare`` program from
util-linux could create the namespace, but then the mounts would have to be
made by yet another program inside it (a shell script of ``mount`` calls, a
second exec); doing it in this process costs one system call per mount and
leaves one process: the command itself, exec'd in place of cpk.

Nothing stays mounted after exit: the mounts belong to a mount namespace
that only this process tree holds, and the kernel tears it down with the
last process, however it ends (exit, SIGKILL). Propagation is made private
first, so no mount is ever seen by the rest of the machine.

The real uid and gid are mapped to themselves, not to 0: the process that
creates a user namespace holds every capability in it until it execs, which
is long enough to mount; the command then runs as its user, with no
capabilities, and sees its own files as its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Sequence
from typing import Literal

from contentpkg.errors import CpkError

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

# The new mount API's system call numbers are the same on every
# architecture (they were allocated after the tables were unified).
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_RDONLY = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100

#: How overlay mounts are made: ``auto`` tries ``lowerdir+`` (kernel >= 6.8)
#: and falls back to ``mount(2)``; the others force one form.
MountApi = Literal["auto", "fsconfig", "mount"]


#: Overlay options that spare work a read-only union never needs: no inode
#: number remapping (``xino``: every layer here is a store or host file
#: system whose own numbers are kept), no metacopy, index or uuid lookups
#: (they serve copy-up, which a union without an upper layer never does).
#: ``redirect_dir=off`` would fit too, but the kernel refuses it in a user
#: namespace (EPERM), so it is left at its default. A kernel that does not
#: know an option (EINVAL) mounts without it: they change speed, not what
#: the union shows.
LOOKUP_OPTIONS = (("xino", "off"), ("metacopy", "off"), ("index", "off"), ("uuid", "off"))


class UnionUnavailableError(CpkError):
    """This machine (kernel, policy, process state) cannot give a union."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fail(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def privileged() -> bool:
    """Whether this process is the machine's real root (root of the first user namespace).

    Real root needs no user namespace for its mounts, and only it may mount
    a kernel file system from a block device (squashfs, EROFS).
    """
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def unshare_user_mount() -> None:
    """Move this process into new user and mount namespaces, uid/gid kept.

    Real root gets a new mount namespace only: it may mount already, and a
    user namespace would take away the right to mount kernel images.

    Raises :class:`UnionUnavailableError` with the reason when the kernel
    or its policy refuses (``kernel.unprivileged_userns_clone=0``,
    ``user.max_user_namespaces=0``, AppArmor's restriction).
    """
    if threading.active_count() > 1:
        # unshare(CLONE_NEWUSER) refuses a multi-threaded process (EINVAL);
        # say which rule was broken instead of the kernel's bare errno.
        raise UnionUnavailableError("cannot enter a union from a process running threads")
    if privileged():
        if _libc.unshare(CLONE_NEWNS) != 0:
            code = ctypes.get_errno()
            raise UnionUnavailableError(f"cannot make a mount namespace: {os.strerror(code)}")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        return
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        code = ctypes.get_errno()
        raise UnionUnavailableError(
            f"user namespaces are disabled on this machine (unshare: {os.strerror(code)}); "
            "a union needs them (kernel.unprivileged_userns_clone, user.max_user_namespaces)"
        )
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as exc:
        raise UnionUnavailableError(
            f"cannot map this user into a namespace: {exc.strerror}"
        ) from None
    # Private before anything else: no later mount may reach the host.
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """``mount(2)``; an OSError naming the target on failure."""
    rc = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        raise _fail(f"mount {target}")


def bind_read_only(source: str, target: str) -> None:
    """Bind source at target, then make that bind read-only.

    A remount inside a user namespace must keep the flags the original
    mount is locked with (nosuid, nodev, noexec), so they are read first.
    """
    mount(source, target, None, MS_BIND | MS_REC)
    st = os.statvfs(source)
    keep = 0
    for st_flag, ms_flag in (
        (os.ST_NOSUID, MS_NOSUID),
        (os.ST_NODEV, MS_NODEV),
        (os.ST_NOEXEC, MS_NOEXEC),
        # The atime mode is locked too: left out, the kernel would ask for
        # relatime and refuse the change on a noatime file system.
        (os.ST_NOATIME, MS_NOATIME),
        (os.ST_NODIRATIME, MS_NODIRATIME),
        (os.ST_RELATIME, MS_RELATIME),
    ):
        if st.f_flag & st_flag:
            keep |= ms_flag
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)


def _escape(path: str) -> str:
    # overlayfs splits lowerdir on ':' and the option string on ','.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers: Sequence[str], options: Sequence[tuple[str, str]] = ()) -> str:
    """The ``mount(2)`` data string for a read-only overlay of lowers (top first)."""
    return ",".join(["lowerdir=" + ":".join(_escape(p) for p in lowers),
                     *(f"{k}={v}" for k, v in options)])  # fmt: skip


def mount_overlay(target: str, lowers: Sequence[str], api: MountApi = "auto") -> str:
    """Mount a read-only overlay of lowers (top first) on target; return the API used.

    ``lowerdir+`` passes each layer in its own ``fsconfig`` call, so neither
    the page-sized option string nor escaping limits it (the kernel's 500
    layers do). Kernels before 6.8 refuse the key (EINVAL); then, or when
    forced, the whole list goes through ``mount(2)``'s one page, checked
    here, since past it the kernel answers with a misleading ENOENT.
    """
    if len(lowers) < 2:
        raise ValueError("a read-only overlay needs two lower layers")
    if api in ("auto", "fsconfig"):
        try:
            _fsconfig_overlay(target, lowers)
            return "fsconfig"
        except OSError as exc:
            if api == "fsconfig" or exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    page = os.sysconf("SC_PAGESIZE")
    if len(overlay_options(lowers)) >= page:
        raise UnionUnavailableError(
            f"{len(lowers)} layers do not fit mount(2)'s {page}-byte options and this "
            "kernel lacks lowerdir+ (6.8); compose fewer layers"
        )
    data = overlay_options(lowers, LOOKUP_OPTIONS)
    if len(data) >= page:  # the layers fit, not the options too: layers first
        data = overlay_options(lowers)
    try:
        mount("overlay", target, "overlay", MS_RDONLY, data)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # An older kernel that knows not every option: the layers alone.
        mount("overlay", target, "overlay", MS_RDONLY, overlay_options(lowers))
    return "mount"


def _fsconfig_overlay(target: str, lowers: Sequence[str]) -> None:
    sc = _libc.syscall
    fs = sc(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    if fs < 0:
        raise _fail("fsopen overlay")
    mnt = -1
    try:
        for key, value in LOOKUP_OPTIONS:
            # Refused (an older kernel): mounted without it, see LOOKUP_OPTIONS.
            sc(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
        for layer in lowers:
            if sc(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, b"lowerdir+", layer.encode(), 0) < 0:
                raise _fail(f"overlay layer {layer}")
        if sc(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            raise _fail(f"overlay on {target}")
        mnt = sc(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, _MOUNT_ATTR_RDONLY)
        if mnt < 0:
            raise _fail(f"fsmount {target}")
        if sc(_SYS_MOVE_MOUNT, mnt, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH) < 0:
            raise _fail(f"move_mount {target}")
    finally:
        os.close(fs)
        if mnt >= 0:
            os.close(mnt)
