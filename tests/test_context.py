"""The settings record every command builds first: its behaviour as a frozen
record (equality, replace, pickling to process pools, a hidden password),
its buckets, and what importing it costs (no dataclasses, enum or pathlib)."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import contentpkg
from contentpkg.context import (
    Bucket,
    Context,
    IndexEnvironment,
    Output,
    loader_settings,
)


def _environ(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "CPK_INDEX_URL": "http://127.0.0.1:9/simple",
        "CPK_EXTRA_INDEX_URL": "http://127.0.0.1:9/a http://127.0.0.1:9/b",
        "CPK_REGISTRY_PASSWORD": "hunter2",
        "NO_COLOR": "1",
    }


def test_a_context_is_a_frozen_record(tmp_path: Path) -> None:
    ctx = Context.from_environ(_environ(tmp_path))
    assert ctx.home == tmp_path / ".local/share/contentpkg"
    assert ctx.cache_dir == tmp_path / ".cache/contentpkg"
    assert ctx.index == IndexEnvironment(
        "http://127.0.0.1:9/simple", ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b"), ()
    )
    assert ctx.output == Output(no_color_env=True)
    assert not ctx.output.colored(isatty=True)
    assert ctx.bucket(Bucket.LOADER) == ctx.cache_dir / "loader-v2"
    with pytest.raises(AttributeError, match="frozen"):
        ctx.offline = True  # type: ignore[misc]
    changed = ctx.replace(offline=True, output=ctx.output.replace(color="always"))
    assert changed.offline and not ctx.offline
    assert changed.output.colored(isatty=False)
    assert changed != ctx and changed.replace(offline=False, output=ctx.output) == ctx
    with pytest.raises(TypeError, match="no field"):
        ctx.replace(ofline=True)
    # The password is a field but never shown.
    assert ctx.remote.password == "hunter2"
    assert "hunter2" not in repr(ctx)
    assert hash(ctx.output) == hash(Output(no_color_env=True))


def test_a_context_crosses_to_a_process_pool_whole(tmp_path: Path) -> None:
    """Pickled as process pools do (every protocol) and copied: the same record."""
    ctx = Context.from_environ(_environ(tmp_path))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(ctx, protocol)) == ctx
    assert copy.deepcopy(ctx) == ctx and copy.copy(ctx.index) == ctx.index
    assert pickle.loads(pickle.dumps(Bucket.GIT)) is Bucket.GIT


def test_buckets_are_named_once_and_listed_in_order() -> None:
    names = [b.name for b in Bucket]
    assert names[:2] == ["ARCHIVES", "HTTP"] and "LOADER" in names
    assert len(Bucket) == len(names) == len({b.value for b in Bucket})
    assert Bucket.LOADER.value == "loader-v2" and Bucket.LOADER.name == "LOADER"
    with pytest.raises(AttributeError):
        Bucket.LOADER.value = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "extra",
    [{}, {"XDG_CACHE_HOME": "/somewhere"}, {"XDG_CACHE_HOME": "relative"}, {"CPK_CACHE_DIR": "c"}],
)
def test_loader_settings_give_the_context_s_cache_dir(
    tmp_path: Path, extra: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"HOME": str(tmp_path), **extra}
    cache_dir, environ = loader_settings(env)
    assert cache_dir == str(Context.from_environ(env).cache_dir)
    assert environ is env
    with pytest.raises(ValueError, match="CPK_HTTP_RETRIES"):
        loader_settings({**env, "CPK_HTTP_RETRIES": "-1"})


def test_importing_the_context_loads_no_code_generator() -> None:
    """Every command imports it first: no dataclasses (inspect, ast...),
    enum or pathlib at import; pathlib comes when a Context is built."""
    src = str(Path(contentpkg.__file__).resolve().parents[1])
    child = (
        f"import sys; sys.path.insert(0, {src!r}); before = set(sys.modules)\n"
        "import contentpkg.context\n"
        "print(*sorted(set(sys.modules) - before))\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", child],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"contentpkg", "contentpkg.context"} <= loaded
    assert loaded & {"dataclasses", "enum", "pathlib", "typing", "collections", "re"} == set()
