"""cpk cache dir|clean|prune and cpk store du, through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.cli import run_cpk, tree_snapshot
from support.index import LocalIndex
from support.wheels import make_wheel


@pytest.fixture
def index(tmp_path: Path):
    root = tmp_path / "dists"
    make_wheel(root, "shared", "1.0")
    make_wheel(root, "only-a", "1.0", requires_dist=["shared"])
    make_wheel(root, "only-b", "1.0", requires_dist=["shared"])
    with LocalIndex(root) as served:
        yield served


def project(tmp_path: Path, name: str, dep: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1"\ndependencies = ["{dep}"]\n'
    )
    return root


def test_cache_dir_clean_and_prune_leave_the_store_alone(
    tmp_path: Path, index: LocalIndex, cpk_home: Path
) -> None:
    cache = Path(os.environ["CPK_CACHE_DIR"])
    assert run_cpk("cache", "dir", check=True).stdout == f"{cache}\n"
    proj = project(tmp_path, "a", "only-a")
    run_cpk("sync", "--index-url", index.url, cwd=proj, check=True)
    store = tree_snapshot(cpk_home / "store")
    assert (cache / "http-v1").is_dir()
    # Old bucket versions and a killed command's scratch go; a fresh scratch
    # (a command running now) and the current buckets stay.
    (cache / "http-v0" / "ab").mkdir(parents=True)
    (cache / "http-v0" / "ab" / "page").write_bytes(b"x" * 100)
    old = cache / "cpk-fetch-dead"
    old.mkdir()
    os.utime(old, (0, 0))
    fresh = cache / "cpk-fetch-live"
    fresh.mkdir()
    kept = sorted(p.name for p in cache.iterdir() if p.name not in ("http-v0", old.name))
    pruned = run_cpk("cache", "prune", "-v", check=True)
    assert "removed http-v0 (100 B)" in pruned.stderr
    assert "cache prune: removed 2 items" in pruned.stderr
    assert sorted(p.name for p in cache.iterdir()) == kept

    clean_http = run_cpk("cache", "clean", "http", check=True)
    assert "removed 1 item" in clean_http.stderr
    assert not (cache / "http-v1").exists() and (cache / "metadata-v1").exists()
    bad = run_cpk("cache", "clean", "nonsense")
    assert bad.returncode == 1 and bad.stderr.startswith(
        "cpk: error: nonsense: no such cache bucket"
    )

    run_cpk("cache", "clean", check=True)
    assert list(cache.iterdir()) == []
    assert tree_snapshot(cpk_home / "store") == store
    # The store still serves the project with no cache and no network.
    again = run_cpk("sync", "--offline", "--frozen", cwd=proj, check=True)
    assert "0 fetched, 0 built, 2 already present" in again.stderr


def test_store_du_shows_what_each_root_keeps_alive(tmp_path: Path, index: LocalIndex) -> None:
    a = project(tmp_path, "a", "only-a")
    b = project(tmp_path, "b", "only-b")
    for root in (a, b):
        run_cpk("sync", "--index-url", index.url, cwd=root, check=True)
    report = json.loads(run_cpk("store", "du", "--json", check=True).stdout)
    roots = {Path(r["target"]).parent.name: r for r in report["roots"]}
    assert set(roots) == {"a", "b"}
    names = {k: {e.split(",")[0] for e in r["entries"]} for k, r in roots.items()}
    assert names == {"a": {"only-a", "shared"}, "b": {"only-b", "shared"}}
    sizes = {e["name"]: e["size"] for e in json.loads(run_cpk("store", "ls", "--json").stdout)}
    # "only" counts what no other root reaches: shared is not a's alone.
    assert roots["a"]["size"] == sizes["only-a"] + sizes["shared"]
    assert roots["a"]["only"] == sizes["only-a"]
    assert report["unreachable"] == []

    (b / "pylock.toml").unlink()
    after = json.loads(run_cpk("store", "du", "--json", check=True).stdout)
    dangling = [r for r in after["roots"] if r["dangling"]]
    assert len(dangling) == 1 and dangling[0]["entries"] == []
    assert [e.split(",")[0] for e in after["unreachable"]] == ["only-b"]
    table = run_cpk("store", "du", check=True)
    assert table.stdout.splitlines()[0].split() == [
        "ROOT",
        "ENTRIES",
        "SIZE",
        "ONLY",
        "IT",
        "TARGET",
    ]
    assert "1 entry" in table.stderr and "reached by no root" in table.stderr
    # du changes nothing: the dangling root is still there for gc to prune.
    gc = run_cpk("store", "gc", check=True)
    assert "pruned dangling root" in gc.stdout
