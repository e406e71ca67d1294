"""`cpk store add` of native packages: RUNPATH patching, metadata, bad input.

Everything here is compiled with cc, patched by the real patchelf and run by
the real loader; ``readelf`` (binutils) is the independent witness of what
ended up in the dynamic sections.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.debs import dpkg_build, needs_dpkg_deb
from support.elfbuild import CC, build_exe, build_lib, needs_cc

pytestmark = [
    needs_cc,
    pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf"),
]

RUNPATH = "$ORIGIN:$ORIGIN/{}_deps:$ORIGIN/common_libs"
HOST_MACHINE = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dynamic(path: Path) -> dict[str, list[str]]:
    """readelf's view of the dynamic section: tag -> values."""
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True)
    tags: dict[str, list[str]] = {}
    for m in re.finditer(r"\((\w+)\)\s+[^\[]*\[(.*)\]", out.stdout):
        tags.setdefault(m.group(1), []).append(m.group(2))
    return tags


def interpreter(path: Path) -> str | None:
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True).stdout
    m = re.search(r"Requesting program interpreter: (.*)\]", out)
    return m.group(1) if m else None


def meta(entry: Path) -> dict:
    return json.loads((entry / ".cpk" / "entry.json").read_text())


def add(*args: object) -> Path:
    return Path(run_cpk("store", "add", *args, check=True).stdout.strip())


def home_state(root: Path) -> dict:
    """tree_snapshot plus the bytes of every file: 'byte-identical'."""
    snap = tree_snapshot(root)
    return {k: (*v, stat.S_ISREG(v[0]) and sha256(root / k)) for k, v in snap.items()}


def build_prefix(tmp: Path) -> Path:
    """bin/hello -> libtwo.so.2 (DT_RPATH) -> libthree.so.3 (DT_RUNPATH), plus share/."""
    b = tmp / "build"
    three = build_lib(
        b / "libthree.so.3.0.0", "three", "three", soname="libthree.so.3", runpath="/opt/three"
    )
    two = build_lib(
        b / "libtwo.so.2.1",
        "two",
        "two",
        soname="libtwo.so.2",
        calls=["three"],
        libs=[three],
        rpath=str(b),  # absolute: must not survive the import
    )
    os.symlink(three.name, b / "libthree.so.3")
    exe = build_exe(b / "hello", ["two"], libs=[two], runpath="/opt/hello/lib")
    p = tmp / "prefix"
    (p / "bin").mkdir(parents=True)
    (p / "lib").mkdir()
    shutil.copy2(exe, p / "bin" / "hello")
    for f in (two, three):
        shutil.copy2(f, p / "lib" / f.name)
    os.symlink("libtwo.so.2.1", p / "lib" / "libtwo.so.2")
    os.symlink("libtwo.so.2", p / "lib" / "libtwo.so")
    os.symlink("libthree.so.3.0.0", p / "lib" / "libthree.so.3")
    for rel, data in {
        "share/man/man1/hello.1": b".TH HELLO 1\n.SH NAME\nhello \\- says hello\n",
        "share/doc/hello/README": b"hello docs\n",
        "share/locale/de/LC_MESSAGES/hello.mo": b"\xde\x12\x04\x95\x00\x00\x00\x00binary",
    }.items():
        (p / rel).parent.mkdir(parents=True, exist_ok=True)
        (p / rel).write_bytes(data)
    return p


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return build_prefix(tmp_path)


ELVES = {
    "bin/hello": "hello",
    "lib/libtwo.so.2.1": "libtwo.so.2",
    "lib/libthree.so.3.0.0": "libthree.so.3",
}


