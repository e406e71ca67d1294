"""The loader emulation against the real loader, on ELF files built here.

Every case builds a small program and its libraries with ``cc``, asks
``loader.resolve`` what ld.so will map, then runs the program for real with
``LD_DEBUG=libs,files`` and checks that the real process mapped the same
files, in the same order, for the same requesters, and that the program
printed what the libraries it got answer.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.elfbuild import build_exe, build_lib, needs_cc

from contentpkg.elf import ldcache, loader
from contentpkg.elf.loader import LoaderError, LoadReport, resolve
from contentpkg.elf.reader import read_elf

pytestmark = [
    needs_cc,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's loader only"),
]

# --- the real run -----------------------------------------------------------------


@dataclass
class RealRun:
    """What one real process mapped, read from LD_DEBUG=libs,files."""

    maps: list[tuple[str, str, str]] = field(default_factory=list)  # name, path, requester
    stdout: list[str] = field(default_factory=list)
    error: str | None = None  # "error while loading shared libraries: ..."
    returncode: int = 0


_PID = re.compile(r"^\s*\d+:\s?(.*)$")


def real_run(exe: Path | str, env: dict[str, str] | None = None) -> RealRun:
    """Run exe (by the path given: the kernel resolves symlinks) and parse LD_DEBUG."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_DEBUG": "libs,files"}
    full.update(env or {})
    proc = subprocess.run([str(exe)], env=full, capture_output=True, text=True, timeout=60)
    run = RealRun(stdout=proc.stdout.splitlines(), returncode=proc.returncode)
    requester: dict[str, str] = {}
    finding: str | None = None
    tried: str | None = None
    for line in proc.stderr.splitlines():
        if "error while loading shared libraries" in line:
            run.error = line.split("error while loading shared libraries: ", 1)[1]
            continue
        m = _PID.match(line)
        if not m:
            continue
        msg = m.group(1)
        if got := re.fullmatch(r"file=(.*) \[0\];  needed by (.*) \[0\]", msg):
            requester[got.group(1)] = got.group(2)
        elif got := re.fullmatch(r"find library=(.*) \[0\]; searching", msg):
            finding, tried = got.group(1), None
        elif got := re.fullmatch(r"\s*trying file=(.*)", msg):
            tried = got.group(1)
        elif got := re.fullmatch(r"file=(.*) \[0\];  generating link map", msg):
            name = got.group(1)
            path = tried if finding == name and "/" not in name else name
            run.maps.append((name, str(path), requester.get(name, "")))
    return run


def predicted(report: LoadReport) -> tuple[list[tuple[str, str, str]], str | None]:
    """The maps a real run makes (ld.so itself aside), up to the first missing one."""
    out = []
    for obj in report.objects:
        if obj.reason == loader.INTERPRETER:
            continue
        if obj.path is None:
            return out, obj.name
        # ld.so's debug output names the program as the requester of preloads.
        who = report.file if obj.requested_by == "LD_PRELOAD" else obj.requested_by
        out.append((obj.name, obj.path, who or ""))
    return out, None


def check(
    exe: Path, env: dict[str, str] | None = None, answers: list[str] | None = None
) -> LoadReport:
    """resolve(exe) must agree with a real run of exe; returns the report."""
    env = env or {}
    report = resolve(exe, env, explain=True)
    real = real_run(exe, env)
    maps, first_missing = predicted(report)
    if report.error is not None:
        assert real.error is not None, f"predicted {report.error!r}, the real run loaded"
        path, _, what = report.error.partition(": ")
        assert path in real.error and what.split(":")[0] in real.error, (report.error, real.error)
        return report
    if first_missing is not None:
        want = f"{first_missing}: cannot open shared object file: No such file or directory"
        assert real.error == want, (first_missing, real.error)
        assert real.maps == maps
        return report
    assert real.error is None, real.error
    assert real.maps == maps
    assert real.returncode == 0
    if answers is not None:
        assert real.stdout == answers
    return report


