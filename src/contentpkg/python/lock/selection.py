"""What a lock installs here: the packages a selection needs on this interpreter.

A universal lock (see :mod:`.pylock`) holds every extra and dependency group
for every supported environment; installing picks from it without
resolving, as PEP 751 intends: each package's ``marker`` is evaluated
against the running interpreter's marker environment plus the selected
``extras`` and ``dependency_groups`` (``packaging``'s ``lock_file``
context), and for each package kept the best wheel for the interpreter's
tags is chosen, else the sdist. A single-environment lock (a script's, a
``--with`` run's, or one of the previous format) is checked against its
``environments`` instead, so a lock made for another interpreter is one
clear line rather than a silent mismatch.

Standard library at import time: ``packaging`` is imported only when a
marker or a specifier must be evaluated, and the outcome is kept in the
cache (keyed by the lock's bytes, the interpreter and the selection), so a
selection seen before costs no import and no evaluation.
"""

from __future__ import annotations

from typing import Any

from contentpkg.errors import CpkError, LockMismatchError
from contentpkg.python.lock.pylock import LOCK_FILENAME, Lock, LockedFile, LockedPackage


class Chosen:
    """Which extras and groups to install, and whether the project's own
    dependencies come too (not under ``--only-group``). Plain class: it is
    built on ``cpk run``'s path."""

    __slots__ = ("extras", "groups", "only_groups")

    def __init__(self, extras: frozenset[str], groups: frozenset[str], only_groups: bool) -> None:
        self.extras = extras
        self.groups = groups
        self.only_groups = only_groups

    def __repr__(self) -> str:
        return f"Chosen(extras={sorted(self.extras)}, groups={sorted(self.groups)})"


def choose(
    *,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    all_extras: bool = False,
    all_groups: bool = False,
    no_default_groups: bool = False,
    only_groups: tuple[str, ...] = (),
    no_dev: bool = False,
    known_extras: tuple[str, ...] = (),
    known_groups: tuple[str, ...] = (),
    default_groups: tuple[str, ...] = (),
) -> Chosen:
    """The extras and groups the flags select, as uv's flags mean them.

    The default groups are installed unless ``no_default_groups``;
    ``no_dev`` drops ``dev`` (uv's ``--no-group dev``); ``only_groups``
    installs those groups alone, without the project's dependencies.
    """
    from contentpkg.python.names import canonical_name

    def known(names: tuple[str, ...], have: tuple[str, ...], what: str) -> set[str]:
        out = set()
        for raw in names:
            name = canonical_name(raw)
            if name not in have:
                listed = ", ".join(sorted(have)) or "none"
                raise CpkError(f"no {what} named {raw!r} (declared: {listed})")
            out.add(name)
        return out

    if only_groups:
        picked = known(only_groups, known_groups, "dependency group")
        return Chosen(frozenset(), frozenset(picked), True)
    chosen_extras = set(known_extras) if all_extras else known(extras, known_extras, "extra")
    chosen_groups: set[str] = set()
    if all_groups:
        chosen_groups = set(known_groups)
    elif not no_default_groups:
        chosen_groups = set(default_groups)
    chosen_groups |= known(groups, known_groups, "dependency group")
    if no_dev:
        chosen_groups.discard("dev")
    return Chosen(frozenset(chosen_extras), frozenset(chosen_groups), False)


def is_default(chosen: Chosen, default_groups: tuple[str, ...]) -> bool:
    """Whether chosen is what ``.venv`` holds: the project and its default groups."""
    return (
        not chosen.only_groups and not chosen.extras and chosen.groups == frozenset(default_groups)
    )


def select(lock: Lock, python: Any, chosen: Chosen | None = None, *, cache_dir: Any = None) -> Lock:
    """The lock narrowed to what installs here: the packages whose markers
    hold for python (an ``InterpreterInfo``) and ``chosen``, each with the
    file to install set. One :class:`LockMismatchError` line when the lock
    does not cover python or a selected package has no file for it.
    ``cache_dir`` keeps the outcome for the next identical selection."""
    if lock.universal:
        chosen = chosen or Chosen(frozenset(), frozenset(lock.default_groups), False)
    cached = _cache_path(lock, python, chosen, cache_dir)
    if cached is not None:
        picked = _cached(cached, lock)
        if picked is not None:
            return picked
    narrowed = _select(lock, python, chosen)
    if cached is not None:
        _remember(cached, lock, narrowed)
    return narrowed


