"""``cpk enter``: unmodified packages overlaid in a private mount namespace.

Everything runs as an unprivileged user (``nobody`` through ``setpriv`` when
the suite runs as root, as CI does), since a union must need no privilege.
The program under test is compiled here with ``cc``: it reads a data file at
its compiled-in ``/usr/share/<prog>`` path, ``dlopen``s a plugin from
``/usr/lib/<triplet>/<prog>/`` and execs a helper from ``/usr/lib/<prog>/``;
it is packaged as a ``.deb`` assembled by the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.debs import _tar
from tests.support.hostile import ar_archive
from tests.support.processes import userns_unavailable

NOBODY = 65534
SRC = Path(__file__).resolve().parents[2] / "src"
PROG = "uprog"

pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv"),
]

MAIN_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    FILE *f = fopen("/usr/share/@P@/greeting", "r");
    if (!f) { perror("/usr/share/@P@/greeting"); return 2; }
    char line[128];
    if (!fgets(line, sizeof line, f)) return 2;
    fputs(line, stdout);
    void *h = dlopen("/usr/lib/@T@/@P@/plugin.so", RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    const char *(*name)(void) = (const char *(*)(void))dlsym(h, "plugin_name");
    puts(name());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { execl("/usr/lib/@P@/helper", "helper", (char *)0); perror("helper"); _exit(4); }
    int status;
    waitpid(pid, &status, 0);
    return WEXITSTATUS(status);
}
"""

PLUGIN_C = r'const char *plugin_name(void) { return "plugin @V@"; }'


def _triplet() -> str:
    return subprocess.run(["cc", "-dumpmachine"], capture_output=True, text=True).stdout.strip()


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def _compile(source: str, out: Path, *flags: str) -> bytes:
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["cc", "-O1", "-o", str(out), str(c), *flags], check=True)
    return out.read_bytes()


def build_deb(
    where: Path, version: str, *, postinst: str | None = None, depends: str | None = None
) -> Path:
    """The test program's package at version, with its data, plugin and helper."""
    t = _triplet()
    work = where / f"build-{version}"
    work.mkdir(parents=True, exist_ok=True)
    main = _compile(MAIN_C.replace("@P@", PROG).replace("@T@", t), work / "main", "-ldl")
    plugin = _compile(PLUGIN_C.replace("@V@", version), work / "plugin.so", "-shared", "-fPIC")
    files: dict[str, bytes | str] = {
        f"usr/bin/{PROG}": main,
        f"usr/share/{PROG}/greeting": f"greeting {version}\n".encode(),
        f"usr/share/doc/{PROG}/README": b"the same in every version\n",
        f"usr/lib/{t}/{PROG}/plugin.so": plugin,
        f"usr/lib/{PROG}/helper": f"#!/bin/sh\necho helper {version}\n".encode(),
    }
    control = {
        "control": (
            f"Package: {PROG}\nVersion: {version}\nArchitecture: {_arch()}\n"
            "Maintainer: Test <test@example.invalid>\nDescription: union test program\n"
            + (f"Depends: {depends}\n" if depends else "")
        ).encode()
    }
    if postinst is not None:
        control["postinst"] = postinst.encode()
    # The helper is a program: executable like everything in usr/bin.
    data = _tar_with_modes(files, {f"usr/lib/{PROG}/helper": 0o755})
    path = where / f"{PROG}_{version}_{_arch()}.deb"
    path.write_bytes(
        ar_archive(
            [("debian-binary", b"2.0\n"), ("control.tar.gz", _tar(control)), ("data.tar.gz", data)]
        )
    )
    return path


