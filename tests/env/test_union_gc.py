"""The unions' cached farms as gc roots: kept while used, collected once stale.

Composition only, in this process (no namespace is needed to build a farm).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from contentpkg.context import Context
from contentpkg.env.union.compose import FARM_MAX_AGE, ROOT_PREFIX, compose
from contentpkg.store.add import add_built
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
