"""The content hash: equal trees hash equal, every meaningful change shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from contentpkg.store.hashing import b32, content_hash, scan_tree, tree_hash


def make_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.txt").write_text("alpha\n")
    (root / "pkg" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    tool = root / "pkg" / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    os.symlink("sub/b.bin", root / "pkg" / "link")
    (root / "pkg" / "empty").mkdir()
    return root / "pkg"


def test_identical_trees_hash_identically_whatever_the_creation_order(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one")
    two = tmp_path / "two" / "pkg"
    two.mkdir(parents=True)
    # Same content, built in the opposite order, with other mtimes and modes
    # that carry no meaning (group/other bits).
    (two / "empty").mkdir()
    os.symlink("sub/b.bin", two / "link")
    (two / "sub").mkdir()
    (two / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (two / "tool").write_text("#!/bin/sh\necho hi\n")
    (two / "tool").chmod(0o700)
    (two / "a.txt").write_text("alpha\n")
    (two / "a.txt").chmod(0o600)
    assert tree_hash(one) == tree_hash(two)


@pytest.mark.parametrize(
    "change",
    [
        "byte",
        "exec-bit",
        "symlink-target",
        "rename",
        "new-empty-dir",
        "file-to-symlink",
        "move-between-dirs",
    ],
)
def test_every_meaningful_change_changes_the_hash(tmp_path: Path, change: str) -> None:
    tree = make_tree(tmp_path)
    before = tree_hash(tree)
    if change == "byte":
        data = bytearray((tree / "sub" / "b.bin").read_bytes())
        data[1234] ^= 0x01
        (tree / "sub" / "b.bin").write_bytes(bytes(data))
    elif change == "exec-bit":
        (tree / "a.txt").chmod(0o755)
    elif change == "symlink-target":
        os.unlink(tree / "link")
        os.symlink("./sub/b.bin", tree / "link")  # same file, other target text
    elif change == "rename":
        os.rename(tree / "a.txt", tree / "A.txt")
    elif change == "new-empty-dir":
        (tree / "empty" / "more").mkdir()
    elif change == "file-to-symlink":
        os.unlink(tree / "a.txt")
        os.symlink("tool", tree / "a.txt")
    elif change == "move-between-dirs":
        os.rename(tree / "a.txt", tree / "sub" / "a.txt")
    assert tree_hash(tree) != before


def test_derived_bytecode_is_not_content(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    before = tree_hash(tree)
    (tree / "sub" / "__pycache__").mkdir()
    (tree / "sub" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0" * 16)
    assert tree_hash(tree) == before


def test_records_name_files_with_their_own_sha256(tmp_path: Path) -> None:
    import hashlib

    tree = make_tree(tmp_path)
    records = {r.path: r for r in scan_tree(tree)}
    assert records["a.txt"].value == hashlib.sha256(b"alpha\n").hexdigest()
    assert records["tool"].kind == "x"
    assert records["link"].kind == "l" and records["link"].value == "sub/b.bin"
    assert records["empty"].kind == "d"
    assert content_hash(records.values()) == tree_hash(tree)


def test_base32_uses_nix_alphabet_and_length() -> None:
    digest = bytes(range(32))
    text = b32(digest)
    assert len(text) == 52
    assert set(text) <= set("0123456789abcdfghijklmnpqrsvwxyz")
    assert b32(bytes(32)) == "0" * 52


def test_hash_of_copy_equals_hash_of_original(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    assert tree_hash(copy) == tree_hash(tree)