def test_prefix_every_elf_gets_store_runpath_and_metadata(prefix: Path) -> None:
    before = home_state(prefix)
    originals = {rel: dynamic(prefix / rel) for rel in ELVES}
    assert "RPATH" in originals["lib/libtwo.so.2.1"]  # the build did what we meant
    assert "RUNPATH" in originals["lib/libthree.so.3.0.0"]

    entry = add(prefix, "--name", "hello", "--version", "1.0")
    m = meta(entry)
    assert m["kind"] == "elf"
    assert sorted(m["elf"]) == sorted(ELVES)
    for rel, elfname in ELVES.items():
        stored, dyn = entry / rel, dynamic(entry / rel)
        assert dyn.get("RUNPATH") == [RUNPATH.format(elfname)], rel
        assert "RPATH" not in dyn, rel
        facts = m["elf"][rel]
        assert facts["original_sha256"] == sha256(prefix / rel) != facts["sha256"]
        assert facts["sha256"] == sha256(stored)
        assert facts["needed"] == originals[rel]["NEEDED"] == dyn["NEEDED"]
        assert facts["soname"] == (originals[rel].get("SONAME") or [None])[0]
        assert facts["interpreter"] == interpreter(prefix / rel)
        assert facts["class"] == 64
        if HOST_MACHINE:
            assert facts["machine"] == HOST_MACHINE
        assert facts["original_runpath"] == (originals[rel].get("RUNPATH") or [None])[0]
        assert facts["original_rpath"] == (originals[rel].get("RPATH") or [None])[0]
    hello = m["elf"]["bin/hello"]
    assert hello["type"] == "executable" and hello["interpreter"].startswith("/")
    assert hello["original_runpath"] == "/opt/hello/lib" and hello["original_rpath"] is None
    assert m["elf"]["lib/libtwo.so.2.1"]["original_rpath"] == str(prefix.parent / "build")
    assert m["elf"]["lib/libtwo.so.2.1"]["needed"][0] == "libthree.so.3"
    assert m["elf"]["lib/libthree.so.3.0.0"]["interpreter"] is None

    prov = m["provides"]
    assert prov["PATH"] == ["bin/hello"]
    assert prov["MANPATH"] == ["share/man/man1/hello.1"]
    assert prov["locale"] == ["share/locale/de/LC_MESSAGES/hello.mo"]
    assert prov["doc"] == ["share/doc/hello/README"]
    assert prov["sonames"] == {
        "libtwo.so.2": "lib/libtwo.so.2.1",
        "libthree.so.3": "lib/libthree.so.3.0.0",
    }
    assert sorted(prov["LD_LIBRARY_PATH"]) == ["lib/libthree.so.3.0.0", "lib/libtwo.so.2.1"]

    # Non-ELF files and symlinks come through untouched.
    for rel in prov["MANPATH"] + prov["locale"] + prov["doc"]:
        assert (entry / rel).read_bytes() == (prefix / rel).read_bytes()
    for link in ("lib/libtwo.so.2", "lib/libtwo.so", "lib/libthree.so.3"):
        assert os.readlink(entry / link) == os.readlink(prefix / link)
    assert home_state(prefix) == before  # the source was never patched in place