def by_name(report: LoadReport, name: str) -> loader.LoadedObject:
    found = [o for o in report.objects if o.name == name]
    assert found, f"{name} not in {[o.name for o in report.objects]}"
    return found[0]


# --- editing dynamic sections (cases the linker will not produce) -------------------

DT_SONAME, DT_RUNPATH, DT_FLAGS_1 = 14, 29, 0x6FFFFFFB


def patch_dynamic(path: Path, tag: int, *, new_tag: int | None = None, or_value: int = 0) -> None:
    """Rewrite one dynamic entry of a 64-bit little-endian ELF file in place."""
    data = bytearray(path.read_bytes())
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _f, offset, _v, _p, filesz, _m, _a = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if p_type != 2:
            continue
        for pos in range(offset, offset + filesz, 16):
            d_tag, value = struct.unpack_from("<qQ", data, pos)
            if d_tag == 0:
                break
            if d_tag == tag:
                struct.pack_into("<qQ", data, pos, new_tag or d_tag, value | or_value)
                path.write_bytes(data)
                return
    raise AssertionError(f"{path}: no dynamic tag {tag:#x}")


needs_patchelf = pytest.mark.skipif(shutil.which("patchelf") is None, reason="needs patchelf")


# --- chains ---------------------------------------------------------------------------


def test_runpath_chain(tmp_path: Path) -> None:
    deps = tmp_path / "app" / "deps"
    libb = build_lib(deps / "libb.so.1", "bee", "b-deps", soname="libb.so.1")
    liba = build_lib(
        tmp_path / "app" / "lib" / "liba.so.1",
        "ay",
        "a",
        soname="liba.so.1",
        calls=["bee"],
        libs=[libb],
        runpath="$ORIGIN/../deps",
    )
    exe = build_exe(
        tmp_path / "app" / "bin" / "prog", ["ay"], libs=[liba], runpath="$ORIGIN/../lib"
    )
    report = check(exe, answers=["a>b-deps"])
    a, b = by_name(report, "liba.so.1"), by_name(report, "libb.so.1")
    assert a.reason == b.reason == loader.RUNPATH
    assert a.search and a.search.element == "$ORIGIN/../lib"
    assert a.path == f"{tmp_path}/app/bin/../lib/liba.so.1"
    assert b.requested_by == a.path
    assert b.search and b.search.owner == a.path
    assert by_name(report, "libc.so.6").reason == loader.LD_SO_CACHE


def test_rpath_chain_is_inherited(tmp_path: Path) -> None:
    """A grandchild is found through the executable's DT_RPATH."""
    libb = build_lib(tmp_path / "deep" / "libb.so.1", "bee", "b", soname="libb.so.1")
    liba = build_lib(
        tmp_path / "lib" / "liba.so.1", "ay", "a", soname="liba.so.1", calls=["bee"], libs=[libb]
    )
    exe = build_exe(
        tmp_path / "bin" / "prog", ["ay"], libs=[liba], rpath=f"{tmp_path}/lib:{tmp_path}/deep"
    )
    report = check(exe, answers=["a>b"])
    b = by_name(report, "libb.so.1")
    assert b.reason == loader.RPATH
    assert b.requested_by == str(tmp_path / "lib" / "liba.so.1")
    assert b.search and b.search.owner == str(exe)  # the executable's RPATH


def test_runpath_is_not_inherited(tmp_path: Path) -> None:
    """The same layout with DT_RUNPATH: the grandchild is not found."""
    libb = build_lib(tmp_path / "deep" / "libb.so.1", "bee", "b", soname="libb.so.1")
    liba = build_lib(
        tmp_path / "lib" / "liba.so.1", "ay", "a", soname="liba.so.1", calls=["bee"], libs=[libb]
    )
    exe = build_exe(
        tmp_path / "bin" / "prog", ["ay"], libs=[liba], runpath=f"{tmp_path}/lib:{tmp_path}/deep"
    )
    report = check(exe)
    b = by_name(report, "libb.so.1")
    assert b.missing and b.requested_by == str(tmp_path / "lib" / "liba.so.1")
    assert not any("RUNPATH" in s for s in b.searched)
    assert [o.name for o in report.missing] == ["libb.so.1"]


