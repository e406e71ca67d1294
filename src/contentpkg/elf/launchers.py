"""Launchers: programs in an env dir run with their compiled-in lookups in WHERE.

Relocation reaches libraries (RUNPATH), not the paths a program opens by
name: libgvc looks for its plugins in ``/usr/lib/<triplet>/graphviz``,
ImageMagick for its coders in ``/usr/lib/<triplet>/ImageMagick-6.*``, gawk
for its extensions in ``/usr/lib/<triplet>/gawk``. Each honours a variable
that replaces the path. As Nix's ``wrapProgram`` does, a program whose
closure holds such a package gets a launcher: ``bin/NAME`` becomes a small
``/bin/sh`` script that finds WHERE from its own location (so ``cp -a`` of
WHERE keeps working), sets the variables to WHERE's copies, and execs
``bin/.unwrapped/NAME``, a symlink to the real program. Through that link
the program keeps its name in ``argv[0]`` (graphviz's ``circo`` and ``dot``
are one program that reads it) while the loader takes ``$ORIGIN`` from the
real file, as before.

What to set is data, not code: ``program_env.toml`` beside this module maps
Debian packages to variables (paths relative to WHERE) and to post-install
steps, the declarative stand-in for the maintainer scripts cpk does not run
(graphviz's plugin list ``config6a`` is written by ``libgvc6-config-update
-c``). Steps run unprivileged, in WHERE, once the files are placed.

This module plans (which names get launchers, what each sets, which
compiled-in paths that redirects) and runs the steps; ``elf/envdir.py``
places what it plans. The launcher is the only shell in the chain: the
program it execs is the same ELF file as without it, so ``LD_DEBUG`` and
``cpk ldd`` (which follows a launcher to its program) see the real loads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from contentpkg.elf.deb import map_path
from contentpkg.errors import CpkError
from contentpkg.store.entry import Entry

#: The table of packages, variables and steps (see its header).
TABLE = Path(__file__).with_name("program_env.toml")
#: Where the real programs are reached from, under their own names.
UNWRAPPED = ".unwrapped"
#: The launcher's second line: how ``cpk ldd`` and ``cpk env --check`` know one.
MARK = "# cpk launcher:"
#: What ``{triplet}`` stands for: the multiarch directory names Debian uses
#: (``x86_64-linux-gnu``, ``aarch64-linux-gnu``, ``arm-linux-gnueabihf``).
_TRIPLET = "*-linux-*"


@dataclass(frozen=True)
class Step:
    """One post-install step of a package, resolved against WHERE."""

    package: str
    run: str  # relative to WHERE
    args: tuple[str, ...]
    creates: str  # relative to WHERE
    env: tuple[tuple[str, str], ...]  # (variable, value relative to WHERE, ":"-joined)

    def describe(self) -> str:
        return " ".join([self.run, *self.args])


@dataclass(frozen=True)
class Variable:
    """A variable a launcher sets: its paths (relative to WHERE, or ".")."""

    name: str
    paths: tuple[str, ...]
    prefix: bool
    package: str
    #: WHERE paths below ``paths`` the program builds from the variable
    #: (``share/libthai/thbrk.tri`` from LIBTHAI_DICTDIR): the report may
    #: call their compiled-in twins redirected too (``redirects`` in the table).
    covers: tuple[str, ...] = ()


@dataclass
class LaunchPlan:
    """What an install adds for compiled-in lookups."""

    #: bin/NAME -> launcher text
    scripts: dict[str, str] = field(default_factory=dict)
    #: path -> relative symlink target (bin/.unwrapped/NAME -> real program)
    links: dict[str, str] = field(default_factory=dict)
    #: a real file that bin/NAME was, now placed at the other path
    moves: dict[str, str] = field(default_factory=dict)
    #: bin/NAME -> the variables its launcher sets
    programs: dict[str, list[Variable]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: package -> the variables its table entry sets (launcher or not: two
    #: packages may set one variable, and a launcher sets it once)
    by_package: dict[str, list[Variable]] = field(default_factory=dict)


@dataclass(frozen=True)
class Program:
    """A program of the plan as this module needs to see it."""

    name: str  # bin/NAME
    real: str  # WHERE path of the real ELF file
    entries: frozenset[str]  # Debian package names in its DT_NEEDED closure
    versioned: str  # where the real file goes if bin/NAME is that file


# --- the table -------------------------------------------------------------------


@cache
def table() -> dict[str, dict[str, Any]]:
    """``program_env.toml``'s packages, checked once per process."""
    try:
        with open(TABLE, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CpkError(f"{TABLE}: unreadable ({exc})") from None
    packages = data.get("package", {})
    if not isinstance(packages, dict):
        raise CpkError(f"{TABLE}: [package] must be a table")
    for pattern, spec in packages.items():
        _check_spec(pattern, spec)
    return packages


def _check_spec(pattern: str, spec: Any) -> None:
    where = f"{TABLE.name}: package {pattern!r}"
    if not isinstance(spec, dict):
        raise CpkError(f"{where}: not a table")
    for name, value in (spec.get("env") or {}).items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise CpkError(f"{where}: env.{name} must be a path or a list of paths")
        if any(v.startswith("/") or ".." in v.split("/") for v in items):
            raise CpkError(f"{where}: env.{name} must stay inside WHERE")
    for step in spec.get("post-install") or []:
        if not isinstance(step, dict) or not {"run", "creates"} <= set(step):
            raise CpkError(f"{where}: a post-install step needs run and creates")
    for name, items in (spec.get("redirects") or {}).items():
        if name not in (spec.get("env") or {}):
            raise CpkError(f"{where}: redirects.{name} names no variable of env")
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise CpkError(f"{where}: redirects.{name} must be a list of paths")
        if any(v.startswith("/") or ".." in v.split("/") for v in items):
            raise CpkError(f"{where}: redirects.{name} must stay inside WHERE")
    if not isinstance(spec.get("note", ""), str):
        raise CpkError(f"{where}: note must be a string")


def rules_for(packages: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """(package, its table entry) for each package the table knows."""
    out = []
    for pkg in sorted(set(packages)):
        for pattern, spec in table().items():
            if fnmatch.fnmatchcase(pkg, pattern):
                out.append((pkg, spec))
                break
    return out


# --- planning ----------------------------------------------------------------------


class _Paths:
    """Every path WHERE will hold (files, links and their directories)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.by_depth: dict[int, set[str]] = {}
        for p in paths:
            parts = p.split("/")
            for i in range(1, len(parts) + 1):
                self.by_depth.setdefault(i, set()).add("/".join(parts[:i]))

    def match(self, pattern: str) -> str | None:
        """The path matching pattern (shell patterns per segment), the highest
        sorted if several (the newest version, for ``ImageMagick-6.*``)."""
        pattern = pattern.replace("{triplet}", _TRIPLET)
        depth = pattern.count("/") + 1
        if not any(c in pattern for c in "*?["):
            return pattern if pattern in self.by_depth.get(depth, ()) else None
        found = [p for p in self.by_depth.get(depth, ()) if _match_parts(p, pattern)]
        return max(found) if found else None


def _match_parts(path: str, pattern: str) -> bool:
    """Shell patterns per segment: ``*`` never crosses a ``/``."""
    parts, patterns = path.split("/"), pattern.split("/")
    if len(parts) != len(patterns):
        return False
    return all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, patterns, strict=True))


def _variables(pkg: str, spec: dict[str, Any], paths: _Paths, notes: list[str]) -> list[Variable]:
    prefix = set(spec.get("prefix") or [])
    out = []
    for name, value in sorted((spec.get("env") or {}).items()):
        found = []
        for item in [value] if isinstance(value, str) else value:
            if item == ".":
                found.append(".")
                continue
            hit = paths.match(item)
            if hit is not None:
                found.append(hit)
        if any(p != "." for p in found):
            covers = tuple(
                hit
                for item in (spec.get("redirects") or {}).get(name, [])
                if (hit := paths.match(item)) is not None
            )
            out.append(Variable(name, tuple(found), name in prefix, pkg, covers))
        else:
            notes.append(f"{pkg}: {name} not set: WHERE holds none of {value}")
    return out


def plan_launchers(
    programs: Iterable[Program], packages: Mapping[str, Mapping[str, str]], paths: Iterable[str]
) -> LaunchPlan:
    """Launchers for the programs whose closure holds a package of the table,
    and the steps of the table's packages among ``packages`` (everything the
    install places: package -> {path in its entry: path in WHERE}, since a
    requested package's ``sbin/x`` may be placed as ``bin/x-VERSION``).
    ``paths`` are every path WHERE will hold."""
    plan = LaunchPlan()
    where = _Paths(paths)
    by_package = plan.by_package
    for pkg, spec in rules_for(packages):
        variables = _variables(pkg, spec, where, plan.notes)
        by_package[pkg] = variables
        if spec.get("note"):
            # What the variables cannot redirect, said once per install.
            plan.notes.append(f"{pkg}: {spec['note']}")
        env = tuple((v.name, ":".join(v.paths)) for v in variables)
        for step in spec.get("post-install") or []:
            run = _placed(packages.get(pkg, {}), step["run"])
            creates_dir = where.match(posixpath.dirname(step["creates"]))
            if run is None or creates_dir is None:
                plan.notes.append(
                    f"{pkg}: post-install step {step['run']} not run: WHERE lacks "
                    f"{step['run'] if run is None else posixpath.dirname(step['creates'])}"
                )
                continue
            creates = posixpath.join(creates_dir, posixpath.basename(step["creates"]))
            if where.match(creates) is not None:
                # Placed from an entry: perhaps the store's own inode, never
                # to be written through.
                plan.notes.append(
                    f"{pkg}: post-install step {step['run']} not run: {creates} is a packaged file"
                )
                continue
            args = tuple(str(a) for a in step.get("args") or [])
            plan.steps.append(Step(pkg, run, args, creates, env))
    for prog in sorted(programs, key=lambda p: p.name):
        # One value per variable: the first package (by name) that sets it.
        chosen: dict[str, Variable] = {}
        for pkg in sorted(prog.entries):
            for v in by_package.get(pkg, []):
                chosen.setdefault(v.name, v)
        variables = list(chosen.values())
        if not variables:
            continue
        name = posixpath.basename(prog.name)
        real = prog.real
        if real == prog.name:
            plan.moves[prog.name] = prog.versioned
            real = prog.versioned
        link = f"bin/{UNWRAPPED}/{name}"
        plan.links[link] = posixpath.relpath(real, posixpath.dirname(link))
        plan.scripts[prog.name] = launcher_text(name, variables)
        plan.programs[prog.name] = variables
    return plan


def _placed(files: Mapping[str, str], pattern: str) -> str | None:
    """Where the package's file matching pattern (a path in its entry) is in WHERE."""
    found = sorted(
        rel for rel in files if _match_parts(rel, pattern.replace("{triplet}", _TRIPLET))
    )
    return files[found[-1]] if found else None


def launcher_text(name: str, variables: list[Variable]) -> str:
    """The ``/bin/sh`` launcher of bin/NAME.

    POSIX shell builtins only, save ``readlink`` when the launcher itself
    was reached through a symlink from outside WHERE: no process but the
    program's own loads anything but the C library.
    """
    lines = [
        "#!/bin/sh",
        f"{MARK} {UNWRAPPED}/{name} " + " ".join(v.name for v in variables),
        "# Made by cpk install: runs the program with the variables below pointing",
        "# its compiled-in lookups into this env dir, found from this file's place.",
        "self=$0",
        'while [ -L "$self" ]; do',
        '    link=$(readlink -- "$self") || break',
        "    case $link in /*) self=$link ;; *) self=${self%/*}/$link ;; esac",
        "done",
        "case $self in */*) bin=${self%/*} ;; *) bin=. ;; esac",
        'bin=$(CDPATH= cd -P -- "$bin" && pwd) || exit 127',
        "env=${bin%/*}",
    ]
    for v in variables:
        value = ":".join("." if p == "." else f"$env/{_quote(p)}" for p in v.paths)
        if v.prefix:
            value += f"${{{v.name}:+:${v.name}}}"
        lines.append(f'{v.name}="{value}"; export {v.name}')
    lines.append(f'exec "$bin/{UNWRAPPED}/{_quote(name)}" "$@"')
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    # Inside double quotes only these four keep a meaning.
    return "".join("\\" + c if c in '"$`\\' else c for c in text)


def launcher_of(path: str | os.PathLike[str]) -> tuple[Path, list[str]] | None:
    """(the program a cpk launcher execs, the variables it sets), or None."""
    try:
        # A FIFO or a device would block or mislead: only a regular file is read.
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    lines = head.split(b"\n")
    if len(lines) < 2 or lines[0] != b"#!/bin/sh" or not lines[1].startswith(MARK.encode()):
        return None
    fields = lines[1][len(MARK) :].decode(errors="replace").split()
    if not fields:
        return None
    bindir = os.path.dirname(os.path.realpath(path))
    return Path(bindir, fields[0]), fields[1:]


class Placed(Protocol):
    """A file or link of an env dir's plan (``elf/envdir.py``'s placements)."""

    path: str
    kind: str  # "file", "link" (inside WHERE), "extern", "generated"
    source: str  # the store file, or the link's target
    entry: str | None
    entry_path: str | None


_DEPS = re.compile(r"\$\{?ORIGIN\}?/([^:/]+)_deps(?::|$)")


def plan_for_envdir(files: Mapping[str, Placed], entries: Mapping[str, Entry]) -> LaunchPlan:
    """:func:`plan_launchers` for the programs in bin/ of an env dir's plan.

    A name in bin/ (a file, or a link inside WHERE to one) is a program when
    its file is an ELF executable (static ones too); its closure is what
    DT_NEEDED reaches among the plan's libraries (``lib/``, or the private
    ``<elfname>_deps/`` beside it), the loader's own search in WHERE.
    """
    known = {_package(e) for e in entries.values()}
    if not rules_for(known):
        return LaunchPlan()  # most installs: nothing in the table, nothing to read
    names = [
        rel
        for rel in sorted(files)
        if rel.startswith("bin/") and "/" not in rel[4:] and not rel[4:].startswith(".")
    ]
    # bin/NAME-VERSION behind bin/NAME is the program itself, not a name to wrap.
    behind = {_follow(files, rel) for rel in names if files[rel].kind == "link"}
    programs = []
    for rel in names:
        real = _follow(files, rel)
        if real is None or (real == rel and rel in behind):
            continue
        facts = _facts(files[real], entries)
        if facts is None or facts.get("type") != "executable":
            continue
        entry = entries[files[real].entry or ""]
        programs.append(
            Program(rel, real, _closure(files, entries, real), f"{rel}-{entry.version}")
        )
    packages: dict[str, dict[str, str]] = {pkg: {} for pkg in known}
    with_steps = {pkg for pkg, spec in rules_for(known) if spec.get("post-install")}
    for rel, p in sorted(files.items(), key=lambda item: _likeness(item[1])):
        entry = entries.get(p.entry or "")
        if p.kind == "file" and entry is not None and p.entry_path is not None:
            pkg = _package(entry)
            if pkg in with_steps:
                packages[pkg].setdefault(p.entry_path, rel)
    return plan_launchers(programs, packages, files)


def _likeness(p: Placed) -> tuple[int, str]:
    """Order a file's places in WHERE: its own path, then its own name
    (``bin/x-1.0`` for ``sbin/x``), then any other name linked to it."""
    own = p.entry_path or ""
    if p.path == own:
        return (0, p.path)
    return (1 if posixpath.basename(p.path).startswith(posixpath.basename(own)) else 2, p.path)


def _follow(files: Mapping[str, Placed], rel: str) -> str | None:
    """The plan's file that rel is, through links inside WHERE."""
    for _ in range(40):
        p = files.get(rel)
        if p is None or p.kind in ("extern", "generated"):
            return None
        if p.kind == "file":
            return rel
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(rel), p.source))
    return None


