"""Fixtures the reliability tests share (helpers live in ``support.processes``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def fresh_home(tmp_path: Path) -> Callable[[], tuple[Path, Path]]:
    """Make a new (CPK_HOME, CPK_CACHE_DIR) pair per call: one per trial, so a
    trial starts cold and cannot lean on what the last one left."""
    counter = itertools.count()

    def make() -> tuple[Path, Path]:
        n = next(counter)
        home, cache = tmp_path / f"home{n}", tmp_path / f"cache{n}"
        home.mkdir()
        cache.mkdir()
        return home, cache

    return make
