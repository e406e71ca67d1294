"""Every namespace's registrations with the store, listed in one place.

``store/`` imports nothing above it, so gc learns its roots and verify its
per-kind checks from a :class:`~contentpkg.store.registry.Registry` it is
handed. This module builds that registry from each namespace; commands that
collect or verify pass :func:`registry` down. It is explicit on purpose: no
registration depends on which modules a command happened to import first.
"""

from __future__ import annotations

from contentpkg.store.registry import Registry


def registry() -> Registry:
    """What ``python/``, ``elf/`` and ``env/`` register: roots, areas, checks."""
    from contentpkg.elf.checks import registry as elf
    from contentpkg.env.roots import registry as env
    from contentpkg.python.envs.roots import registry as python

    return Registry.combine(python(), elf(), env())
