"""The import finder every view's interpreter loads at start (``_cpk_finder``).

This file is not imported by cpk: a view gets a copy of it as
``site-packages/_cpk_finder.py`` (with its bytecode), and one ``.pth`` line,
``import _cpk_finder; _cpk_finder.install(sitedir)``, which ``site`` runs
while it adds the view's site-packages. So it uses the standard library
only, and only what is already loaded at that point.

Why: CPython's ``FileFinder`` stats a directory on every lookup to see
whether it changed, and stats up to four ``__init__`` names for every
package it finds. In a plain virtualenv that is what an import costs; in a
view each of those paths also crosses the package's symlink into the store,
which made importing 1.03-1.06x slower than the same packages in uv's
``.venv``. Below the view's site-packages nothing changes: the view is
immutable once published and its links lead into immutable store entries.
So this finder (a ``FileFinder`` in every other respect) reads each
directory once per process and answers from that listing: no directory
stat per lookup, no stat per candidate ``__init__``. The site-packages
directory itself is still checked for changes as ``FileFinder`` does, so a
package installed into the view by hand is found.

Paths, ``__file__``, ``__path__``, loaders (the standard ``SourceFileLoader``
and friends) and specs are exactly what ``FileFinder`` would give: only the
number of system calls changes. ``importlib.invalidate_caches()`` forgets
the listings. Anything unexpected at install time leaves the standard
finder in place.
"""

import sys

_listings = {}  # directory -> frozenset of names, or None if not a directory
_prefixes = []  # the site-packages directories this finder serves


def _listing(path):
    try:
        return _listings[path]
    except KeyError:
        pass
    try:
        names = frozenset(_listdir(path))
    except OSError:
        names = None
    _listings[path] = names
    return names


def _make_finder_class(base, module_spec):
    class ViewFinder(base):
        """``FileFinder`` over directories known not to change."""

        def find_spec(self, fullname, target=None):
            path = self.path
            if path in _prefixes:
                # The one directory an installer could still add to.
                try:
                    mtime = _stat(path).st_mtime
                except OSError:
                    mtime = -1
                if mtime != self._path_mtime:
                    _listings.pop(path, None)
                    self._path_mtime = mtime
            cache = _listing(path) or ()
            tail = fullname.rpartition(".")[2]
            namespace = None
            if tail in cache:
                base_path = path + "/" + tail
                inner = _listing(base_path)
                if inner is not None:
                    for suffix, loader_class in self._loaders:
                        if "__init__" + suffix in inner:
                            init = base_path + "/__init__" + suffix
                            return self._get_spec(loader_class, fullname, init, [base_path], target)
                    namespace = base_path
            for suffix, loader_class in self._loaders:
                if tail + suffix in cache:
                    full_path = path + "/" + tail + suffix
                    return self._get_spec(loader_class, fullname, full_path, None, target)
            if namespace is not None:
                spec = module_spec(fullname, None)
                spec.submodule_search_locations = [namespace]
                return spec
            return None

        def invalidate_caches(self):
            _listings.clear()
            self._path_mtime = -1

    return ViewFinder


def _hook_for(finder_class, details):
    def view_path_hook(path):
        for prefix in _prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                if _listing(path) is None:
                    raise ImportError("not a directory", path=path)
                return finder_class(path, *details)
        raise ImportError("not in a view", path=path)

    return view_path_hook


def install(sitedir):
    """Serve imports below sitedir (a view's site-packages) with the finder."""
    global _listdir, _stat
    try:
        external = sys.modules["_frozen_importlib_external"]
        bootstrap = sys.modules["_frozen_importlib"]
        posix = sys.modules["posix"]
        _listdir, _stat = posix.listdir, posix.stat
        details = [
            (external.ExtensionFileLoader, external.EXTENSION_SUFFIXES),
            (external.SourceFileLoader, external.SOURCE_SUFFIXES),
            (external.SourcelessFileLoader, external.BYTECODE_SUFFIXES),
        ]
        if not _prefixes:
            finder_class = _make_finder_class(external.FileFinder, bootstrap.ModuleSpec)
            sys.path_hooks.insert(0, _hook_for(finder_class, details))
    except (KeyError, AttributeError):
        return  # not the CPython this was written for: keep the standard finder
    if sitedir not in _prefixes:
        _prefixes.append(sitedir)
    # The standard finder made for sitedir while site imported this module.
    sys.path_importer_cache.pop(sitedir, None)