def _facts(p: Placed, entries: Mapping[str, Entry]) -> dict[str, Any] | None:
    entry = entries.get(p.entry or "")
    if entry is None or p.entry_path is None:
        return None
    facts = entry.metadata.get("elf", {}).get(p.entry_path)
    return facts if isinstance(facts, dict) else None


def package_of(entry: Entry) -> str:
    """The Debian package an entry was made from (or its name)."""
    return str((entry.metadata.get("deb") or {}).get("package") or entry.name)


_package = package_of


def _closure(
    files: Mapping[str, Placed], entries: Mapping[str, Entry], start: str
) -> frozenset[str]:
    """Debian packages of start's entry and of the libraries it loads in WHERE."""
    found: set[str] = set()
    queue, seen = [start], {start}
    while queue:
        rel = queue.pop()
        p = files[rel]
        entry = entries.get(p.entry or "")
        if entry is not None:
            found.add(_package(entry))
        facts = _facts(p, entries) or {}
        m = _DEPS.search(facts.get("runpath") or "")
        private = f"{posixpath.dirname(rel)}/{m.group(1)}_deps/" if m else None
        for soname in facts.get("needed") or []:
            for candidate in ([private + soname] if private else []) + [f"lib/{soname}"]:
                real = _follow(files, candidate)
                if real is not None:
                    if real not in seen:
                        seen.add(real)
                        queue.append(real)
                    break
    return frozenset(found)


