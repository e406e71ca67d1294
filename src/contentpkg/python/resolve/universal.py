"""One resolution for every environment a project supports: a universal lock.

The resolver (:mod:`.resolver`) keeps markers on the edges when given a
:class:`~.markers.Universe`; this module decides the universe (the
project's ``requires-python`` range on Linux, macOS and Windows, narrowed by
``environments``), the *forks*, and merges what each fork resolved.

A fork is needed where the roots ask for one project under disjoint
markers with different specifiers (``numpy<2; python_version<'3.10'`` and
``numpy>=2; python_version>='3.10'``): one resolution could only pick a
version satisfying both. The environments are split by those markers (each
region the conjunction of each marker or its negation, as uv forks), each
region is resolved on its own, and the results are merged: a version chosen
in several regions is one package whose marker is the union of its
regions', so one name may appear twice with disjoint markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from contentpkg.errors import CpkError, ResolutionError
from contentpkg.python.index.dists import Pin, Resolution
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.python.resolve.markers import (
    DNF,
    FALSE,
    TRUE,
    Universe,
    UnsupportedMarker,
    and_,
    negate,
    to_dnf,
)
from contentpkg.python.resolve.resolver import _parse, resolve

#: More regions than this and forking is given up (the roots resolve as one).
_MAX_FORKS = 16
#: Forks within forks, for conflicts found deep in the graph, at most this deep.
_MAX_DEPTH = 3
#: Python-version splits for newer releases (each raises the lower bound).
_MAX_PYTHON_SPLITS = 8


def universe_for(
    python: InterpreterInfo, requires_python: str | None, environments: Sequence[str] = ()
) -> Universe:
    """The environments a project's universal lock serves, or one error line."""
    limit: DNF = TRUE
    if environments:
        limit = FALSE
        for text in environments:
            try:
                limit = limit | to_dnf(text)
            except Exception as exc:
                raise CpkError(f"environments: invalid marker {text!r} ({exc})") from None
    universe = Universe(requires_python, Version(python.version), limit)
    if not universe.all:
        raise CpkError(
            f"requires-python {requires_python or '(none)'}"
            + (f" with environments {list(environments)}" if environments else "")
            + " admits no CPython 3.6 to 3.15 environment to lock for"
        )
    return universe


def resolve_universal(
    roots: Sequence[tuple[str, DNF]],
    client: Any,
    python: InterpreterInfo,
    *,
    requires_python: str | None,
    environments: Sequence[str] = (),
    required_environments: Sequence[str] = (),
    conflicts: Sequence[Sequence[tuple[str, str]]] = (),
    **options: Any,
) -> Resolution:
    """Resolve ``roots`` (requirement, selection marker) for every environment.

    ``required_environments`` are markers each package that applies there
    must have a wheel for (uv's ``required-environments``); ``conflicts``
    are sets of ("extra"|"group", name) that resolve apart (uv's
    ``conflicts``): a fork per member, and one for none of them. ``options``
    go to :func:`.resolver.resolve` as they are (preferences, hashes, local
    sources...).
    """
    universe = universe_for(python, requires_python, environments)
    parsed = [(_parse(text, "requirement"), where) for text, where in roots]
    results: list[tuple[DNF, Resolution]] = []
    forks = [
        (and_(region, selection), excluded)
        for region in _forks(parsed, universe)
        for selection, excluded in _conflict_forks(conflicts)
    ]
    for region, excluded in forks:
        results += _solve(
            universe.simplify(region),  # type: ignore[arg-type]
            excluded,
            parsed,
            universe,
            client,
            python,
            options,
            depth=0,
        )
    merged = _merge(results, universe)
    for text in required_environments:
        _check_required(text, merged, universe)
    return Resolution(
        pins=merged,
        requirements=[req for req, _ in parsed],
        python_version=python.version,
        markers=dict(python.markers),
        universal=True,
        requires_python=requires_python,
        environments=tuple(environments),
    )