def _tar_with_modes(files: dict[str, bytes | str], modes: dict[str, int]) -> bytes:
    import io
    import tarfile

    raw = io.BytesIO(_tar(files))
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=raw, mode="r:gz") as src,
        tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT) as dst,
    ):
        for info in src:
            if info.name.removeprefix("./") in modes:
                info.mode = modes[info.name.removeprefix("./")]
            dst.addfile(info, src.extractfile(info) if info.isreg() else None)
    return out.getvalue()


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture(scope="module")
def usable() -> None:
    why = userns_unavailable()
    if why:
        pytest.skip(why)
    probe = subprocess.run([*_as_user(), "unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are unavailable to an unprivileged user: {probe.stderr!r}")


@pytest.fixture
def sandbox(usable: None) -> Iterator[Path]:
    """A world-readable directory the unprivileged user owns."""
    root = Path(tempfile.mkdtemp(prefix="cpk-union-"))
    os.chmod(root, 0o755)
    if _as_user():
        os.chown(root, NOBODY, NOBODY)
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _env(sandbox: Path) -> dict[str, str]:
    return dict(
        os.environ,
        CPK_HOME=str(sandbox / "home"),
        CPK_CACHE_DIR=str(sandbox / "cache"),
        PYTHONPATH=str(SRC),
        HOME=str(sandbox),
    )


def cpk(sandbox: Path, *args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_as_user(), sys.executable, "-m", "contentpkg", *map(str, args)],
        capture_output=True, text=True, env=_env(sandbox), cwd=sandbox, timeout=120,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def spawn(sandbox: Path, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_as_user(), sys.executable, "-m", "contentpkg", *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(sandbox), cwd=sandbox,
    )  # fmt: skip


def _debs(sandbox: Path, *versions: str) -> list[Path]:
    where = sandbox / "debs"
    where.mkdir(exist_ok=True)
    paths = [build_deb(where, v) for v in versions]
    if _as_user():
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(where)], check=True)
    return paths


def _union_mounts(pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line for line in f if " - overlay " in line and "/unions/" in line]