# --- the report ----------------------------------------------------------------------


def redirections(
    plan: LaunchPlan,
    compiled: list[tuple[str, list[str], str]],
    packages: Mapping[str, str] | None = None,
) -> list[tuple[str, list[str], str]]:
    """The compiled-in path report with each path the launchers redirect said so.

    A path is redirected when a variable of some launcher names WHERE's
    copy of it (``/usr/lib/x86_64-linux-gnu/graphviz`` and GVBINDIR =
    ``lib/x86_64-linux-gnu/graphviz``). Exactly: a variable naming a
    directory says nothing of the other paths under it a program may build,
    save those the table's ``redirects`` names for it (a file the program
    reads from that directory by a fixed name).

    ``packages`` maps each reader (a file of WHERE) to its Debian package.
    Given, only readers from a package whose table entry sets the variable
    are called redirected: libX11 honours XLOCALEDIR, but GTK, naming the
    same directory, does not, and its line keeps the state it had.
    """
    by_path: dict[str, tuple[str, set[str], list[str]]] = {}
    for program, variables in sorted(plan.programs.items()):
        for v in variables:
            for p in (*v.paths, *v.covers):
                if p != ".":
                    by_path.setdefault(p, (v.name, set(), []))[2].append(program)
    # Which packages honour the variable at that path: every package whose
    # table entry sets it there, whether or not its launcher was the one
    # chosen to set it (one value per variable per launcher).
    for path, (name, honouring, _programs) in by_path.items():
        for pkg, variables in plan.by_package.items():
            if any(v.name == name and path in (*v.paths, *v.covers) for v in variables):
                honouring.add(pkg)
    out = []
    for absolute, readers, state in compiled:
        rel = map_path(absolute.lstrip("/"))
        if rel not in by_path:
            out.append((absolute, readers, state))
            continue
        variable, honouring, programs = by_path[rel]
        covered = [r for r in readers if packages is None or packages.get(r) in honouring]
        rest = [r for r in readers if r not in covered]
        if covered:
            programs = sorted(set(programs))
            shown = ", ".join(programs[:2]) + (
                f" +{len(programs) - 2} more" if len(programs) > 2 else ""
            )
            out.append(
                (
                    absolute,
                    covered,
                    f"redirected to WHERE/{rel} by {variable} (launchers: {shown})",
                )
            )
        if rest:
            out.append((absolute, rest, state))
    return out


