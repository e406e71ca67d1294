"""Views of a lock for people and other tools: ``cpk tree`` and ``cpk export``.

Both read the lock through :mod:`contentpkg.python.lock` and take its
packages as ``cpk sync`` does (:func:`contentpkg.python.lock.selection.applicable`,
default groups included), so what ``tree`` shows is what ``export`` writes
and what ``sync`` installs.
"""
