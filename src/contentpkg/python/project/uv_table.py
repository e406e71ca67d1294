"""The ``[tool.uv]`` table: uv's project settings, where they change what is installed.

Many projects configure their environment for uv only; ignoring that would
lock something other than what the project declares. What has a
``[tool.cpk]`` equivalent (indexes, find-links, ``package``, path sources)
is translated into that table's shape, under what ``[tool.cpk]`` itself
says (``[tool.cpk]`` wins where both speak); what has none is returned
beside it: git and URL sources become direct references of the project's
requirements, ``{ index = "name" }`` sources pin a name to one index,
``constraint-dependencies`` and ``override-dependencies`` go to the
resolver. Every other key that would change the environment gets one
warning line saying it is ignored. Standard library only (``cpk run``'s
cold path reads it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.pep508 import NAME, split_marker
from contentpkg.python.project.tomlfile import read_toml, strings, table

_log = logging.getLogger(__name__)

#: Keys cpk honours here.
HONOURED = (
    "constraint-dependencies",
    "extra-index-url",
    "find-links",
    "index",
    "index-url",
    "no-index",
    "override-dependencies",
    "package",
    "sources",
    "workspace",
)
#: Keys the lock and selection code reads itself (groups, environments).
READ_ELSEWHERE = (
    "cache-keys",
    "conflicts",
    "default-groups",
    "environments",
    "required-environments",
)
#: Keys that change how uv works, not what ends up installed, and
#: ``build-backend``, which the ``uv_build`` backend reads itself when cpk
#: runs it: no warning.
NO_EFFECT = (
    "add-bounds",
    "allow-insecure-host",
    "build-backend",
    "cache-dir",
    "check-url",
    "compile-bytecode",
    "concurrent-builds",
    "concurrent-downloads",
    "concurrent-installs",
    "keyring-provider",
    "link-mode",
    "managed",
    "native-tls",
    "no-cache",
    "offline",
    "pip",
    "preview",
    "publish-url",
    "python-downloads",
    "required-version",
    "trusted-publishing",
)
_SOURCE_KEYS = {
    "path": ("path", "editable"),
    "git": ("git", "rev", "tag", "branch", "subdirectory"),
    "url": ("url", "subdirectory"),
    "workspace": ("workspace", "editable"),
    "index": ("index",),
}
_INDEX_KEYS = (
    "name", "url", "default", "explicit", "format", "authenticate", "ignore-error-codes",
    "cache-control", "publish-url",
)  # fmt: skip
_warned: set[tuple[str, tuple[str, ...]]] = set()


@dataclass
class UvSettings:
    """What ``[tool.uv]`` adds to a project's inputs."""

    #: ``[tool.cpk]`` as read, with ``[tool.uv]``'s equivalents beneath it.
    cpk: dict[str, Any] = field(default_factory=dict)
    #: name -> direct URL (``git+...@rev``, an archive): the project's
    #: requirements on those names are rewritten to ``name @ URL``.
    direct: dict[str, str] = field(default_factory=dict)
    index_pins: dict[str, str] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    def apply(self, requirements: Iterable[str]) -> list[str]:
        """The requirements with each direct source's URL put in, as uv does:
        extras and marker kept, the version specifier dropped (the source
        decides the version)."""
        out = []
        for req in requirements:
            match = NAME.match(req)
            url = self.direct.get(canonical_name(match.group(1))) if match else None
            if url is None or match is None:
                out.append(req)
                continue
            rest = req[match.end() :].strip()
            extras = ""
            if rest.startswith("["):
                extras = rest[: rest.find("]") + 1]
            _, marker = split_marker(req)
            out.append(f"{match.group(1)}{extras} @ {url}" + (f" ; {marker}" if marker else ""))
        return out


