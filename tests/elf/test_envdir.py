"""cpk install: env dirs assembled from the store, checked by running them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.elfbuild import build_exe, build_lib, needs_cc

pytestmark = needs_cc


def _prefix(root: Path, exe: str | None, calls: list[str], libs: dict[str, tuple]) -> Path:
    """A prefix tree: bin/<exe> calling ``calls``, lib/<soname> per libs.

    libs maps soname -> (func, answer, [sonames it needs], [funcs it calls]).
    Libraries are built in dependency order from within the same tree.
    """
    (root / "lib").mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    pending = dict(libs)
    while pending:
        for soname, (func, answer, needs, calls_) in list(pending.items()):
            if all(n in built or (root.parent / "ext" / n).exists() for n in needs):
                deps = [built.get(n) or root.parent / "ext" / n for n in needs]
                built[soname] = build_lib(
                    root / "lib" / soname, func, answer, soname=soname, calls=calls_, libs=deps
                )
                del pending[soname]
    for p in root.glob("lib/*.c"):
        p.unlink()
    if exe:
        out = build_exe(root / "bin" / exe, calls, libs=list(built.values()))
        out.with_suffix(".c").unlink()
    return root


def _add(tree: Path, name: str, version: str) -> str:
    proc = run_cpk("store", "add", tree, "--name", name, "--version", version, check=True)
    return proc.stdout.strip()


def _run(path: Path) -> str:
    proc = subprocess.run([str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _loaded(path: Path) -> list[str]:
    """The objects the real loader initialised, from LD_DEBUG=libs."""
    env = dict(os.environ, LD_DEBUG="libs")
    proc = subprocess.run([str(path)], capture_output=True, text=True, env=env, timeout=30)
    return [
        line.split("calling init: ", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if "calling init: " in line
    ]


@pytest.fixture
def app_store(tmp_path: Path) -> Path:
    """app 1.0: bin/app -> libmid.so.1 -> libbase.so.1 (package base 1.0)."""
    base = _prefix(tmp_path / "base", None, [], {"libbase.so.1": ("fb", "base-1", [], [])})
    _add(base, "base", "1.0")
    (tmp_path / "ext").mkdir()
    shutil.copy(base / "lib" / "libbase.so.1", tmp_path / "ext" / "libbase.so.1")
    app = _prefix(
        tmp_path / "app",
        "app",
        ["fm"],
        {"libmid.so.1": ("fm", "mid-1", ["libbase.so.1"], ["fb"])},
    )
    (app / "share" / "man" / "man1").mkdir(parents=True)
    (app / "share" / "man" / "man1" / "app.1").write_text(".TH APP 1\n.SH NAME\napp\n")
    _add(app, "app", "1.0")
    return tmp_path


def test_install_runs_from_where_with_libraries_from_where(app_store: Path) -> None:
    where = app_store / "W"
    proc = run_cpk("install", "app", where, check=True)
    assert "installed" in proc.stderr
    assert (where / "bin" / "app-1.0").is_file() and not (where / "bin" / "app-1.0").is_symlink()
    assert os.readlink(where / "bin" / "app") == "app-1.0"
    assert os.readlink(where / "bin" / "common_libs") == "../lib"
    assert (where / "share" / "man" / "man1" / "app.1").is_file()
    assert _run(where / "bin" / "app") == "mid-1>base-1\n"
    loaded = _loaded(where / "bin" / "app")
    ours = [p for p in loaded if "libmid" in p or "libbase" in p]
    assert len(ours) == 2 and all(p.startswith(str(where)) for p in ours), loaded

    manifest = json.loads((where / ".cpk" / "manifest.json").read_text())
    assert [i["name"] for i in manifest["installed"]] == ["app"]
    row = manifest["files"]["lib/libbase.so.1"]
    assert row["entry"].startswith("base,1.0,") and row["path"] == "lib/libbase.so.1"
    assert set((where / ".cpk" / "refs").read_text().split()) == set(manifest["entries"])


def test_reinstall_is_a_noop_that_says_so(app_store: Path) -> None:
    where = app_store / "W"
    run_cpk("install", "app", where, check=True)
    before = tree_snapshot(where)
    proc = run_cpk("install", "app", where, check=True)
    assert "nothing changed" in proc.stderr
    assert tree_snapshot(where) == before


def test_where_survives_copies_and_gc(app_store: Path, cpk_home: Path) -> None:
    where = app_store / "W"
    run_cpk("install", "app", where, check=True)
    subprocess.run(["cp", "-a", str(where), str(app_store / "A")], check=True)
    subprocess.run(["cp", "-rL", str(where), str(app_store / "L")], check=True)
    assert _run(app_store / "A" / "bin" / "app") == "mid-1>base-1\n"
    assert _run(app_store / "L" / "bin" / "app") == "mid-1>base-1\n"
    # WHERE is a gc root while it exists: nothing is collected.
    run_cpk("store", "gc", check=True)
    assert run_cpk("store", "path", "base").returncode == 0
    shutil.rmtree(where)
    run_cpk("store", "gc", check=True)
    assert run_cpk("store", "path", "base").returncode != 0  # collected
    for copy in ("A", "L"):
        assert _run(app_store / copy / "bin" / "app") == "mid-1>base-1\n"
        loaded = _loaded(app_store / copy / "bin" / "app")
        assert any(p.startswith(str(app_store / copy)) and "libbase" in p for p in loaded)


def test_conflicting_builds_of_one_soname_are_kept_apart(tmp_path: Path) -> None:
    """alpha brings libbase build 1, beta build 2 (each in its own package);
    beta's libmid (from package mid) must come along privately too, or the
    loader would find lib/'s libbase from libmid's $ORIGIN."""
    (tmp_path / "ext").mkdir()
    alpha = _prefix(
        tmp_path / "alpha", "alpha", ["fb"], {"libbase.so.1": ("fb", "base-alpha", [], [])}
    )
    _add(alpha, "alpha", "1")
    # mid is linked against some libbase; which one is the env dir's choice.
    shutil.copy(alpha / "lib" / "libbase.so.1", tmp_path / "ext" / "libbase.so.1")
    mid = _prefix(
        tmp_path / "mid", None, [], {"libmid.so.1": ("fm", "mid", ["libbase.so.1"], ["fb"])}
    )
    _add(mid, "mid", "1")
    shutil.copy(mid / "lib" / "libmid.so.1", tmp_path / "ext" / "libmid.so.1")
    beta = _prefix(tmp_path / "beta", None, [], {"libbase.so.1": ("fb", "base-beta", [], [])})
    # beta's executable needs libmid (not its own libbase directly).
    build_exe(beta / "bin" / "beta", ["fm"], libs=[tmp_path / "ext" / "libmid.so.1"])
    (beta / "bin" / "beta.c").unlink()
    _add(beta, "beta", "1")

    where = tmp_path / "W"
    run_cpk("install", "alpha", where, check=True)
    run_cpk("install", "beta", where, check=True)
    assert _run(where / "bin" / "alpha") == "base-alpha\n"
    assert _run(where / "bin" / "beta") == "mid>base-beta\n"
    deps = where / "bin" / "beta_deps"
    assert (deps / "libbase.so.1").is_file() and (deps / "libmid.so.1").is_file()
    assert os.readlink(deps / "common_libs") == "../../lib"
    loaded = _loaded(where / "bin" / "beta")
    assert str(deps / "libbase.so.1") in loaded, loaded


def test_libs_env_dirs_are_reached_by_symlink(app_store: Path) -> None:
    libs_env = app_store / "LIBS"
    run_cpk("install", "base", libs_env, check=True)
    assert (libs_env / "lib" / "libbase.so.1").is_file()
    where = app_store / "W"
    run_cpk("install", "app", where, "--libs", libs_env, check=True)
    link = where / "lib" / "libbase.so.1"
    assert link.is_symlink() and os.readlink(link) == str(libs_env / "lib" / "libbase.so.1")
    assert _run(where / "bin" / "app") == "mid-1>base-1\n"


def test_missing_soname_lists_it_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "ext").mkdir()
    build_lib(tmp_path / "ext" / "libnothere.so.3", "fx", "x", soname="libnothere.so.3")
    lonely = _prefix(tmp_path / "lonely", "lonely", [], {})
    build_exe(lonely / "bin" / "lonely", ["fx"], libs=[tmp_path / "ext" / "libnothere.so.3"])
    (lonely / "bin" / "lonely.c").unlink()
    _add(lonely, "lonely", "1")
    where = tmp_path / "W"
    proc = run_cpk("install", "lonely", where)
    assert proc.returncode == 1
    assert proc.stderr.startswith("cpk: error: missing libraries: libnothere.so.3")
    assert "needed by" in proc.stderr and "Traceback" not in proc.stderr
    assert not where.exists()
    # In process, the error carries what is missing and who needs it, so a
    # caller can act on it without reading the message.
    from contentpkg.elf.envdir import install
    from contentpkg.errors import MissingLibraryError
    from contentpkg.store import Store

    with pytest.raises(MissingLibraryError) as caught:
        install(Store.open(), ["lonely"], where)
    assert list(caught.value.missing) == ["libnothere.so.3"]
    assert any("lonely" in who for who in caught.value.missing["libnothere.so.3"])
    assert not where.exists()


def test_foreign_file_is_never_overwritten(app_store: Path) -> None:
    where = app_store / "W"
    (where / "bin").mkdir(parents=True)
    (where / "bin" / "app").write_text("#!/bin/sh\necho mine\n")
    before = tree_snapshot(where)
    proc = run_cpk("install", "app", where)
    assert proc.returncode == 1 and "was not installed by cpk" in proc.stderr
    assert tree_snapshot(where) == before


def test_where_that_is_a_file_is_refused_in_one_line(app_store: Path) -> None:
    where = app_store / "W"
    where.write_text("mine\n")
    proc = run_cpk("install", "app", where)
    assert proc.returncode == 1
    assert proc.stderr == f"cpk: error: {where}: not a directory\n"
    assert where.read_text() == "mine\n"


def test_upgrade_and_remove(app_store: Path) -> None:
    tree = app_store / "app"
    (tree / "share" / "man" / "man1" / "app.1").write_text(".TH APP 1\n.SH NAME\napp two\n")
    _add(tree, "app", "2.0")
    where = app_store / "W"
    run_cpk("install", "app,1.0", where, check=True)
    run_cpk("install", "app", where, check=True)  # newest: 2.0
    assert os.readlink(where / "bin" / "app") == "app-2.0"
    assert not (where / "bin" / "app-1.0").exists()
    assert "two" in (where / "share" / "man" / "man1" / "app.1").read_text()
    run_cpk("uninstall", "app", "--from", where, check=True)
    assert not (where / "bin" / "app").exists() and not (where / "lib").exists()
    manifest = json.loads((where / ".cpk" / "manifest.json").read_text())
    assert manifest["installed"] == [] and manifest["files"] == {}


def test_install_by_executable_name(app_store: Path) -> None:
    (app_store / "app" / "bin" / "app").rename(app_store / "app" / "bin" / "apptool")
    _add(app_store / "app", "apptools", "3")
    where = app_store / "W"
    run_cpk("install", "apptool", where, check=True)
    assert os.readlink(where / "bin" / "apptool") == "apptool-3"
    assert _run(where / "bin" / "apptool") == "mid-1>base-1\n"


def test_verify_checks_elf_records_against_the_files(app_store: Path) -> None:
    """Metadata is outside the content hash; verify still catches an ELF
    record that no longer says what the file does."""
    entry = Path(run_cpk("store", "path", "app", check=True).stdout.strip())
    assert run_cpk("store", "verify", "app").returncode == 0
    meta_path = entry / ".cpk" / "entry.json"
    meta = json.loads(meta_path.read_text())
    meta["elf"]["bin/app"]["runpath"] = "/tmp/evil"
    os.chmod(entry / ".cpk", 0o755)
    os.chmod(meta_path, 0o644)
    meta_path.write_text(json.dumps(meta))
    proc = run_cpk("store", "verify", "app")
    assert proc.returncode == 1
    assert (
        "bin/app: runpath is '$ORIGIN:$ORIGIN/app_deps:$ORIGIN/common_libs'"
        in proc.stdout + proc.stderr
    )
