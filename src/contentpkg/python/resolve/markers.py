"""Markers as sets of conjunctions, and the environments a universal lock covers.

A universal lock keeps each dependency's marker on its edge instead of
evaluating it against the running interpreter, and gives every locked
package the disjunction, over its paths from the roots, of the conjunction
of the edge markers. That needs a little algebra ``packaging.markers`` does
not offer (it only evaluates): a marker in disjunctive normal form (a set of
conjunctions, each a frozenset of single comparisons, the *atoms*), the
substitution of ``extra`` (a dependency's ``extra == "x"`` is decided by
which extra of its parent is resolved, not by the installing environment),
negation (to split the environments between forks) and simplification.

Satisfiability is decided by sampling: a :class:`Universe` holds one marker
environment per Python minor version (at ``.0`` and a late patch) in the
project's ``requires-python`` range, on Linux, macOS and Windows. Only atoms
over the variables that sampling covers exhaustively (the Python version,
the OS) are ever judged by it; an atom over anything else (``platform_machine``,
``extras``) is assumed satisfiable and kept, so sampling errs towards
installing a package rather than dropping one.

``packaging`` exposes a marker's parsed tree only as ``Marker._markers``
(tuples of ``Variable``/``Value``/``Op`` nodes, ``"and"``/``"or"`` strings,
nested lists); this module reads that, the one place that does.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from packaging.markers import Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

Conj = frozenset[str]
DNF = frozenset[Conj]

TRUE: DNF = frozenset({frozenset()})
FALSE: DNF = frozenset()

#: Variables the sample environments cover exhaustively. Not the
#: implementation: the samples are CPython, and a PyPy-only dependency must
#: stay in the lock for PyPy.
_SAMPLED = frozenset(
    {"python_version", "python_full_version", "sys_platform", "platform_system", "os_name"}
)
_PYTHON_ONLY = frozenset({"python_version", "python_full_version"})
_NEGATED = {
    "<": ">=",
    ">=": "<",
    ">": "<=",
    "<=": ">",
    "==": "!=",
    "!=": "==",
    "in": "not in",
    "not in": "in",
}
#: The platforms a universal lock is made for, as uv locks: (sys_platform,
#: platform_system, os_name).
PLATFORMS = (("linux", "Linux", "posix"), ("darwin", "Darwin", "posix"), ("win32", "Windows", "nt"))
#: The CPython minor versions considered (3.6 to 3.15).
_MINORS = range(6, 16)
_LATE_PATCH = 99
#: A package reached by more paths than this gets the marker of the most
#: general ones; past it, the exact disjunction is unreadable anyway.
MAX_CONJUNCTIONS = 64


class UnsupportedMarker(Exception):
    """A marker this algebra cannot negate (``~=`` or ``===`` in a comparison)."""


# -- atoms and trees -----------------------------------------------------------


def _atom_text(node: tuple[Any, Any, Any]) -> str:
    return " ".join(part.serialize() for part in node)


def _variables(node: tuple[Any, Any, Any]) -> set[str]:
    return {part.value for part in (node[0], node[2]) if type(part).__name__ == "Variable"}


def marker_variables(marker: Marker) -> set[str]:
    """The environment variables a marker reads."""
    found: set[str] = set()
    stack: list[Any] = [marker._markers]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, tuple):
            found |= _variables(item)
    return found


@lru_cache(maxsize=8192)
def parse(text: str) -> Marker:
    return Marker(text)


def _tree_dnf(items: list[Any], extra: str | None) -> DNF | bool:
    """DNF of one level of ``Marker._markers``; True/False when constant.

    ``extra`` is substituted where given (None: ``extra`` comparisons stay)."""
    # "and" binds tighter than "or": split at each "or", AND inside.
    groups: list[list[Any]] = [[]]
    for item in items:
        if item == "or":
            groups.append([])
        elif item != "and":
            groups[-1].append(item)
    result: set[Conj] = set()
    for group in groups:
        product: DNF | bool = True
        for item in group:
            part = _tree_dnf(item, extra) if isinstance(item, list) else _leaf(item, extra)
            product = and_(product, part)
            if product is False:
                break
        if product is True:
            return True
        if product is not False:
            result |= product
    return frozenset(result) if result else False


def _leaf(node: tuple[Any, Any, Any], extra: str | None) -> DNF | bool:
    text = _atom_text(node)
    if extra is not None and "extra" in _variables(node):
        return parse(text).evaluate({"extra": extra})
    return frozenset({frozenset({text})})


def and_(a: DNF | bool, b: DNF | bool) -> DNF | bool:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return frozenset(x | y for x in a for y in b)


def to_dnf(marker: Marker | str | None, extra: str | None = None) -> DNF:
    """A marker as a set of conjunctions; ``extra`` substituted when given."""
    if marker is None:
        return TRUE
    if isinstance(marker, str):
        marker = parse(marker)
    found = _tree_dnf(marker._markers, extra)
    if found is True:
        return TRUE
    if found is False:
        return FALSE
    return found


def negate(dnf: DNF) -> DNF:
    """``not dnf``, by De Morgan: the product of each conjunction's negated atoms."""
    result: DNF | bool = True
    for conj in dnf:
        alternatives: set[Conj] = set()
        for atom in conj:
            node = parse(atom)._markers[0]
            op = node[1].serialize()
            if op not in _NEGATED:
                raise UnsupportedMarker(atom)
            flipped = f"{node[0].serialize()} {_NEGATED[op]} {node[2].serialize()}"
            alternatives.add(frozenset({flipped}))
        if not alternatives:
            return FALSE  # not True
        result = and_(result, frozenset(alternatives))
        if result is False:
            return FALSE
    return TRUE if result is True else result