def _solve(
    region: DNF,
    excluded: frozenset[str],
    parsed: Sequence[tuple[Requirement, DNF]],
    universe: Universe,
    client: Any,
    python: InterpreterInfo,
    options: dict[str, Any],
    depth: int,
    splits: int = 0,
) -> list[tuple[DNF, Resolution]]:
    """Resolve one region; where the resolution fails on requirements that
    apply under different markers (deep in the graph), fork on those
    markers and resolve each side, as uv does."""
    narrowed = universe.narrowed(region) if region != TRUE else universe
    kept = [
        (req, where)
        for req, where in parsed
        if not any(atom in excluded for conj in where for atom in conj)
        and narrowed.possible(and_(to_dnf(req.marker), where))  # type: ignore[arg-type]
    ]
    try:
        resolution = resolve(
            [req for req, _ in kept],
            client,
            python,
            universe=narrowed,
            conditions=[where for _, where in kept],
            **options,
        )
    except ResolutionError as error:
        splits = getattr(error, "splits", None)
        if not splits or depth >= _MAX_DEPTH:
            raise
        regions = _regions(splits, narrowed)
        if len(regions) < 2:
            raise
        out: list[tuple[DNF, Resolution]] = []
        for sub in regions:
            # Regions are simplified in the whole universe: within the
            # narrowed one, the region's own bounds would read as always true.
            inner = universe.simplify(and_(region, sub))  # type: ignore[arg-type]
            out += _solve(
                inner, excluded, parsed, universe, client, python, options, depth + 1, splits
            )
        return out
    bound = resolution.python_bound
    if bound is None or splits >= _MAX_PYTHON_SPLITS:
        return [(region, resolution)]
    if bound.endswith(".0"):
        bound = bound[:-2]  # "3.10", as uv writes it
    # Newer releases need a newer Python: this resolution serves below the
    # bound; above it, resolve again (as uv forks on requires-python).
    below = universe.simplify(and_(region, to_dnf(f'python_full_version < "{bound}"')))
    above = universe.simplify(and_(region, to_dnf(f'python_full_version >= "{bound}"')))
    if not universe.possible(above):
        return [(region, resolution)]
    upper = _solve(above, excluded, parsed, universe, client, python, options, depth, splits + 1)
    return [(below, resolution), *upper]


def _forks(parsed: Sequence[tuple[Requirement, DNF]], universe: Universe) -> list[DNF]:
    """The regions to resolve apart: TRUE alone when nothing asks for a fork."""
    by_name: dict[str, list[Requirement]] = {}
    for req, _ in parsed:
        by_name.setdefault(canonicalize_name(req.name), []).append(req)
    splits: list[DNF] = []
    for reqs in by_name.values():
        if len({str(r.specifier) for r in reqs}) < 2:
            continue
        for req in reqs:
            if req.marker is None:
                continue
            where = to_dnf(req.marker)
            if where not in splits:
                splits.append(where)
    return _regions(splits, universe) if splits else [TRUE]


def _regions(splits: list[DNF], universe: Universe) -> list[DNF]:
    """The environments split by each marker or its negation (those the
    universe samples); TRUE alone when a marker cannot be negated."""
    try:
        negated = [negate(split) for split in splits]
    except UnsupportedMarker:
        return [TRUE]
    regions: dict[tuple[bool, ...], DNF] = {}
    holds = [universe.where(split) for split in splits]
    for env in sorted(universe.all):
        signature = tuple(env in h for h in holds)
        if signature in regions:
            continue
        region: Any = TRUE
        for bit, split, opposite in zip(signature, splits, negated, strict=True):
            region = and_(region, split if bit else opposite)
        regions[signature] = universe.simplify(region)
    if len(regions) > _MAX_FORKS:
        return [TRUE]
    return [regions[s] for s in sorted(regions)]


def _conflict_forks(
    conflicts: Sequence[Sequence[tuple[str, str]]],
) -> list[tuple[DNF, frozenset[str]]]:
    """(selection region, the selection markers whose roots it leaves out)
    for every combination of one member (or none) of each conflict set."""
    from contentpkg.python.resolve.markers import selection_atom

    forks: list[tuple[DNF, frozenset[str]]] = [(TRUE, frozenset())]
    for members in conflicts:
        atoms = [selection_atom(kind, name) for kind, name in members]
        choices: list[tuple[DNF, frozenset[str]]] = []
        for atom in atoms:
            choices.append((frozenset({frozenset({atom})}), frozenset(atoms) - {atom}))
        none = negate(frozenset({frozenset({a}) for a in atoms}))
        choices.append((none, frozenset(atoms)))
        forks = [
            (and_(region, choice), excluded | more)  # type: ignore[misc]
            for region, excluded in forks
            for choice, more in choices
        ]
    return forks


