"""Which archive packages a request needs: Debian dependency resolution.

The resolver does no I/O: it takes the stanzas of the ``Packages``
indexes (:mod:`.indexes`) and the names asked for. It follows
``Pre-Depends`` and ``Depends`` (and ``Recommends`` when asked), with
alternatives (``a | b``: the first that can be had, unless another is
already chosen), virtual packages (``Provides``, versioned or not),
version relations under Debian's ordering (epochs, ``~``; python-debian's
``Version``) and ``Multi-Arch``. Like apt with default pins, it takes the
highest version any source offers.

What the base system provides is left out, by this policy:

- **glibc** (``libc6``, ``libc-bin``, ``libcrypt1``): an env dir takes the C
  library, the loader and libcrypt from the running system, as manylinux
  wheels do, so these are never fetched.
- **Essential packages and their closure**: every Debian system has the
  ``Essential: yes`` packages (bash, coreutils, dpkg, sed, perl-base...)
  and what they depend on, so a dependency on one of them is satisfied by
  the system, *except* for shared-library packages (``Section: libs``):
  an env dir takes no library from the system but glibc, so a library that
  a fetched program links (zlib1g, libselinux1...) is fetched too.

A package the user names is always fetched, whatever the policy says.

Multi-Arch: only this machine's architecture and ``all`` are read (a user
store holds one architecture), so ``Multi-Arch: foreign``/``same`` change
nothing; ``pkg:any`` is satisfied only by a ``Multi-Arch: allowed``
package, ``pkg:ARCH`` only by that architecture, ``pkg:native`` by this
machine's. ``Conflicts``/``Breaks`` are not followed: entries live side by
side in the store, and an env dir refuses clashing files when it is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from debian.debian_support import Version

from contentpkg.errors import NotFoundError, ResolutionError

#: glibc's packages: always taken from the system (see the module docstring).
GLIBC_PACKAGES = frozenset({"libc6", "libc-bin", "libcrypt1"})
_LIB_SECTIONS = frozenset({"libs", "oldlibs"})


@dataclass(frozen=True)
class Package:
    """One binary package of an index, with the URI its Filename is relative to."""

    fields: dict[str, str]
    base_url: str

    @property
    def name(self) -> str:
        return self.fields["Package"]

    @property
    def version(self) -> str:
        return self.fields["Version"]

    @property
    def arch(self) -> str:
        return self.fields.get("Architecture", "")

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.fields['Filename']}"

    @property
    def sha256(self) -> str:
        return self.fields.get("SHA256", "")

    @property
    def size(self) -> int:
        return int(self.fields.get("Size", "0") or 0)

    @cached_property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def relations(self, field_name: str) -> list[list[dict]]:
        from debian.deb822 import PkgRelation

        text = self.fields.get(field_name, "").strip()
        return PkgRelation.parse_relations(text) if text else []

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass
class Resolution:
    """What to fetch, in the order found, and what the system provides instead."""

    packages: list[Package]
    system: dict[str, str] = field(default_factory=dict)  # name -> why left out
    notes: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # name -> who needed it


def _satisfies(version: Version | str | None, relation: tuple[str, str] | None) -> bool:
    if relation is None:
        return True
    if version is None:
        return False  # an unversioned Provides never meets a versioned dependency
    op, wanted = relation
    have = version if isinstance(version, Version) else Version(version)
    want = Version(wanted)
    return {
        "<<": have < want,
        "<=": have <= want,
        "=": have == want,
        ">=": have >= want,
        ">>": have > want,
    }[op]


class Universe:
    """Every package of the indexes for one architecture, by name and by what it provides."""

    def __init__(self, packages: Iterable[Package], arch: str) -> None:
        self.arch = arch
        self.by_name: dict[str, list[Package]] = {}
        self.providers: dict[str, list[tuple[Package, str | None]]] = {}
        seen: set[tuple[str, str, str]] = set()
        for p in packages:
            if p.arch not in (arch, "all"):
                continue
            key = (p.name, p.version, p.arch)
            if key in seen:  # the same package in two sources: the first wins
                continue
            seen.add(key)
            self.by_name.setdefault(p.name, []).append(p)
            provides = p.fields.get("Provides")
            if provides:
                for item in provides.split(","):
                    name, _, rest = item.strip().partition("(")
                    version = rest.rstrip(") ").lstrip("= ").strip() or None
                    name = name.strip().split(":")[0]
                    if name:
                        self.providers.setdefault(name, []).append((p, version))
        self._sorted: set[str] = set()

    def versions(self, name: str) -> list[Package]:
        """The packages named name, highest version first."""
        found = self.by_name.get(name, [])
        if len(found) > 1 and name not in self._sorted:
            found.sort(key=lambda p: p.parsed_version, reverse=True)
            self._sorted.add(name)
        return found

    def candidates(self, rel: dict) -> list[Package]:
        """Real packages meeting one relation (name, version, arch qualifier), best first."""
        qualifier = rel.get("archqual")
        out = []
        for p in self.versions(rel["name"]):
            if not self._arch_ok(p, qualifier):
                continue
            if _satisfies(p.parsed_version, rel.get("version")):
                out.append(p)
        return out

    def provided(self, rel: dict) -> list[Package]:
        """Packages that provide rel's name virtually, meeting its version."""
        out = []
        for p, version in self.providers.get(rel["name"], []):
            if self._arch_ok(p, rel.get("archqual"), virtual=True) and _satisfies(
                version, rel.get("version")
            ):
                out.append(p)
        return sorted(out, key=lambda p: p.name)

    def _arch_ok(self, p: Package, qualifier: str | None, virtual: bool = False) -> bool:
        if qualifier is None:
            return True
        if qualifier == "any":
            return virtual or p.fields.get("Multi-Arch", "") == "allowed"
        if qualifier == "native":
            return p.arch in (self.arch, "all")
        return p.arch == qualifier


