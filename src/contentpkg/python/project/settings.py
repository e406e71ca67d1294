"""Where packages are looked for: the indexes and find-links a command uses.

The one place that decides between the command line, the environment and
what the project files say (:class:`~contentpkg.python.project.models.ProjectInputs`
carries the latter as written, in the shape :func:`index_settings` takes).
The index client, the lock's fingerprint and the freshness check of
``cpk run`` all take their places from here, so a lock made under some
settings is judged under the same ones. Only the standard library is
imported: ``cpk run`` needs this on its hot path, where the index client
(``packaging``, the HTTP stack) must not be loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contentpkg.context import Context, IndexEnvironment
from contentpkg.errors import CpkError

DEFAULT_INDEX = "https://pypi.org/simple/"


def location_url(value: str | os.PathLike[str], base: Path | None) -> str:
    """An index or find-links location as a URL; local paths become ``file:`` URLs."""
    value = os.fspath(value)
    if "://" in value or value.startswith("file:"):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.absolute().as_uri()


def index_url(value: str | os.PathLike[str], base: Path | None = None) -> str:
    """An index location as a URL ending in ``/``, where project names are appended."""
    url = location_url(os.fspath(value).strip(), base)
    return url if url.endswith("/") else url + "/"


def _tool_list(tool: Mapping[str, Any], key: str) -> list[str]:
    value = tool.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise CpkError(f"pyproject.toml [tool.cpk] {key}: expected a list of strings")


def index_settings(
    cli_indexes: Sequence[str] | None,
    cli_find_links: Sequence[str] | None,
    pyproject_tool_cpk: Mapping[str, Any] | None,
    *,
    project_dir: Path | None = None,
    index_env: IndexEnvironment | None = None,
) -> tuple[list[str], list[str]]:
    """The indexes (in priority order) and find-links locations to use.

    Each setting is taken from the first place that sets it: the command
    line, then ``CPK_INDEX_URL`` / ``CPK_EXTRA_INDEX_URL`` (space-separated)
    / ``CPK_FIND_LINKS``, then ``[tool.cpk]`` (``index-url``,
    ``extra-index-url``, ``find-links``; ``no-index = true`` leaves only
    find-links), then PyPI. ``cli_indexes`` is
    already in priority order. Otherwise the extra indexes come before the
    main one, as in uv: with first-index-wins, an extra index exists to be
    asked first. Relative paths in ``pyproject.toml`` are relative to
    project_dir. ``index_env`` is the environment's part (``ctx.index``);
    None reads this process's, for callers not handed a Context yet.
    """
    tool = dict(pyproject_tool_cpk or {})
    # Validate [tool.cpk] even where the environment overrides it, so a typo
    # is reported when it is made rather than when the override goes away.
    tool_index = tool.get("index-url")
    if tool_index is not None and not isinstance(tool_index, str):
        raise CpkError("pyproject.toml [tool.cpk] index-url: expected a string")
    tool_extras = _tool_list(tool, "extra-index-url")
    tool_links = _tool_list(tool, "find-links")
    no_index = tool.get("no-index", False)
    if not isinstance(no_index, bool):
        raise CpkError("pyproject.toml [tool.cpk] no-index: expected true or false")
    if index_env is None:
        index_env = Context.from_environ().index
    primary_env = index_env.index_url
    extra_env = list(index_env.extra_index_urls)
    if cli_indexes:
        indexes = [index_url(u) for u in cli_indexes]
    elif no_index and not primary_env and not extra_env:
        indexes = []
    else:
        if primary_env:
            primary = index_url(primary_env)
        elif tool_index is not None:
            primary = index_url(tool_index, project_dir)
        else:
            primary = DEFAULT_INDEX
        if extra_env:
            extras = [index_url(u) for u in extra_env]
        else:
            extras = [index_url(u, project_dir) for u in tool_extras]
        indexes = [*extras, primary]
    env_links = list(index_env.find_links)
    if cli_find_links:
        find_links = [location_url(u, None) for u in cli_find_links]
    elif env_links:
        find_links = [location_url(u, None) for u in env_links]
    else:
        find_links = [location_url(u, project_dir) for u in tool_links]
    return list(dict.fromkeys(indexes)), list(dict.fromkeys(find_links))


def command_line_places(
    options: Any, inputs: Any, index_env: IndexEnvironment | None = None
) -> tuple[list[str], list[str]]:
    """Indexes and find-links for a command: its options, else :func:`index_settings`.

    ``--extra-index-url`` alone adds indexes in front of whatever the
    environment or the project configures, as pip and uv do; ``--index-url``
    replaces the primary one. ``options`` has ``index_url``,
    ``extra_index_urls`` and ``find_links``; ``inputs`` is the project's
    (or None); ``index_env`` is ``ctx.index``. Locking and ``cpk run``'s
    freshness check both call this, so a lock is judged under the settings
    it was made with.
    """
    tool = inputs.index_table if inputs is not None else {}
    root = inputs.root if inputs is not None else None
    links = getattr(options, "find_links", None) or None
    index_url = getattr(options, "index_url", None)
    extras = list(getattr(options, "extra_index_urls", None) or [])
    if index_env is None:
        index_env = Context.from_environ().index
    indexes, found_links = index_settings(None, links, tool, project_dir=root, index_env=index_env)
    if index_url is not None or extras:
        primary = [index_url] if index_url is not None else indexes
        indexes, _ = index_settings(
            [*extras, *primary], links, tool, project_dir=root, index_env=index_env
        )
    return indexes, found_links
