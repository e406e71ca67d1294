"""contentpkg: a user-space, content-addressed package manager.

Every package version is stored once, immutable, under ``name,version,hash``
and composed per process into the environment a program needs.

``contentpkg.use("rich>=13")`` adds packages to the running interpreter
(:func:`contentpkg.python.use.use`). It is loaded on first use, so
``import contentpkg`` stays as cheap as a version string.
"""

# No ``from __future__ import annotations`` nor ``typing``: each would cost
# more than the rest of this file. ``TYPE_CHECKING = False`` is the idiom
# type checkers recognise without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from contentpkg.errors import CpkError
    from contentpkg.python.use import use

__version__ = "0.1.0"
__all__ = ["CpkError", "__version__", "use"]


def __getattr__(name: str) -> object:
    # PEP 562: the attribute is imported the first time someone asks for it.
    if name == "use":
        from contentpkg.python.use import use

        return use
    if name == "CpkError":
        from contentpkg.errors import CpkError

        return CpkError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
