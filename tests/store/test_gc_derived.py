"""gc leaves nothing behind that was made from the entries it removes.

The link pool's symlinks (and pooled files) and the entries' squashfs
images are derived from entries; gc removes those of the entries it
collects and keeps those of live ones. Also: a remote without a trusted key
is named once per union, not once per pass over the remotes.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from contentpkg.context import Context
from contentpkg.env.union.images import image_path, make_image
from contentpkg.python.envs.links import LINKS, LinkPool
from contentpkg.python.envs.views import VIEWS
from contentpkg.store.add import add_built
from contentpkg.store.gc import REFS, add_root
from contentpkg.store.layers import Store
from contentpkg.store.remote.substitute import for_union

SRC = Path(__file__).resolve().parents[2] / "src"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CPK_HOME=str(tmp_path / "home"), CPK_CACHE_DIR=str(tmp_path / "c"),
                PYTHONPATH=str(SRC), CPK_REMOTES="")  # fmt: skip


def _gc(env: dict[str, str], *extra: str) -> str:
    run = subprocess.run([sys.executable, "-m", "contentpkg", "store", "gc", *extra], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stderr


def _entry(store: Store, name: str, ctx: Context | None = None):
    def populate(dest: Path) -> None:
        (dest / "share" / name).mkdir(parents=True)
        (dest / "share" / name / "data").write_text(name)
        if ctx is not None:
            extra["image"] = make_image(ctx, dest)

    extra: dict[str, object] = {}
    return add_built(store, name, "1.0", "generic", populate, extra=extra).entry


def _view(ctx: Context, pool: LinkPool, name: str, entry) -> Path:
    """A view of entry as views are built: hard links to the pool's symlinks."""
    view = ctx.home / VIEWS / name
    (view / ".cpk").mkdir(parents=True)
    (view / REFS).write_text(f"{entry.dirname}\n")
    pool.symlink(entry.path / "share" / entry.name, view / entry.name)
    pool.file(f"# {name}\n".encode(), view / "finder.py")
    return view


def test_gc_removes_the_pool_links_of_the_entries_it_removes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)
    live, dead = _entry(store, "alpha"), _entry(store, "beta")
    pool = LinkPool.of(store)
    kept = _view(ctx, pool, "kept", live)
    _view(ctx, pool, "lost", dead)  # no root reaches it: swept, then its entry
    add_root(store, "kept", kept)
    links = ctx.home / LINKS
    assert pool.shared == 4 and len(os.listdir(links)) == 4

    dry = _gc(env, "--dry-run")
    assert dead.path.is_dir() and len(os.listdir(links)) == 4  # a dry run removes nothing
    assert "would remove 1 entry, 1 file under links/" in dry

    summary = _gc(env)
    assert not dead.path.exists() and live.path.is_dir()
    # The dead entry's pool symlink and the lost view's pooled file are gone;
    # the live view's two stay, still shared by it (two names, one inode).
    remaining = sorted(os.listdir(links))
    assert len(remaining) == 2
    for name in remaining:
        assert os.lstat(links / name).st_nlink == 2
    assert (kept / "alpha" / "data").read_text() == "alpha"
    assert (kept / "finder.py").read_text() == "# kept\n"
    assert "removed 1 entry, 2 files under links/" in summary

    # A pool link a gc before this one left dangling goes at the next run.
    orphan = links / "orphan"
    os.symlink(store.user.root / dead.dirname / "share" / "beta", orphan)
    _gc(env)
    assert not os.path.lexists(orphan) and len(os.listdir(links)) == 2


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs mksquashfs")
def test_gc_removes_the_images_of_the_entries_it_removes(tmp_path: Path) -> None:
    env = _env(tmp_path)
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)
    live, dead = _entry(store, "alpha", ctx), _entry(store, "beta", ctx)
    live_image = image_path(ctx, live.metadata["image"]["sha256"])
    dead_image = image_path(ctx, dead.metadata["image"]["sha256"])
    assert live_image != dead_image and live_image.is_file() and dead_image.is_file()
    add_root(store, "alpha", live.path)

    summary = _gc(env)
    assert not dead.path.exists() and not dead_image.exists()
    assert live.path.is_dir() and live_image.is_file()
    assert "removed 1 entry, 1 file under images/" in summary


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs mksquashfs")
def test_an_image_another_entry_shares_is_kept(tmp_path: Path) -> None:
    # Two names for the same tree give the same image bytes, so one file.
    env = _env(tmp_path)
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)

    def same(dest: Path) -> None:
        (dest / "data").write_text("same")
        extra["image"] = make_image(ctx, dest)

    extra: dict[str, object] = {}
    one = add_built(store, "one", "1.0", "generic", same, extra=extra).entry
    two = add_built(store, "two", "1.0", "generic", same, extra=extra).entry
    image = image_path(ctx, one.metadata["image"]["sha256"])
    assert two.metadata["image"] == one.metadata["image"]
    add_root(store, "two", two.path)

    _gc(env)
    assert not one.path.exists() and image.is_file()


def test_an_untrusted_remote_is_named_once_per_union(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Skipped before anything is asked of it, so no registry need listen.
    ctx = Context.from_environ(
        {"CPK_HOME": str(tmp_path / "home"), "CPK_CACHE_DIR": str(tmp_path / "c"),
         "HOME": str(tmp_path), "CPK_REMOTES": "oci://127.0.0.1:9/union"}
    )  # fmt: skip
    store = Store.open(ctx=ctx)
    packages = [SimpleNamespace(sha256="sha256:" + "ab" * 32)]
    with caplog.at_level(logging.WARNING, logger="contentpkg.remote"):
        assert for_union(ctx, store, lambda: packages) == {}
    warned = [r.getMessage() for r in caplog.records if "no trusted keys" in r.getMessage()]
    assert warned == [
        "oci://127.0.0.1:9/union: skipped, no trusted keys "
        "(add the publisher's with 'cpk key trust KEY.pub')"
    ]
