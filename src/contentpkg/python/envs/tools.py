"""Python tools for env dirs and profiles: ``cpk install --python black``.

Like pipx or ``uv tool``, each tool gets an environment of its own, so it
sees only its own dependencies; unlike them nothing is copied: the
environment is an ordinary shared view (symlinks into the store, made as
for ``cpk run --with black``), and the env dir's ``bin/<script>`` is a
symlink to the view's script, whose ``#!`` line names the view's python.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contentpkg.errors import CpkError

if TYPE_CHECKING:
    from contentpkg.python.run.options import Options


@dataclass(frozen=True)
class ToolEnv:
    """One tool: what was asked, its view, and the scripts it offers.

    It is what ``elf.envdir.Tool`` asks for; an env dir records it as its
    own ``LinkedTool``, so neither side imports the other's type.
    """

    requirement: str
    name: str
    view: str
    scripts: tuple[str, ...]
    entries: tuple[str, ...]
    #: One line per declared script that is not installed, and why.
    notes: tuple[str, ...] = ()


def tool_environment(options: Options, requirement: str) -> ToolEnv:
    """Resolve, fetch and compose requirement's own view; list its scripts.

    The working directory's project plays no part: a tool's environment
    is the requirement alone, as ``uv tool install`` makes it.
    """
    from contentpkg.python.project import canonical_name, requirement_name
    from contentpkg.python.run.options import RunRequest
    from contentpkg.python.run.plan import plan_run, prepare

    name = canonical_name(requirement_name(requirement))
    request = RunRequest(("python",), (requirement,), isolated=True)
    prepared = prepare(plan_run(options, request))
    view = Path(os.path.realpath(prepared.env))
    from contentpkg.python.envs.views import script_name_problem

    declared = _scripts_of(view, name)
    # A script named python (or python3...) is the view's interpreter in the
    # view's bin/, never the package's: linking it into a profile would put
    # a bare interpreter on PATH ahead of the user's own python.
    refused = {s: p for s in declared if (p := script_name_problem(s)) is not None}
    scripts = [s for s in declared if s not in refused]
    notes = tuple(f"{name}: script {s!r} is not installed: {p}" for s, p in refused.items())
    if not scripts:
        if refused:
            raise CpkError(
                f"{requirement}: {name} has no script that can be installed"
                f" ({'; '.join(f'{s!r}: {p}' for s, p in refused.items())})"
            )
        raise CpkError(f"{requirement}: {name} has no console or GUI scripts to install")
    missing = [s for s in scripts if not os.access(view / "bin" / s, os.X_OK)]
    if missing:
        raise CpkError(f"{view}: the view lacks scripts {', '.join(missing)} of {name}")
    refs = (view / ".cpk" / "refs").read_text().split()
    return ToolEnv(requirement, name, str(view), tuple(scripts), tuple(refs), notes)


def _scripts_of(view: Path, name: str) -> list[str]:
    """The console and GUI scripts the distribution name declares."""
    from contentpkg.python.project import canonical_name

    for site in view.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            dist = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
            if canonical_name(dist) != name:
                continue
            parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            try:
                parser.read(info / "entry_points.txt", encoding="utf-8")
            except configparser.Error as exc:
                raise CpkError(f"{info}/entry_points.txt: unreadable ({exc})") from None
            return sorted(
                key
                for section in ("console_scripts", "gui_scripts")
                if parser.has_section(section)
                for key in parser[section]
            )
    return []
