"""Make a deleted view again from what the run memo recorded.

A view is derived data: deleting ``views/`` (or a ``gc`` that collected an
unused view) leaves every entry in the store and every input of the last
``cpk run`` as it was. The memo (:mod:`contentpkg.python.run.memo`) has
then checked, by their stats, the project's files, the lock, the
interpreter, the options and the settings: the full path would decide the
same view again, after building the parser and the context and reading the
project and its lock. This module makes it from the memo's recipe instead,
under the same collector lock, and relinks the project's ``.venv``.

Two ways, the first one tried first:

* the view's plan (:mod:`.replay`), kept in the link pool when the view was
  built: one ``mkdir`` per directory and one ``link(2)`` per name, with the
  standard library's ``os``, ``marshal`` and ``fcntl`` alone. This path
  imports neither the builder nor the store's modules (no ``pathlib``,
  ``typing``, ``json``, ``hashlib``): they cost more than the whole replay;
* when there is no plan, or it cannot serve (a pool name collected), the
  builder itself (:func:`.views.ensure_view`), which writes a new plan.

Anything that does not match the recipe (an entry gone from the store, a
view key that comes out differently, a ``.venv`` that is not cpk's link,
the gc root changed) returns None, and the full path takes over and says
what it finds.
"""

from __future__ import annotations

import os
import time

# Not ``collections.abc`` at run time: this runs on ``cpk run``'s path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from contentpkg.python.envs.views import View


def rebuild_view(recipe: Mapping[str, object]) -> tuple[str, list[str]] | None:
    """Make the recipe's view and link ``.venv`` to it; return (the summary
    line, the conflicts' warnings), or None when the full path must decide."""
    started = time.monotonic()
    try:
        home = str(recipe["home"])
        store_root = str(recipe["store"])
        view = str(recipe["view"])
        dot = str(recipe["venv"])
        root_link, root_target = (str(p) for p in recipe["root"])  # type: ignore[attr-defined]
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
    paths = []
    for name in names:
        # The first layer holding it, as the store's own lookup goes.
        parent = next((r for r in roots if os.path.isdir(f"{r}/{name}")), None)
        if parent is None:
            return None  # collected meanwhile: the full path fetches it again
        paths.append(f"{parent}/{name}")
    warnings = _replay(home, store_root, view, paths, dot)
    if warnings is None:
        built = _build(recipe, home, store_root, view, names, roots, dot)
        if built is None:
            return None
        warnings = [c.describe() for c in built.conflicts] if built.created else []
    return f"Composed environment in {_elapsed(time.monotonic() - started)}", warnings


def _replay(home: str, store_root: str, view: str, paths: list[str], dot: str) -> list[str] | None:
    """The view made from its plan, ``.venv`` linked; the warnings to say
    again (none when another process made the view first), or None when
    the plan cannot serve and the builder must."""
    from contentpkg.python.envs.replay import LINKS, collector_lock, load, make

    pool = f"{home}/{LINKS}"
    plan = load(pool, os.path.basename(view), paths)
    if plan is None:
        return None
    lock = collector_lock(store_root)
    if lock is None:
        return None
    try:
        made = False if os.path.isdir(view) else make(plan, pool, view)
        if made is None:
            return None
        if not os.path.lexists(dot):
            _link(dot, view)
    except OSError:
        return None
    finally:
        os.close(lock)
    return list(plan["warnings"]) if made is True else []


def _link(dot: str, view: str) -> None:
    """``.venv`` -> view in one rename, as ``fs.replace_symlink`` makes it
    (not durable, as the full path makes it: a lost link is made again);
    written out here so that this path does not load fs's pathlib."""
    directory, _, name = dot.rpartition("/")
    tmp = f"{directory}/.tmp-{name}.{os.getpid()}.{os.urandom(4).hex()}"
    os.symlink(view, tmp)
    try:
        os.replace(tmp, dot)
    except OSError:
        os.unlink(tmp)
        raise


def _build(
    recipe: Mapping[str, object],
    home: str,
    store_root: str,
    view: str,
    names: list[str],
    roots: list[str],
    dot: str,
) -> View | None:
    """The view made by the builder, as the full path makes it."""
    from pathlib import Path

    from contentpkg.errors import CpkError
    from contentpkg.fs import replace_symlink
    from contentpkg.python.envs.views import ensure_view
    from contentpkg.python.interpreter import InterpreterInfo
    from contentpkg.store import Entry
    from contentpkg.store.entry import parse_dirname
    from contentpkg.store.layers import LocalStore, Store, SystemStore
    from contentpkg.store.locks import collector_lock

    try:
        # The recipe's facts hold no wheel tags and no markers, which a view
        # never asks for (plan.rebuild_recipe leaves them out).
        python = InterpreterInfo.from_json(
            dict(recipe["python"]),  # type: ignore[call-overload]
            str(recipe["python"]["executable"]),  # type: ignore[index]
        )
    except (KeyError, TypeError, ValueError):
        return None
    user = LocalStore(Path(store_root))
    entries = []
    layers: dict[str, LocalStore | SystemStore] = {os.fspath(user.root): user}
    for name in names:
        parts = parse_dirname(name)
        parent = next((r for r in roots if os.path.isdir(f"{r}/{name}")), None)
        if parts is None or parent is None:
            return None
        layer = layers.setdefault(parent, SystemStore(Path(parent)))
        entries.append(Entry(Path(f"{parent}/{name}"), *parts, layer=layer))
    store = Store(Path(home), [user])
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
    return built


def _elapsed(seconds: float) -> str:
    """``progress.elapsed``'s wording (a test holds them equal), without
    importing ``progress``, whose protocols load ``typing``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.1f}s"
