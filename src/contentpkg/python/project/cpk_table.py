"""The ``[tool.cpk]`` table of a ``pyproject.toml`` or a PEP 723 script.

Where packages are looked for (as written; :mod:`.settings` decides what
applies), which checkouts serve which names, the default dependency groups,
and whether the project is a package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.models import IndexSettings, Source
from contentpkg.python.project.sources import find_links_location, local_source
from contentpkg.python.project.tomlfile import strings, table

_TOOL_KEYS = (
    "cache-keys",
    "conflicts",
    "default-groups",
    "environments",
    "extra-index-url",
    "find-links",
    "index-url",
    "no-index",
    "package",
    "required-environments",
    "sources",
    "strict-command",
)
_SOURCE_KEYS = ("editable", "path")


def read_tool_table(
    tool: dict[str, Any], file: Path, root: Path, validate: bool
) -> tuple[IndexSettings, dict[str, Source], list[str] | str | None]:
    """Read ``[tool.cpk]``. Unknown keys are errors: a misspelt ``index-url``
    silently ignored would send requests to the wrong index."""
    unknown = sorted(set(tool) - set(_TOOL_KEYS))
    if unknown:
        raise CpkError(
            f"{file}: unknown key [tool.cpk].{unknown[0]} (known: {', '.join(_TOOL_KEYS)})"
        )
    index_url = tool.get("index-url")
    if index_url is not None and not isinstance(index_url, str):
        raise CpkError(f"{file}: [tool.cpk].index-url must be a string")
    no_index = tool.get("no-index", False)
    if not isinstance(no_index, bool):
        raise CpkError(f"{file}: [tool.cpk].no-index must be true or false")
    extra = strings(tool.get("extra-index-url"), file, "[tool.cpk].extra-index-url", single_ok=True)
    links = strings(tool.get("find-links"), file, "[tool.cpk].find-links", single_ok=True)
    index = IndexSettings(
        index_url=index_url.strip() if index_url else None,
        extra_index_urls=tuple(u.strip() for u in extra),
        find_links=tuple(find_links_location(link.strip(), root) for link in links),
        no_index=no_index,
    )
    sources: dict[str, Source] = {}
    for raw_name, spec in table(tool.get("sources"), file, "[tool.cpk.sources]").items():
        where = f"[tool.cpk.sources].{raw_name}"
        if not isinstance(spec, dict):
            raise CpkError(f'{file}: {where} must be a table like {{ path = "../B" }}')
        bad = sorted(set(spec) - set(_SOURCE_KEYS))
        if bad:
            raise CpkError(f"{file}: {where}: unsupported key {bad[0]!r} (cpk supports path)")
        raw_path = spec.get("path")
        editable = spec.get("editable", False)
        if not isinstance(raw_path, str) or not raw_path:
            raise CpkError(f"{file}: {where} needs a path")
        if not isinstance(editable, bool):
            raise CpkError(f"{file}: {where}.editable must be true or false")
        key = canonical_name(raw_name)
        sources[key] = local_source(key, raw_path, root, editable, f"{file}: {where}", validate)
    default_groups = tool.get("default-groups")
    if default_groups is not None and default_groups != "all":
        default_groups = strings(default_groups, file, "[tool.cpk].default-groups")
    return index, sources, default_groups


def is_package(data: dict[str, Any], tool: dict[str, Any], file: Path) -> bool:
    """Whether the project itself is installed (editable) into its environment.

    As in uv: a project with a ``[build-system]`` is a package; one without
    is only a set of dependencies, unless ``[tool.cpk] package`` says
    otherwise.
    """
    package = tool.get("package")
    if package is None:
        return "build-system" in data
    if not isinstance(package, bool):
        raise CpkError(f"{file}: [tool.cpk] package must be true or false")
    return package
