"""An env dir's files against its manifest: what changed since cpk placed them.

``cpk install`` records every file it places with the entry and path it came
from and its sha256 (``.cpk/manifest.json``). An env dir's files are hard
links to the store's read-only files where the file system allows (or
reflinks, or copies), so a change made through the env dir may have reached
the store itself; ``cpk env ENV --check`` names every such file, as ``cpk
store verify`` names the store's side (DESIGN.md, invariant 8).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contentpkg.store.hashing import hash_file


def changed_files(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """One line per placed file or link that no longer is what was placed."""
    problems: list[str] = []
    files = manifest.get("files") or {}
    for rel, row in sorted(files.items()):
        full = path / rel
        origin = f"{row.get('entry', '?')}:{row.get('path', '?')}"
        if "link" in row:
            try:
                target = os.readlink(full)
            except OSError:
                problems.append(f"{rel}: missing (a link to {row['link']} was placed)")
                continue
            if target != row["link"]:
                problems.append(f"{rel}: links to {target}, not to {row['link']} as placed")
            continue
        try:
            st = os.lstat(full)
        except OSError:
            problems.append(f"{rel}: missing (placed from {origin})")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{rel}: no longer a regular file (placed from {origin})")
            continue
        try:
            digest, _ = hash_file(full)
        except OSError as exc:
            problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
            continue
        if digest != row.get("sha256"):
            shared = " and the store's file with it" if st.st_nlink > 1 else ""
            problems.append(f"{rel}: content changed{shared} (placed from {origin})")
        elif st.st_nlink > 1 and st.st_mode & 0o222:
            # A hard link shares its mode with the store's inode: a writable
            # one is a store file anyone may now change.
            problems.append(f"{rel}: writable, and it is the store's file (placed from {origin})")
    return problems
