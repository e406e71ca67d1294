"""``cpk export``: the lock's chosen packages as ``requirements.txt`` (with
``--hash`` lines, for ``pip install --require-hashes``) or as a PEP 751
``pylock.toml`` holding only those packages."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from contentpkg.python.lock import Lock, LockedPackage

FORMATS = ("requirements.txt", "pylock.toml")


def _hashes(package: LockedPackage) -> list[str]:
    files = [*package.wheels, *([package.sdist] if package.sdist else [])]
    found = {f"{algo}:{value}" for f in files for algo, value in f.hashes.items()}
    return sorted(found)


def to_requirements(lock: Lock, packages: list[LockedPackage], base: Path) -> str:
    """requirements.txt text: ``name==version`` with every file's hash; a
    local checkout by its path (``-e`` when editable), relative to base."""
    lines = [f"# exported by cpk from {lock.path.name}; install with pip --require-hashes"]
    for package in sorted(packages, key=lambda p: p.name):
        if package.directory is not None:
            path = os.path.relpath(package.directory, base)
            path = path if path.startswith(".") else f"./{path}"
            lines.append(f"-e {path}" if package.editable else path)
            continue
        hashes = _hashes(package)
        line = f"{package.name}=={package.version}"
        lines.append(line + "".join(f" \\\n    --hash={h}" for h in hashes))
    return "\n".join(lines) + "\n"


def to_pylock(lock: Lock, packages: list[LockedPackage]) -> str:
    """The lock file with only the chosen packages (everything else as it was)."""
    import tomli_w

    data = tomllib.loads(lock.path.read_text(encoding="utf-8"))
    keep = {p.name for p in packages}
    from contentpkg.python.names import canonical_name

    data["packages"] = [
        p for p in data.get("packages", []) if canonical_name(str(p.get("name"))) in keep
    ]
    return tomli_w.dumps(data)