def read_uv_table(uv: Any, cpk: dict[str, Any], file: Path, root: Path) -> UvSettings:
    """Read ``[tool.uv]`` of ``file`` beside ``[tool.cpk]`` (``cpk``); relative
    paths are relative to ``root``."""
    uv = table(uv, file, "[tool.uv]")
    settings = UvSettings(cpk=dict(cpk))
    if not uv:
        return settings
    ignored = sorted(set(uv) - set(HONOURED) - set(READ_ELSEWHERE) - set(NO_EFFECT))
    if ignored:
        key = (str(file), tuple(ignored))
        if key not in _warned:  # a command may read the project twice
            _warned.add(key)
            keys = ", ".join(ignored)
            verb = "is" if len(ignored) == 1 else "are"
            _log.warning(f"{file}: [tool.uv] {keys} {verb} ignored by cpk")
    translated: dict[str, Any] = {}
    indexes = _indexes(uv, file, root)
    for key in ("index-url", "no-index", "package"):
        if key in uv:
            translated[key] = uv[key]
    extras = [i["url"] for i in indexes if not i["explicit"] and not i["default"] and not i["flat"]]
    extras += strings(uv.get("extra-index-url"), file, "[tool.uv].extra-index-url")
    if extras:
        translated["extra-index-url"] = extras
    links = [i["url"] for i in indexes if i["flat"] and not i["explicit"]]
    links += strings(uv.get("find-links"), file, "[tool.uv].find-links")
    if links:
        translated["find-links"] = links
    default = [i["url"] for i in indexes if i["default"]]
    if default:
        translated["index-url"] = default[0]
    by_name = {i["name"]: i for i in indexes if i["name"]}

    paths: dict[str, dict[str, Any]] = {}
    for raw_name, spec in table(uv.get("sources"), file, "[tool.uv.sources]").items():
        where = f"{file}: [tool.uv.sources].{raw_name}"
        name = canonical_name(raw_name)
        if isinstance(spec, list):
            raise CpkError(f"{where}: a list of sources with markers is not supported by cpk")
        if not isinstance(spec, dict):
            raise CpkError(f"{where} must be a table")
        kind = next((k for k in _SOURCE_KEYS if k in spec), None)
        if kind is None:
            raise CpkError(f"{where}: expected one of path, git, url, workspace or index")
        bad = sorted(set(spec) - set(_SOURCE_KEYS[kind]))
        if bad:
            raise CpkError(f"{where}: {bad[0]!r} is not supported with {kind} by cpk")
        if kind == "path":
            paths[name] = {"path": spec["path"], "editable": spec.get("editable", False)}
        elif kind == "workspace":
            member = _workspace_member(name, file, root, uv)
            # uv installs workspace members editable unless told otherwise.
            paths[name] = {"path": os.fspath(member), "editable": spec.get("editable", True)}
        elif kind == "git":
            settings.direct[name] = _git_url(spec, where)
        elif kind == "url":
            url = spec["url"]
            if not isinstance(url, str):
                raise CpkError(f"{where}.url must be a string")
            sub = spec.get("subdirectory")
            settings.direct[name] = url + (f"#subdirectory={sub}" if sub else "")
        else:
            index = by_name.get(spec["index"])
            if index is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise CpkError(
                    f"{where}: no [[tool.uv.index]] named {spec['index']!r} (declared: {known})"
                )
            settings.index_pins[name] = _absolute(index["url"], root)
    if paths:
        translated["sources"] = paths
    settings.constraints = strings(
        uv.get("constraint-dependencies"), file, "[tool.uv].constraint-dependencies"
    )
    settings.overrides = strings(
        uv.get("override-dependencies"), file, "[tool.uv].override-dependencies"
    )
    # [tool.cpk] wins key by key, and source by source.
    merged = {**translated, **cpk}
    if "sources" in translated and "sources" in cpk:
        merged["sources"] = {**translated["sources"], **table(cpk["sources"], file, "[tool.cpk]")}
    for name in set(settings.direct) | set(settings.index_pins):
        if name in table(cpk.get("sources"), file, "[tool.cpk.sources]"):
            settings.direct.pop(name, None)
            settings.index_pins.pop(name, None)
    settings.cpk = merged
    return settings


def _indexes(uv: dict[str, Any], file: Path, root: Path) -> list[dict[str, Any]]:
    raw = uv.get("index")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CpkError(f"{file}: [[tool.uv.index]] must be an array of tables")
    found = []
    for i, item in enumerate(raw):
        where = f"{file}: [[tool.uv.index]] #{i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise CpkError(f"{where} needs a url")
        bad = sorted(set(item) - set(_INDEX_KEYS))
        if bad:
            raise CpkError(f"{where}: unknown key {bad[0]!r}")
        fmt = item.get("format", "simple")
        if fmt not in ("simple", "flat"):
            raise CpkError(f"{where}: format must be simple or flat")
        found.append(
            {
                "name": item.get("name"),
                "url": item["url"],
                "default": item.get("default") is True,
                "explicit": item.get("explicit") is True,
                "flat": fmt == "flat",
            }
        )
    return found


def _git_url(spec: dict[str, Any], where: str) -> str:
    repo = spec["git"]
    if not isinstance(repo, str):
        raise CpkError(f"{where}.git must be a string")
    revs = [spec[k] for k in ("rev", "tag", "branch") if k in spec]
    if len(revs) > 1:
        raise CpkError(f"{where}: give one of rev, tag or branch")
    url = repo if repo.startswith("git+") else "git+" + repo
    if revs:
        url += f"@{revs[0]}"
    if spec.get("subdirectory"):
        url += f"#subdirectory={spec['subdirectory']}"
    return url


def _absolute(url: str, root: Path) -> str:
    if "://" in url or url.startswith("file:"):
        return url
    return (root / os.path.expanduser(url)).absolute().as_uri()


def _workspace_member(name: str, file: Path, root: Path, uv: dict[str, Any]) -> Path:
    """The directory of workspace member ``name``: among this project's
    ``[tool.uv.workspace] members`` globs, else those of the nearest
    workspace root above it (a member naming a sibling)."""
    candidates = [(root, uv)]
    for parent in root.parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            data = read_toml(pyproject)
            tool = table(data.get("tool"), pyproject, "[tool]")
            up = table(tool.get("uv"), pyproject, "[tool.uv]")
            if "workspace" in up:
                candidates.append((parent, up))
                break
    for base, settings in candidates:
        workspace = table(settings.get("workspace"), file, "[tool.uv.workspace]")
        members = strings(workspace.get("members"), file, "[tool.uv.workspace].members")
        excluded = strings(workspace.get("exclude"), file, "[tool.uv.workspace].exclude")
        skip = {p.resolve() for pattern in excluded for p in base.glob(pattern)}
        for pattern in members:
            for directory in sorted(base.glob(pattern)):
                if directory.resolve() in skip or not (directory / "pyproject.toml").is_file():
                    continue
                data = read_toml(directory / "pyproject.toml")
                project = data.get("project")
                if isinstance(project, dict) and canonical_name(str(project.get("name"))) == name:
                    return directory
        if base == root and canonical_name(str(_own_name(file))) == name:
            return root
    raise CpkError(
        f"{file}: [tool.uv.sources].{name} says workspace = true, but no workspace member "
        f"is named {name}"
    )


def _own_name(file: Path) -> str | None:
    project = read_toml(file).get("project")
    return project.get("name") if isinstance(project, dict) else None