def _merge(results: list[tuple[DNF, Resolution]], universe: Universe) -> dict[str, Pin]:
    """One pin per (name, version) chosen in any region, its marker the union
    of the regions' (each conjoined with its region). The regions cover every
    environment and selection, so a version every region chose under one
    marker keeps that marker alone."""
    forked = len(results) > 1
    found: dict[tuple[str, str], Pin] = {}
    markers: dict[tuple[str, str], DNF] = {}
    group_markers: dict[tuple[str, str], DNF] = {}
    raw: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
    deps: dict[tuple[str, str], set[str]] = {}
    for region, resolution in results:
        for pin in resolution.pins.values():
            key = (pin.name, pin.version)
            found.setdefault(key, pin)
            raw.setdefault(key, []).append((pin.marker, pin.group_marker))
            deps.setdefault(key, set()).update(pin.dependencies)
            for target, value in ((markers, pin.marker), (group_markers, pin.group_marker)):
                value = value if value is not None else TRUE
                if forked:
                    value = and_(value, region)  # type: ignore[assignment]
                target[key] = target.get(key, FALSE) | value
    for key, seen in raw.items():
        if forked and len(seen) == len(results) and len(set(seen)) == 1:
            markers[key] = seen[0][0] if seen[0][0] is not None else TRUE
            group_markers[key] = seen[0][1] if seen[0][1] is not None else TRUE
    names: dict[str, int] = {}
    for name, _ in found:
        names[name] = names.get(name, 0) + 1
    pins: dict[str, Pin] = {}
    for key in sorted(found, key=lambda k: (k[0], Version(k[1]) if _version_ok(k[1]) else k[1])):
        name, version = key
        pin = replace(
            found[key],
            dependencies=tuple(sorted(deps[key])),
            marker=universe.simplify(markers[key]),
            group_marker=universe.simplify(group_markers[key]),
        )
        pins[name if names[name] == 1 else f"{name}=={version}"] = pin
    return pins


def _version_ok(text: str) -> bool:
    try:
        Version(text)
    except ValueError:
        return False
    return True


def selection_roots(
    base: Sequence[str],
    extras: Mapping[str, Sequence[str]],
    groups: Mapping[str, Sequence[str]],
) -> list[tuple[str, DNF]]:
    """Roots of a universal resolution: each requirement with the PEP 751
    marker of the selection it belongs to (none for the project's own)."""
    from contentpkg.python.resolve.markers import selection_atom

    roots: list[tuple[str, DNF]] = [(req, TRUE) for req in base]
    for kind, table in (("extra", extras), ("group", groups)):
        for name in sorted(table):
            atom: DNF = frozenset({frozenset({selection_atom(kind, name)})})
            roots.extend((req, atom) for req in table[name])
    return roots


#: What a required environment's markers say about its wheels' platform tags.
_MACHINES = {
    "x86_64": ("x86_64", "amd64"),
    "amd64": ("x86_64", "amd64"),
    "aarch64": ("aarch64", "arm64"),
    "arm64": ("aarch64", "arm64"),
}


def _check_required(text: str, pins: Mapping[str, Pin], universe: Universe) -> None:
    """Every package that applies in the required environment ``text`` has a
    wheel for it, or one line naming the first that has not."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        required = to_dnf(text)
    except Exception as exc:
        raise CpkError(f"required-environments: invalid marker {text!r} ({exc})") from None
    facts: dict[str, str] = {}
    for conj in required:
        for atom in conj:
            variable, op, value = atom.split(" ", 2)
            if op == "==":
                facts[variable] = value.strip("\"'")
    system = facts.get("sys_platform") or {"Linux": "linux", "Darwin": "darwin"}.get(
        facts.get("platform_system", ""), "win32" if facts.get("platform_system") else ""
    )
    machines = _MACHINES.get(facts.get("platform_machine", "").lower(), ())
    if facts.get("platform_machine") and not machines:
        machines = (facts["platform_machine"].lower(),)

    def serves(platform: str) -> bool:
        if platform == "any":
            return True
        prefix = {"linux": ("manylinux", "musllinux", "linux"), "darwin": ("macosx",)}.get(
            system, ("win",) if system == "win32" else ()
        )
        if system and not platform.startswith(prefix):
            return False
        if system == "darwin" and platform.endswith("universal2"):
            return True
        return not machines or platform.lower().endswith(machines)

    for pin in pins.values():
        if pin.directory is not None:
            continue
        if not universe.possible(and_(required, pin.marker or TRUE)):  # type: ignore[arg-type]
            continue
        for file in pin.files:
            if not file.is_wheel:
                continue
            try:
                tags = parse_wheel_filename(file.filename)[3]
            except InvalidWheelFilename:
                continue
            if any(serves(tag.platform) for tag in tags):
                break
        else:
            raise CpkError(
                f"{pin.name} {pin.version} has no wheel for the required environment {text!r}"
                " (required-environments)"
            )
