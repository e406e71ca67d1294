"""An env dir's files against its manifest: what changed since cpk placed them.

``cpk install`` records every file it places with the entry and path it came
from and its sha256 (``.cpk/manifest.json``). An env dir's files are hard
links to the store's read-only files where the file system allows (or
reflinks, or copies), so a change made through the env dir may have reached
the store itself; ``cpk env ENV --check`` names every such file, as ``cpk
store verify`` names the store's side (DESIGN.md, invariant 8).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentpkg.store.hashing import META_DIR, hash_file


@dataclass(frozen=True)
class ChangedFile:
    """One env-dir file that is no longer what was placed, and from where."""

    where: Path
    rel: str
    entry: str | None
    problem: str  # the whole line, starting with rel


def changed_files(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """One line per placed file or link that no longer is what was placed."""
    return [c.problem for c in changed_env_files(path, manifest)]


def env_dirs(roots_dir: Path, generations: Iterable[Path]) -> list[Path]:
    """Every env dir the store knows of: its gc roots and profile generations."""
    found: list[Path] = []
    try:
        names = sorted(os.listdir(roots_dir))
    except OSError:
        names = []
    for name in names:
        if name.startswith("envdir-"):
            try:
                found.append(Path(os.readlink(roots_dir / name)))
            except OSError:
                continue
    found += sorted(generations)
    return [d for d in found if (d / META_DIR / "manifest.json").is_file()]


def store_changes(roots_dir: Path, generations: Iterable[Path]) -> list[ChangedFile]:
    """What ``cpk store verify`` adds: every changed file of every known env dir.

    A hard-linked env-dir file is the store's inode, so the entry is
    corrupt too and verify names it; this names the env-dir side, so the
    user learns which environments and which files carry the change.
    """
    out: list[ChangedFile] = []
    for where in env_dirs(roots_dir, generations):
        try:
            manifest = json.loads((where / META_DIR / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        out += changed_env_files(where, manifest)
    return out


def changed_env_files(path: Path, manifest: Mapping[str, Any]) -> list[ChangedFile]:
    """Each placed file or link of the env dir at path that changed."""
    found: list[ChangedFile] = []
    files = manifest.get("files") or {}
    for rel, row in sorted(files.items()):
        problems: list[str] = []
        _check_one(path, rel, row, problems)
        found += [ChangedFile(path, rel, row.get("entry"), line) for line in problems]
    # Files a post-install step wrote (graphviz's config6a): from no entry,
    # but recorded with their hash when the step ran (elf/launchers.py).
    for rel, row in sorted((manifest.get("post_install") or {}).items()):
        problem = _check_step_file(path, rel, row)
        if problem:
            found.append(ChangedFile(path, rel, None, problem))
    return found


def _check_step_file(path: Path, rel: str, row: Mapping[str, Any]) -> str | None:
    """What is wrong with a file a post-install step wrote, or None."""
    origin = f"written by the post-install step {row.get('step', '?')}"
    full = path / rel
    try:
        st = os.lstat(full)
    except OSError:
        return f"{rel}: missing ({origin}; install again to rerun it)"
    if not stat.S_ISREG(st.st_mode):
        return f"{rel}: no longer a regular file ({origin})"
    try:
        digest, _ = hash_file(full)
    except OSError as exc:
        return f"{rel}: cannot read ({exc.strerror or exc})"
    if digest != row.get("sha256"):
        return f"{rel}: content changed ({origin})"
    return None


def _check_one(path: Path, rel: str, row: Mapping[str, Any], problems: list[str]) -> None:
    """Append what is wrong with one placed file or link to problems."""
    full = path / rel
    origin = f"{row.get('entry', '?')}:{row.get('path', '?')}"
    if row.get("generated"):  # written by cpk install, from no entry
        origin = f"cpk's {row['generated']}"
    if "link" in row:
        try:
            target = os.readlink(full)
        except OSError:
            problems.append(f"{rel}: missing (a link to {row['link']} was placed)")
            return
        if target != row["link"]:
            problems.append(f"{rel}: links to {target}, not to {row['link']} as placed")
        return
    try:
        st = os.lstat(full)
    except OSError:
        problems.append(f"{rel}: missing (placed from {origin})")
        return
    if not stat.S_ISREG(st.st_mode):
        problems.append(f"{rel}: no longer a regular file (placed from {origin})")
        return
    try:
        digest, _ = hash_file(full)
    except OSError as exc:
        problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
        return
    if digest != row.get("sha256"):
        shared = " and the store's file with it" if st.st_nlink > 1 else ""
        problems.append(f"{rel}: content changed{shared} (placed from {origin})")
    elif st.st_nlink > 1 and st.st_mode & 0o222:
        # A hard link shares its mode with the store's inode: a writable
        # one is a store file anyone may now change.
        problems.append(f"{rel}: writable, and it is the store's file (placed from {origin})")
