"""What the env namespace registers with the store's gc: profile generations.

Every generation of every profile (``profiles/<name>.gens/<N>``) is a root
for as long as it exists, through its ``.cpk/refs``: old generations keep
their entries until deleted. They are walked rather than linked under
``roots/``: a generation needs no second record that could drift from it,
and its number directory appearing (by rename) or going (by rename) is
exactly when it starts and stops counting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from contentpkg.env.profiles import PROFILES
from contentpkg.store.registry import Registry


class ProfileGenerations:
    """Every complete generation of every profile under a home."""

    def root_dirs(self, home: Path) -> Iterator[Path]:
        profiles = home / PROFILES
        try:
            # Hidden names (staging, half-deleted) are not generations.
            gens_dirs = [d for d in os.listdir(profiles) if not d.startswith(".")]
        except FileNotFoundError:
            return
        for gens in gens_dirs:
            if os.path.islink(profiles / gens):
                continue  # an alias: its target is one of the generations walked here
            try:
                numbers = os.listdir(profiles / gens)
            except (NotADirectoryError, FileNotFoundError):
                continue
            for number in numbers:
                if number.isdigit():
                    yield profiles / gens / number


def registry() -> Registry:
    """The env namespace's registrations: generations, and the unions' farms.

    A union's farm (``unions/<key>``, rooted as ``roots/union-<key>``) keeps
    the entries its ``.cpk/refs`` lists; it is touched on each use and
    lapses, with its root, once unused for ``FARM_MAX_AGE``; a farm no root
    reaches is swept with the other environments. The images of entries gc
    removes go with them.
    """
    from contentpkg.env.union.compose import FARM_MAX_AGE, ROOT_PREFIX, UNIONS
    from contentpkg.env.union.images import ImageGarbage
    from contentpkg.store.registry import ExpiringRoots

    return Registry(
        root_sources=(ProfileGenerations(),),
        expiring=(ExpiringRoots(ROOT_PREFIX, FARM_MAX_AGE),),
        environment_areas=(UNIONS,),
        derived=(ImageGarbage(),),
    )
