"""Verification names corruption; collection keeps exactly what roots reach."""

from __future__ import annotations

import os
import random
from pathlib import Path

from support.cli import run_cpk

from contentpkg.namespaces import registry
from contentpkg.store import Store
from contentpkg.store.add import add_built, add_path
from contentpkg.store.gc import add_root, collect, write_refs


def make_entry(tmp_path: Path, name: str, text: str = "", refs: tuple[str, ...] = ()):
    src = tmp_path / f"src-{name}-{len(text)}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "data.txt").write_text(text or name)
    (src / "lib").mkdir(exist_ok=True)
    (src / "lib" / "x.so").write_bytes(os.urandom(64))
    store = Store.open()
    if not refs:
        return add_path(store, src, name, "1").entry

    def populate(dest: Path) -> None:
        (dest / "data.txt").write_text(text or name)

    return add_built(store, name, "1", "generic", populate, references=refs).entry


def writable(path: Path) -> None:
    os.chmod(path, 0o755)
    for p in path.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


def test_flipped_byte_is_named_by_verify(tmp_path: Path) -> None:
    good = make_entry(tmp_path, "good")
    bad = make_entry(tmp_path, "bad")
    assert run_cpk("store", "verify").returncode == 0
    writable(bad.path)
    data = bytearray((bad.path / "lib" / "x.so").read_bytes())
    data[10] ^= 0xFF
    (bad.path / "lib" / "x.so").write_bytes(bytes(data))
    proc = run_cpk("store", "verify")
    assert proc.returncode == 1
    assert f"corrupt: {bad.dirname}" in proc.stdout
    assert "changed lib/x.so" in proc.stdout
    assert good.dirname not in proc.stdout
    assert "1 corrupt" in proc.stderr
    # Verifying only the good one passes.
    assert run_cpk("store", "verify", "good").returncode == 0


def test_verify_names_added_missing_and_mode_changes(tmp_path: Path) -> None:
    entry = make_entry(tmp_path, "e")
    writable(entry.path)
    os.unlink(entry.path / "lib" / "x.so")
    (entry.path / "extra").write_text("sneaky")
    os.chmod(entry.path / "data.txt", 0o755)
    proc = run_cpk("store", "verify")
    assert proc.returncode == 1
    out = proc.stdout
    assert "missing lib/x.so" in out and "added extra" in out and "changed data.txt" in out


def test_gc_keeps_what_roots_reach_and_prunes_dangling_roots(tmp_path: Path) -> None:
    store = Store.open()
    leaf = make_entry(tmp_path, "leaf")
    mid = make_entry(tmp_path, "mid", refs=(leaf.dirname,))
    top = make_entry(tmp_path, "top", refs=(mid.dirname,))
    via_dir = make_entry(tmp_path, "viadir")
    via_file = make_entry(tmp_path, "viafile")
    orphan = make_entry(tmp_path, "orphan")
    add_root(store, "top", top.path)
    env = tmp_path / "some-view"
    write_refs(env / ".cpk" / "refs", [via_dir])
    add_root(store, "view", env)
    write_refs(tmp_path / "lock.refs", [via_file])
    add_root(store, "lock", tmp_path / "lock.refs")
    add_root(store, "gone", tmp_path / "does-not-exist")

    dry = run_cpk("store", "gc", "--dry-run")
    assert dry.returncode == 0
    assert f"would remove: {orphan.dirname}" in dry.stdout
    assert orphan.path.exists() and (store.roots_dir / "gone").is_symlink()

    proc = run_cpk("store", "gc")
    assert proc.returncode == 0, proc.stderr
    assert f"removed: {orphan.dirname}" in proc.stdout
    assert "pruned dangling root: gone" in proc.stdout
    assert not orphan.path.exists()
    assert not (store.roots_dir / "gone").is_symlink()
    for entry in (leaf, mid, top, via_dir, via_file):
        assert entry.path.exists(), entry.dirname
    # Its lookup rows went with it.
    _, found = store.identify(tmp_path / "src-orphan-0" / "data.txt")
    assert found == []
    assert run_cpk("store", "verify").returncode == 0


def test_gc_never_removes_a_reachable_entry_random_graphs(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = Store.open()
    for round_ in range(3):
        made = []
        for i in range(12):
            refs = tuple(rng.sample([e.dirname for e in made], k=min(len(made), rng.randint(0, 2))))
            made.append(make_entry(tmp_path, f"n{round_}x{i}", refs=refs))
        rooted = rng.sample(made, k=3)
        for i, entry in enumerate(rooted):
            add_root(store, f"r{round_}-{i}", entry.path)
        # The reachable set, computed independently of gc.
        by_name = {e.dirname: e for e in made}
        reach, stack = set(), [e.dirname for e in rooted]
        while stack:
            name = stack.pop()
            if name not in reach:
                reach.add(name)
                stack.extend(by_name[name].metadata["references"])
        collect(store, registry())
        for entry in made:
            assert entry.path.exists() == (entry.dirname in reach), entry.dirname
        for link in store.roots_dir.iterdir():
            link.unlink()


def test_entry_referenced_only_by_a_removed_root_goes(tmp_path: Path) -> None:
    store = Store.open()
    entry = make_entry(tmp_path, "tmp")
    link = add_root(store, "tmp", entry.path)
    collect(store, registry())
    assert entry.path.exists()
    link.unlink()
    report = collect(store, registry())
    assert [name for name, _ in report.removed] == [entry.dirname]
    assert report.freed > 0
