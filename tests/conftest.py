"""Every test gets its own store and cache: nothing touches the user's."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cpk_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("cpk-home")
    monkeypatch.setenv("CPK_HOME", str(home))
    monkeypatch.setenv("CPK_CACHE_DIR", str(tmp_path_factory.mktemp("cpk-cache")))
    monkeypatch.delenv("CPK_STORE_PATH", raising=False)
    monkeypatch.delenv("CPK_INDEX_URL", raising=False)
    monkeypatch.delenv("CPK_EXTRA_INDEX_URL", raising=False)
    # No Debian archive unless a test serves one: the suite stays off the network.
    no_sources = tmp_path_factory.mktemp("apt") / "no-apt-sources.list"
    no_sources.write_text("")
    monkeypatch.setenv("CPK_APT_SOURCES", str(no_sources))
    return home


@pytest.fixture(autouse=True)
def core_logger() -> Iterator[None]:
    """The ``contentpkg`` logger as it was before the test. A test that calls
    the CLI's ``main()`` in-process leaves it a handler on that test's
    captured stderr (closed afterwards) and ``propagate`` off, which hid the
    core's warnings from a later test's ``caplog`` depending on the order
    the tests ran in (each xdist worker runs its own order)."""
    logger = logging.getLogger("contentpkg")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