def test_unmodified_program_runs_in_union_and_fails_outside(sandbox: Path) -> None:
    (deb,) = _debs(sandbox, "1.0")
    outside = subprocess.run(["sh", "-c", PROG], capture_output=True, text=True, check=False)
    assert outside.returncode == 127  # not found outside the union
    assert not os.path.exists(f"/usr/share/{PROG}")

    proc = cpk(sandbox, "enter", deb, "--", PROG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["greeting 1.0", "plugin 1.0", "helper 1.0"]

    # The program ran from an unmodified entry: its bytes are the package's.
    (entry,) = (sandbox / "home" / "store").glob(f"{PROG},1.0,*")
    member = entry / "bin" / PROG
    built = (sandbox / "debs" / "build-1.0" / "main").read_bytes()
    assert member.read_bytes() == built
    # Outside the namespace nothing changed; nothing was left mounted.
    assert not os.path.exists(f"/usr/share/{PROG}")
    assert _union_mounts() == []


def test_the_farm_is_one_layer_of_hard_links_and_the_store_has_one_fixed_path(
    sandbox: Path,
) -> None:
    (deb,) = _debs(sandbox, "1.0")
    proc = cpk(sandbox, "enter", deb, "--", "sh", "-c",
               f"stat -c '%i %h' /usr/bin/{PROG}; ls /usr/lib/contentpkg/store; "
               "grep ' - overlay ' /proc/self/mountinfo; "
               "echo; stat -f -c %T /usr/local /usr/share")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (entry,) = (sandbox / "home" / "store").glob(f"{PROG},1.0,*")
    member = os.stat(entry / "bin" / PROG)
    # The program is the store's own inode, reached by plain lookups: a hard
    # link in the farm (no symlink to follow), seen through the overlay.
    assert lines[0] == f"{member.st_ino} {member.st_nlink}"
    assert member.st_nlink >= 2
    assert entry.name in lines[1:]  # the store at its fixed path inside
    # One merged lower whatever the entry count: farm, then the host's, one
    # overlay per directory of /usr the farm adds to (bin, lib, share).
    overlays = {m.split()[4]: m for m in lines if " - overlay " in m}
    assert sorted(overlays) == ["/usr/bin", "/usr/lib", "/usr/share"]
    for usr in overlays.values():
        # The lookup options reached the kernel (it shows uuid=off as null,
        # and no default-valued option).
        assert "uuid=null" in usr and "xino=on" not in usr and "metacopy=on" not in usr
    # The host's other directories are its own, looked up without an overlay.
    local_fs, share_fs = lines[lines.index("") + 1 :]
    assert share_fs == "overlayfs" and local_fs != "overlayfs"
    # Farms are cached by entry list: a second union of the same entries reuses it.
    cpk(sandbox, "enter", deb, "--", "true")
    farms = [p for p in (sandbox / "home" / "unions").iterdir() if not p.name.startswith(".")]
    assert len(farms) == 1
    farm_file = os.lstat(farms[0] / "usr" / "bin" / PROG)
    assert (farm_file.st_ino, farm_file.st_dev) == (member.st_ino, member.st_dev)
    assert (farms[0] / ".cpk" / "refs").read_text().split() == [entry.name]
    assert os.readlink(sandbox / "home" / "roots" / f"union-{farms[0].name}") == str(farms[0])


def test_usr_is_overlaid_per_directory_unless_the_farm_replaces_or_adds_one(
    tmp_path: Path,
) -> None:
    from contentpkg.env.union.compose import Farm
    from contentpkg.env.union.launch import overlay_plan

    usr = tmp_path / "usr"
    (usr / "share" / "x").mkdir(parents=True)
    (usr / "bin").mkdir()
    farm = Farm(tmp_path, ["usr", "etc"])
    assert overlay_plan(farm, "usr") == [("/usr/bin", str(usr / "bin")),
                                         ("/usr/share", str(usr / "share"))]  # fmt: skip
    assert overlay_plan(farm, "etc") == [("/etc", str(tmp_path / "etc"))]
    # A directory the host lacks cannot get a mount point: all /usr at once.
    (usr / "cpk-no-such-dir").mkdir()
    assert overlay_plan(farm, "usr") == [("/usr", str(usr))]
    # Nor can a link of the farm's replace the host's directory below one.
    (usr / "cpk-no-such-dir").rmdir()
    (usr / "lib").symlink_to("share")
    assert overlay_plan(farm, "usr") == [("/usr", str(usr))]


def test_unmodified_entry_shares_identical_files_with_patched_form(tmp_path: Path) -> None:
    # Storage only, no namespace: in this process (patchelf must be reachable).
    from contentpkg.context import Context
    from contentpkg.elf.package import add_package
    from contentpkg.env.union.entries import is_unmodified, union_entry
    from contentpkg.store.layers import Store

    (deb,) = [build_deb(tmp_path, "1.0")]
    ctx = Context.from_environ(
        {"CPK_HOME": str(tmp_path / "home"), "CPK_CACHE_DIR": str(tmp_path / "cache"),
         "HOME": str(tmp_path)}
    )  # fmt: skip
    store = Store.open(ctx=ctx)
    patched = add_package(store, deb)[0].entry
    assert not is_unmodified(patched)
    # Named by spec, the patched entry's .deb is found and stored unmodified.
    plain, _notes = union_entry(ctx, store, f"{PROG},1.0")
    assert is_unmodified(plain) and plain.dirname != patched.dirname
    assert (plain.path / "bin" / PROG).read_bytes() == (
        tmp_path / "build-1.0" / "main"
    ).read_bytes()
    data = f"share/{PROG}/greeting"
    assert os.stat(patched.path / data).st_ino == os.stat(plain.path / data).st_ino
    # The program differs (one has its RUNPATH rewritten): two inodes.
    prog = f"bin/{PROG}"
    assert os.stat(patched.path / prog).st_ino != os.stat(plain.path / prog).st_ino
    # Asked again, by spec or by file, the same unmodified entry comes back.
    assert union_entry(ctx, store, f"{PROG},1.0")[0].dirname == plain.dirname
    assert union_entry(ctx, store, str(deb))[0].dirname == plain.dirname
    # The source table still leads to the patched entry ``cpk install`` uses.
    found = store.find_source(patched.metadata["source_hash"])
    assert found is not None and found.dirname == patched.dirname


def test_two_versions_side_by_side(sandbox: Path) -> None:
    v1, v2 = _debs(sandbox, "1.0", "2.0")
    script = f"{PROG}; read x; cat /usr/share/{PROG}/greeting"
    first = spawn(sandbox, "enter", v1, "--", "sh", "-c", script)
    assert first.stdout is not None and first.stdin is not None
    lines = [first.stdout.readline() for _ in range(3)]
    assert lines == ["greeting 1.0\n", "plugin 1.0\n", "helper 1.0\n"], first.stderr
    # While the first union is alive, a second one shows the other version.
    second = cpk(sandbox, "enter", v2, "--", PROG)
    assert second.stdout.splitlines() == ["greeting 2.0", "plugin 2.0", "helper 2.0"]
    out, err = first.communicate("go\n", timeout=60)
    assert out == "greeting 1.0\n", err
    assert first.returncode == 0


def _mount_ns(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def _holders(ns: int) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if _mount_ns(d) == ns:
                    found.append(int(d))
            except OSError:
                continue
    return found


def test_nothing_stays_mounted_after_sigkill(sandbox: Path) -> None:
    (deb,) = _debs(sandbox, "1.0")
    proc = spawn(sandbox, "enter", deb, "--", "sh", "-c", "echo ready; exec sleep 600")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    pid = proc.pid
    # setpriv execs python, which execs the command: one pid throughout.
    inside = _mount_ns(pid)
    assert inside != _mount_ns("self")
    assert _union_mounts(pid), "the union is mounted inside"
    assert _union_mounts() == [], "and not outside"
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert _holders(inside) == []
    assert _union_mounts() == []


def test_gc_keeps_the_farm_a_running_union_holds(sandbox: Path) -> None:
    (deb,) = _debs(sandbox, "1.0")
    proc = spawn(sandbox, "enter", deb, "--", "sh", "-c", "echo ready; exec sleep 600")
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        home = sandbox / "home"
        (farm,) = [p for p in (home / "unions").iterdir() if not p.name.startswith(".")]
        names = (farm / ".cpk" / "refs").read_text().split()
        assert names
        # Its root lost (removed by hand, or lapsed): only the running union
        # still holds the farm.
        os.unlink(home / "roots" / f"union-{farm.name}")
        gc = cpk(sandbox, "store", "gc")
        assert gc.returncode == 0, gc.stderr
        assert f"kept unions/{farm.name}: no root reaches it, but a running process uses it" \
            in gc.stderr  # fmt: skip
        assert farm.is_dir()
        assert all((home / "store" / n).is_dir() for n in names)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=60)
    # Once the command is gone, nothing holds the farm: gc takes it and its entries.
    gc = cpk(sandbox, "store", "gc")
    assert gc.returncode == 0, gc.stderr
    assert not farm.exists()
    assert not any((home / "store" / n).exists() for n in names)


def test_mount2_form_forced(sandbox: Path) -> None:
    (deb,) = _debs(sandbox, "1.0")
    proc = cpk(sandbox, "enter", "--mount-api", "mount", deb, "--", PROG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "greeting 1.0"


def test_fsconfig_form_where_the_kernel_has_lowerdir_plus(sandbox: Path) -> None:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 8):
        pytest.skip("lowerdir+ needs Linux 6.8")
    (deb,) = _debs(sandbox, "1.0")
    proc = cpk(sandbox, "enter", "--mount-api", "fsconfig", deb, "--", PROG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "greeting 1.0"


def test_mount2_page_limit_is_one_clear_line(sandbox: Path) -> None:
    code = (
        "from contentpkg.env.union.namespace import *\n"
        "unshare_user_mount()\n"
        "try:\n"
        "    mount_overlay('/usr', ['/usr/share/' + 'x' * 60] * 100, 'mount')\n"
        "except UnionUnavailableError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([*_as_user(), sys.executable, "-c", code], capture_output=True,
                          text=True, env=_env(sandbox), cwd=sandbox)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "do not fit mount(2)'s" in proc.stdout


def test_maintainer_scripts_not_run_alternatives_made(sandbox: Path) -> None:
    where = sandbox / "debs"
    where.mkdir()
    postinst = (
        "#!/bin/sh\nset -e\ntouch /tmp/uprog-postinst-ran\n"
        f"update-alternatives --install /usr/bin/greet greet /usr/bin/{PROG} 50 \\\n"
        f"  --slave /usr/share/man/man1/greet.1.gz greet.1.gz /usr/share/doc/{PROG}/README\n"
    )
    deb = build_deb(where, "1.0", postinst=postinst)
    if _as_user():
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(where)], check=True)
    proc = cpk(sandbox, "enter", deb, "--", "greet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "greeting 1.0"
    assert f"{PROG}: maintainer scripts not run: postinst" in proc.stderr
    assert f"alternative greet: /usr/bin/greet -> /usr/bin/{PROG}" in proc.stderr
    assert not os.path.exists("/tmp/uprog-postinst-ran")


def test_bad_spec_is_one_line(sandbox: Path) -> None:
    proc = cpk(sandbox, "enter", "no-such-package", "--", "true")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "no entry matches" in proc.stderr
    proc = cpk(sandbox, "enter", "--", "true")
    assert proc.returncode != 0 and "nothing to enter" in proc.stderr


def _image_of(sandbox: Path) -> Path:
    (image,) = (sandbox / "home" / "images").glob("*.squashfs")
    return image


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
def test_tampered_image_is_refused_before_mounting(sandbox: Path) -> None:
    (deb,) = _debs(sandbox, "1.0")
    proc = cpk(sandbox, "enter", "--image", deb, "--", PROG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "greeting 1.0"
    image = _image_of(sandbox)
    # Named by its own sha256, as the entry's metadata records it.
    (entry,) = (sandbox / "home" / "store").glob(f"{PROG},1.0,*")
    meta = (entry / ".cpk" / "entry.json").read_text()
    assert image.name.removesuffix(".squashfs") in meta
    os.chmod(image, 0o644)
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    marker = sandbox / "ran"
    proc = cpk(sandbox, "enter", "--image", f"{PROG},1.0", "--", "touch", marker)
    assert proc.returncode == 1
    assert "refusing to mount it" in proc.stderr and proc.stderr.count("\n") == 1
    assert not marker.exists()
    assert _union_mounts() == []


def _processes_naming(text: str) -> list[str]:
    found = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(d)
        except OSError:
            continue
    return found


def _fuse_unusable_here() -> str | None:
    from contentpkg.env.union.images import fuse_unusable

    return fuse_unusable()


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
def test_image_mounted_with_squashfuse_dies_with_the_command(usable: None) -> None:
    # squashfuse needs /dev/fuse, which is often root's only (mode 0600):
    # this test runs as the suite's own user, in its own user namespace.
    why = _fuse_unusable_here()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="cpk-union-img-"))
    try:
        deb = build_deb(root, "1.0")
        env = dict(_env(root))
        from contentpkg.env.union.namespace import privileged

        # Real root would mount with the kernel: in a user namespace of its
        # own, root is not real root, and squashfuse is what mounts.
        wrap = ["unshare", "--user", "--map-user=0", "--map-group=0"] if privileged() else []
        proc = subprocess.run(
            [*wrap, sys.executable, "-m", "contentpkg", "enter", "--image", str(deb), "--", "sh",
             "-c",
             f"{PROG} && grep -c ' - fuse.squashfuse ' /proc/self/mountinfo"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[:3] == ["greeting 1.0", "plugin 1.0", "helper 1.0"]
        assert lines[3] == "1"  # one image, mounted by squashfuse
        image = str(next((root / "home" / "images").glob("*.squashfs")))
        # The kernel's SIGKILL reaches squashfuse as the command exits; its
        # end is asynchronous, so wait for it (bounded) rather than race it.
        for _ in range(100):
            left = _processes_naming(image)
            if not left:
                break
            time.sleep(0.05)
        assert left == []  # squashfuse ended with the command
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
def test_image_without_fuse_is_verified_and_says_tree_used(sandbox: Path) -> None:
    if not _as_user():
        pytest.skip("checks the unprivileged user's view of /dev/fuse")
    if os.access("/dev/fuse", os.W_OK) and os.stat("/dev/fuse").st_mode & 0o006:
        pytest.skip("/dev/fuse is usable by everyone here")
    (deb,) = _debs(sandbox, "1.0")
    proc = cpk(sandbox, "enter", "--image", deb, "--", PROG)
    assert proc.returncode == 0, proc.stderr
    assert "images verified but not mounted (/dev/fuse is not accessible" in proc.stderr


def test_stored_dependencies_join_the_union(sandbox: Path) -> None:
    from tests.support.debs import Deb

    where = sandbox / "debs"
    where.mkdir()
    extra = Deb("uprog-extra", files={"usr/share/uprog-extra/marker": b"extra here\n"})
    extra.architecture = _arch()
    extra_deb = extra.build(where / "uprog-extra.deb")
    deb = build_deb(where, "1.0", depends="uprog-extra (>= 1.0), libc6")
    if _as_user():
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(where)], check=True)
    assert cpk(sandbox, "enter", extra_deb, "--", "true").returncode == 0
    proc = cpk(sandbox, "enter", deb, "--", "cat", "/usr/share/uprog-extra/marker")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "extra here\n"
    assert "left to the host (not in the store): libc6" in proc.stderr


