"""Layers: project, user and system stores searched in order, written only at home."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.cli import run_cpk

from contentpkg.store import Store
from contentpkg.store.add import add_path


def add(tmp_path: Path, name: str, version: str, text: str) -> Path:
    src = tmp_path / f"src-{name}-{version}-{text}"
    src.mkdir()
    (src / f"{name}.txt").write_text(text)
    return add_path(Store.open(), src, name, version).entry.path


def build_other_store(tmp_path: Path, where: Path, name: str, text: str) -> Path:
    """Populate another store by pointing CPK_HOME at it (as an admin would)."""
    old = os.environ["CPK_HOME"]
    os.environ["CPK_HOME"] = str(where)
    try:
        return add(tmp_path, name, "1", text)
    finally:
        os.environ["CPK_HOME"] = old


def test_lookups_search_every_layer_and_writes_go_home(
    tmp_path: Path, cpk_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = build_other_store(tmp_path, tmp_path / "sys", "sysonly", "from the system")
    project_root = tmp_path / "proj"
    project_store = project_root / ".cpk" / "store"
    proj = build_other_store(tmp_path, tmp_path / "projhome", "projonly", "from the project")
    project_store.parent.mkdir(parents=True)
    shutil.copytree(proj.parent, project_store, symlinks=True)
    monkeypatch.setenv("CPK_STORE_PATH", f"{tmp_path / 'nonexistent'}:{system.parent}")
    add(tmp_path, "useronly", "1", "from the user")
    (project_root / "deep" / "er").mkdir(parents=True)

    proc = run_cpk("store", "ls", cwd=project_root / "deep" / "er", check=True)
    rows = {line.split()[0]: line.split()[-1] for line in proc.stdout.splitlines()[1:]}
    assert rows == {"projonly": "project", "sysonly": "system", "useronly": "user"}

    path = run_cpk("store", "path", "sysonly", cwd=project_root, check=True).stdout.strip()
    assert Path(path) == system
    # identify finds a file by content in a read-only layer too.
    probe = tmp_path / "probe.txt"
    probe.write_text("from the system")
    out = run_cpk("identify", probe, cwd=project_root).stdout
    assert "sysonly 1" in out and "[system]" in out

    # A write goes to the user store, even from inside the project.
    src = tmp_path / "new"
    src.mkdir()
    (src / "f").write_text("new")
    new = run_cpk("store", "add", src, "--name", "new", "--version", "1", cwd=project_root)
    assert Path(new.stdout.strip()).parent == cpk_home / "store"


def test_same_entry_in_two_layers_is_one_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = add(tmp_path, "dup", "1", "same")
    system = tmp_path / "sysstore"
    shutil.copytree(mine.parent, system, symlinks=True)
    monkeypatch.setenv("CPK_STORE_PATH", str(system))
    assert run_cpk("store", "path", "dup", check=True).stdout.strip() == str(mine)


def test_specs_select_by_version_and_hash_prefix(tmp_path: Path) -> None:
    one = add(tmp_path, "tool", "1.0", "a")
    two = add(tmp_path, "tool", "2.0", "b")
    two_bis = add(tmp_path, "tool", "2.0", "c")
    proc = run_cpk("store", "path", "tool")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        "cpk: error: 'tool' is ambiguous: 3 entries match; add a version or hash prefix"
    )
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(
        p.name for p in (one, two, two_bis)
    )
    assert run_cpk("store", "path", "tool,1.0", check=True).stdout.strip() == str(one)
    prefix = two_bis.name.split(",")[2][:6]
    assert run_cpk("store", "path", f"tool,2.0,{prefix}", check=True).stdout.strip() == str(two_bis)
    missing = run_cpk("store", "info", "Tool")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "cpk: error: no entry matches 'Tool' (did you mean tool?)"
    info = run_cpk("store", "info", "tool,1.0", check=True).stdout
    assert "kind:" in info and "generic" in info and one.name in info
    assert run_cpk("store", "path", str(one), check=True).stdout.strip() == str(one)


def test_ls_pattern_and_json(tmp_path: Path) -> None:
    import json

    add(tmp_path, "alpha", "1", "a")
    add(tmp_path, "beta", "1", "b")
    out = run_cpk("store", "ls", "al*", check=True).stdout
    assert "alpha" in out and "beta" not in out
    data = json.loads(run_cpk("store", "ls", "--json", check=True).stdout)
    assert [d["name"] for d in data] == ["alpha", "beta"]
    assert all(d["layer"] == "user" and d["kind"] == "generic" for d in data)


def test_identify_unknown_and_known(tmp_path: Path) -> None:
    entry = add(tmp_path, "known", "3", "known bytes")
    copy = tmp_path / "elsewhere.txt"
    copy.write_text("known bytes")
    out = run_cpk("identify", copy, check=True).stdout
    short = entry.name.split(",")[2][:12]
    assert out.strip() == f"{copy}: known 3 {short} [user] {entry}/known.txt"
    stranger = tmp_path / "stranger"
    stranger.write_text("never stored")
    proc = run_cpk("identify", stranger)
    assert proc.returncode == 1 and "unknown (sha256 " in proc.stdout


def test_identify_in_a_new_home_says_unknown_without_a_repair_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPK_HOME", str(tmp_path / "never-used"))
    stranger = tmp_path / "stranger"
    stranger.write_text("never stored")
    proc = run_cpk("identify", stranger)
    assert proc.returncode == 1 and "unknown (sha256 " in proc.stdout
    assert proc.stderr == ""  # nothing was damaged, so nothing is said to be rebuilt
    assert not (tmp_path / "never-used" / "store").exists()  # a lookup creates no store


def test_cli_help_and_version() -> None:
    from contentpkg import __version__

    assert run_cpk("--version", check=True).stdout.strip() == f"cpk {__version__}"
    for args in [["--help"], ["store", "--help"], ["identify", "--help"]] + [
        ["store", sub, "--help"] for sub in ("add", "ls", "path", "info", "verify", "gc")
    ]:
        proc = run_cpk(*args)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: cpk"), args
    bare = run_cpk("store")
    assert bare.returncode == 2 and "SUBCOMMAND" in bare.stderr


def test_source_hash_finds_an_identical_entry_in_a_read_only_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentpkg.store.add import add_built

    def populate(dest: Path) -> None:
        (dest / "payload").write_text("same bytes")

    old = os.environ["CPK_HOME"]
    monkeypatch.setenv("CPK_HOME", str(tmp_path / "sys"))
    in_system = add_built(Store.open(), "pkg", "1", "generic", populate).entry
    monkeypatch.setenv("CPK_HOME", old)
    monkeypatch.setenv("CPK_STORE_PATH", str(in_system.path.parent))
    store = Store.open()
    assert store.find_source("sha256:" + "ab" * 32) is None
    again = add_built(store, "pkg", "1", "generic", populate, source_hash="sha256:" + "ab" * 32)
    assert not again.created and again.entry.layer.role == "system"
    found = Store.open().find_source("sha256:" + "ab" * 32)
    assert found is not None and found.path == in_system.path
    assert [e.layer.role for e in Store.open().entries()] == ["system"]


def test_a_source_hash_is_found_with_one_stat_of_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync finds every locked package by its source hash: one readlink and
    one stat each, the entry built from the path already checked; a link left
    dangling by a collected entry finds nothing."""
    from contentpkg.fs import remove_tree
    from contentpkg.store.add import add_built

    def populate(dest: Path) -> None:
        (dest / "payload").write_text(dest.name)

    made = {
        f"sha256:{i:064x}": add_built(
            Store.open(), f"pkg{i}", "1", "generic", populate, source_hash=f"sha256:{i:064x}"
        ).entry
        for i in range(3)
    }
    store = Store.open()
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(os.fspath(path))  # type: ignore[arg-type]
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    for source, entry in made.items():
        found = store.find_source(source)
        assert found is not None and found.path == entry.path and found.name == entry.name
        assert found.layer is store.user and found.dirname == entry.dirname
    assert stats == [os.fspath(e.path) for e in made.values()]
    monkeypatch.undo()
    gone = next(iter(made))
    remove_tree(made[gone].path)
    assert store.find_source(gone) is None
