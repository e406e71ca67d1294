"""The PATH report after an install: other copies, shadowing, on-PATH status."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.cli import run_cpk

from contentpkg.env.pathreport import format_lines, report_path
from contentpkg.store import Store
from contentpkg.store.add import add_path


def program(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {text}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """Version 1.0 of 'tool' in the store and copied onto PATH; 2.0 installed; a foreign one."""
    old_src = program(tmp_path / "src1" / "tool", "one")
    new_src = program(tmp_path / "src2" / "tool", "two")
    store = Store.open()
    old = add_path(store, old_src, "tool", "1.0").entry
    new = add_path(store, new_src, "tool", "2.0").entry
    old_dir = tmp_path / "old" / "bin"
    old_dir.mkdir(parents=True)
    shutil.copy2(old_src, old_dir / "tool")
    where_bin = tmp_path / "where" / "bin"
    where_bin.mkdir(parents=True)
    shutil.copy2(new_src, where_bin / "tool")
    foreign = program(tmp_path / "foreign" / "tool", "foreign").parent
    return {
        "old": old_dir,
        "where": where_bin,
        "foreign": foreign,
        "old_entry": old.path,
        "new_entry": new.path,
    }


def test_shadowing_copy_from_the_store_and_a_foreign_file(layout: dict[str, Path]) -> None:
    path = f"{layout['old']}:{layout['where']}:{layout['foreign']}"
    report = report_path(Store.open(), "tool", layout["where"], path)
    assert report.on_path and report.position == 1
    assert [c.path for c in report.others] == [layout["old"] / "tool", layout["foreign"] / "tool"]
    old, foreign = report.others
    assert old.shadows and not foreign.shadows
    assert report.shadowed_by is old and report.runs == layout["old"] / "tool"
    (origin,) = old.origins
    short = layout["old_entry"].name.split(",")[2]
    assert (origin.name, origin.version, origin.short_hash) == ("tool", "1.0", short)
    assert not foreign.from_store and foreign.sha256 is not None
    lines = format_lines(report)
    # A copy outside the store holds an entry's bytes but is no entry: the
    # report says it is the same bytes, not that it is the store's.
    assert old.identical and not old.from_store
    assert (
        f"also on PATH: {layout['old'] / 'tool'}: a system file, identical to "
        f"tool 1.0 {short[:12]} [user] tool"
    ) in lines[0]
    assert "it comes first, so 'tool' runs it" in lines[0]
    assert lines[1] == (
        f"also on PATH: {layout['foreign'] / 'tool'}: not from the store "
        f"(sha256 {foreign.sha256[:12]})"
    )
    assert f"{layout['where']} is on PATH, but after {layout['old']}" in lines[2]


def test_new_program_first_on_path(layout: dict[str, Path]) -> None:
    path = f"{layout['where']}:{layout['old']}"
    report = report_path(Store.open(), "tool", layout["where"], path)
    assert report.on_path and report.position == 0 and report.shadowed_by is None
    assert [c.shadows for c in report.others] == [False]
    assert report.runs == layout["where"] / "tool"
    lines = format_lines(report)
    assert "comes first" not in lines[0]
    assert lines[-1] == f"'tool' runs {layout['where'] / 'tool'} ({layout['where']} is on PATH)"


def test_where_not_on_path(layout: dict[str, Path]) -> None:
    report = report_path(Store.open(), "tool", layout["where"], f"{layout['foreign']}:/nonexistent")
    assert not report.on_path and report.position is None
    assert [c.shadows for c in report.others] == [False]
    assert report.runs == layout["foreign"] / "tool"
    assert format_lines(report)[-1] == (
        f"{layout['where']} is not on PATH; 'tool' runs {layout['foreign'] / 'tool'}; "
        f"to add it: cpk path add {layout['where']}"
    )
    empty = report_path(Store.open(), "tool", layout["where"], "/nonexistent")
    assert format_lines(empty) == [
        f"{layout['where']} is not on PATH; to add it: cpk path add {layout['where']}"
    ]


def test_symlinked_where_and_links_to_the_new_program(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    # A profile-style alias: PATH names the alias, the install names the real dir.
    alias = tmp_path / "profile"
    alias.symlink_to(layout["where"].parent)
    # A symlink to the new program earlier on PATH runs the new program.
    links = tmp_path / "links"
    links.mkdir()
    (links / "tool").symlink_to(layout["where"] / "tool")
    path = f"{links}:{alias / 'bin'}:{layout['old']}"
    report = report_path(Store.open(), "tool", layout["where"], path)
    assert report.on_path and report.position == 1
    linked, old = report.others
    assert (
        linked.same_as_installed
        and not linked.shadows
        and linked.real == (layout["where"] / "tool")
    )
    assert not old.shadows and report.shadowed_by is None
    lines = format_lines(report)
    assert lines[0] == (
        f"also on PATH: {links / 'tool'} -> {layout['where'] / 'tool'}: "
        "the same file as the new one"
    )
    # And the other way round: the install names the alias, PATH the real dir.
    report = report_path(Store.open(), "tool", alias / "bin", f"{layout['where']}")
    assert report.on_path and report.others == []


def test_ignores_non_executables_directories_and_repeated_dirs(
    layout: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tool").write_text("not executable\n")
    dirs = tmp_path / "dirs"
    (dirs / "tool").mkdir(parents=True)
    monkeypatch.chdir(layout["foreign"])
    # An empty element is the current directory, as for the shell.
    path = f"{plain}:{dirs}:{layout['old']}:{layout['old']}/:{layout['where']}::"
    report = report_path(Store.open(), "tool", layout["where"], path)
    assert [c.path for c in report.others] == [layout["old"] / "tool", layout["foreign"] / "tool"]
    assert report.others[1].position == 5


def test_inside_a_store_entry(layout: dict[str, Path]) -> None:
    entry_file = layout["new_entry"] / "tool"
    report = report_path(Store.open(), "tool", layout["where"], f"{layout['new_entry']}")
    (candidate,) = report.others
    assert candidate.path == entry_file
    assert [o.version for o in candidate.origins] == ["2.0"]


def test_same_result_with_store_add_through_the_cli(tmp_path: Path) -> None:
    src = program(tmp_path / "src" / "hello", "hi")
    run_cpk("store", "add", src, "--name", "hello", "--version", "3.1", check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(src, elsewhere / "hello")
    where = tmp_path / "where" / "bin"
    program(where / "hello", "new")
    report = report_path(Store.open(), "hello", where, f"{elsewhere}:{where}")
    (other,) = report.others
    assert other.shadows and [(o.name, o.version) for o in other.origins] == [("hello", "3.1")]
    assert os.fspath(where) in format_lines(report)[-1]
