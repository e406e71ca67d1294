"""cpk install/remove into profiles: generations, rollback, Python tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.elfbuild import build_exe, build_lib, needs_cc
from support.index import LocalIndex
from support.wheels import make_wheel


def _native(tmp_path: Path, name: str, version: str) -> None:
    """A package: bin/<name> printing its version through its own library."""
    tree = tmp_path / f"{name}-{version}"
    lib = build_lib(
        tree / "lib" / f"lib{name}.so.1", f"f_{name}", f"{name} {version}",
        soname=f"lib{name}.so.1",
    )  # fmt: skip
    build_exe(tree / "bin" / name, [f"f_{name}"], libs=[lib])
    for c in tree.rglob("*.c"):
        c.unlink()
    run_cpk("store", "add", tree, "--name", name, "--version", version, check=True)


def _answer(path: Path) -> str:
    return subprocess.run([str(path)], capture_output=True, text=True, check=True).stdout.strip()


@needs_cc
def test_profile_history_upgrade_rollback_and_gc(tmp_path: Path, cpk_home: Path) -> None:
    _native(tmp_path, "hello", "1.0")
    _native(tmp_path, "hello", "2.0")
    _native(tmp_path, "other", "0.1")
    alias = cpk_home / "profiles" / "default"

    run_cpk("install", "hello,1.0", check=True)
    run_cpk("install", "other", check=True)
    assert _answer(alias / "bin" / "hello") == "hello 1.0"
    run_cpk("install", "hello", check=True)  # the newest: 2.0
    assert _answer(alias / "bin" / "hello") == "hello 2.0"
    again = run_cpk("install", "hello", check=True)
    assert "nothing changed" in again.stderr
    history = run_cpk("profile", "generations", check=True).stdout
    assert len([line for line in history.splitlines() if line.strip()[:1].isdigit()]) == 3

    # Generations share the store's inodes: nothing was copied.
    gens = cpk_home / "profiles" / "default.gens"
    assert (
        os.stat(gens / "1" / "bin" / "hello-1.0").st_ino
        == os.stat(gens / "2" / "bin" / "hello-1.0").st_ino
    )

    run_cpk("profile", "rollback", check=True)
    assert _answer(alias / "bin" / "hello") == "hello 1.0"
    assert _answer(alias / "bin" / "other") == "other 0.1"

    # Old generations are roots until deleted.
    run_cpk("store", "gc", check=True)
    assert run_cpk("store", "path", "hello,2.0").returncode == 0
    run_cpk("uninstall", "hello", check=True)
    assert not (alias / "bin" / "hello").exists()
    assert _answer(alias / "bin" / "other") == "other 0.1"


@pytest.fixture
def tool_index(tmp_path: Path) -> LocalIndex:
    with LocalIndex(tmp_path / "dists") as index:
        make_wheel(
            index.root,
            "greeter",
            "1.0",
            requires_dist=["helperlib>=1"],
            files={
                "greeter/__init__.py": b"",
                "greeter/cli.py": (
                    b"import sys\n"
                    b"def main():\n"
                    b"    import helperlib\n"
                    b"    print('greeter', helperlib.VERSION)\n"
                    b"    try:\n"
                    b"        import otherlib\n"
                    b"        print('otherlib is visible')\n"
                    b"    except ImportError:\n"
                    b"        print('isolated')\n"
                ),
            },
            entry_points={"console_scripts": {"greet": "greeter.cli:main"}},
        )
        make_wheel(
            index.root, "helperlib", "1.5", files={"helperlib/__init__.py": b"VERSION='1.5'\n"}
        )
        make_wheel(index.root, "otherlib", "1.0")
        yield index


def test_python_tool_in_a_profile_runs_in_its_own_view(
    tool_index: LocalIndex, tmp_path: Path, cpk_home: Path
) -> None:
    work = tmp_path / "project"  # a project here must not leak into the tool
    work.mkdir()
    (work / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["otherlib"]\n'
    )
    proc = run_cpk("install", "--python", "greeter", "--index-url", tool_index.url, cwd=work)
    assert proc.returncode == 0, proc.stderr
    script = cpk_home / "profiles" / "default" / "bin" / "greet"
    assert script.is_symlink()
    target = Path(os.readlink(script))
    assert target.is_relative_to(cpk_home / "views")  # nothing copied: the view's script
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["greeter 1.5", "isolated"]
    manifest = json.loads(
        (cpk_home / "profiles" / "default" / ".cpk" / "manifest.json").read_text()
    )
    assert [t["name"] for t in manifest["python_tools"]] == ["greeter"]

    # The view is kept by the profile through gc, and freed once removed.
    run_cpk("store", "gc", check=True)
    assert target.exists()
    run_cpk("uninstall", "greeter", check=True)
    assert not script.exists()
    run_cpk("profile", "delete-generations", "--older-than", "0d", check=True)
    run_cpk("store", "gc", check=True)
    assert not target.exists()


@needs_cc
def test_concurrent_cpk_installs_into_one_profile_lose_nothing(
    tmp_path: Path, cpk_home: Path
) -> None:
    names = [f"tool{i}" for i in range(6)]
    for name in names:
        _native(tmp_path, name, "1.0")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "contentpkg", "install", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    alias = cpk_home / "profiles" / "default"
    for name in names:
        assert _answer(alias / "bin" / name) == f"{name} 1.0"
    gens = sorted(
        int(p.name) for p in (cpk_home / "profiles" / "default.gens").iterdir() if p.name.isdigit()
    )
    assert gens == list(range(1, len(names) + 1))  # one generation each, none lost
