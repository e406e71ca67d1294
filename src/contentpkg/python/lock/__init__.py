"""The project's lock: a PEP 751 ``pylock.toml``, read, rendered and written.

Callers import from here; the module behind it may change.
"""

from contentpkg.python.lock.pylock import (
    LOCK_FILENAME,
    Lock,
    LockedPackage,
    lock_to_requirements_pins,
    read_lock,
    render_lock,
    write_lock,
)

__all__ = [
    "LOCK_FILENAME",
    "Lock",
    "LockedPackage",
    "lock_to_requirements_pins",
    "read_lock",
    "render_lock",
    "write_lock",
]