# --- after placing ----------------------------------------------------------------------


def run_steps(
    where: Path, steps: list[Step], done: Mapping[str, Any], changed: bool
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Run the post-install steps in WHERE; (what they made, notes).

    ``done`` is what the manifest recorded last time (path -> {step,
    sha256}): a step is run again when anything in WHERE changed or its
    file is missing or differs. Files of steps no longer planned are
    removed. A step that fails is a note, not an error: everything else
    is in place, and the note says what will not work.
    """
    made: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    wanted = {s.creates for s in steps}
    for rel in sorted(set(done) - wanted):
        try:
            os.unlink(where / rel)
        except OSError:
            pass
    for step in steps:
        target = where / step.creates
        old = done.get(step.creates) or {}
        if (
            not changed
            and old.get("step") == step.describe()
            and file_sha256(target) == old.get("sha256")
        ):
            made[step.creates] = dict(old)
            continue
        # A fixed environment, not the caller's: what a step writes must not
        # depend on who installed (a locale, a stray GVBINDIR).
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        for name, value in step.env:
            env[name] = ":".join(p if p == "." else str(where / p) for p in value.split(":"))
        try:
            # A fresh inode each time: the old file may be a copy's hard link.
            target.unlink(missing_ok=True)
            proc = subprocess.run(
                [str(where / step.run), *step.args],
                cwd=where,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{step.package}: post-install step {step.describe()} failed: {exc}")
            continue
        digest = file_sha256(target)
        if proc.returncode != 0 or digest is None:
            tail = " | ".join(proc.stderr.strip().splitlines()[-2:])[:300]
            notes.append(
                f"{step.package}: post-install step {step.describe()} failed "
                f"(exit {proc.returncode}{', no ' + step.creates if digest is None else ''})"
                + (f": {tail}" if tail else "")
            )
            continue
        made[step.creates] = {"step": step.describe(), "sha256": digest}
        notes.append(f"{step.package}: ran {step.describe()} (wrote {step.creates})")
    return made, notes


def file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