def test_disabled_user_namespaces_are_one_line(sandbox: Path) -> None:
    # A user namespace whose own limit of nested namespaces is 0 stands for
    # a machine with them disabled; cpk enter runs inside it.
    (deb,) = _debs(sandbox, "1.0")
    marker = sandbox / "ran"
    # The system's interpreter: the unprivileged user may not reach the
    # suite's own through a shell (cpk enter needs only the standard library).
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    inner = (
        "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; "
        f'exec "{python}" -m contentpkg enter "{deb}" -- touch "{marker}"'
    )
    proc = subprocess.run(
        [*_as_user(), "unshare", "-Ur", "sh", "-c", inner],
        capture_output=True, text=True, env=_env(sandbox), cwd=sandbox, timeout=120,
    )  # fmt: skip
    if proc.returncode == 99:
        pytest.skip("cannot lower the nested user namespace limit here")
    assert proc.returncode == 1
    assert proc.stderr.startswith("cpk: error: user namespaces are disabled on this machine")
    assert proc.stderr.count("\n") == 1
    assert not marker.exists()


def test_ld_so_conf_d_directories_reach_the_loader_cache(sandbox: Path) -> None:
    where = sandbox / "debs"
    where.mkdir()
    work = where / "build"
    work.mkdir()
    lib = _compile('const char *priv(void) { return "private lib"; }', work / "libpriv.so.1",
                   "-shared", "-fPIC", "-Wl,-soname,libpriv.so.1")  # fmt: skip
    main = _compile(
        '#include <stdio.h>\nconst char *priv(void);\nint main(void) { puts(priv()); return 0; }',
        work / "privtool", f"-L{work}", "-l:libpriv.so.1",
    )  # fmt: skip
    deb = where / "privtool.deb"
    control = (
        f"Package: privtool\nVersion: 1.0\nArchitecture: {_arch()}\n"
        "Maintainer: Test <test@example.invalid>\nDescription: a private library\n"
    )
    files: dict[str, bytes | str] = {
        "usr/bin/privtool": main,
        "usr/lib/privtool/libpriv.so.1": lib,
        "etc/ld.so.conf.d/privtool.conf": b"# the private library\n/usr/lib/privtool\n",
    }
    deb.write_bytes(
        ar_archive([("debian-binary", b"2.0\n"),
                    ("control.tar.gz", _tar({"control": control.encode()})),
                    ("data.tar.gz", _tar(files))])
    )  # fmt: skip
    if _as_user():
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(where)], check=True)
    proc = cpk(sandbox, "enter", deb, "--", "privtool")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "private lib\n"
    assert (
        "ldconfig: library directories of privtool added to the union's loader cache (1)"
        in proc.stderr
    )


