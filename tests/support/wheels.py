"""Build real wheels and sdists on the fly, for tests that must not touch PyPI.

Wheels are ordinary zip files with METADATA, WHEEL and a RECORD of urlsafe
base64 sha256 hashes, exactly as PEP 427 / the binary distribution format
spec describe; hooks let a test tamper with any of them to build the
malicious variants. Sdists carry a tiny PEP 517 backend of their own (stdlib
only, via ``backend-path``) unless the test names another backend.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import textwrap
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

Files = Mapping[str, bytes | str]


def _b(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "_", name).lower()


def metadata_text(
    name: str,
    version: str,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    provides_extra: Iterable[str] = (),
    summary: str = "",
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {e}" for e in provides_extra]
    lines += [f"Requires-Dist: {r}" for r in requires_dist]
    return "\n".join(lines) + "\n\n"


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    files: Files | None = None,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    provides_extra: Iterable[str] = (),
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    tag: str = "py3-none-any",
    data: Files | None = None,
    tamper: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]] | None = None,
    record: bool = True,
) -> Path:
    """Write ``{name}-{version}-{tag}.whl`` into dest and return its path.

    ``files`` maps archive paths (relative to the wheel root) to content; the
    default is one package ``<name>/__init__.py`` that knows its version.
    ``data`` maps paths below ``<name>-<version>.data/`` (``scripts/x``,
    ``data/share/...``, ``headers/...``). ``tamper`` receives the final list
    of (arcname, bytes) including RECORD and returns what is written.
    """
    dist = normalize(name)
    dist_info = f"{dist}-{version}.dist-info"
    if files is None:
        files = {f"{dist}/__init__.py": f"__version__ = {version!r}\n"}
    members: list[tuple[str, bytes]] = [(path, _b(content)) for path, content in files.items()]
    for path, content in (data or {}).items():
        members.append((f"{dist}-{version}.data/{path}", _b(content)))
    meta = metadata_text(name, version, requires_dist, requires_python, provides_extra)
    members.append((f"{dist_info}/METADATA", meta.encode()))
    wheel_file = f"Wheel-Version: 1.0\nGenerator: cpk-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    members.append((f"{dist_info}/WHEEL", wheel_file.encode()))
    if entry_points:
        text = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
            for group, items in entry_points.items()
        )
        members.append((f"{dist_info}/entry_points.txt", text.encode()))
    if record:
        rows = [f"{path},{record_hash(content)},{len(content)}" for path, content in members]
        rows.append(f"{dist_info}/RECORD,,")
        members.append((f"{dist_info}/RECORD", ("\n".join(rows) + "\n").encode()))
    if tamper is not None:
        members = tamper(members)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, content in members:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return path


def wheel_metadata(path: Path) -> bytes:
    """The METADATA member of a wheel (what an index serves per PEP 658)."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name)


# A complete PEP 517 backend in the standard library only, shipped inside the
# sdist (backend-path), so sdist builds need nothing from any index.
INLINE_BACKEND = textwrap.dedent(
    '''
    """Minimal PEP 517 backend for cpk's tests: packages src/ as a wheel."""
    import base64, hashlib, os, zipfile

    _NAME, _VERSION = open("PKG-INFO").read().split("\\n")[1:3]
    _NAME = _NAME.split(": ", 1)[1]
    _VERSION = _VERSION.split(": ", 1)[1]
    _DIST = _NAME.replace("-", "_").lower()

    def _hash(data):
        d = hashlib.sha256(data).digest()
        return "sha256=" + base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    def get_requires_for_build_wheel(config_settings=None):
        return [line.strip() for line in open("build-requires.txt") if line.strip()]

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        if os.path.exists("FAIL_BUILD"):
            print("inline backend: refusing to build, FAIL_BUILD present")
            raise SystemExit(3)
        for req in get_requires_for_build_wheel():
            __import__(req.split(">")[0].split("=")[0].replace("-", "_"))
        members = []
        for root, _, files in os.walk("src"):
            for f in sorted(files):
                full = os.path.join(root, f)
                members.append((os.path.relpath(full, "src"), open(full, "rb").read()))
        info = f"{_DIST}-{_VERSION}.dist-info"
        meta = open("PKG-INFO", "rb").read()
        members.append((f"{info}/METADATA", meta))
        members.append((f"{info}/WHEEL",
                        b"Wheel-Version: 1.0\\nGenerator: inline\\nRoot-Is-Purelib: true\\n"
                        b"Tag: py3-none-any\\n"))
        rows = [f"{p},{_hash(c)},{len(c)}" for p, c in members] + [f"{info}/RECORD,,"]
        members.append((f"{info}/RECORD", ("\\n".join(rows) + "\\n").encode()))
        name = f"{_DIST}-{_VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
            for p, c in members:
                zf.writestr(p, c)
        return name
    '''
)


def make_sdist(
    dest: Path,
    name: str,
    version: str,
    *,
    files: Files | None = None,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    build_requires: Iterable[str] = (),
    fail: bool = False,
) -> Path:
    """Write ``{name}-{version}.tar.gz`` with an inline PEP 517 backend.

    ``files`` are placed under ``src/`` and become the wheel's content;
    ``build_requires`` are returned by ``get_requires_for_build_wheel`` and
    imported by the backend during the build, so a test can prove they were
    installed into the build environment. ``fail`` makes the build fail.
    """
    dist = normalize(name)
    if files is None:
        files = {f"{dist}/__init__.py": f"__version__ = {version!r}\nBUILT_FROM_SDIST = True\n"}
    pkg_info = metadata_text(name, version, requires_dist, requires_python)
    root = f"{dist}-{version}"
    members: dict[str, bytes] = {
        "PKG-INFO": pkg_info.encode(),
        "pyproject.toml": (
            b'[build-system]\nrequires = []\nbuild-backend = "inline_backend"\n'
            b'backend-path = ["."]\n'
        ),
        "inline_backend.py": INLINE_BACKEND.encode(),
        "build-requires.txt": "".join(f"{r}\n" for r in build_requires).encode(),
    }
    if fail:
        members["FAIL_BUILD"] = b""
    for path, content in files.items():
        members[f"src/{path}"] = _b(content)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for arcname, content in sorted(members.items()):
            info = tarfile.TarInfo(f"{root}/{arcname}")
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 1577836800
            tf.addfile(info, io.BytesIO(content))
    return path
