"""Profiles: alias symlinks to numbered generations of an env dir.

Layout under the user's home (``$CPK_HOME``)::

    profiles/default            -> default.gens/3      (the alias, a relative symlink)
    profiles/default.gens/1/    a complete env dir (bin/, lib/, share/, .cpk/)
    profiles/default.gens/2/
    profiles/default.gens/3/
    profiles/default.gens/.lock           serialises every change to the profile
    profiles/default.gens/.staging-*/     a generation being built (debris if stale)

A generation is built whole in a staging directory next to the numbered
ones, flushed to disk, renamed to its number, and only then made current by
one ``rename(2)`` of a fresh symlink over the alias. A reader that follows
``profiles/default/bin/prog`` therefore sees the old generation or the new
one, never a mixture and never nothing. The alias target is relative so the
whole home can be moved or copied. Old generations stay on disk (and keep
their store entries alive: gc walks every ``profiles/*/<N>/.cpk/refs``) until
:func:`delete_generations` removes them.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from contentpkg.errors import ConflictError, CpkError, NotFoundError
from contentpkg.fs import (
    TMP_PREFIX,
    flocked,
    publish_dir,
    remove_tree,
    replace_symlink,
    sync_filesystem,
    write_atomic,
)
from contentpkg.store.locks import collector_lock

PROFILES = "profiles"
GENS_SUFFIX = ".gens"
GENERATION_JSON = ".cpk/generation.json"
MANIFEST_JSON = ".cpk/manifest.json"
DEFAULT_PROFILE = "default"

_STAGING_PREFIX = ".staging-"
_DOOMED_PREFIX = ".delete-"
# Conservative on purpose: the name becomes a path component, a lock file
# name and part of shell output, so nothing that needs quoting or escaping.
_NAME_RE = re.compile(r"[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*")


def check_profile_name(name: str) -> str:
    """Return name if it can name a profile; raise a one-line error otherwise."""
    # All digits would read as a generation number on the command line.
    if not _NAME_RE.fullmatch(name) or name.endswith(GENS_SUFFIX) or name.isdigit():
        raise CpkError(
            f"{name!r}: not a valid profile name (letters, digits and '._+@-', not all "
            f"digits; no '/', no leading '.', not ending in '{GENS_SUFFIX}')"
        )
    return name


def profiles_dir(home: Path) -> Path:
    return home / PROFILES


@dataclass(frozen=True)
class Generation:
    """One numbered generation, as :func:`generations` reports it."""

    number: int
    path: Path
    created: datetime  # aware, UTC
    description: str
    current: bool
    changes: tuple[str, ...] = ()  # "+jq 1.6", "-curl 8.0", "jq 1.6 → 1.7"
    user: str | None = None
    command: str | None = None


class Profile:
    """A named profile in a home (the context's: ``$CPK_HOME`` or its default)."""

    def __init__(self, name: str, home: Path) -> None:
        self.name = check_profile_name(name)
        self.home = home
        self.directory = self.home / PROFILES
        self.alias = self.directory / name
        self.gens = self.directory / f"{name}{GENS_SUFFIX}"

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, home={str(self.home)!r})"

    def exists(self) -> bool:
        return self.alias.is_symlink()

    def current_number(self) -> int | None:
        """The generation the alias points at, or None before the first one."""
        try:
            target = os.readlink(self.alias)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # a real file or directory squats the name
                raise CpkError(f"{self.alias}: not a profile alias (not a symlink)") from None
            raise
        head, _, tail = target.rpartition("/")
        if head != self.gens.name or not tail.isdigit():
            raise CpkError(f"{self.alias}: points at {target!r}, not at one of its generations")
        return int(tail)

    def current(self) -> Path | None:
        """The current generation's directory (stable: not through the alias)."""
        number = self.current_number()
        return None if number is None else self.gens / str(number)

    def numbers(self) -> list[int]:
        """Every complete generation, oldest first."""
        try:
            names = os.listdir(self.gens)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit() and (self.gens / n).is_dir())

    def require(self) -> None:
        """Raise the one-line 'unknown profile' error unless the profile exists."""
        if self.exists():
            return
        known = list_profiles(self.home)
        hint = f" (profiles: {', '.join(known)})" if known else " (there are no profiles yet)"
        raise NotFoundError(f"no profile named {self.name!r}{hint}", what=self.name)

    def begin(
        self, description: str, command: str | None = None, *, hold_collector: bool = True
    ) -> Transaction:
        """Start building the next generation; use as ``with ... as tx:``.

        ``description`` says what the change is ("install jq"); ``command`` is
        the command line that asked for it, kept for the history.
        ``hold_collector`` keeps ``gc`` out while the new generation refers to
        entries no root reaches yet (the store's rule for anything that makes
        roots); tests of the profile alone may turn it off.

        Not reentrant: the lock is an flock on a fresh descriptor, so a second
        ``begin`` on the same profile in the same process waits forever.
        """
        return Transaction(self, description, command, hold_collector)

    def lock(self) -> Any:
        """The per-profile exclusive lock every change takes."""
        self.gens.mkdir(parents=True, exist_ok=True)
        return flocked(self.gens / ".lock", exclusive=True)

    def _point(self, number: int) -> None:
        """Make the alias point at generation number: one rename(2) of a new symlink."""
        if os.path.lexists(self.alias) and not self.alias.is_symlink():
            raise CpkError(f"{self.alias}: not a profile alias (not a symlink)")
        # Durable: after a crash the profile must name the generation we said.
        replace_symlink(self.alias, f"{self.gens.name}/{number}", durable=True)

    def _clean_stale(self) -> None:
        """Remove debris of killed processes; call with the profile lock held.

        Staging directories and temporary symlinks are only ever made by a
        lock holder, so whatever exists when we hold the lock is dead.
        """
        for name in os.listdir(self.gens):
            if name.startswith((_STAGING_PREFIX, _DOOMED_PREFIX)):
                remove_tree(self.gens / name)
        # A new alias killed before its rename (see contentpkg.fs.replace_symlink).
        prefix = f"{TMP_PREFIX}{self.name}."
        for name in os.listdir(self.directory):
            if name.startswith(prefix):
                rest = name[len(prefix) :].split(".")
                if len(rest) == 2 and rest[0].isdigit():
                    os.unlink(self.directory / name)


