"""Project names, normalised once (PEP 503), for code that must stay light.

``packaging.utils.canonicalize_name`` is the reference and is used wherever
``packaging`` is loaded anyway (the resolver, the index client, wheel
installation). This module is for the readers on ``cpk run``'s path (the
project's inputs, the lock), which must not pay ~17 ms to import
``packaging``; both spell a name the same way.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: runs of ``-``, ``_`` and ``.`` become one ``-``, lower case.

    Names cpk wrote are normalised already, and skipping the regex for them
    is a third of a warm lock read.
    """
    if name.islower() and "_" not in name and "." not in name and "--" not in name:
        return name
    return _SEPARATORS.sub("-", name).lower()


def dist_info_name(name: str) -> str:
    """The name as a wheel's file name and ``.dist-info`` directory spell it.

    The binary distribution format escapes the normalised name with ``_``
    for ``-`` (``my_project-1.0.dist-info``).
    """
    return _SEPARATORS.sub("_", name).lower()
