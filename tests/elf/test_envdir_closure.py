"""Env dirs of real-looking Debian packages: the whole closure, nothing silent.

The packages are built here with ``dpkg-deb`` from ELF files compiled with
``cc``: a program that reads a compiled-in ``/usr/share`` path, needs a
library by its file name (``libsnd.so.7.0``, SONAME ``libsnd.so.7``), and
dlopens a plugin from ``lib/<triplet>/demo/`` whose own library lives in
another package; a helper program under ``lib/demo/``; documentation links
into a sibling package and out of every package.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.debs import dpkg_build, needs_dpkg_deb
from support.elfbuild import CC, build_exe, build_lib, needs_cc

TRIPLET = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"

pytestmark = [needs_cc, needs_dpkg_deb]

PROGRAM = r"""
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
const char *snd(void);
int main(void) {
  char buf[256] = {0};
  FILE *f = fopen("/usr/share/DATADIR/greeting", "r");
  if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); printf("data: %s", buf); }
  else printf("data: none\n");
  printf("%s\n", snd());
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) return 2;
  exe[n] = 0;
  char *top = dirname(dirname(exe));
  char plugin[PATH_MAX];
  snprintf(plugin, sizeof plugin, "%s/lib/TRIPLET/demo/plugin.so", top);
  void *h = dlopen(plugin, RTLD_NOW);
  if (!h) { printf("plugin: %s\n", dlerror()); return 1; }
  const char *(*fn)(void) = (const char *(*)(void))dlsym(h, "plugin");
  printf("%s\n", fn());
  return 0;
}
"""


def _cc(*args: str) -> None:
    assert CC is not None
    proc = subprocess.run([CC, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def build_demo(work: Path, datadir: str) -> list[Path]:
    """The .deb files of demo and its dependencies; returns their paths."""
    libdir = f"usr/lib/{TRIPLET}"
    debs = []
    # libplugdep1: the plugin's and the helper's library.
    t = work / "libplugdep1"
    plugdep = build_lib(
        t / libdir / "libplugdep.so.1", "plugdep", "plugdep", soname="libplugdep.so.1"
    )
    debs.append(
        dpkg_build(t, work / "libplugdep1.deb", {"Package": "libplugdep1"}, drop_c_sources=True)
    )
    # libsnd7: its file is libsnd.so.7.0 and programs name that file (as
    # libsndio's users do), though its SONAME is libsnd.so.7.
    link = work / "link"
    nosoname = build_lib(link / "libsnd.so.7.0", "snd", "snd")
    t = work / "libsnd7"
    build_lib(t / libdir / "libsnd.so.7.0", "snd", "snd", soname="libsnd.so.7")
    os.symlink("libsnd.so.7.0", t / libdir / "libsnd.so.7")
    debs.append(dpkg_build(t, work / "libsnd7.deb", {"Package": "libsnd7"}, drop_c_sources=True))
    # demo-core: a documentation directory demo links into.
    t = work / "demo-core"
    (t / "usr/share/doc/demo-core/hooks").mkdir(parents=True)
    (t / "usr/share/doc/demo-core/hooks/hook.txt").write_text("hook\n")
    debs.append(dpkg_build(t, work / "demo-core.deb", {"Package": "demo-core"}))
    # demo itself.
    t = work / "demo"
    src = work / "demo.c"
    src.write_text(PROGRAM.replace("DATADIR", datadir).replace("TRIPLET", TRIPLET))
    (t / "usr/bin").mkdir(parents=True)
    _cc("-o", str(t / "usr/bin/demo"), str(src), f"-L{link}", "-l:libsnd.so.7.0", "-ldl")
    build_lib(t / libdir / "demo" / "plugin.so", "plugin", "plugin", calls=["plugdep"],
              libs=[plugdep])  # fmt: skip
    build_exe(t / "usr/lib/demo/helper", ["plugdep"], libs=[plugdep])
    data = t / "usr/share" / datadir
    data.mkdir(parents=True)
    (data / "greeting").write_text("packaged\n")
    doc = t / "usr/share/doc/demo"
    doc.mkdir(parents=True)
    os.symlink("../../common-licenses/Apache-2.0", doc / "LICENSE")
    os.symlink("../demo-core/hooks", doc / "hooks")
    control = {"Package": "demo", "Depends": "libc6, libsnd7, libplugdep1, demo-core"}
    debs.append(dpkg_build(t, work / "demo.deb", control, drop_c_sources=True))
    assert nosoname.exists()
    return debs


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory another user can read (pytest's tmp is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="cpk-closure-"))
    os.chmod(root, 0o755)
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def demo(sandbox: Path) -> tuple[Path, str]:
    datadir = f"cpkdemo-{secrets.token_hex(4)}"
    for deb in build_demo(sandbox / "build", datadir):
        run_cpk("store", "add", deb, check=True)
    return sandbox, datadir


def _initialised(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line.split("calling init: ", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if "calling init: " in line
    ]


def _run_demo(where: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LD_DEBUG="libs")
    proc = subprocess.run(
        [str(where / "bin" / "demo")], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    return proc


def test_the_whole_closure_is_placed_and_runs_from_where(demo: tuple[Path, str]) -> None:
    sandbox, datadir = demo
    where = sandbox / "W"
    proc = run_cpk("install", "demo", where, check=True)
    report = proc.stderr

    # 1. A link into a package the closure holds is kept; one out of every
    #    package is dropped, with one note naming it.
    hooks = where / "share/doc/demo/hooks"
    assert os.readlink(hooks) == "../demo-core/hooks"
    assert (hooks / "hook.txt").read_text() == "hook\n"
    assert not os.path.lexists(where / "share/doc/demo/LICENSE")
    notes = [line for line in report.splitlines() if "symlink(s) whose targets" in line]
    assert len(notes) == 1 and "share/doc/demo/LICENSE" in notes[0], report

    # 2. DT_NEEDED libsnd.so.7.0 names a file, found as the loader would.
    assert (where / "lib/libsnd.so.7.0").is_file()

    # 3. Helper and plugin placed, each directory linked to lib/.
    plugin_dir = where / "lib" / TRIPLET / "demo"
    assert (plugin_dir / "plugin.so").is_file()
    assert os.readlink(plugin_dir / "common_libs") == "../.."
    assert os.readlink(where / "lib/demo/common_libs") == ".."
    helper = subprocess.run([str(where / "lib/demo/helper")], capture_output=True, text=True)
    assert helper.stdout == "plugdep\n", helper.stderr
    assert (where / "lib/libplugdep.so.1").is_file()

    # The compiled-in data path is named, with what it reads here.
    path = f"/usr/share/{datadir}/greeting"
    line = f"compiled-in path: bin/demo-1.0 read {path} \u2014 absent on this system"
    assert line in report, report

    # A real run: the plugin's library comes from WHERE, the data from nowhere.
    proc = _run_demo(where)
    assert proc.stdout == "data: none\nsnd\nplugin>plugdep\n"
    loaded = _initialised(proc)
    plugdep = [p for p in loaded if p.endswith("/libplugdep.so.1")]
    assert plugdep == [f"{plugin_dir}/common_libs/libplugdep.so.1"], loaded
    assert [p for p in loaded if "libsnd.so.7.0" in p] == [f"{where}/bin/common_libs/libsnd.so.7.0"]

    # And from a copy, with the store out of reach of nothing but cp -a.
    copy = sandbox / "elsewhere" / "W2"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(where), str(copy)], check=True)
    loaded = _initialised(_run_demo(copy))
    assert all(p.startswith(f"{copy}/") for p in loaded if "plugdep" in p or "snd" in p)


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a system copy under /usr/share: root only")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_the_report_names_the_system_copy_a_namespace_can_hide(demo: tuple[Path, str]) -> None:
    """With the system's copy present the report says the program reads it;
    hiding it in a mount namespace (as a non-root user) shows that the
    program reads nothing else: not WHERE's packaged copy."""
    sandbox, datadir = demo
    system_copy = Path("/usr/share") / datadir
    system_copy.mkdir()
    try:
        (system_copy / "greeting").write_text("system\n")
        where = sandbox / "W"
        report = run_cpk("install", "demo", where, check=True).stderr
        expected = (
            f"compiled-in path: bin/demo-1.0 read {system_copy}/greeting \u2014 here the "
            "system's copy; use the union mode for an unmodified run"
        )
        assert expected in report, report
        assert _run_demo(where).stdout.startswith("data: system\n")
        user = ["setpriv", "--reuid=64123", "--regid=64123", "--clear-groups"]
        probe = subprocess.run([*user, "unshare", "-Urm", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("unprivileged user namespaces are not available")
        hidden = subprocess.run(
            [*user, "unshare", "-Urm", "sh", "-c",
             f'mount -t tmpfs none "{system_copy}" && exec "{where}/bin/demo"'],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert hidden.returncode == 0, hidden.stderr
        assert hidden.stdout == "data: none\nsnd\nplugin>plugdep\n"
        assert (where / "share" / datadir / "greeting").read_text() == "packaged\n"
    finally:
        shutil.rmtree(system_copy)


def _entry_dir(home: Path, name: str) -> Path:
    (found,) = [p for p in (home / "store").iterdir() if p.name.startswith(f"{name},")]
    return found


def test_identical_files_and_hard_links_are_stored_once(tmp_path: Path, cpk_home: Path) -> None:
    tree = tmp_path / "twins"
    share = tree / "usr/share/twins"
    share.mkdir(parents=True)
    (share / "a").write_text("same bytes\n" * 100)
    os.link(share / "a", share / "b")  # a hard-link member in data.tar
    (share / "c").write_text("same bytes\n" * 100)  # an identical file
    (share / "d").write_text("other bytes\n")
    (share / "x").write_text("same bytes\n" * 100)
    (share / "x").chmod(0o755)  # the executable bit is content: kept apart
    deb = dpkg_build(tree, tmp_path / "twins.deb", {"Package": "twins", "Architecture": "all"})
    run_cpk("store", "add", deb, check=True)
    entry = _entry_dir(cpk_home, "twins") / "share/twins"
    inodes = {name: os.stat(entry / name).st_ino for name in "abcdx"}
    assert inodes["a"] == inodes["b"] == inodes["c"]
    assert len(set(inodes.values())) == 3
    assert (entry / "c").read_text() == "same bytes\n" * 100
    meta = json.loads((entry.parent.parent / ".cpk/entry.json").read_text())
    assert meta["stored_size"] == meta["size"] - 2 * len("same bytes\n" * 100)
    assert run_cpk("store", "verify").returncode == 0


def test_runpath_rewritten_in_place_keeps_the_size(tmp_path: Path, cpk_home: Path) -> None:
    tree = tmp_path / "slot"
    long_slot = "/opt/" + "a-long-build-directory/" * 4 + "lib"
    slotted = build_lib(tree / "lib/libslot.so.1", "slot", "slot", soname="libslot.so.1",
                        runpath=long_slot)  # fmt: skip
    bare = build_lib(tree / "lib/libbare.so.1", "bare", "bare", soname="libbare.so.1")
    for c in tree.rglob("*.c"):
        c.unlink()
    sizes = {p.name: p.stat().st_size for p in (slotted, bare)}
    run_cpk("store", "add", tree, "--name", "slot", "--version", "1", check=True)
    entry = _entry_dir(cpk_home, "slot")
    meta = json.loads((entry / ".cpk/entry.json").read_text())
    for name in sizes:
        facts = meta["elf"][f"lib/{name}"]
        assert facts["runpath"] == f"$ORIGIN:$ORIGIN/{name}_deps:$ORIGIN/common_libs"
    assert (entry / "lib/libslot.so.1").stat().st_size == sizes["libslot.so.1"]
    # Without a slot patchelf adds the string: pages, never megabytes.
    grown = (entry / "lib/libbare.so.1").stat().st_size - sizes["libbare.so.1"]
    assert 0 < grown <= 4 * os.sysconf("SC_PAGE_SIZE")


def _app(tmp_path: Path, cpk_home: Path) -> None:
    tree = tmp_path / "app"
    base = build_lib(tree / "lib/libbase.so.1", "base", "base", soname="libbase.so.1")
    build_exe(tree / "bin/app", ["base"], libs=[base])
    (tree / "share/app").mkdir(parents=True)
    (tree / "share/app/data.txt").write_text("data\n")
    for c in tree.rglob("*.c"):
        c.unlink()
    run_cpk("store", "add", tree, "--name", "app", "--version", "1", check=True)


def _store_file(cpk_home: Path, where: Path, rel: str) -> Path:
    manifest = json.loads((where / ".cpk/manifest.json").read_text())
    row = manifest["files"][rel]
    return cpk_home / "store" / row["entry"] / row["path"]


def _edit_one_byte(path: Path) -> None:
    os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    with open(path, "r+b") as f:
        f.seek(len(data) - 1)
        f.write(data[-1:])


@pytest.mark.parametrize("mode", ["copy", "reflink"])
def test_own_inodes_keep_the_store_intact(tmp_path: Path, cpk_home: Path, mode: str) -> None:
    _app(tmp_path, cpk_home)
    where = tmp_path / "W"
    proc = run_cpk("install", "app", where, "--link-mode", mode, check=True)
    assert f"placed ({mode}):" in proc.stderr
    placed = where / "lib/libbase.so.1"
    store_file = _store_file(cpk_home, where, "lib/libbase.so.1")
    assert os.stat(placed).st_ino != os.stat(store_file).st_ino
    assert os.stat(placed).st_nlink == 1
    _edit_one_byte(placed)
    verify = run_cpk("store", "verify")
    assert verify.returncode == 0 and "corrupt:" not in verify.stdout
    assert f"changed env-dir file: {where}/lib/libbase.so.1: content changed" in verify.stdout
    check = run_cpk("env", str(where), "--check")
    assert check.returncode == 1 and "lib/libbase.so.1: content changed" in check.stderr
    assert "store's file" not in check.stderr
    assert subprocess.run([str(where / "bin/app")], capture_output=True).returncode in (0, 1)


def test_hard_links_share_the_store_inode_and_an_edit_is_named(
    tmp_path: Path, cpk_home: Path
) -> None:
    _app(tmp_path, cpk_home)
    where = tmp_path / "W"
    proc = run_cpk("install", "app", where, "--link-mode", "hardlink", check=True)
    assert "placed (hardlink):" in proc.stderr and "by hardlink" in proc.stderr
    placed = where / "share/app/data.txt"
    store_file = _store_file(cpk_home, where, "share/app/data.txt")
    assert os.stat(placed).st_ino == os.stat(store_file).st_ino
    _edit_one_byte(placed)
    check = run_cpk("env", str(where), "--check")
    assert check.returncode == 1
    assert "share/app/data.txt: content changed and the store's file with it" in check.stderr
    verify = run_cpk("store", "verify")
    assert verify.returncode == 1
    entry = store_file.parents[2].name
    assert f"corrupt: {entry} [user]" in verify.stdout
    assert (
        f"changed env-dir file: {where}/share/app/data.txt: content changed and the store's "
        f"file with it (placed from {entry}:share/app/data.txt) [entry {entry}]"
    ) in verify.stdout


def test_symlink_mode_links_data_and_keeps_programs_real(tmp_path: Path, cpk_home: Path) -> None:
    _app(tmp_path, cpk_home)
    where = tmp_path / "W"
    run_cpk("install", "app", where, "--link-mode", "symlink", check=True)
    data = where / "share/app/data.txt"
    assert os.path.islink(data)
    assert os.readlink(data) == str(_store_file(cpk_home, where, "share/app/data.txt"))
    assert not os.path.islink(where / "bin/app-1") and (where / "bin/app-1").is_file()
    out = subprocess.run([str(where / "bin/app")], capture_output=True, text=True)
    assert out.stdout == "base\n", out.stderr
    assert run_cpk("env", str(where), "--check").returncode == 0
    # Switching modes re-places every file.
    run_cpk("install", "app", where, "--link-mode", "copy", check=True)
    assert not os.path.islink(data) and data.read_text() == "data\n"


def test_docs_packages_are_named_and_brought(tmp_path: Path) -> None:
    tree = tmp_path / "tool"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n")
    (tree / "usr/bin/tool").chmod(0o755)
    run_cpk(
        "store", "add", dpkg_build(tree, tmp_path / "tool.deb", {"Package": "tool"}), check=True
    )
    where = tmp_path / "W"
    report = run_cpk("install", "tool", where, check=True).stderr
    assert "tool: no man pages in the package; Debian ships some in tool-doc or tool-man" in report
    doc = tmp_path / "tool-doc"
    (doc / "usr/share/man/man1").mkdir(parents=True)
    (doc / "usr/share/man/man1/tool.1").write_text(".TH TOOL 1\n")
    control = {"Package": "tool-doc", "Architecture": "all"}
    run_cpk("store", "add", dpkg_build(doc, tmp_path / "tool-doc.deb", control), check=True)
    where2 = tmp_path / "W2"
    report = run_cpk("install", "tool", where2, check=True).stderr
    assert "tool: documentation in the store: tool-doc; --with-docs installs it" in report
    assert not (where2 / "share/man/man1/tool.1").exists()
    run_cpk("install", "tool", where2, "--with-docs", check=True)
    assert (where2 / "share/man/man1/tool.1").read_text() == ".TH TOOL 1\n"