def test_rpath_passes_through_a_runpath_object(tmp_path: Path) -> None:
    """RPATH inheritance walks the loader chain even across an object with
    RUNPATH (whose own RPATH is void): the executable's RPATH still serves the
    needs of a library that object loaded."""
    libc_ = build_lib(tmp_path / "r" / "libc3.so.1", "sea", "c", soname="libc3.so.1")
    libb = build_lib(
        tmp_path / "u" / "libb.so.1", "bee", "b", soname="libb.so.1", calls=["sea"], libs=[libc_]
    )
    liba = build_lib(
        tmp_path / "a" / "liba.so.1",
        "ay",
        "a",
        soname="liba.so.1",
        calls=["bee"],
        libs=[libb],
        runpath=f"{tmp_path}/u",
    )
    exe = build_exe(tmp_path / "prog", ["ay"], libs=[liba], rpath=f"{tmp_path}/a:{tmp_path}/r")
    report = check(exe, answers=["a>b>c"])
    assert by_name(report, "libb.so.1").reason == loader.RUNPATH
    c = by_name(report, "libc3.so.1")
    assert c.reason == loader.RPATH and c.search and c.search.owner == str(exe)


@needs_patchelf
def test_rpath_and_runpath_on_one_object(tmp_path: Path) -> None:
    """With both, DT_RPATH is ignored entirely, also for what it loads."""
    build_lib(tmp_path / "r" / "libfoo.so.1", "foo", "foo-rpath", soname="libfoo.so.1")
    foo_u = build_lib(tmp_path / "u" / "libfoo.so.1", "foo", "foo-runpath", soname="libfoo.so.1")
    only_r = build_lib(tmp_path / "r" / "libonly.so.1", "only", "only", soname="libonly.so.1")
    user = build_lib(
        tmp_path / "u" / "libuser.so.1",
        "user",
        "user",
        soname="libuser.so.1",
        calls=["only"],
        libs=[only_r],
    )
    # Linked with DT_RPATH r and a DT_SONAME holding "u", which becomes DT_RUNPATH.
    exe = tmp_path / "prog"
    build_exe(exe, ["foo"], libs=[foo_u], rpath=f"{tmp_path}/r")
    subprocess.run(["patchelf", "--add-needed", "libuser.so.1", str(exe)], check=True)
    subprocess.run(["patchelf", "--set-soname", f"{tmp_path}/u", str(exe)], check=True)
    patch_dynamic(exe, DT_SONAME, new_tag=DT_RUNPATH)
    info = read_elf(exe)
    assert info.rpath == f"{tmp_path}/r" and info.runpath == f"{tmp_path}/u"
    report = check(exe)
    assert by_name(report, "libfoo.so.1").path == str(foo_u)
    assert by_name(report, "libuser.so.1").path == str(user)
    assert by_name(report, "libonly.so.1").missing  # only the (ignored) RPATH had it


# --- $ORIGIN and symlinks ----------------------------------------------------------