def _select(lock: Lock, python: Any, chosen: Chosen | None) -> Lock:
    _check_covers(lock, python)
    if not lock.universal:
        return lock
    assert chosen is not None
    ranks = {tag: rank for rank, tag in enumerate(python.tags)}
    taken = applicable(lock, chosen, python.markers, python.executable)
    return _narrowed(lock, [_with_file(lock, package, ranks, python) for package in taken])


def applicable(
    lock: Lock, chosen: Chosen | None, markers: Any = None, target: str = "this interpreter"
) -> list[LockedPackage]:
    """The lock's packages whose markers hold for markers (an interpreter's
    marker environment; default: the running one's) and chosen, in the
    lock's order, files not chosen. A single-environment lock (chosen None,
    or not universal) is taken whole. ``cpk sync`` narrows these further to
    a file each; ``cpk tree`` and ``cpk export`` show them as they are, so
    all three take the same packages for the same flags."""
    if not lock.universal or chosen is None:
        return list(lock.packages)
    for members in lock.conflicts:
        picked = [
            m
            for m in members
            if m.partition(":")[2] in (chosen.extras if m.startswith("extra:") else chosen.groups)
        ]
        if len(picked) > 1:
            shown = " and ".join(m.replace(":", " ", 1) for m in picked)
            raise CpkError(f"{shown} are declared conflicting (conflicts): select one of them")
    if markers is None:
        from packaging.markers import default_environment

        markers = default_environment()
    env = dict(markers)
    env["extras"] = chosen.extras
    env["dependency_groups"] = chosen.groups
    kept: list[LockedPackage] = []
    seen: dict[str, LockedPackage] = {}
    for package in lock.packages:
        marker = package.marker
        if chosen.only_groups and package.group_marker is not None:
            if package.group_marker is False:
                continue
            marker = None if package.group_marker is True else package.group_marker
        if marker is not None and not _holds(marker, env, lock):
            continue
        if package.name in seen:
            raise LockMismatchError(
                f"{lock.path}: {package.name} {seen[package.name].version} and "
                f"{package.version} both apply to {target}; re-lock with `cpk lock`"
            )
        seen[package.name] = package
        kept.append(package)
    return kept


def _narrowed(lock: Lock, kept: list[LockedPackage]) -> Lock:
    narrowed = Lock(
        lock.path,
        kept,
        fingerprint=lock.fingerprint,
        created_by=lock.created_by,
        requires_python=lock.requires_python,
        environments=lock.environments,
        python_version=lock.python_version,
        lock_version=lock.lock_version,
        universal=True,
        extras=lock.extras,
        dependency_groups=lock.dependency_groups,
        default_groups=lock.default_groups,
        conflicts=lock.conflicts,
    )
    return narrowed


_CACHE_FORMAT = "1"


def _cache_path(lock: Lock, python: Any, chosen: Chosen | None, cache_dir: Any) -> Any:
    """Where the outcome of this selection is kept (None: not cached)."""
    if cache_dir is None or lock.digest is None:
        return None
    import hashlib
    import os

    from contentpkg.context import Bucket

    parts = [
        _CACHE_FORMAT,
        lock.digest,
        os.fspath(lock.path),
        python.executable,
        python.version,
        repr(sorted(python.markers.items())),
        "\n".join(python.tags),
    ]
    if chosen is not None:
        parts += [repr(sorted(chosen.extras)), repr(sorted(chosen.groups)), str(chosen.only_groups)]
    key = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(cache_dir, Bucket.PARSED_LOCKS.value, f"{key}.selection.marshal")


def _cached(path: Any, lock: Lock) -> Lock | None:
    """The selection kept at path, or None (missing, or not for this lock)."""
    import marshal

    try:
        with open(path, "rb") as f:
            picked = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(picked, list):
        return None
    if not lock.universal:
        return lock  # covered: a single-environment lock is used whole
    kept = []
    for index, filename in picked:
        if not 0 <= index < len(lock.packages):
            return None
        package = lock.packages[index]
        if filename is None:
            kept.append(package)
            continue
        file = next(
            (f for f in (*package.wheels, package.sdist) if f and f.filename == filename), None
        )
        if file is None:
            return None
        kept.append(_copy_with(package, file))
    return _narrowed(lock, kept)


