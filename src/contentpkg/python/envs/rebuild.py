"""Make a deleted view again from what the run memo recorded.

A view is derived data: deleting ``views/`` (or a ``gc`` that collected an
unused view) leaves every entry in the store and every input of the last
``cpk run`` as it was. The memo (:mod:`contentpkg.python.run.memo`) has
then checked, by their stats, the project's files, the lock, the
interpreter, the options and the settings: the full path would decide the
same view again, after building the parser and the context and reading the
project and its lock. This module builds it from the memo's recipe instead,
with the same builder (:func:`.views.ensure_view`), under the same
collector lock, and relinks the project's ``.venv``.

Anything that does not match the recipe (an entry gone from the store, a
view key that comes out differently, a ``.venv`` that is not cpk's link,
the gc root changed) returns None, and the full path takes over and says
what it finds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.python.envs.views import ensure_view
from contentpkg.python.interpreter import InterpreterInfo
from contentpkg.store import Entry
from contentpkg.store.entry import parse_dirname
from contentpkg.store.layers import LocalStore, Store, SystemStore
from contentpkg.store.locks import collector_lock


def rebuild_view(recipe: Mapping[str, object]) -> tuple[str, list[str]] | None:
    """Build the recipe's view and link ``.venv`` to it; return (the summary
    line, the conflicts' warnings), or None when the full path must decide."""
    from contentpkg.fs import replace_symlink
    from contentpkg.progress import elapsed

    started = time.monotonic()
    try:
        home = Path(str(recipe["home"]))
        user = LocalStore(Path(str(recipe["store"])))
        view = str(recipe["view"])
        dot = str(recipe["venv"])
        root_link, root_target = (str(p) for p in recipe["root"])  # type: ignore[attr-defined]
        # The recipe's facts hold no wheel tags and no markers, which a view
        # never asks for (plan.rebuild_recipe leaves them out).
        python = InterpreterInfo.from_json(
            dict(recipe["python"]),  # type: ignore[call-overload]
            str(recipe["python"]["executable"]),  # type: ignore[index]
        )
        names = [str(n) for n in recipe["entries"]]  # type: ignore[attr-defined]
        roots = [str(r) for r in recipe["layers"]]  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError):
        return None
    # The .venv and its root as the full path left them; anything else
    # (the user's own .venv, a moved root) is the full path's to judge.
    if os.path.lexists(dot) and not (os.path.islink(dot) and os.readlink(dot) == view):
        return None
    try:
        if os.readlink(root_link) != root_target:
            return None
    except OSError:
        return None
    entries = []
    layers: dict[str, LocalStore | SystemStore] = {os.fspath(user.root): user}
    for name in names:
        parts = parse_dirname(name)
        # The first layer holding it, as the store's own lookup goes.
        parent = next((r for r in roots if os.path.isdir(f"{r}/{name}")), None)
        if parts is None or parent is None:
            return None  # collected meanwhile: the full path fetches it again
        layer = layers.setdefault(parent, SystemStore(Path(parent)))
        entries.append(Entry(Path(f"{parent}/{name}"), *parts, layer=layer))
    store = Store(home, [user])
    try:
        with collector_lock(user.root):
            built = ensure_view(store, entries, python)
            if os.fspath(built.path) != view:
                return None  # the view's key rule changed: not this recipe's view
            if not os.path.lexists(dot):
                # Not durable, as the full path makes it: a lost link is made again.
                replace_symlink(dot, view, durable=False)
    except (OSError, CpkError):
        return None
    conflicts = built.conflicts if built.created else []
    summary = f"Composed environment in {elapsed(time.monotonic() - started)}"
    return summary, [c.describe() for c in conflicts]
