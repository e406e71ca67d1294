"""The store's interfaces, its layer types, and what namespaces register with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentpkg.context import Context
from contentpkg.errors import AmbiguousSpecError, NotFoundError
from contentpkg.namespaces import registry
from contentpkg.store import LocalStore, ProjectStore, Store, SystemStore
from contentpkg.store.add import add_path
from contentpkg.store.entry import Entry, Spec
from contentpkg.store.gc import add_root, collect
from contentpkg.store.interfaces import StoreReader, StoreWriter
from contentpkg.store.registry import Registry
from contentpkg.store.verify import verify

SRC = Path(__file__).resolve().parents[2] / "src" / "contentpkg"


def _tree(tmp_path: Path, name: str) -> Path:
    src = tmp_path / f"src-{name}"
    src.mkdir()
    (src / "data.txt").write_text(name)
    return src


def test_every_store_kind_implements_the_read_interface(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".cpk" / "store").mkdir(parents=True)
    ctx = Context.from_environ(
        {"CPK_HOME": str(tmp_path / "home"), "CPK_STORE_PATH": str(tmp_path / "sys")}
    )
    store = Store.open(tmp_path / "proj", ctx=ctx)
    assert [type(layer) for layer in store.layers] == [ProjectStore, LocalStore, SystemStore]
    assert [layer.role for layer in store.layers] == ["project", "user", "system"]
    assert [layer.writable for layer in store.layers] == [False, True, False]
    for reader in (store, *store.layers):
        assert isinstance(reader, StoreReader), reader
    assert isinstance(store, StoreWriter)


def test_store_open_takes_its_paths_from_the_context_not_the_environment(
    tmp_path: Path, cpk_home: Path
) -> None:
    ctx = Context.from_environ({"CPK_HOME": str(tmp_path / "elsewhere")})
    store = Store.open(tmp_path, ctx=ctx)
    assert store.home == tmp_path / "elsewhere"
    assert store.user.root == tmp_path / "elsewhere" / "store"
    assert Store.open(tmp_path).home == cpk_home  # without one: this process's


def test_add_through_the_write_interface_then_find_it_every_way(tmp_path: Path) -> None:
    store = Store.open(tmp_path)

    def populate(dest: Path) -> None:
        (dest / "file.txt").write_text("hello")

    result = store.add("made", "1", "generic", populate, source_hash="sha256:" + "cd" * 32)
    assert result.created and isinstance(result.entry, Entry)
    entry = result.entry
    found = [
        store.entry(entry.dirname),
        store.user.find_source("sha256:" + "cd" * 32),
        store.find_source("sha256:" + "cd" * 32),
    ]
    assert [e.path if e else None for e in found] == [entry.path] * 3
    sha = entry.file_records()[0].value
    assert [(e.dirname, rel) for e, rel in store.find_files(sha)] == [(entry.dirname, "file.txt")]
    assert [e.path for e in store.user.match(Spec("made"))] == [entry.path]
    assert [e.path for e in store.match(Spec("made", "1"))] == [entry.path]


def test_a_spec_matching_nothing_or_several_raises_the_narrow_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    add_path(store, _tree(tmp_path, "a"), "twin", "1")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("different")
    add_path(store, tmp_path / "other", "twin", "1")
    with pytest.raises(NotFoundError, match="no entry matches 'nothing'") as missing:
        store.resolve("nothing")
    assert missing.value.what == "nothing"
    with pytest.raises(AmbiguousSpecError, match="is ambiguous: 2 entries match") as ambiguous:
        store.resolve("twin")
    assert len(ambiguous.value.candidates) == 2
    assert all(c.endswith("[user]") for c in ambiguous.value.candidates)


class _KeepFiles:
    """A root kind of this test's own: ``*.keep`` files name entries."""

    def claims(self, target: Path) -> bool:
        return target.suffix == ".keep"

    def entry_names(self, store: StoreReader, target: Path) -> list[str]:
        return [e.dirname for e in store.entries() if e.name in target.read_text().split()]


class _NamesOnly:
    """A check of this test's own: entries named 'bad' are reported."""

    def problems(self, entry: Entry, actual: dict[str, str]) -> list[str]:
        return ["named bad"] if entry.name == "bad" and "data.txt" in actual else []


def test_gc_keeps_what_a_registered_root_kind_reads(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    kept = add_path(store, _tree(tmp_path, "kept"), "kept", "1").entry
    other = add_path(store, _tree(tmp_path, "other"), "other", "1").entry
    keep = tmp_path / "list.keep"
    keep.write_text("kept\n")
    add_root(store, "mine", keep)
    # Without the registration the file is read as a refs file, which names
    # nothing here: both go (in a dry run).
    bare = collect(store, Registry(), dry_run=True)
    assert {name for name, _ in bare.removed} == {kept.dirname, other.dirname}
    report = collect(store, Registry(root_kinds=(_KeepFiles(),)))
    assert [name for name, _ in report.removed] == [other.dirname]
    assert kept.path.exists() and not other.path.exists()


def test_verify_runs_registered_checks(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    add_path(store, _tree(tmp_path, "bad"), "bad", "1")
    add_path(store, _tree(tmp_path, "good"), "good", "1")
    assert verify(store.entries()) == []
    problems = verify(store.entries(), (_NamesOnly(),))
    assert [(p.entry.name, p.message) for p in problems] == [("bad", "named bad")]


def test_the_namespaces_register_roots_areas_and_checks() -> None:
    reg = registry()
    assert reg.environment_areas == ("views", "envs", "unions")  # each area once
    assert len(reg.root_kinds) == 1 and reg.root_kinds[0].claims(Path("pylock.toml"))
    assert [e.prefix for e in reg.expiring] == ["runtime-", "union-"]
    assert len(reg.root_sources) == 1 and len(reg.checks) == 1