def _remember(path: Any, lock: Lock, narrowed: Lock) -> None:
    import marshal

    from contentpkg.fs import write_cache

    where = {id(p): i for i, p in enumerate(lock.packages)}
    picked = []
    for package in narrowed.packages:
        index = where.get(id(package))
        if index is None:  # a copy with its file chosen: find the original
            index = next(
                i
                for i, p in enumerate(lock.packages)
                if p.name == package.name and p.version == package.version
            )
        filename = package.file.filename if package.file is not None else None
        if lock.packages[index].file is not None or package.directory is not None:
            filename = None
        picked.append((index, filename))
    write_cache(path, marshal.dumps(picked))  # failing only costs speed


def _check_covers(lock: Lock, python: Any) -> None:
    """One line when the lock was not made for python's version or platform."""
    version = python.version
    if lock.requires_python:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(lock.requires_python)
        except InvalidSpecifier:
            raise LockMismatchError(
                f"{lock.path}: requires-python {lock.requires_python!r} is not valid"
            ) from None
        if not spec.contains(version, prereleases=True):
            raise LockMismatchError(
                f"{lock.path}: locked for Python {lock.requires_python}, but "
                f"{python.executable} is {version}"
                + ("" if lock.universal else "; re-lock with `cpk lock`")
            )
    if lock.environments and not any(
        _holds(marker, dict(python.markers), lock) for marker in lock.environments
    ):
        shown = "; ".join(lock.environments)
        if lock.universal:
            raise LockMismatchError(
                f"{lock.path}: locked for the environments {shown}, which exclude "
                f"{python.executable} ({version}); widen the project's environments"
            )
        raise LockMismatchError(
            f"{lock.path}: locked for another interpreter ({shown}), not "
            f"{python.executable} ({version}); re-lock with `cpk lock`"
        )


def _holds(marker: str, env: dict[str, Any], lock: Lock) -> bool:
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(marker).evaluate(env, context="lock_file")
    except InvalidMarker as exc:
        raise LockMismatchError(f"{lock.path}: invalid marker {marker!r} ({exc})") from None


def _with_file(lock: Lock, package: LockedPackage, ranks: dict[str, int], python: Any):
    """package with its file for this interpreter chosen (best tag, else sdist)."""
    if package.directory is not None or package.file is not None:
        return package
    best: LockedFile | None = None
    best_rank = len(ranks)
    for wheel in package.wheels:
        rank = min((ranks.get(t, best_rank) for t in wheel_tags(wheel.filename)), default=None)
        if rank is not None and rank < best_rank:
            best, best_rank = wheel, rank
    chosen = best or package.sdist
    if chosen is None:
        raise LockMismatchError(
            f"{lock.path}: {package.name} {package.version} has no wheel for "
            f"{python.executable} ({python.version}) and no sdist"
        )
    return _copy_with(package, chosen)


def _copy_with(package: LockedPackage, file: LockedFile) -> LockedPackage:
    copy = LockedPackage.__new__(LockedPackage)
    for slot in LockedPackage.__slots__:
        setattr(copy, slot, getattr(package, slot))
    copy.file = file
    return copy


def wheel_tags(filename: str) -> list[str]:
    """The tags a wheel's file name says it supports, expanded
    (``py2.py3-none-any`` is two). By hand: ``packaging.utils`` would load
    ``packaging.tags`` on ``cpk run``'s path."""
    stem = filename[:-4] if filename.endswith(".whl") else filename
    parts = stem.split("-")
    if len(parts) < 5:
        return []
    pythons, abis, platforms = parts[-3:]
    return [
        f"{p}-{a}-{plat}"
        for p in pythons.split(".")
        for a in abis.split(".")
        for plat in platforms.split(".")
    ]


__all__ = [
    "LOCK_FILENAME",
    "Chosen",
    "LockMismatchError",
    "applicable",
    "choose",
    "is_default",
    "select",
]