def test_symlinked_library_origin_is_the_opened_path(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_lib(store / "libb.so.1", "bee", "b-store", soname="libb.so.1")
    envb = build_lib(tmp_path / "env" / "lib" / "libb.so.1", "bee", "b-env", soname="libb.so.1")
    real_a = build_lib(
        store / "liba.so.1",
        "ay",
        "a",
        soname="liba.so.1",
        calls=["bee"],
        libs=[envb],
        runpath="$ORIGIN",
    )
    (tmp_path / "env" / "lib" / "liba.so.1").symlink_to(real_a)
    exe = build_exe(
        tmp_path / "env" / "bin" / "prog", ["ay"], libs=[real_a], runpath="$ORIGIN/../lib"
    )
    report = check(exe, answers=["a>b-env"])
    a, b = by_name(report, "liba.so.1"), by_name(report, "libb.so.1")
    assert a.path == f"{tmp_path}/env/bin/../lib/liba.so.1"  # not resolved
    assert b.path == f"{tmp_path}/env/bin/../lib/libb.so.1"
    assert b.search and b.search.owner == a.path and b.search.element == "$ORIGIN"


def test_symlinked_executable_origin_is_the_real_path(tmp_path: Path) -> None:
    build_lib(tmp_path / "real" / "lib" / "libfoo.so.1", "foo", "real", soname="libfoo.so.1")
    other = build_lib(
        tmp_path / "other" / "lib" / "libfoo.so.1", "foo", "other", soname="libfoo.so.1"
    )
    exe = build_exe(
        tmp_path / "real" / "bin" / "prog", ["foo"], libs=[other], runpath="$ORIGIN/../lib"
    )
    link = tmp_path / "other" / "bin" / "prog"
    link.parent.mkdir(parents=True)
    link.symlink_to(exe)
    report = check(link, answers=["real"])
    assert report.origin == str(tmp_path / "real" / "bin")
    assert by_name(report, "libfoo.so.1").path == f"{tmp_path}/real/bin/../lib/libfoo.so.1"
    # ld.so --list takes $ORIGIN from the path given: mode="list" says what it says.
    listed = resolve(link, {}, mode="list")
    assert by_name(listed, "libfoo.so.1").path == f"{tmp_path}/other/bin/../lib/libfoo.so.1"
    out = subprocess.run(
        [loader.system_config().interpreter, "--list", str(link)],
        capture_output=True,
        text=True,
        env={},
    ).stdout
    assert f"libfoo.so.1 => {tmp_path}/other/bin/../lib/libfoo.so.1" in out


def test_origin_brace_form_platform_and_lib(tmp_path: Path) -> None:
    config = loader.system_config()
    if config.platform is None:
        pytest.skip("the loader has no $PLATFORM here")
    plat = build_lib(
        tmp_path / "p" / config.platform / "libplat.so.1", "plat", "plat", soname="libplat.so.1"
    )
    libdir = build_lib(tmp_path / config.lib / "liblib.so.1", "lb", "lib", soname="liblib.so.1")
    exe = build_exe(
        tmp_path / "prog",
        ["plat", "lb"],
        libs=[plat, libdir],
        runpath="${ORIGIN}/p/$PLATFORM:$ORIGIN/$LIB:$ORIGINx",
    )
    report = check(exe, answers=["plat", "lib"])
    assert by_name(report, "libplat.so.1").search.directory == str(plat.parent)  # type: ignore[union-attr]
    assert by_name(report, "liblib.so.1").search.directory == str(libdir.parent)  # type: ignore[union-attr]


# --- what is already loaded wins -------------------------------------------------------


def test_conflicting_sonames_first_loaded_wins(tmp_path: Path) -> None:
    x = build_lib(tmp_path / "x" / "libconf.so.1", "conf", "X", soname="libconf.so.1")
    y = build_lib(tmp_path / "y" / "libconf.so.1", "conf", "Y", soname="libconf.so.1")
    liba = build_lib(
        tmp_path / "a" / "liba.so",
        "ay",
        "a",
        soname="liba.so",
        calls=["conf"],
        libs=[x],
        runpath=f"{tmp_path}/x",
    )
    libb = build_lib(
        tmp_path / "b" / "libb.so",
        "bee",
        "b",
        soname="libb.so",
        calls=["conf"],
        libs=[y],
        runpath=f"{tmp_path}/y",
    )
    exe = build_exe(
        tmp_path / "prog",
        ["ay", "bee"],
        libs=[liba, libb],
        runpath=f"{tmp_path}/a:{tmp_path}/b",
    )
    report = check(exe, answers=["a>X", "b>X"])
    conf = by_name(report, "libconf.so.1")
    assert conf.path == str(x) and conf.also_requested_by == [str(libb)]
    shadow = [r for r in report.shared if r.name == "libconf.so.1"]
    assert shadow and shadow[0].would_find == str(y) and shadow[0].path == str(x)


def test_each_requester_s_own_search_follows_its_own_runpath(tmp_path: Path) -> None:
    """The report's "its own search finds" is each requester's: a second
    library with the same RUNPATH as the first finds the loaded file, a third
    with another RUNPATH finds its own, though all three ask for one name
    (own searches are kept per name and per whose lists apply, not per name)."""
    x = build_lib(tmp_path / "x" / "libconf.so.1", "conf", "X", soname="libconf.so.1")
    y = build_lib(tmp_path / "y" / "libconf.so.1", "conf", "Y", soname="libconf.so.1")
    made = {}
    for func, answer, where in (("ay", "a", x), ("cee", "c", x), ("bee", "b", y)):
        made[func] = build_lib(
            tmp_path / answer / f"lib{answer}.so",
            func,
            answer,
            soname=f"lib{answer}.so",
            calls=["conf"],
            libs=[where],
            runpath=str(where.parent),
        )
    exe = build_exe(
        tmp_path / "prog",
        ["ay", "cee", "bee"],
        libs=list(made.values()),
        runpath=":".join(str(made[f].parent) for f in ("ay", "cee", "bee")),
    )
    report = check(exe, answers=["a>X", "c>X", "b>X"])
    shared = {r.requested_by: r for r in report.shared if r.name == "libconf.so.1"}
    assert set(shared) == {str(made["cee"]), str(made["bee"])}
    assert shared[str(made["cee"])].would_find is None  # the same file: nothing to tell
    assert shared[str(made["bee"])].would_find == str(y)


@needs_patchelf
def test_same_file_under_another_name_is_not_mapped_twice(tmp_path: Path) -> None:
    """Matching is also by file identity: liby.so -> liby.so.1 is one object."""
    y = build_lib(tmp_path / "l" / "liby.so.1", "why", "y", soname="liby.so.1")
    (tmp_path / "l" / "liby.so").symlink_to("liby.so.1")
    a = build_lib(tmp_path / "l" / "liba.so", "ay", "a", calls=["why"], libs=[y], runpath="$ORIGIN")
    subprocess.run(["patchelf", "--replace-needed", "liby.so.1", "liby.so", str(a)], check=True)
    exe = build_exe(tmp_path / "prog", ["ay", "why"], libs=[y, a], runpath=f"{tmp_path}/l")
    report = check(exe, answers=["a>y", "y"])
    assert [o.name for o in report.objects].count("liby.so") == 0
    shared = [r for r in report.shared if r.name == "liby.so"]
    assert [(r.requested_by, r.path) for r in shared] == [(str(a), f"{tmp_path}/l/liby.so.1")]


# --- the environment -----------------------------------------------------------------


def test_ld_library_path_order(tmp_path: Path) -> None:
    for d in ("rpath", "llp", "runpath"):
        build_lib(tmp_path / d / "libfoo.so.1", "foo", d, soname="libfoo.so.1")
    foo = tmp_path / "runpath" / "libfoo.so.1"
    with_runpath = build_exe(tmp_path / "p1", ["foo"], libs=[foo], runpath=f"{tmp_path}/runpath")
    env = {"LD_LIBRARY_PATH": f"{tmp_path}/nowhere::{tmp_path}/llp"}
    report = check(with_runpath, env, answers=["llp"])
    got = by_name(report, "libfoo.so.1")
    assert got.reason == loader.LD_LIBRARY_PATH and got.search
    assert got.search.directory == f"{tmp_path}/llp"
    with_rpath = build_exe(tmp_path / "p2", ["foo"], libs=[foo], rpath=f"{tmp_path}/rpath")
    assert by_name(check(with_rpath, env, answers=["rpath"]), "libfoo.so.1").reason == loader.RPATH


def test_ld_preload(tmp_path: Path) -> None:
    build_lib(tmp_path / "a" / "libfoo.so.1", "foo", "normal", soname="libfoo.so.1")
    pre = build_lib(tmp_path / "p" / "libfoo.so.1", "foo", "preloaded", soname="libfoo.so.1")
    exe = build_exe(
        tmp_path / "prog", ["foo"], libs=[tmp_path / "a" / "libfoo.so.1"], runpath=f"{tmp_path}/a"
    )
    env = {"LD_PRELOAD": f"{pre} {tmp_path}/missing.so"}
    report = check(exe, env, answers=["preloaded"])
    assert report.objects[0].requested_by == "LD_PRELOAD"
    assert any("missing.so" in w for w in report.warnings)


def test_nodeflib(tmp_path: Path) -> None:
    """DF_1_NODEFLIB: no system directories, and no cache hit inside them."""
    foo = build_lib(tmp_path / "u" / "libfoo.so.1", "foo", "foo", soname="libfoo.so.1")
    exe = build_exe(tmp_path / "prog", ["foo"], libs=[foo], runpath=f"{tmp_path}/u")
    patch_dynamic(exe, DT_FLAGS_1, or_value=0x800)
    assert read_elf(exe).nodeflib
    report = check(exe)
    libc = report.missing[0]
    assert libc.name == "libc.so.6" and libc.requested_by == str(exe)
    assert any("NODEFLIB" in s for s in libc.skipped)
    # libfoo has no NODEFLIB: its own request for libc.so.6 finds it.
    found = [o for o in report.objects if o.name == "libc.so.6" and o.path]
    assert found and found[0].requested_by == str(foo)
    system = loader.system_config().system_dirs[0]
    check(exe, {"LD_LIBRARY_PATH": system}, answers=["foo"])


# --- candidates the loader passes over, or refuses -----------------------------------------


def _foo_in_two_dirs(tmp_path: Path) -> Path:
    good = build_lib(tmp_path / "b" / "libfoo.so.1", "foo", "good", soname="libfoo.so.1")
    (tmp_path / "a").mkdir()
    return build_exe(tmp_path / "prog", ["foo"], libs=[good], runpath=f"{tmp_path}/a:{tmp_path}/b")


def test_wrong_class_and_machine_are_skipped(tmp_path: Path) -> None:
    exe = _foo_in_two_dirs(tmp_path)
    bad = tmp_path / "a" / "libfoo.so.1"
    data = bytearray((tmp_path / "b" / "libfoo.so.1").read_bytes())
    data[4] = 1  # ELFCLASS32
    bad.write_bytes(data)
    report = check(exe, answers=["good"])
    assert any(str(bad) in s for s in by_name(report, "libfoo.so.1").skipped)
    data[4] = 2
    data[18:20] = struct.pack("<H", 183)  # aarch64
    bad.write_bytes(data)
    check(exe, answers=["good"])


def test_non_elf_candidate_stops_the_loader(tmp_path: Path) -> None:
    """A non-ELF file in the way is not skipped: ld.so gives up (invalid ELF header)."""
    exe = _foo_in_two_dirs(tmp_path)
    (tmp_path / "a" / "libfoo.so.1").write_text("not a library, but long enough to be read\n" * 4)
    report = check(exe)
    assert report.error == f"{tmp_path}/a/libfoo.so.1: invalid ELF header"
    (tmp_path / "a" / "libfoo.so.1").write_bytes(b"")
    assert "file too short" in (check(exe).error or "")


def test_missing_library_is_reported_with_the_search(tmp_path: Path) -> None:
    foo = build_lib(tmp_path / "gone" / "libfoo.so.1", "foo", "foo", soname="libfoo.so.1")
    exe = build_exe(tmp_path / "prog", ["foo"], libs=[foo], runpath=f"{tmp_path}/elsewhere")
    foo.unlink()
    report = check(exe)
    missing = report.missing[0]
    assert missing.name == "libfoo.so.1" and missing.path is None
    assert missing.searched[0] == f"RUNPATH of {exe}: {tmp_path}/elsewhere"
    assert any(s.startswith("ld.so cache") for s in missing.searched)
    assert any(s.startswith("system search path") for s in missing.searched)


def test_hwcaps_subdirectories(tmp_path: Path) -> None:
    """Whatever subdirectories this loader searches, the prediction agrees."""
    config = loader.system_config()
    top = build_lib(tmp_path / "l" / "libfoo.so.1", "foo", "plain", soname="libfoo.so.1")
    subs = [s for s in config.subdirs if s][-3:] or pytest.skip("no hwcaps subdirectories")
    for sub in subs:
        build_lib(tmp_path / "l" / sub / "libfoo.so.1", "foo", sub, soname="libfoo.so.1")
    exe = build_exe(tmp_path / "prog", ["foo"], libs=[top], runpath=f"{tmp_path}/l")
    report = check(exe, answers=[subs[0]])
    assert by_name(report, "libfoo.so.1").hwcaps == subs[0]
    if config.hwcaps:
        best = f"glibc-hwcaps/{config.hwcaps[-1]}"
        build_lib(tmp_path / "l" / best / "libfoo.so.1", "foo", best, soname="libfoo.so.1")
        report = check(exe, answers=[best])
        assert by_name(report, "libfoo.so.1").hwcaps == best


def test_relative_and_empty_elements_search_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty RUNPATH element and a relative LD_LIBRARY_PATH one mean the cwd."""
    cwd = tmp_path / "cwd"
    foo = build_lib(cwd / "libfoo.so.1", "foo", "cwd", soname="libfoo.so.1")
    bar = build_lib(cwd / "sub" / "libbar.so.1", "bar", "sub", soname="libbar.so.1")
    exe = build_exe(tmp_path / "prog", ["foo", "bar"], libs=[foo, bar], runpath=f"{tmp_path}/no:")
    monkeypatch.chdir(cwd)
    report = check(exe, {"LD_LIBRARY_PATH": "sub"}, answers=["cwd", "sub"])
    assert by_name(report, "libfoo.so.1").path == "libfoo.so.1"
    assert by_name(report, "libbar.so.1").path == "sub/libbar.so.1"


@needs_patchelf
def test_origin_in_needed_and_in_ld_library_path(tmp_path: Path) -> None:
    """DT_NEEDED "$ORIGIN/..." is a path; $ORIGIN in LD_LIBRARY_PATH is the program's."""
    here = build_lib(tmp_path / "bin" / "libhere.so", "here", "here")
    llp = build_lib(tmp_path / "bin" / "llp" / "libllp.so.1", "lp", "llp", soname="libllp.so.1")
    exe = build_exe(tmp_path / "bin" / "prog", ["here", "lp"], libs=[here, llp])
    subprocess.run(
        ["patchelf", "--replace-needed", str(here), "$ORIGIN/libhere.so", str(exe)], check=True
    )
    report = check(exe, {"LD_LIBRARY_PATH": "$ORIGIN/llp"}, answers=["here", "llp"])
    assert by_name(report, f"{tmp_path}/bin/libhere.so").reason == loader.SLASH
    got = by_name(report, "libllp.so.1")
    assert got.reason == loader.LD_LIBRARY_PATH and got.path == str(llp)


def test_needed_name_with_a_slash(tmp_path: Path) -> None:
    # No SONAME: the link records the path given on the command line.
    foo = build_lib(tmp_path / "abs" / "libfoo.so", "foo", "by-path")
    exe = tmp_path / "prog"
    build_exe(exe, ["foo"], libs=[foo])
    assert str(foo) in read_elf(exe).needed
    report = check(exe, answers=["by-path"])
    assert by_name(report, str(foo)).reason == loader.SLASH


def test_cache_names_compare_numerically(tmp_path: Path) -> None:
    """ld.so.cache matches names by libcmp: libz.so.01 is libz.so.1."""
    cache = ldcache.read_cache()
    cached = {e.soname for e in cache.entries} if cache else set()
    if "libz.so.1" not in cached or shutil.which("patchelf") is None:
        pytest.skip("needs libz.so.1 in ld.so.cache and patchelf")
    foo = build_lib(tmp_path / "libfoo.so.1", "foo", "foo", soname="libfoo.so.1")
    exe = build_exe(tmp_path / "prog", ["foo"], libs=[foo], runpath=str(tmp_path))
    subprocess.run(["patchelf", "--add-needed", "libz.so.01", str(exe)], check=True)
    report = check(exe, answers=["foo"])
    z = by_name(report, "libz.so.01")
    assert z.reason == loader.LD_SO_CACHE and z.soname == "libz.so.1"


# --- the system's own programs --------------------------------------------------------------


@pytest.mark.parametrize("program", ["/usr/bin/env", "/usr/bin/ls", sys.executable])
def test_system_programs(program: str) -> None:
    real = os.path.realpath(program)
    info = read_elf(real)
    if not info.interpreter:
        pytest.skip("statically linked")
    report = resolve(real, {})
    traced = subprocess.run(
        [real], env={"LD_TRACE_LOADED_OBJECTS": "1"}, capture_output=True, text=True
    ).stdout
    paths = [
        m.group(2) or m.group(1)
        for line in traced.splitlines()
        if (m := re.match(r"\s+(\S+)(?: => (\S+))? \(0x", line)) and "vdso" not in line
    ]
    assert [o.path for o in report.objects] == paths


# --- errors and the command line -------------------------------------------------------------


def test_not_elf_is_one_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(LoaderError, match="not an ELF file"):
        resolve(text, {})
    proc = run_cpk("ldd", text)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"cpk: error: {text}: not an ELF file"
    trunc = tmp_path / "trunc.so"
    trunc.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    proc = run_cpk("ldd", trunc)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_cli_names_reasons(tmp_path: Path) -> None:
    libb = build_lib(tmp_path / "deps" / "libb.so.1", "bee", "b", soname="libb.so.1")
    liba = build_lib(
        tmp_path / "lib" / "liba.so.1",
        "ay",
        "a",
        soname="liba.so.1",
        calls=["bee"],
        libs=[libb],
        runpath="$ORIGIN/../deps",
    )
    exe = build_exe(tmp_path / "bin" / "prog", ["ay"], libs=[liba], runpath="$ORIGIN/../lib")
    proc = run_cpk("ldd", exe)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"liba.so.1 => {tmp_path}/bin/../lib/liba.so.1" in out
    assert f"RUNPATH of {exe}: $ORIGIN/../lib = {tmp_path}/bin/../lib" in out
    assert "ld.so cache" in out
    assert "the program interpreter (PT_INTERP)" in out
    proc = run_cpk("ldd", "--json", exe)
    data = __import__("json").loads(proc.stdout)
    assert [o["reason"] for o in data["objects"]][:2] == ["runpath", "ld_so_cache"]
    libb.unlink()
    proc = run_cpk("ldd", exe)
    assert proc.returncode == 1
    assert "libb.so.1 => not found" in proc.stdout
    assert "1 not found" in proc.stderr


def test_loader_configuration_is_cached_by_the_loaders_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentpkg.elf.loader import cached_system_config, system_config

    first = cached_system_config(tmp_path)
    assert first == system_config()
    written = list((tmp_path / "loader-v2").rglob("*.marshal"))
    assert len(written) == 1

    # The next process reads the answer: ld.so is not started again.
    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("ld.so --help was run again")

    monkeypatch.setattr(subprocess, "run", no_process)
    assert cached_system_config(tmp_path) == first
    # Other tunables are another question, kept beside the first answer.
    monkeypatch.undo()
    cached_system_config(tmp_path, "glibc.cpu.hwcaps=-AVX2")
    assert len(list((tmp_path / "loader-v2").rglob("*.marshal"))) == 2
    # A damaged file is asked again and rewritten, never trusted.
    written[0].write_bytes(b"\xffnot marshal")
    assert cached_system_config(tmp_path) == first