def selection_atom(kind: str, name: str) -> str:
    """PEP 751's marker for "extra/group ``name`` is selected"."""
    variable = "extras" if kind == "extra" else "dependency_groups"
    return f'"{name}" in {variable}'


def render(dnf: DNF) -> str | None:
    """The marker text of dnf (None: always true), deterministically ordered."""
    if frozenset() in dnf:
        return None
    if not dnf:
        raise ValueError("an impossible marker has no text")
    conjs = sorted(" and ".join(sorted(c)) for c in dnf)
    if len(conjs) == 1:
        return conjs[0]
    return " or ".join(f"({c})" if " and " in c else c for c in conjs)


# -- the environments sampled --------------------------------------------------


class Universe:
    """The marker environments a universal lock is resolved for, sampled."""

    def __init__(self, requires_python: str | None, lowest: Version, limit: DNF = TRUE) -> None:
        # Without requires-python the running interpreter's minor version is
        # the lower bound, as uv takes it.
        spec = _specifier(requires_python) or SpecifierSet(f">={lowest.major}.{lowest.minor}")
        versions: set[str] = set()
        bound = _lower_bound(spec)
        if bound is not None and spec.contains(bound, prereleases=True):
            versions.add(f"{bound.major}.{bound.minor}.{bound.micro}")
        for minor in _MINORS:
            for patch in (0, _LATE_PATCH):
                full = f"3.{minor}.{patch}"
                if spec.contains(full, prereleases=True):
                    versions.add(full)
        self.requires_python = requires_python
        self.versions = sorted(versions, key=Version)
        self.lowest = Version(self.versions[0]) if self.versions else lowest
        envs = []
        for full in self.versions:
            major, minor = full.split(".")[:2]
            for sys_platform, system, os_name in PLATFORMS:
                envs.append(
                    {
                        "python_version": f"{major}.{minor}",
                        "python_full_version": full,
                        "implementation_version": full,
                        "sys_platform": sys_platform,
                        "platform_system": system,
                        "os_name": os_name,
                        "implementation_name": "cpython",
                        "platform_python_implementation": "CPython",
                    }
                )
        self.envs = envs
        #: "311" for 3.11: the minor versions as wheel tags spell them.
        self.minors = frozenset("".join(v.split(".")[:2]) for v in self.versions)
        self.all = frozenset(range(len(envs)))
        self._atoms: dict[str, frozenset[int] | None] = {}
        if limit != TRUE:
            self.all = self.where(limit)

    def narrowed(self, region: DNF) -> Universe:
        """This universe restricted to where region holds."""
        copy = Universe.__new__(Universe)
        copy.__dict__.update(self.__dict__)
        copy._atoms = self._atoms
        copy.all = self.where(region)
        if copy.all:
            # What requires-python is checked against: the region's lowest.
            copy.lowest = min(Version(self.envs[i]["python_full_version"]) for i in copy.all)
        return copy

    def python_ok(self, spec: str | None) -> bool:
        """Whether a file's requires-python admits the project's lowest Python,
        as uv requires of every locked version (upper bounds are not checked:
        they are almost always wrong, as uv says too)."""
        if not spec:
            return True
        return _contains(spec, str(self.lowest))

    def atom(self, atom: str) -> frozenset[int] | None:
        """The sample environments where atom holds; None when sampling
        cannot judge it (a variable not sampled)."""
        if atom in self._atoms:
            return self._atoms[atom]
        marker = parse(atom)
        node = marker._markers[0]
        found: frozenset[int] | None = None
        if _variables(node) <= _SAMPLED:
            found = frozenset(i for i, env in enumerate(self.envs) if marker.evaluate(env))
        self._atoms[atom] = found
        return found

    def where(self, dnf: DNF) -> frozenset[int]:
        """The sample environments (of all) where dnf may hold."""
        out: set[int] = set()
        for conj in dnf:
            out |= self._conj(conj)
        return frozenset(out)

    def _conj(self, conj: Conj) -> frozenset[int]:
        found = self.all
        for atom in conj:
            holds = self.atom(atom)
            if holds is not None:
                found = found & holds
        return found

    def possible(self, dnf: DNF) -> bool:
        return bool(self.where(dnf))

    def simplify(self, dnf: DNF) -> DNF:
        """dnf without impossible conjunctions, Python-version atoms true in
        the whole range, absorbed conjunctions, and Python-version splits
        that together cover the range; capped at MAX_CONJUNCTIONS."""
        cleaned: set[Conj] = set()
        for conj in dnf:
            if not self._conj(conj):
                continue
            kept = frozenset(a for a in conj if not self._always(a))
            cleaned.add(self._without_implied(kept))
        cleaned = self._merge_python_splits(cleaned)
        result = _absorb(cleaned)
        if len(result) > MAX_CONJUNCTIONS:
            result = frozenset(sorted(result, key=len)[:MAX_CONJUNCTIONS])
        return result

    def _without_implied(self, conj: Conj) -> Conj:
        """conj without the Python-version atoms its other atoms imply
        (``python_version < "3.11" and python_version < "3.13"``)."""
        for atom in sorted(conj):
            if not self._python_atom(atom):
                continue
            holds = self.atom(atom)
            rest = conj - {atom}
            if holds is not None and rest and self._conj(rest) <= holds:
                conj = rest
        return conj

    def _always(self, atom: str) -> bool:
        node = parse(atom)._markers[0]
        if not _variables(node) <= _PYTHON_ONLY:
            return False
        holds = self.atom(atom)
        return holds is not None and self.all <= holds

    def _merge_python_splits(self, conjs: set[Conj]) -> set[Conj]:
        """{A and py<3.10, A and py>=3.10} is A: group by what is left once
        the Python-version atoms are taken out, and drop them where the
        group's Python parts cover every sampled version."""
        by_rest: dict[Conj, list[Conj]] = {}
        for conj in conjs:
            rest = frozenset(a for a in conj if not self._python_atom(a))
            by_rest.setdefault(rest, []).append(conj)
        out: set[Conj] = set()
        for rest, members in by_rest.items():
            if len(members) > 1:
                covered: set[int] = set()
                region = self._rest_region(rest)
                for conj in members:
                    covered |= self._conj(conj - rest)
                if region <= covered:
                    out.add(rest)
                    continue
                merged = self._interval(rest, members, covered & region)
                if merged is not None:
                    out.add(merged)
                    continue
            out.update(members)
        return out

    def _interval(self, rest: Conj, members: list[Conj], covered: set[int]) -> Conj | None:
        """The members as one conjunction when their Python parts make one
        interval: ``(3.10 <= v < 3.11) or (3.11 <= v)`` is ``3.10 <= v``.
        The bounds are taken from the members' own atoms and the result is
        checked on every sampled environment."""
        lows = [a for m in members for a in m - rest if " >" in a]
        highs = [a for m in members for a in m - rest if " <" in a]
        key = lambda a: Version(parse(a)._markers[0][2].value)  # noqa: E731
        choice: set[str] = set()
        if lows:
            lowest = min(lows, key=key)
            if any(not (m - rest) & set(lows) for m in members):
                lowest = ""  # a member without a lower bound: none
            if lowest:
                choice.add(lowest)
        if highs:
            highest = max(highs, key=key)
            if any(not (m - rest) & set(highs) for m in members):
                highest = ""
            if highest:
                choice.add(highest)
        candidate = rest | frozenset(choice)
        if self._conj(candidate) == frozenset(covered):
            return candidate
        return None

    def _rest_region(self, rest: Conj) -> frozenset[int]:
        return self._conj(rest)

    def _python_atom(self, atom: str) -> bool:
        return _variables(parse(atom)._markers[0]) <= _PYTHON_ONLY