def test_patched_program_finds_its_libraries_through_runpath(prefix: Path, tmp_path: Path) -> None:
    entry = add(prefix, "--name", "hello", "--version", "1.0")
    run = tmp_path / "run"
    (run / "common_libs").mkdir(parents=True)
    shutil.copy(entry / "bin" / "hello", run / "hello")
    for rel, soname in list(ELVES.items())[1:]:
        shutil.copy(entry / rel, run / "common_libs" / soname)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run(
        [run / "hello"], env={**env, "LD_DEBUG": "libs"}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "two>three\n"
    for soname in ("libtwo.so.2", "libthree.so.3"):
        assert f"calling init: {run}/common_libs/{soname}" in proc.stderr, proc.stderr
    # The unpatched original cannot run from this layout: patching mattered.
    shutil.copy(prefix / "bin" / "hello", run / "hello")
    assert subprocess.run([run / "hello"], env=env, capture_output=True).returncode != 0


def test_single_executable_lands_in_bin_named_after_the_file(tmp_path: Path) -> None:
    lib = build_lib(tmp_path / "b" / "libone.so.1", "one", "one", soname="libone.so.1")
    exe = build_exe(tmp_path / "b" / "tool", ["one"], libs=[lib])
    entry = add(exe, "--version", "2.0")
    assert entry.name.startswith("tool,2.0,")
    assert sorted(os.listdir(entry)) == [".cpk", "bin"]
    assert os.listdir(entry / "bin") == ["tool"]
    assert dynamic(entry / "bin" / "tool")["RUNPATH"] == [RUNPATH.format("tool")]
    m = meta(entry)
    assert m["source_hash"] == f"sha256:{sha256(exe)}"
    assert m["elf"]["bin/tool"]["original_sha256"] == sha256(exe)
    assert m["provides"]["PATH"] == ["bin/tool"]


def test_single_library_gets_soname_symlink_when_file_name_differs(tmp_path: Path) -> None:
    lib = build_lib(tmp_path / "libfoo.so.1.2.3", "foo", "foo", soname="libfoo.so.1")
    entry = add(lib, "--version", "1.2.3")
    assert entry.name.startswith("libfoo.so.1.2.3,1.2.3,")
    assert sorted(os.listdir(entry / "lib")) == ["libfoo.so.1", "libfoo.so.1.2.3"]
    assert os.readlink(entry / "lib" / "libfoo.so.1") == "libfoo.so.1.2.3"
    assert dynamic(entry / "lib" / "libfoo.so.1.2.3")["RUNPATH"] == [RUNPATH.format("libfoo.so.1")]
    assert meta(entry)["provides"]["sonames"] == {"libfoo.so.1": "lib/libfoo.so.1.2.3"}
    plugin = add(build_lib(tmp_path / "p" / "plug.so", "plug", "plug"), "--version", "1")
    assert os.listdir(plugin / "lib") == ["plug.so"]  # no SONAME: named after the file
    assert dynamic(plugin / "lib" / "plug.so")["RUNPATH"] == [RUNPATH.format("plug.so")]
    assert "sonames" not in meta(plugin)["provides"]
    same = build_lib(tmp_path / "x" / "libbar.so.4", "bar", "bar", soname="libbar.so.4")
    assert os.listdir(add(same, "--name", "bar", "--version", "4") / "lib") == ["libbar.so.4"]


def test_single_elf_without_version_is_one_clear_error(tmp_path: Path, cpk_home: Path) -> None:
    exe = build_exe(tmp_path / "tool")
    before = home_state(cpk_home)
    proc = run_cpk("store", "add", exe)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("cpk: error:")
    assert str(exe) in proc.stderr and "--version" in proc.stderr
    assert home_state(cpk_home) == before


def test_identify_names_entry_from_the_unpatched_original(prefix: Path) -> None:
    entry = add(prefix, "--name", "hello", "--version", "1.0")
    for rel in ELVES:
        proc = run_cpk("identify", prefix / rel)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "hello 1.0" in proc.stdout and str(entry / rel) in proc.stdout
    stranger = build_exe(prefix.parent / "other" / "stranger")
    assert run_cpk("identify", stranger).returncode == 1


def test_verify_passes_then_names_a_flipped_byte_in_a_patched_elf(prefix: Path) -> None:
    entry = add(prefix, "--name", "hello", "--version", "1.0")
    ok = run_cpk("store", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    target = entry / "lib" / "libtwo.so.2.1"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(target, 0o644)
    target.write_bytes(bytes(data))
    os.chmod(target, 0o555)
    bad = run_cpk("store", "verify")
    assert bad.returncode == 1
    assert entry.name in bad.stdout and "lib/libtwo.so.2.1" in bad.stdout


def test_adding_the_same_thing_twice_is_a_no_op(prefix: Path, cpk_home: Path) -> None:
    first = run_cpk("store", "add", prefix, "--name", "hello", "--version", "1.0", check=True)
    state = home_state(cpk_home)
    again = run_cpk("store", "add", prefix, "--name", "hello", "--version", "1.0", check=True)
    assert again.stdout == first.stdout
    assert "already present" in again.stderr
    entries = [n for n in os.listdir(cpk_home / "store") if not n.startswith(".")]
    assert entries == [Path(first.stdout.strip()).name]
    assert home_state(cpk_home) == state


def _real_lib(tmp: Path) -> Path:
    return build_lib(tmp / "real" / "libreal.so.1", "real", "x" * 3000, soname="libreal.so.1")


def _put(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


FOREIGN = (62, "x86_64") if os.uname().machine == "aarch64" else (183, "aarch64")
#: kind -> (the bad bytes, made from a real library's bytes; a word the error must hold)
BAD = {
    "truncated-100": (lambda d: d[:100], "truncated"),
    "truncated-2000": (lambda d: d[:2000], "truncated"),
    "foreign-machine": (lambda d: _put(d, 18, FOREIGN[0].to_bytes(2, "little")), FOREIGN[1]),
    "class-flipped": (lambda d: _put(d, 4, b"\x01"), "32-bit"),
    "garbage": (lambda d: b"\x7fELF" + b"not an ELF header, only text. " * 100, "malformed"),
    "garbage-header": (lambda d: b"\x7fELF\x02\x01\x01" + b"\xff" * 4000, "truncated"),
}


def _bad_file(kind: str, tmp: Path) -> tuple[Path, str]:
    make, word = BAD[kind]
    out = tmp / "bad" / "libbad.so.1"
    out.parent.mkdir()
    out.write_bytes(make(_real_lib(tmp).read_bytes()))
    return out, word


def assert_refused(cpk_home: Path, args: list[object], words: list[str]) -> None:
    add(_real_lib(cpk_home.parent / f"seed-{os.getpid()}"), "--version", "1")  # a live store
    before = home_state(cpk_home)
    proc = run_cpk("store", "add", *args)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("cpk: error:") and proc.stderr.count("\n") == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)
    assert home_state(cpk_home) == before


@pytest.mark.parametrize("kind", BAD)
def test_bad_single_elf_is_one_line_and_no_store_change(
    kind: str, tmp_path: Path, cpk_home: Path
) -> None:
    bad, word = _bad_file(kind, tmp_path)
    assert_refused(cpk_home, [bad, "--version", "1"], [str(bad), word])


@pytest.mark.parametrize("kind", BAD)
def test_bad_elf_inside_tree_error_names_relative_path(
    kind: str, tmp_path: Path, prefix: Path, cpk_home: Path
) -> None:
    bad, word = _bad_file(kind, tmp_path)
    shutil.copy(bad, prefix / "lib" / "libbad.so.1")
    args = [prefix, "--name", "hello", "--version", "1"]
    assert_refused(cpk_home, args, ["lib/libbad.so.1", word])


def test_tree_with_setuid_file_is_refused(prefix: Path, cpk_home: Path) -> None:
    os.chmod(prefix / "bin" / "hello", 0o4755)
    args = [prefix, "--name", "hello", "--version", "1"]
    assert_refused(cpk_home, args, ["bin/hello", "setuid"])


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/etc/passwd"])
def test_tree_with_escaping_symlink_is_refused(target: str, prefix: Path, cpk_home: Path) -> None:
    os.symlink(target, prefix / "share" / "doc" / "hello" / "escape")
    args = [prefix, "--name", "hello", "--version", "1"]
    assert_refused(cpk_home, args, ["share/doc/hello/escape", "outside"])


def test_static_executable_is_stored_unchanged_and_runs(tmp_path: Path) -> None:
    src = tmp_path / "static.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("static ok"); return 0; }\n')
    exe = tmp_path / "static"
    cc = subprocess.run([CC, "-static", "-o", exe, src], capture_output=True)
    if cc.returncode:
        pytest.skip("no static libc (cc -static failed)")
    entry = add(exe, "--version", "1")
    stored = entry / "bin" / "static"
    assert stored.read_bytes() == exe.read_bytes()
    assert "RUNPATH" not in dynamic(stored)
    assert subprocess.run([stored], capture_output=True, text=True).stdout == "static ok\n"
    facts = meta(entry)["elf"]["bin/static"]
    assert facts["original_sha256"] == facts["sha256"] == sha256(exe)
    assert run_cpk("identify", exe).returncode == 0


def test_static_pie_is_a_program_stored_unchanged_and_runs(tmp_path: Path) -> None:
    # ET_DYN with DF_1_PIE and no PT_INTERP: it relocates itself through its
    # own dynamic section, which patchelf must not move.
    src = tmp_path / "spie.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("spie ok"); return 0; }\n')
    exe = tmp_path / "spie"
    if subprocess.run([CC, "-static-pie", "-o", exe, src], capture_output=True).returncode:
        pytest.skip("no static-pie support (cc -static-pie failed)")
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "spie ok\n"
    entry = add(exe, "--version", "1")
    (rel,) = meta(entry)["elf"]
    run = subprocess.run([entry / rel], capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (0, "spie ok\n"), f"stored {rel} broke"
    assert (entry / rel).read_bytes() == exe.read_bytes()
    assert rel == "bin/spie" and meta(entry)["elf"][rel]["type"] == "executable"


def test_library_with_interpreter_is_still_a_library(tmp_path: Path) -> None:
    # libc.so.6 is such a file: a SONAME and a PT_INTERP (it runs, too).
    interp = interpreter(build_exe(tmp_path / "probe"))
    src = tmp_path / "librun.c"
    src.write_text(
        f'const char interp[] __attribute__((section(".interp"))) = "{interp}";\n'
        'const char *run(void) { return "run"; }\n'
    )
    lib = tmp_path / "librun.so.1.0"
    subprocess.run([CC, "-shared", "-fPIC", "-Wl,-soname,librun.so.1", "-o", lib, src], check=True)
    assert interpreter(lib) == interp
    entry = add(lib, "--version", "1")
    m = meta(entry)
    assert sorted(os.listdir(entry)) == [".cpk", "lib"], m["elf"]
    assert m["provides"].get("sonames") == {"librun.so.1": "lib/librun.so.1.0"}
    assert dynamic(entry / "lib" / "librun.so.1.0")["RUNPATH"] == [RUNPATH.format("librun.so.1")]


def test_requires_is_recorded_in_entry_json(prefix: Path) -> None:
    entry = add(
        prefix, "--name", "hello", "--version", "1", "--requires", "XDG_DATA_DIRS:icons/hicolor"
    )
    assert meta(entry)["requires"] == [{"namespace": "XDG_DATA_DIRS", "path": "icons/hicolor"}]


@pytest.mark.parametrize("value", ["nocolon", ":path", "NS:"])
def test_bad_requires_value_is_one_clear_line(value: str, prefix: Path, cpk_home: Path) -> None:
    args = [prefix, "--name", "hello", "--version", "1", "--requires", value]
    assert_refused(cpk_home, args, ["--requires", value])


def _build_deb(tmp: Path, prefix: Path) -> Path:
    root = tmp / "debroot"
    shutil.copytree(prefix, root / "usr", symlinks=True)
    control = {
        "Package": "hello",
        "Version": "1:2.5-1",
        "Depends": "libc6 (>= 2.34)",
        "Description": "says hello\n more text",
    }
    return dpkg_build(root, tmp / "hello_2.5-1.deb", control)


@needs_dpkg_deb
def test_deb_import_takes_name_version_depends_and_patches(prefix: Path, tmp_path: Path) -> None:
    pytest.importorskip("contentpkg.elf.deb", reason="deb reader not written yet")
    deb = _build_deb(tmp_path, prefix)
    entry = add(deb)
    assert entry.name.startswith("hello,2.5-1,")
    m = meta(entry)
    assert m["source_hash"] == f"sha256:{sha256(deb)}"  # spelled as a wheel's is
    assert m["deb"]["version"] == "1:2.5-1" and m["dependencies"] == ["libc6 (>= 2.34)"]
    for rel, elfname in ELVES.items():
        assert dynamic(entry / rel)["RUNPATH"] == [RUNPATH.format(elfname)]
        assert m["elf"][rel]["original_sha256"] == sha256(prefix / rel)
    assert (entry / "share/doc/hello/README").read_bytes() == b"hello docs\n"
    assert m["provides"]["PATH"] == ["bin/hello"]


@needs_dpkg_deb
def test_deb_recorded_by_bare_hex_is_still_found(
    prefix: Path, tmp_path: Path, cpk_home: Path
) -> None:
    """Entries made before source hashes were ``sha256:<hex>`` are keyed by
    the bare hex: adding the same .deb again finds them, unpacking nothing."""
    from contentpkg.store.layers import LocalStore

    deb = _build_deb(tmp_path, prefix)
    entry = add(deb)
    sources = cpk_home / "store" / ".sources"
    digest = sha256(deb)
    os.rename(sources / f"sha256-{digest}", sources / digest)  # the old spelling
    state = home_state(cpk_home)
    again = run_cpk("store", "add", deb, check=True)
    assert Path(again.stdout.strip()) == entry
    assert home_state(cpk_home) == state  # nothing unpacked, nothing re-linked
    store = LocalStore(cpk_home / "store")
    for spelling in (f"sha256:{digest}", digest):
        found = store.find_source(spelling)
        assert found is not None and found.path == entry


@needs_dpkg_deb
def test_files_without_a_runpath_share_one_patchelf_process_and_each_gets_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four ELF files with no RUNPATH (two of them one inode, as a .deb's hard
    link members are) and one whose RUNPATH takes the new value in place: one
    patchelf process for the four, each file its own value (readelf is the
    witness), the hard-linked names no longer one inode, and both names of
    the program run."""
    from contentpkg.context import Context
    from contentpkg.elf import package, patching
    from contentpkg.store import Store

    tree = tmp_path / "pkg"
    lib = build_lib(tree / "usr/lib/libone.so.1", "one", "one", soname="libone.so.1")
    build_lib(tree / "usr/lib/libtwo.so.2", "two", "two", soname="libtwo.so.2")
    long_slot = "/opt/" + "a-long-build-directory/" * 4 + "lib"
    build_lib(tree / "usr/lib/libslot.so.3", "slot", "slot", soname="libslot.so.3",
              runpath=long_slot)  # fmt: skip
    exe = build_exe(tree / "usr/bin/prog", ["one"], libs=[lib])
    os.link(exe, tree / "usr/bin/prog-alias")
    control = {"Package": "many", "Description": "several ELF files"}
    deb = dpkg_build(tree, tmp_path / "many.deb", control, drop_c_sources=True)

    calls: list[list[str]] = []
    real = subprocess.run

    def counting(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if os.path.basename(str(args[0])) == "patchelf":
            calls.append([str(a) for a in args])
        return real(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(patching.subprocess, "run", counting)
    result, _notes = package.add_package(Store.open(ctx=Context.from_environ()), deb)
    entry = result.entry.path
    assert len(calls) == 1, calls
    patched = {os.path.basename(a) for a in calls[0][calls[0].index("--set-rpath") + 2 :]}
    assert len(patched) == 4 and "libslot.so.3" not in patched
    expected = {
        "lib/libone.so.1": "libone.so.1",
        "lib/libtwo.so.2": "libtwo.so.2",
        "lib/libslot.so.3": "libslot.so.3",
        "bin/prog": "prog",
        "bin/prog-alias": "prog-alias",
    }
    for rel, name in expected.items():
        assert dynamic(entry / rel)["RUNPATH"] == [RUNPATH.format(name)], rel
        assert meta(entry)["elf"][rel]["runpath"] == RUNPATH.format(name)
        assert stat.S_IMODE(os.stat(entry / rel).st_mode) in (0o444, 0o555)
    assert os.stat(entry / "bin/prog").st_ino != os.stat(entry / "bin/prog-alias").st_ino
    for name in ("prog", "prog-alias"):
        # An entry is not an env dir: its lib/ is named for the loader here.
        env = dict(os.environ, LD_LIBRARY_PATH=str(entry / "lib"))
        out = subprocess.run([entry / "bin" / name], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and out.stdout == "one\n", out.stderr
    assert run_cpk("store", "verify").returncode == 0
