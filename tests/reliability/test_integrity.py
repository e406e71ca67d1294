"""One flipped byte in any stored file is named by ``cpk store verify``.

Entries are built for real (a wheel unpacked and compiled, an ELF file
patched by ``cpk store add``, a tree with a symlink), then one stored thing
is changed the way a stray tool running as root would (modes put back
afterwards), and the real CLI must name it and exit 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import run_cpk
from support.elfbuild import build_exe
from support.wheels import make_wheel

from contentpkg.python.install.bytecode import ensure_bytecode
from contentpkg.python.install.wheel import add_wheel
from contentpkg.store import Entry, Store
from contentpkg.store.add import add_path

TAG = sys.implementation.cache_tag


def _wheel_entry(tmp_path: Path) -> Entry:
    files = {"demo/__init__.py": "VALUE = 42\n" * 10, "demo/util.py": "def f():\n    return 1\n"}
    wheel = make_wheel(tmp_path / "wheels", "demo", "1.0", files=files)
    entry = add_wheel(Store.open(), wheel).entry
    assert ensure_bytecode(Store.open(), entry)
    return entry


def _elf_entry(tmp_path: Path) -> Entry:
    exe = build_exe(tmp_path / "build" / "hello")
    run_cpk("store", "add", exe, "--name", "hello", "--version", "1", check=True)
    return next(e for e in Store.open().entries() if e.name == "hello")


def _tree_entry(tmp_path: Path) -> Entry:
    src = tmp_path / "tree"
    (src / "share" / "doc").mkdir(parents=True)
    (src / "share" / "doc" / "README").write_text("read me\n" * 10)
    (src / "share" / "doc" / "NEWS").write_text("news\n" * 10)
    os.symlink("README", src / "share" / "doc" / "LINK")
    return add_path(Store.open(), src, "tree", "1").entry


def _flip(path: Path) -> None:
    """Flip one byte in the middle of a read-only store file, in place."""
    mode = os.lstat(path).st_mode & 0o7777
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        data = f.read()
        middle = len(data) // 2
        f.seek(middle)
        f.write(bytes([data[middle] ^ 0x01]))
    os.chmod(path, mode)


def _retarget(path: Path) -> None:
    parent = path.parent
    mode = os.lstat(parent).st_mode & 0o7777
    os.chmod(parent, 0o755)
    os.unlink(path)
    os.symlink("NEWS", path)
    os.chmod(parent, mode)


def _pyc(entry: Entry) -> str:
    return f"site-packages/demo/__pycache__/util.{TAG}.pyc"


def _elf_file(entry: Entry) -> str:
    return next(p.relative_to(entry.path).as_posix() for p in entry.path.rglob("hello"))


# (kind, entry maker, path inside the entry, change, what verify must say)
CASES: list[tuple[str, Callable[[Path], Entry], Callable[[Entry], str], Callable, str]] = [
    ("wheel .py", _wheel_entry, lambda e: "site-packages/demo/util.py", _flip, "changed"),
    ("wheel .pyc", _wheel_entry, _pyc, _flip, "bytecode changed"),
    (
        "wheel .dist-info",
        _wheel_entry,
        lambda e: "site-packages/demo-1.0.dist-info/METADATA",
        _flip,
        "changed",
    ),
    ("ELF", _elf_entry, _elf_file, _flip, "changed"),
    ("plain file", _tree_entry, lambda e: "share/doc/README", _flip, "changed"),
    ("symlink target", _tree_entry, lambda e: "share/doc/LINK", _retarget, "changed"),
]


@pytest.mark.parametrize(
    ("make", "where", "change", "says"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_one_changed_file_is_named(
    tmp_path: Path,
    make: Callable[[Path], Entry],
    where: Callable[[Entry], str],
    change: Callable[[Path], None],
    says: str,
) -> None:
    entry = make(tmp_path)
    clean = run_cpk("store", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    rel = where(entry)
    change(entry.path / rel)
    proc = run_cpk("store", "verify")
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if line.startswith("corrupt: ")]
    assert lines, proc.stdout + proc.stderr
    assert all(entry.dirname in line for line in lines)
    assert any(says in line and rel in line for line in lines), lines
    assert "1 corrupt" in proc.stderr


def test_a_writable_file_is_named(tmp_path: Path) -> None:
    entry = _tree_entry(tmp_path)
    os.chmod(entry.path / "share" / "doc" / "NEWS", 0o644)
    proc = run_cpk("store", "verify")
    assert proc.returncode == 1
    assert "writable (store files must be read-only): share/doc/NEWS" in proc.stdout


# --- env dirs: the other side of the same inodes ---------------------------------


def _env_dir(tmp_path: Path) -> tuple[Path, str, str]:
    """A tree entry with a program and a page, installed into WHERE; (WHERE, program, page)."""
    src = tmp_path / "pkg"
    (src / "bin").mkdir(parents=True)
    (src / "share" / "man" / "man1").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\necho tool\n" + "# padding\n" * 20)
    os.chmod(src / "bin" / "tool", 0o755)
    (src / "share" / "man" / "man1" / "tool.1").write_text(".TH TOOL 1\n" + "text\n" * 20)
    run_cpk("store", "add", src, "--name", "tool", "--version", "1", check=True)
    where = tmp_path / "W"
    run_cpk("install", "tool", where, check=True)
    program = next(
        p.relative_to(where).as_posix()
        for p in (where / "bin").iterdir()
        if p.is_file() and not p.is_symlink()
    )
    return where, program, "share/man/man1/tool.1"


def test_a_byte_flipped_through_an_env_dir_is_named_on_both_sides(tmp_path: Path) -> None:
    """A placed file is the store's inode (a hard link, where the file system
    allows): a change through WHERE reaches the store, and both checks say so."""
    where, program, _ = _env_dir(tmp_path)
    clean = run_cpk("env", where, "--check")
    assert clean.returncode == 0, clean.stderr
    if os.stat(where / program).st_nlink < 2:
        pytest.skip("this file system gave the env dir copies, not links to the store")
    _flip(where / program)
    env = run_cpk("env", where, "--check")
    assert env.returncode == 1
    warnings = [line for line in env.stderr.splitlines() if "content changed" in line]
    assert len(warnings) == 1 and program in warnings[0], env.stderr
    assert "the store's file with it" in warnings[0]
    store = run_cpk("store", "verify")
    assert store.returncode == 1 and "tool,1," in store.stdout, store.stdout


def test_a_replaced_env_dir_file_is_named_and_the_store_is_intact(tmp_path: Path) -> None:
    where, program, page = _env_dir(tmp_path)
    (where / page).unlink()
    (where / page).write_text(".TH TOOL 1\nsomething else\n")
    os.unlink(where / program)
    env = run_cpk("env", where, "--check")
    assert env.returncode == 1
    assert f"{page}: content changed (placed from tool," in env.stderr, env.stderr
    assert f"{program}: missing" in env.stderr, env.stderr
    assert "the store's file with it" not in env.stderr
    assert run_cpk("store", "verify").returncode == 0
    # Without --check the bindings are printed as before, and nothing is hashed.
    assert run_cpk("env", where).returncode == 0
