"""Plain-text rendering shared by the commands: sizes, tables, times."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contentpkg.context import Context
    from contentpkg.progress import Reporter


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 entry``, ``2 entries``: a count with its noun agreeing."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def version_key(version: str) -> tuple[int, Any]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def local_time(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def command_reporter(ctx: Context) -> Reporter:
    """The reporter a command gives the core, from the global output options
    (``-q``, ``--no-progress``, ``--color``): one rule for every command."""
    import sys

    from contentpkg.progress import reporter_for

    output = ctx.output
    return reporter_for(
        sys.stderr, quiet=output.quiet > 0, progress=output.progress, color=output.colored(True)
    )
