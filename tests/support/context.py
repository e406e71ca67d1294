"""The test's own settings, as the command line would read them."""

from __future__ import annotations

from pathlib import Path

from contentpkg.context import Context


def home() -> Path:
    """The home the autouse ``cpk_home`` fixture points ``CPK_HOME`` at."""
    return Context.from_environ().home
