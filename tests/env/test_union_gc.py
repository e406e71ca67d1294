"""The unions' cached farms as gc roots: kept while used, collected once stale.

Composition only, in this process (no namespace is needed to build a farm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contentpkg.context import Context
from contentpkg.env.union.compose import FARM_MAX_AGE, ROOT_PREFIX, compose
from contentpkg.env.union.images import IMAGES, image_path, make_image
from contentpkg.errors import CpkError
from contentpkg.store.add import add_built
from contentpkg.store.gc import add_root
from contentpkg.store.layers import Store

SRC = Path(__file__).resolve().parents[2] / "src"


def _entry(store: Store, name: str):
    def populate(dest: Path) -> None:
        (dest / "share" / name).mkdir(parents=True)
        (dest / "share" / name / "data").write_text(name)

    return add_built(store, name, "1.0", "generic", populate, extra={"unmodified": True}).entry


def _gc(env: dict[str, str]) -> str:
    run = subprocess.run([sys.executable, "-m", "contentpkg", "store", "gc"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout + run.stderr


def test_a_used_farm_keeps_its_entries_and_a_stale_one_is_collected(tmp_path: Path) -> None:
    env = dict(os.environ, CPK_HOME=str(tmp_path / "home"), CPK_CACHE_DIR=str(tmp_path / "c"),
               PYTHONPATH=str(SRC))  # fmt: skip
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)
    a, b = _entry(store, "alpha"), _entry(store, "beta")
    farm = compose(ctx, [a, b], store=store).path
    root = ctx.home / "roots" / f"{ROOT_PREFIX}{farm.name}"
    assert os.readlink(root) == str(farm)
    assert (farm / ".cpk" / "refs").read_text().split() == [a.dirname, b.dirname]

    # Rooted by the farm alone, both entries survive gc, and so does the farm.
    _gc(env)
    assert a.path.is_dir() and b.path.is_dir() and farm.is_dir()

    # A farm no root reaches (its root lost) is swept like a stale view.
    os.unlink(root)
    _gc(env)
    assert not farm.exists()
    assert not a.path.exists() and not b.path.exists()


def test_an_unused_farm_lapses_with_its_root(tmp_path: Path) -> None:
    env = dict(os.environ, CPK_HOME=str(tmp_path / "home"), CPK_CACHE_DIR=str(tmp_path / "c"),
               PYTHONPATH=str(SRC))  # fmt: skip
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)
    a = _entry(store, "alpha")
    farm = compose(ctx, [a], store=store).path
    stored = a.path / "share" / "alpha" / "data"
    assert os.stat(stored).st_nlink == 2  # the farm's hard link

    old = os.stat(farm).st_mtime - FARM_MAX_AGE - 60
    os.utime(farm, (old, old))
    _gc(env)
    assert not farm.exists()
    assert not (ctx.home / "roots" / f"{ROOT_PREFIX}{farm.name}").exists()
    assert not a.path.exists()

    # Used again, it is composed again, and a use refreshes its age.
    b = _entry(store, "alpha")
    again = compose(ctx, [b], store=store)
    assert not again.reused and again.path.is_dir()
    assert compose(ctx, [b], store=store).reused


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs mksquashfs")
def test_an_image_left_by_a_failed_add_is_collected(tmp_path: Path) -> None:
    env = dict(os.environ, CPK_HOME=str(tmp_path / "home"), CPK_CACHE_DIR=str(tmp_path / "c"),
               PYTHONPATH=str(SRC), CPK_REMOTES="")  # fmt: skip
    ctx = Context.from_environ(env)
    store = Store.open(ctx=ctx)

    def kept_tree(dest: Path) -> None:
        (dest / "share").mkdir()
        (dest / "share" / "kept").write_text("kept")
        extra["image"] = make_image(ctx, dest)

    extra: dict[str, object] = {}
    kept = add_built(store, "kept", "1.0", "generic", kept_tree, extra=extra).entry
    add_root(store, "kept", kept.path)
    kept_image = image_path(ctx, kept.metadata["image"]["sha256"])

    # The image is made from the staged tree, as an unmodified .deb's is;
    # the store then refuses the tree (a FIFO), and the add fails with the
    # image already kept under its hash, named by no entry.
    def refused_tree(dest: Path) -> None:
        (dest / "share").mkdir()
        (dest / "share" / "other").write_text("other")
        os.mkfifo(dest / "share" / "pipe")
        make_image(ctx, dest)

    with pytest.raises(CpkError, match="special file"):
        add_built(store, "refused", "1.0", "generic", refused_tree)
    images = sorted(os.listdir(ctx.home / IMAGES))
    assert len(images) == 2 and kept_image.name in images
    (orphan,) = [ctx.home / IMAGES / n for n in images if n != kept_image.name]
    # And a staging directory of an image maker that died (pid 2**22 + 1
    # is past any pid_max, so no process has it).
    debris = ctx.home / IMAGES / f".tmp-image.{2**22 + 1}.abcd1234"
    debris.mkdir()

    run = subprocess.run([sys.executable, "-m", "contentpkg", "store", "gc", "--dry-run"],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "would remove 0 entries, 2 files under images/" in run.stderr, run.stderr
    assert orphan.exists()

    assert "removed 0 entries, 2 files under images/" in _gc(env)
    assert not orphan.exists() and not debris.exists()
    assert kept_image.is_file() and kept.path.is_dir()
