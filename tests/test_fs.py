"""The file-system primitives: whole or not at all, and the one fsync rule, counted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from contentpkg import fs


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync made, by file descriptor kind: 0 for a file, 1 for a directory."""
    made: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        made.append(1 if stat.S_ISDIR(os.fstat(fd).st_mode) else 0)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return made


def _debris(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(fs.TMP_PREFIX))


def test_durable_writes_fsync_the_file_and_its_directory(tmp_path: Path, fsyncs: list[int]) -> None:
    fs.write_atomic(tmp_path / "lock", "one")
    assert fsyncs == [0, 1]
    fs.replace_symlink(tmp_path / "alias", "gen-1")
    assert fsyncs == [0, 1, 1]
    staged = fs.make_tmp_dir(tmp_path, "entry")
    assert fs.publish_dir(staged, tmp_path / "entry")
    assert fsyncs == [0, 1, 1, 1]


def test_caches_are_renamed_into_place_but_never_fsynced(tmp_path: Path, fsyncs: list[int]) -> None:
    assert fs.write_cache(tmp_path / "deep" / "page.json", b"{}")
    fs.write_atomic(tmp_path / "memo", b"x", durable=False)
    fs.replace_symlink(tmp_path / ".venv", "views/abc", durable=False)
    assert fsyncs == []
    assert (tmp_path / "deep" / "page.json").read_bytes() == b"{}"
    assert _debris(tmp_path) == [] and _debris(tmp_path / "deep") == []


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "pylock.toml"
    fs.write_atomic(target, "old\n")
    with pytest.raises(RuntimeError), fs.writing_atomic(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("the download was truncated")
    assert target.read_text() == "old\n"
    assert _debris(tmp_path) == []


def test_exact_mode_survives_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        fs.write_atomic(tmp_path / "loose", "x", mode=0o644)
        fs.write_atomic(tmp_path / "kept", "x", mode=0o644, exact_mode=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "loose").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "kept").st_mode) == 0o644


def test_a_cache_that_cannot_be_written_is_only_lost_speed(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    assert fs.write_cache(tmp_path / "file" / "page.json", b"{}") is False


def test_replace_symlink_swaps_in_one_step_and_never_replaces_a_directory(
    tmp_path: Path,
) -> None:
    link = tmp_path / "profile"
    fs.replace_symlink(link, "gen-1")
    fs.replace_symlink(link, "gen-2")
    assert os.readlink(link) == "gen-2"
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep").write_text("mine")
    with pytest.raises(OSError):
        fs.replace_symlink(real, "gen-3")
    assert (real / "keep").read_text() == "mine"
    assert _debris(tmp_path) == []


def test_publish_dir_lets_exactly_one_of_two_equal_directories_win(tmp_path: Path) -> None:
    first = fs.make_tmp_dir(tmp_path, "entry")
    (first / "a").write_text("1")
    second = fs.make_tmp_dir(tmp_path, "entry")
    (second / "a").write_text("1")
    assert fs.publish_dir(first, tmp_path / "entry") is True
    assert fs.publish_dir(second, tmp_path / "entry") is False
    fs.discard(second)
    assert (tmp_path / "entry" / "a").read_text() == "1"
    assert _debris(tmp_path) == []


def test_remove_tree_removes_read_only_trees_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    tree = tmp_path / "entry"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("x")
    (tree / "link").symlink_to(outside)
    for path in (tree / "sub" / "f", tree / "sub", tree):
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    fs.remove_tree(tree)
    assert not tree.exists()
    assert (outside / "precious").read_text() == "keep"
    fs.remove_tree(tree)  # already gone: fine
