"""What the ELF namespace registers with the store: the check of ELF records.

An ELF entry's metadata (``elf``: per file, its sha256, RUNPATH, SONAME,
DT_NEEDED and the hash of the file before patching) lies outside the content
hash, so ``cpk store verify`` asks this check to compare it with the files.
"""

from __future__ import annotations

from typing import Any

from contentpkg.errors import CpkError
from contentpkg.store import lookup
from contentpkg.store.entry import Entry
from contentpkg.store.registry import Registry


class ElfRecordCheck:
    """Check what an ELF entry says of each file against the file itself.

    The stored file must hash as recorded and still carry the recorded
    RUNPATH, SONAME and DT_NEEDED (what the loader will read); its hash
    before patching must be a well-formed sha256 that the store's file table
    maps back to it, so ``cpk identify`` of the original keeps working.
    """

    def problems(self, entry: Entry, actual: dict[str, str]) -> list[str]:
        try:
            elf: dict[str, Any] = entry.metadata.get("elf") or {}
        except CpkError:  # unreadable metadata is the store's own finding
            return []
        if not elf:
            return []
        from contentpkg.elf.reader import ElfError, read_elf  # only ELF entries need it

        problems = []
        for rel, facts in sorted(elf.items()):
            if actual.get(rel) != facts.get("sha256"):
                problems.append(f"{rel}: hash differs from the ELF record")
                continue
            try:
                info = read_elf(entry.path / rel)
            except ElfError as exc:
                problems.append(f"{rel}: {str(exc).split(': ', 1)[-1]}")
                continue
            for key, value in (
                ("runpath", info.runpath),
                ("soname", info.soname),
                ("needed", list(info.needed)),
            ):
                if facts.get(key) != value:
                    problems.append(f"{rel}: {key} is {value!r}, recorded {facts.get(key)!r}")
            original = str(facts.get("original_sha256", ""))
            if len(original) != 64 or original.strip("0123456789abcdef"):
                problems.append(f"{rel}: no valid hash of the original file recorded")
            elif original != facts.get("sha256"):
                rows = lookup.find_files(entry.layer.root, original, writable=False)
                if rows is not None and (entry.dirname, rel) not in rows:
                    problems.append(f"{rel}: the original's hash is missing from the file table")
        return problems


#: Shared env dirs (``cpk run --with-elf``) live under the home's ``envs/``.
SHARED_ENVS = "envs"


def registry() -> Registry:
    """The ELF namespace's registrations: its record check, its shared env dirs."""
    return Registry(checks=(ElfRecordCheck(),), environment_areas=(SHARED_ENVS,))
