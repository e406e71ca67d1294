"""What else answers to a program's name on PATH, after an install.

After ``cpk install`` puts ``WHERE/bin/<name>`` in place, the user types
``<name>`` and the shell runs the first executable ``<name>`` on ``PATH``,
which may not be the new one. This module lists every executable of that
name on ``PATH``, in order, identifies each through the store (by content
hash, as ``cpk identify`` does) and says whether WHERE/bin is on ``PATH`` at
all and whether something earlier on it shadows the new program.

The result is data; :func:`format_lines` renders it as text lines for the
CLI (returned, never printed).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.store.layers import Store

#: How many hex digits of a foreign file's sha256 to show: enough to tell
#: two builds apart at a glance, short enough for one line.
SHA_SHOWN = 12


@dataclass(frozen=True)
class Origin:
    """One store entry (and path inside it) holding a file's exact bytes."""

    name: str
    version: str
    short_hash: str  # the entry's hash as in its directory name
    layer: str  # "project", "user" or "system"
    entry: str  # name,version,hash
    relpath: str


@dataclass(frozen=True)
class Candidate:
    """One executable of the name on PATH."""

    path: Path  # as PATH spells it: <PATH element>/<name>
    real: Path  # symlinks resolved (identification only)
    position: int  # index of its directory in PATH
    sha256: str | None  # None when the file could not be read
    origins: list[Origin] = field(default_factory=list)
    #: It is the installed program itself (reached through another directory
    #: or a symlink): running it runs the new one.
    same_as_installed: bool = False
    #: It is the first one before WHERE/bin on PATH, so typing the name runs
    #: it, not the new one.
    shadows: bool = False
    problem: str | None = None  # why it could not be identified
    #: A file outside the store whose bytes a store entry holds (the system's
    #: /usr/bin/jq that jq's .deb was made from): the same bytes, not an entry.
    identical: bool = False

    @property
    def from_store(self) -> bool:
        return bool(self.origins) and not self.identical


@dataclass(frozen=True)
class PathReport:
    name: str
    installed: Path  # WHERE/bin/<name>
    bin_dir: Path  # WHERE/bin
    on_path: bool
    position: int | None  # index of WHERE/bin in PATH, first occurrence
    others: list[Candidate]  # every other <name> on PATH, in PATH order

    @property
    def shadowed_by(self) -> Candidate | None:
        """What runs instead of the new program when its name is typed."""
        return next((c for c in self.others if c.shadows), None)

    @property
    def runs(self) -> Path | None:
        """The file typing the name runs (None: nothing of that name on PATH)."""
        if self.position is None:
            return self.others[0].path if self.others else None
        first = next((c for c in self.others if c.position < self.position), None)
        return first.path if first is not None else self.installed


def report_path(store: Store, name: str, bin_dir: Path, path_env: str) -> PathReport:
    """Report every executable ``name`` on PATH besides ``bin_dir/name``.

    ``path_env`` is the ``PATH`` to examine (the caller's context has the
    user's). An empty PATH element means the current directory, as it does
    for the shell and ``execvp``.
    """
    if not name or "/" in name:
        raise CpkError(f"{name!r}: not a program name")
    bin_dir = Path(os.path.abspath(bin_dir))
    installed = bin_dir / name
    bin_real = _real(bin_dir)
    installed_real = _real(installed)
    elements = path_env.split(":")
    directories = [os.path.abspath(element or ".") for element in elements]

    # The symlinked spelling (a profile's alias) and the real directory are
    # the same place: either one on PATH counts.
    position = next(
        (i for i, d in enumerate(directories) if d == os.fspath(bin_dir) or _real(d) == bin_real),
        None,
    )
    others: list[Candidate] = []
    seen_dirs = {bin_real}
    shadowed = False
    for index, directory in enumerate(directories):
        real_dir = _real(directory)
        if real_dir in seen_dirs:
            continue  # WHERE/bin itself, or a directory PATH names twice
        seen_dirs.add(real_dir)
        candidate = Path(directory) / name
        if not _is_executable(candidate):
            continue
        real = Path(_real(candidate))
        same = os.fspath(real) == installed_real
        # The first one before WHERE/bin is what typing the name runs; it
        # shadows the new program unless it is that program reached another way.
        first_before = position is not None and index < position and not shadowed
        shadowed = shadowed or first_before
        shadows = first_before and not same
        others.append(_identify(store, candidate, real, index, same, shadows))
    return PathReport(name, installed, bin_dir, position is not None, position, others)


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def _is_executable(path: Path) -> bool:
    """What the shell's lookup accepts: an executable regular file (after links)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def _identify(
    store: Store, path: Path, real: Path, position: int, same: bool, shadows: bool
) -> Candidate:
    try:
        sha256, found = store.identify(real)
    except (CpkError, OSError) as exc:
        problem = str(exc) if isinstance(exc, CpkError) else (exc.strerror or str(exc))
        return Candidate(path, real, position, None, [], same, shadows, problem)
    inside = store.containing(real)
    if inside is not None and all(e.dirname != inside[0].dirname for e, _ in found):
        found.insert(0, inside)  # inside an entry but not (yet) in the files table
    origins = [
        Origin(e.name, e.version, e.short_hash, e.layer.role, e.dirname, rel) for e, rel in found
    ]
    identical = inside is None and bool(origins)
    return Candidate(path, real, position, sha256, origins, same, shadows, identical=identical)


def describe(candidate: Candidate) -> str:
    """``jq 1.6 abcd12345678 [user]``, or what is known of a foreign file."""
    if candidate.problem is not None:
        return f"unreadable ({candidate.problem})"
    if candidate.origins:
        seen: list[str] = []
        for o in candidate.origins:
            text = f"{o.name} {o.version} {o.short_hash[:12]} [{o.layer}]"
            if candidate.identical:
                text += f" {o.relpath}"
            if text not in seen:
                seen.append(text)
        if candidate.identical:
            return "a system file, identical to " + "; ".join(seen)
        return "; ".join(seen)
    assert candidate.sha256 is not None
    return f"not from the store (sha256 {candidate.sha256[:SHA_SHOWN]})"


def format_lines(report: PathReport) -> list[str]:
    """The report as lines of text for the terminal (the caller prints them)."""
    lines: list[str] = []
    name = report.name
    for c in report.others:
        shown = os.fspath(c.path)
        if os.fspath(c.real) != shown:
            shown += f" -> {c.real}"
        what = "the same file as the new one" if c.same_as_installed else describe(c)
        line = f"also on PATH: {shown}: {what}"
        if c.shadows:
            line += f"; it comes first, so '{name}' runs it, not {report.installed}"
        lines.append(line)
    if not report.on_path:
        runs = f"; '{name}' runs {report.runs}" if report.runs is not None else ""
        lines.append(
            f"{report.bin_dir} is not on PATH{runs}; to add it: cpk path add {report.bin_dir}"
        )
    elif report.shadowed_by is None:
        lines.append(f"'{name}' runs {report.installed} ({report.bin_dir} is on PATH)")
    else:
        shadow = report.shadowed_by
        lines.append(
            f"{report.bin_dir} is on PATH, but after {shadow.path.parent}: "
            f"run {report.installed} by its full path, or put {report.bin_dir} first"
        )
    return lines
