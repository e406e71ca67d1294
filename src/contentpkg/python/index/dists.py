"""The vocabulary the Python side shares: distribution files and pins.

An index answers with :class:`DistFile` records; the resolver answers with a
:class:`Resolution` of :class:`Pin` records; the lock file stores pins and
``sync`` turns each pin's chosen file into a store entry. These types are
plain data so every stage can be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packaging.requirements import Requirement


@dataclass(frozen=True)
class DistFile:
    """One file of one release, as an index (PEP 691/503) or a find-links
    directory describes it.

    ``hashes`` maps algorithm to hex digest (``{"sha256": ...}``);
    ``yanked`` is None when not yanked, else the reason ("" when none given);
    ``core_metadata`` is the PEP 658/714 hash dict of the ``.metadata`` file
    when the index serves one, ``{}`` when it serves one without hashes, and
    None when it does not.
    """

    filename: str
    url: str
    hashes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    requires_python: str | None = None
    yanked: str | None = None
    core_metadata: dict[str, str] | None = field(default=None, hash=False, compare=False)
    size: int | None = None
    upload_time: str | None = None
    index: str = ""  # the index URL or find-links location it was listed by

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


@dataclass(frozen=True)
class Pin:
    """One resolved package: a name, a version, and the files that carry it.

    ``files`` holds the wheels usable by the target interpreter, best tag
    first, and the sdist when there is one (used only when no wheel fits).
    ``dependencies`` are the normalized names this pin requires in the
    resolved environment (after markers and extras).

    ``directory`` is set (an absolute path) for a package served from a local
    checkout (``[tool.cpk.sources]`` or a ``file:`` URL): it is used in place,
    so ``files`` is empty and nothing is fetched or stored for it.
    """

    name: str  # PEP 503 normalized
    version: str
    files: tuple[DistFile, ...]
    dependencies: tuple[str, ...] = ()
    requires_python: str | None = None
    index: str = ""
    directory: str | None = None
    #: A direct reference's PEP 751 table, ("vcs" | "archive", table): the
    #: lock writes it instead of index files (see ``resolve/direct.py``).
    direct: tuple[str, dict[str, Any]] | None = field(default=None, compare=False)
    #: In a universal resolution: where the pin is needed, as a marker in
    #: disjunctive normal form (a frozenset of frozensets of comparisons;
    #: see :mod:`contentpkg.python.resolve.markers`), and where the
    #: dependency groups alone need it. None outside universal resolutions.
    marker: frozenset | None = field(default=None, compare=False)
    group_marker: frozenset | None = field(default=None, compare=False)


@dataclass
class Resolution:
    """What the resolver decided, for one target interpreter."""

    pins: dict[str, Pin]
    requirements: list[Requirement]  # the roots, as given
    python_version: str  # target interpreter's full version, e.g. "3.11.7"
    markers: dict[str, str] = field(default_factory=dict)  # target's marker environment
    #: A universal resolution serves every environment of the project's
    #: ``requires-python`` (narrowed by ``environments``) instead of one
    #: interpreter; its pins carry markers and may name a project twice.
    universal: bool = False
    requires_python: str | None = None
    environments: tuple[str, ...] = ()
    #: The extras, dependency groups and default groups a universal lock holds.
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    default_groups: tuple[str, ...] = ()
    #: Sets of ("extra"|"group", name) declared conflicting: resolved apart,
    #: never installed together.
    conflicts: tuple[tuple[tuple[str, str], ...], ...] = ()
    #: In a universal resolution: the lowest Python above the universe's
    #: lowest for which a newer version of some pin exists (its
    #: requires-python excluded it here); resolving apart from there up
    #: gets the newer versions, as uv forks on requires-python.
    python_bound: str | None = None
