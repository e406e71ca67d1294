"""Which remotes are configured: ``cpk remote add/list/remove``, or ``CPK_REMOTES``.

The list is ``$CPK_HOME/remotes.json`` (name, URL, insecure), kept in the
order remotes were added, which is the order they are consulted in.
``CPK_REMOTES`` (space-separated URLs), when set, replaces it for the
process, as CI machines configure themselves through the environment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError, NotFoundError
from contentpkg.fs import flocked, write_atomic
from contentpkg.store.remote.oci import RemoteUrl

if TYPE_CHECKING:
    from pathlib import Path

    from contentpkg.context import Context

REMOTES_FILE = "remotes.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ConfiguredRemote:
    name: str
    url: RemoteUrl

    def __str__(self) -> str:
        return f"{self.name} {self.url}{'' if self.url.secure else ' (plain http)'}"


def _path(ctx: Context) -> Path:
    return ctx.home / REMOTES_FILE


def _read(ctx: Context) -> list[dict[str, object]]:
    path = _path(ctx)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise CpkError(f"{path}: unreadable ({exc.__class__.__name__}); fix or remove it") from None
    rows = data.get("remotes") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise CpkError(f"{path}: no 'remotes' list; fix or remove it")
    return [r for r in rows if isinstance(r, dict)]


def _write(ctx: Context, rows: list[dict[str, object]]) -> None:
    ctx.home.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"remotes": rows}, indent=1) + "\n"
    write_atomic(_path(ctx), text, durable=True)


def configured(ctx: Context) -> list[ConfiguredRemote]:
    """The remotes to consult, in order (``CPK_REMOTES`` replaces the file's)."""
    if ctx.remote.remotes:
        return [
            ConfiguredRemote(f"env{n + 1}", RemoteUrl.parse(text))
            for n, text in enumerate(ctx.remote.remotes)
        ]
    return [
        ConfiguredRemote(
            str(row.get("name")),
            RemoteUrl.parse(str(row.get("url")), insecure=bool(row.get("insecure"))),
        )
        for row in _read(ctx)
    ]


def add(ctx: Context, name: str, url: str, *, insecure: bool = False) -> ConfiguredRemote:
    if not _NAME.fullmatch(name):
        raise CpkError(f"{name!r}: a remote's name is letters, digits and . _ - (up to 64)")
    parsed = RemoteUrl.parse(url, insecure=insecure)
    ctx.home.mkdir(parents=True, exist_ok=True)
    with flocked(ctx.home / ".remotes.lock"):
        rows = _read(ctx)
        if any(row.get("name") == name for row in rows):
            raise CpkError(f"a remote named {name!r} exists; remove it first")
        rows.append({"name": name, "url": str(parsed), "insecure": insecure})
        _write(ctx, rows)
    return ConfiguredRemote(name, parsed)


def remove(ctx: Context, name: str) -> None:
    ctx.home.mkdir(parents=True, exist_ok=True)
    with flocked(ctx.home / ".remotes.lock"):
        rows = _read(ctx)
        kept = [row for row in rows if row.get("name") != name]
        if len(kept) == len(rows):
            raise NotFoundError(f"no remote named {name!r}", what=name)
        _write(ctx, kept)


def resolve(ctx: Context, text: str, *, insecure: bool = False) -> RemoteUrl:
    """A command's REMOTE argument: an ``oci://`` URL or a configured remote's name."""
    if "://" in text:
        return RemoteUrl.parse(text, insecure=insecure)
    for remote in configured(ctx):
        if remote.name == text:
            return remote.url
    raise NotFoundError(f"{text!r}: neither oci://HOST/PREFIX nor a configured remote", what=text)