@dataclass
class Transaction:
    """One change to a profile: build ``path`` (from ``previous``), then commit.

    Entering takes the profile's lock (a second installer waits here, then
    sees the first one's generation as ``previous``), cleans debris, and makes
    an empty staging directory ``path``. Leaving normally publishes it as the
    next generation and switches the alias; leaving by an exception (or after
    :meth:`discard`) removes it and changes nothing.
    """

    profile: Profile
    description: str
    command: str | None = None
    hold_collector: bool = True
    previous: Path | None = field(default=None, init=False)
    path: Path = field(default=Path(), init=False)
    number: int = field(default=0, init=False)
    _stack: ExitStack | None = field(default=None, init=False, repr=False)
    _discarded: bool = field(default=False, init=False, repr=False)

    def __enter__(self) -> Transaction:
        stack = ExitStack()
        try:
            self.profile.directory.mkdir(parents=True, exist_ok=True)
            stack.enter_context(self.profile.lock())
            if self.hold_collector:
                stack.enter_context(collector_lock(self.profile.home / "store", exclusive=False))
            self.profile._clean_stale()
            self.previous = self.profile.current()
            self.number = max([0, *self.profile.numbers()]) + 1
            self.path = self.profile.gens / f"{_STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
            self.path.mkdir()
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def discard(self) -> None:
        """Leave without a new generation (the change turned out to be a no-op)."""
        self._discarded = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stack is not None, "Transaction used without 'with'"
        with self._stack:
            if exc_type is not None or self._discarded:
                remove_tree(self.path)
                return
            try:
                self._commit()
            except BaseException:
                remove_tree(self.path)
                raise

    def _commit(self) -> None:
        gens = self.profile.gens
        meta = {
            "format": 1,
            "profile": self.profile.name,
            "number": self.number,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": self.description,
            "user": _user(),
            "command": self.command,
            "previous": int(self.previous.name) if self.previous is not None else None,
            "changes": _changes(self.previous, self.path),
        }
        _replace_text(self.path / GENERATION_JSON, json.dumps(meta, indent=1) + "\n")
        # Everything below the staging directory reaches the disk before the
        # rename that names it, and the name before the alias points at it:
        # a crash leaves the old generation current, never a dangling alias.
        sync_filesystem(self.path)
        final = gens / str(self.number)
        if not publish_dir(self.path, final, durable=True):
            # Numbers are taken under the profile's lock: only a hand-made
            # directory can be in the way.
            raise ConflictError(f"{final}: exists and was not made by cpk; move it away first")
        self.path = final
        self.profile._point(self.number)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _replace_text(path: Path, text: str) -> None:
    """Write by rename: the old name may be a hard link shared with another generation.

    Not fsynced here: the generation it belongs to is flushed whole
    (``syncfs``) before the rename that publishes it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, durable=False)


def _installed(env: Path | None) -> dict[str, set[str]]:
    """name → versions the env dir's manifest lists as installed."""
    if env is None:
        return {}
    try:
        manifest = json.loads((env / MANIFEST_JSON).read_text())
        items = manifest.get("installed", [])
    except (OSError, ValueError, AttributeError):
        return {}
    found: dict[str, set[str]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            found.setdefault(item["name"], set()).add(str(item.get("version", "")))
    return found


def _changes(previous: Path | None, new: Path) -> list[str]:
    """What the new generation installs, removes and upgrades, from the manifests."""
    before, after = _installed(previous), _installed(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, now = before.get(name, set()), after.get(name, set())
        if old == now:
            continue
        if not old:
            changes.append(f"+{name} {', '.join(sorted(now))}")
        elif not now:
            changes.append(f"-{name} {', '.join(sorted(old))}")
        else:
            changes.append(f"{name} {', '.join(sorted(old))} → {', '.join(sorted(now))}")
    return changes


def link_tree(src: Path, dst: Path, exclude: Callable[[str], bool] | None = None) -> list[str]:
    """Recreate src's tree in dst sharing every regular file by hard link.

    Directories are made anew, symlinks copied as symlinks (same target),
    regular files hard-linked, or copied where a link cannot be made (another
    filesystem, a link-count limit). ``exclude(relpath)`` skips a path and,
    for a directory, all below it; ``.cpk/generation.json`` is always skipped.
    Returns the relative paths that had to be copied.

    A linked file is *the same inode* as the previous generation's: replace
    it (write a new file, ``os.replace`` it over the name), never write into
    it, or the old generation changes too.
    """
    copied: list[str] = []
    dst.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for name in sorted(dirnames):
            rel = os.path.join(rel_dir, name)
            if exclude is not None and exclude(rel):
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):  # os.walk lists a symlink to a directory here
                os.symlink(os.readlink(full), dst / rel)
                continue
            os.mkdir(dst / rel, stat.S_IMODE(os.lstat(full).st_mode) | 0o700)
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = os.path.join(rel_dir, name)
            if rel == GENERATION_JSON or (exclude is not None and exclude(rel)):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(full), dst / rel)
            elif stat.S_ISREG(st.st_mode):
                try:
                    os.link(full, dst / rel, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
                        raise
                    shutil.copy2(full, dst / rel, follow_symlinks=False)
                    copied.append(rel)
            # Sockets, fifos and devices have no place in an env dir: skipped.
    return copied


def list_profiles(home: Path) -> list[str]:
    """Names of the profiles in home, sorted."""
    directory = profiles_dir(home)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(
        n
        for n in names
        if not n.startswith(".") and _NAME_RE.fullmatch(n) and (directory / n).is_symlink()
    )


def _read_generation(path: Path, number: int, current: bool) -> Generation:
    try:
        meta = json.loads((path / GENERATION_JSON).read_text())
        if not isinstance(meta, dict):
            meta = {}
    except (OSError, ValueError):
        meta = {}  # made by hand or by an older cpk: the directory still counts
    created = None
    if isinstance(meta.get("created"), str):
        try:
            created = datetime.fromisoformat(meta["created"].replace("Z", "+00:00"))
        except ValueError:
            created = None
    if created is None:
        try:
            created = datetime.fromtimestamp(os.lstat(path).st_mtime, UTC)
        except OSError:
            created = datetime.fromtimestamp(0, UTC)
    changes = meta.get("changes")
    return Generation(
        number=number,
        path=path,
        created=created,
        description=str(meta.get("description") or ""),
        current=current,
        changes=tuple(str(c) for c in changes) if isinstance(changes, list) else (),
        user=meta.get("user") if isinstance(meta.get("user"), str) else None,
        command=meta.get("command") if isinstance(meta.get("command"), str) else None,
    )


def generations(name: str = DEFAULT_PROFILE, *, home: Path) -> list[Generation]:
    """Every generation of a profile, oldest first, the current one marked."""
    profile = Profile(name, home)
    profile.require()
    current = profile.current_number()
    result = []
    for number in profile.numbers():
        path = profile.gens / str(number)
        if path.is_dir():  # a concurrent delete may have taken it since listing
            result.append(_read_generation(path, number, number == current))
    return result


def _missing(profile: Profile, number: int) -> CpkError:
    numbers = profile.numbers()
    if len(numbers) > 8:
        known = f"{', '.join(map(str, numbers[:3]))}, ..., {', '.join(map(str, numbers[-3:]))}"
    else:
        known = ", ".join(map(str, numbers)) or "none"
    return CpkError(f"profile {profile.name!r} has no generation {number} (generations: {known})")


def switch(name: str, number: int, *, home: Path) -> int:
    """Make generation number current; returns the number that was current."""
    profile = Profile(name, home)
    profile.require()
    with profile.lock():
        before = profile.current_number()
        if not (profile.gens / str(number)).is_dir():
            raise _missing(profile, number)
        if number != before:
            profile._point(number)
    return before if before is not None else number


def rollback(name: str = DEFAULT_PROFILE, *, home: Path) -> tuple[int, int]:
    """Switch to the newest generation older than the current; (from, to)."""
    profile = Profile(name, home)
    profile.require()
    with profile.lock():
        current = profile.current_number()
        assert current is not None  # require() saw the alias
        older = [n for n in profile.numbers() if n < current]
        if not older:
            raise CpkError(
                f"profile {profile.name!r} has no generation older than {current} to roll back to"
            )
        profile._point(older[-1])
    return current, older[-1]


def delete_generations(
    name: str = DEFAULT_PROFILE,
    numbers: Iterable[int] | None = None,
    older_than: timedelta | None = None,
    *,
    home: Path,
    now: datetime | None = None,
) -> list[int]:
    """Delete the named generations, or all older than a timedelta; never the current.

    Naming the current generation, or one that does not exist, is an error
    and deletes nothing. ``older_than`` silently keeps the current one (as
    ``nix-env --delete-generations 30d`` does). Returns what was deleted.
    Their store entries stay until the next ``cpk store gc``.
    """
    if numbers is None and older_than is None:
        raise CpkError("delete-generations: name generation numbers or --older-than")
    profile = Profile(name, home)
    profile.require()
    with profile.lock():
        current = profile.current_number()
        existing = profile.numbers()
        doomed: set[int] = set()
        for number in numbers or ():
            if number == current:
                raise CpkError(
                    f"refusing to delete generation {number} of profile {profile.name!r}: "
                    "it is the current one (switch or roll back first)"
                )
            if number not in existing:
                raise _missing(profile, number)
            doomed.add(number)
        if older_than is not None:
            cutoff = (now or datetime.now(UTC)) - older_than
            for number in existing:
                gen = _read_generation(profile.gens / str(number), number, number == current)
                if not gen.current and gen.created < cutoff:
                    doomed.add(number)
        for number in sorted(doomed):
            # Gone from its number in one rename, deleted at leisure: nobody
            # sees a half-deleted generation, and a crash leaves debris that
            # the next transaction removes.
            hidden = profile.gens / f"{_DOOMED_PREFIX}{number}-{os.getpid()}"
            os.rename(profile.gens / str(number), hidden)
            remove_tree(hidden)
    return sorted(doomed)


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '2w', '90m' → a timedelta (for --older-than)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise CpkError(f"{text!r}: not an age (use a number and s, m, h, d or w, like 30d)")
    value, unit = int(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[unit]
    return timedelta(seconds=value * seconds)


class _EnvChange(Protocol):
    """What a change to an env dir returns (``contentpkg.elf.envdir.InstallResult``)."""

    changed: bool
    where: Path


_R = TypeVar("_R", bound=_EnvChange)


def change_env(
    change: Callable[[Path, Path | None, bool], _R],
    *,
    home: Path,
    where: Path | None = None,
    profile: str | None = None,
    description: str,
    command: str | None = None,
) -> _R:
    """Run ``change(where, base, root)`` on WHERE, or on a new generation of a profile.

    With ``where``, the change is made in place and WHERE becomes a gc root
    (``root`` true). Otherwise a profile's (default "default") new generation
    is built complete beside the old one, from it (``base``), and switched
    to with one rename; a change that turns out to be a no-op leaves no
    generation behind. The result's ``where`` is then the profile's alias.
    """
    if where is not None:
        if profile is not None:
            raise CpkError("give WHERE or --profile, not both")
        return change(where, None, True)
    target = Profile(profile or DEFAULT_PROFILE, home)
    with target.begin(description, command) as tx:
        result = change(tx.path, tx.previous, False)
        if not result.changed:
            tx.discard()
            return result
        result.where = target.alias
    return result
