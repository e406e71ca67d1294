"""contentpkg: a user-space, content-addressed package manager.

Every package version is stored once, immutable, under ``name,version,hash``
and composed per process into the environment a program needs.
"""

__version__ = "0.1.0"
