"""The content-addressed store: entries, hashing, layers, locking, verify, gc.

Only the light, read-side names are exported here; writers import
``contentpkg.store.add`` and ``contentpkg.store.gc`` themselves.
"""

from contentpkg.store.entry import Entry, Spec
from contentpkg.store.layers import Layer, Store

__all__ = ["Entry", "Layer", "Spec", "Store"]