def test_profile_packages_enter_unmodified(tmp_path: Path) -> None:
    # Composition only, in this process: installing needs patchelf, which
    # the unprivileged user may not reach.
    from contentpkg.context import Context
    from contentpkg.env.union.entries import is_unmodified
    from contentpkg.env.union.launch import prepare
    from contentpkg.store.layers import Store

    deb = build_deb(tmp_path, "1.0")
    env = dict(os.environ, CPK_HOME=str(tmp_path / "home"), CPK_CACHE_DIR=str(tmp_path / "c"),
               PYTHONPATH=str(SRC))  # fmt: skip
    for args in (["store", "add", str(deb)], ["install", PROG, "--profile", "tools"]):
        run = subprocess.run([sys.executable, "-m", "contentpkg", *args], env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
    ctx = Context.from_environ(env)
    union = prepare(ctx, Store.open(ctx=ctx), [], profiles=["tools"])
    assert [e.name for e in union.entries] == [PROG]
    assert is_unmodified(union.entries[0])
    farm_file = os.lstat(union.farm.lower("usr") / "bin" / PROG)
    assert farm_file.st_ino == os.stat(union.entries[0].path / "bin" / PROG).st_ino
    with pytest.raises(Exception, match="profile 'nope' does not exist"):
        prepare(ctx, Store.open(ctx=ctx), [], profiles=["nope"])


def _kernel_mount_unusable() -> str | None:
    from contentpkg.env.union.namespace import privileged

    if not privileged():
        return "kernel image mounts need the machine's real root"
    if shutil.which("losetup") is None or not os.path.exists("/dev/loop-control"):
        return "no loop devices here"
    return None


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
def test_real_root_mounts_images_with_the_kernel(usable: None) -> None:
    why = _kernel_mount_unusable()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="cpk-union-kernel-"))
    try:
        deb = build_deb(root, "1.0")
        proc = subprocess.run(
            [sys.executable, "-m", "contentpkg", "enter", "--image", str(deb), "--", "sh", "-c",
             f"{PROG} && grep -c ' - squashfs ' /proc/self/mountinfo; "
             "grep -c ' - fuse.squashfuse ' /proc/self/mountinfo; cat /proc/self/uid_map"],
            capture_output=True, text=True, env=_env(root), timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split("\n")
        assert lines[:3] == ["greeting 1.0", "plugin 1.0", "helper 1.0"]
        # The kernel's squashfs, no FUSE; no user namespace was made.
        assert lines[3:5] == ["1", "0"]
        assert lines[5].split() == ["0", "0", "4294967295"]
        image = next((root / "home" / "images").glob("*.squashfs"))
        # The loop device went with the namespace: nothing holds the image.
        left = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
        assert left.stdout == ""
        assert _union_mounts() == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
