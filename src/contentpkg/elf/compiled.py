"""Absolute paths compiled into programs and libraries that relocation cannot reach.

An env dir rewrites where the loader looks for libraries, but a program
that opens ``/usr/share/gnuplot/...`` or execs ``/usr/lib/graphviz/...``
keeps opening those very paths: on this machine they are the system's
copies (perhaps another version) or nothing at all. cpk cannot rewrite
such strings; it can find them and say so (nothing silent). The strings
are read from ``.rodata`` (where a C compiler puts string constants) and
``.dynstr``, and only those naming a file or directory of a package being
installed count: ``/usr/lib/x86_64-linux-gnu`` or ``/etc`` alone name every
package and none.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import re
from collections.abc import Iterable, Mapping

from contentpkg.elf.deb import map_path
from contentpkg.elf.reader import section_spans

#: Directories every package shares: a program naming one of these names a
#: search location, not a package's files.
_SHARED = frozenset(
    {
        "",
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libexec",
        "include",
        "share",
        "etc",
        "local",
        "games",
        "share/locale",
        "share/man",
        "share/doc",
        "share/info",
        "share/icons",
        "share/pixmaps",
        "share/applications",
        "share/fonts",
        "share/mime",
        "share/xml",
        "share/zoneinfo",
        "lib/locale",
    }
)
_PATH = re.compile(rb"/(?:usr|etc)/[A-Za-z0-9_.+@/-]+")

SYSTEM_COPY = "here the system's copy; use the union mode for an unmodified run"
ABSENT = "absent on this system"


def find_compiled_paths(
    elf_files: Mapping[str, tuple[str, str]], packaged: Iterable[str]
) -> list[tuple[str, list[str], str]]:
    """(absolute path, the placed files naming it, what they read there).

    ``elf_files`` maps each ELF file to scan to (how to show it, its entry);
    ``packaged`` holds every path of the installed entries (prefix layout:
    ``share/gnuplot``, ``etc/foo.conf``, directories too).
    """
    known = set(packaged)
    found: dict[str, set[str]] = {}
    for path, (shown, _entry) in sorted(elf_files.items()):
        for match in _paths(path):
            absolute = posixpath.normpath(match.decode("ascii"))
            rel = map_path(absolute.lstrip("/"))
            if rel in _SHARED or _is_library_dir(rel) or rel not in known:
                continue
            found.setdefault(absolute, set()).add(shown)
    out = []
    for absolute, readers in sorted(found.items()):
        state = SYSTEM_COPY if os.path.lexists(absolute) else ABSENT
        out.append((absolute, sorted(readers), state))
    return out


def _is_library_dir(rel: str) -> bool:
    # lib/x86_64-linux-gnu, lib/aarch64-linux-gnu: the triplet directories.
    parts = rel.split("/")
    return len(parts) == 2 and parts[0] == "lib" and parts[1].count("-") >= 2


def _paths(path: str) -> list[bytes]:
    """Every ``/usr/...`` or ``/etc/...`` in the file's string sections.

    Searched for directly (the pattern starts with a literal, which the
    regular expression engine skips to) rather than by listing every string
    first: ``.rodata`` of a large library holds megabytes.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return []
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as data:
                out: list[bytes] = []
                for offset, length in section_spans(data):
                    out += _PATH.findall(data, offset, offset + length)
                return out
    except (OSError, ValueError):
        return []
