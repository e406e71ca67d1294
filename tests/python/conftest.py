"""Fixtures for the Python side: a live local index and clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.tags import compatible_tags, cpython_tags
from support.index import LocalIndex

from contentpkg.python.index.client import IndexClient
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info


@pytest.fixture
def local_index(tmp_path: Path) -> Iterator[LocalIndex]:
    """A running index serving tmp_path/dists; tests drop wheels in .root."""
    with LocalIndex(tmp_path / "dists") as index:
        yield index


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., IndexClient]]:
    """Make IndexClients sharing one cache dir (pass cache_dir to change it).

    Backoff is zero so retry tests take no wall-clock time.
    """
    made: list[IndexClient] = []

    def make(*indexes: str, **kwargs: Any) -> IndexClient:
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("backoff", 0.0)
        client = IndexClient(list(indexes), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def index_client(
    local_index: LocalIndex, client_factory: Callable[..., IndexClient]
) -> IndexClient:
    return client_factory(local_index.url)


@pytest.fixture
def target() -> InterpreterInfo:
    """The running interpreter, as the resolver's target."""
    return interpreter_info(None)


def fake_target(
    platforms: list[str], version: tuple[int, int] = (3, 11), **markers: str
) -> InterpreterInfo:
    """A CPython target on other platforms, for choosing among platform wheels."""
    tags = [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, platforms=platforms),
    ]
    env = dict(default_environment())
    full = f"{version[0]}.{version[1]}.0"
    env.update(python_version=f"{version[0]}.{version[1]}", python_full_version=full)
    env.update(markers)
    return InterpreterInfo(
        executable="/nonexistent/python",
        version=full,
        implementation="cpython",
        markers=env,
        tags=tuple(str(t) for t in tags),
        cache_tag=f"cpython-{version[0]}{version[1]}",
        site_packages=f"lib/python{version[0]}.{version[1]}/site-packages",
        magic_number=None,
        base_executable="/nonexistent/python",
        soabi=None,
        ext_suffix=None,
        platform="unknown",  # only the tags matter for choosing wheels
    )


@pytest.fixture
def make_target() -> Callable[..., InterpreterInfo]:
    return fake_target