def _absorb(conjs: Iterable[Conj]) -> DNF:
    ordered = sorted(set(conjs), key=lambda c: (len(c), sorted(c)))
    kept: list[Conj] = []
    for conj in ordered:
        if not any(k <= conj for k in kept):
            kept.append(conj)
    return frozenset(kept)


def _specifier(text: str | None) -> SpecifierSet | None:
    if not text:
        return None
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


def _lower_bound(spec: SpecifierSet | None) -> Version | None:
    if spec is None:
        return None
    bounds = [
        Version(s.version)
        for s in spec
        if s.operator in (">=", "~=", "==") and "*" not in s.version
    ]
    return max(bounds) if bounds else None


@lru_cache(maxsize=4096)
def _contains(spec: str, version: str) -> bool:
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True  # as pip does: a malformed constraint does not exclude


# -- markers over a graph ------------------------------------------------------


def propagate(
    roots: Iterable[tuple[str, DNF]],
    edges: dict[str, list[tuple[str, DNF]]],
    universe: Universe,
) -> dict[str, DNF]:
    """Each node's marker: the disjunction, over its paths from the roots, of
    the conjunction of the markers along the path (a fixpoint: cycles add
    nothing once every conjunction has been seen)."""
    found: dict[str, DNF] = {}
    queue: list[tuple[str, DNF]] = list(roots)
    while queue:
        node, incoming = queue.pop()
        old = found.get(node, FALSE)
        new = universe.simplify(old | incoming)
        if new == old:
            continue
        found[node] = new
        added = frozenset(new - old)
        for child, marker in edges.get(node, ()):
            step = and_(added, marker)
            if step:
                queue.append((child, frozenset(step) if step is not True else TRUE))
    return found
