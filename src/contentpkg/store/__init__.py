"""The content-addressed store: entries, hashing, layers, locking, verify, gc.

Only the light, read-side names are exported here; writers import
``contentpkg.store.add`` and ``contentpkg.store.gc`` themselves. The
interfaces every store implements are in ``contentpkg.store.interfaces``.
"""

from contentpkg.store.entry import Entry, Spec
from contentpkg.store.layers import Layer, LocalStore, ProjectStore, Store, SystemStore

__all__ = ["Entry", "Layer", "LocalStore", "ProjectStore", "Spec", "Store", "SystemStore"]