def _groups(p: Package, recommends: bool) -> list[tuple[str, list[dict]]]:
    names = ["Pre-Depends", "Depends"] + (["Recommends"] if recommends else [])
    return [(f, group) for f in names for group in p.relations(f)]


def _text(group: list[dict]) -> str:
    parts = []
    for rel in group:
        s = rel["name"] + (f":{rel['archqual']}" if rel.get("archqual") else "")
        if rel.get("version"):
            s += f" ({rel['version'][0]} {rel['version'][1]})"
        parts.append(s)
    return " | ".join(parts)


def essential_closure(universe: Universe) -> set[str]:
    """Names of the Essential packages and of everything they depend on."""
    todo = [
        ps[0]
        for ps in universe.by_name.values()
        if universe.versions(ps[0].name)[0].fields.get("Essential") == "yes"
    ]
    closure: set[str] = set()
    while todo:
        p = todo.pop()
        if p.name in closure:
            continue
        closure.add(p.name)
        for _field, group in _groups(p, False):
            for rel in group:
                found = universe.candidates(rel) or universe.provided(rel)
                if found:
                    todo.append(found[0])
                    break
    return closure


def system_provides_name(name: str) -> str:
    return "glibc, taken from the system"


def system_provides(p: Package, essential: set[str]) -> str | None:
    """Why the base system provides p (the policy above), or None."""
    if p.name in GLIBC_PACKAGES:
        return system_provides_name(p.name)
    section = p.fields.get("Section", "").rsplit("/", 1)[-1]
    if p.name in essential and section not in _LIB_SECTIONS:
        return "Essential (or needed by one), on every Debian system"
    return None


def resolve(universe: Universe, names: Sequence[str], *, recommends: bool = False) -> Resolution:
    """The packages names need, by the policy of this module; raises
    :class:`NotFoundError` for a name no index has and
    :class:`ResolutionError` naming the chain that cannot be satisfied."""
    essential = essential_closure(universe)
    chosen: dict[str, Package] = {}
    result = Resolution([])
    todo: list[Package] = []

    def chain(name: str) -> str:
        links = [name]
        while links[-1] in result.why and len(links) < 20:
            links.append(result.why[links[-1]])
        return " <- ".join(links)

    for name in names:
        rel = {"name": name.partition(":")[0], "archqual": name.partition(":")[2] or None}
        found = universe.candidates(rel)
        if not found:
            hint = universe.provided(rel)
            also = f" (provided by {', '.join(p.name for p in hint)})" if hint else ""
            raise NotFoundError(
                f"{name}: no such package for {universe.arch} in the archive's indexes{also}",
                what=name,
            )
        if found[0].name not in chosen:
            chosen[found[0].name] = found[0]
            result.packages.append(found[0])
            todo.append(found[0])

    while todo:
        p = todo.pop(0)
        for field_name, group in _groups(p, recommends):
            # Already met by a chosen package (itself or through Provides)?
            met = False
            for rel in group:
                have = chosen.get(rel["name"])
                if have is not None and any(c is have for c in universe.candidates(rel)):
                    met = True
                    break
                if any(q.name in chosen and chosen[q.name] is q for q in universe.provided(rel)):
                    met = True
                    break
            if met:
                continue
            # Met by the base system?
            system_why = None
            for rel in group:
                if rel["name"] in GLIBC_PACKAGES:
                    # Whatever version is asked for: the system's glibc is
                    # the one the program will run with.
                    system_why = system_provides_name(rel["name"])
                    result.system.setdefault(rel["name"], system_why)
                    break
                for q in universe.candidates(rel) + universe.provided(rel):
                    system_why = system_provides(q, essential)
                    if system_why:
                        result.system.setdefault(q.name, system_why)
                        break
                if system_why:
                    break
            if system_why:
                continue
            pick = None
            for rel in group:
                found = universe.candidates(rel)
                if rel["name"] in chosen and not found:
                    break  # a chosen version that fails this relation: reported below
                pick = found[0] if found else next(iter(universe.provided(rel)), None)
                if pick is not None:
                    break
            if pick is None or pick.name in chosen:
                if field_name == "Recommends":
                    result.notes.append(f"{p}: recommended {_text(group)} cannot be had; left out")
                    continue
                have = next((chosen[r["name"]] for r in group if r["name"] in chosen), None)
                why = (
                    f"but {have} is chosen"
                    if have is not None
                    else "which no package of the archive satisfies"
                )
                raise ResolutionError(
                    f"{p} {field_name.lower()} {_text(group)}, {why} (needed by {chain(p.name)})",
                    chains=[chain(p.name)],
                )
            chosen[pick.name] = pick
            result.why[pick.name] = p.name
            result.packages.append(pick)
            todo.append(pick)
    return result
