"""Views of a lock for people and other tools: ``cpk tree`` and ``cpk export``.

Both read the lock through :mod:`contentpkg.python.lock` and choose its
packages the same way (:mod:`.selection`), so what ``tree`` shows is what
``export`` writes.
"""
