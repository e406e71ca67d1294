"""Facts about a target interpreter: version, marker environment, wheel tags,
and what a build or a bytecode compile for it depends on.

The resolver, the sdist builder and the bytecode compiler need them for the
interpreter that will *run* the packages, which need not be the one running
cpk (``--python``). That interpreter is
asked once, with a small script, and its answer is cached under the cache
directory keyed by the executable's real path, size and mtime, so a new
interpreter at the same path (an upgrade) is asked again.

The target computes its own tags with ``packaging.tags`` (manylinux and
musllinux detection read the target's libc, which only the target can do
reliably); since ``packaging`` may not be installed there, the directory
holding cpk's own copy is appended to the target's ``sys.path`` for that one
run, after its standard library, so nothing of the target's is shadowed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from contentpkg.errors import CpkError

# Bumped whenever the probe's answer gains or changes a field, so that a
# cache file written by an older cpk is asked again rather than misread.

# The facts, as one function run in two places: in the target by the probe
# below (with -I -S: its standard library plus the appended packaging
# directory), and in this process for the running interpreter, so that both
# answers are made by the same code and cannot drift apart.
_FACTS = r"""
def facts():
    import importlib.util, os, platform, sys, sysconfig
    from packaging.markers import default_environment
    from packaging.tags import sys_tags

    gil = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    # A venv's interpreter cannot be the home of another venv, the real
    # installation's can: the venv's base, symlinks resolved (pyenv, uv and
    # Homebrew link their binaries from elsewhere).
    base = getattr(sys, "_base_executable", None) or sys.executable
    return {
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "markers": default_environment(),
        "tags": [str(t) for t in sys_tags()],
        "cache_tag": sys.implementation.cache_tag,
        "magic_number": importlib.util.MAGIC_NUMBER.hex(),
        "site_packages": "lib/python%d.%d%s/site-packages" % (*sys.version_info[:2], gil),
        "base_executable": os.path.realpath(base),
        "soabi": sysconfig.get_config_var("SOABI"),
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "platform": sysconfig.get_platform(),
    }
"""
_PROBE = (
    _FACTS
    + r"""
import json, sys
sys.path.append(sys.argv[1])
json.dump(facts(), sys.stdout)
"""
)


#: InterpreterInfo's fields, in its constructor's order.
_INFO_FIELDS = (
    "executable", "version", "implementation", "markers", "tags", "cache_tag",
    "site_packages", "magic_number", "base_executable", "soabi", "ext_suffix", "platform",
)  # fmt: skip


class InterpreterInfo:
    """What a resolver, an installer and a builder must know about a target
    interpreter.

    ``tags`` are the supported wheel tags, most preferred first, as strings
    (``cp311-cp311-manylinux_2_17_x86_64``); ``site_packages`` is relative to
    an environment's root (``lib/python3.11/site-packages``).

    A plain frozen class, not a dataclass: rebuilding a view on ``cpk run``
    needs one, and importing ``dataclasses`` (which loads ``inspect``) and
    generating the methods cost that path milliseconds. Not slotted, so
    ``cached_property`` can keep ``tag_ranks`` in the instance's dict.
    Equality ignores ``markers`` (they follow from the rest) and the hash
    also ``tags``, as the dataclass this was declared them.
    """

    executable: str  # as given (a venv's, a wrapper), made absolute
    version: str  # full version, "3.11.7"
    implementation: str  # sys.implementation.name, "cpython"
    markers: dict[str, str]
    tags: tuple[str, ...]
    cache_tag: str | None  # "cpython-311"; None when bytecode is disabled
    site_packages: str
    magic_number: str | None  # importlib.util.MAGIC_NUMBER in hex: the .pyc format
    base_executable: str  # the real installation's interpreter, not a venv's
    soabi: str | None  # sysconfig's SOABI, "cpython-311-x86_64-linux-gnu"
    ext_suffix: str | None  # sysconfig's EXT_SUFFIX, ".cpython-311-x86_64-linux-gnu.so"
    platform: str  # sysconfig.get_platform(), "linux-x86_64"

    def __init__(
        self,
        executable: str,
        version: str,
        implementation: str,
        markers: dict[str, str],
        tags: tuple[str, ...],
        cache_tag: str | None,
        site_packages: str,
        magic_number: str | None,
        base_executable: str,
        soabi: str | None,
        ext_suffix: str | None,
        platform: str,
    ) -> None:
        self.__dict__.update(
            executable=executable,
            version=version,
            implementation=implementation,
            markers=markers,
            tags=tags,
            cache_tag=cache_tag,
            site_packages=site_packages,
            magic_number=magic_number,
            base_executable=base_executable,
            soabi=soabi,
            ext_suffix=ext_suffix,
            platform=platform,
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"InterpreterInfo is frozen: cannot assign {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"InterpreterInfo is frozen: cannot delete {name!r}")

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in _INFO_FIELDS if n != "markers")

    def __eq__(self, other: object) -> bool:
        if type(other) is not InterpreterInfo:
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in _INFO_FIELDS if n not in ("markers", "tags")))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in _INFO_FIELDS)
        return f"InterpreterInfo({shown})"

    @property
    def version_info(self) -> tuple[int, ...]:
        """(3, 11, 7); a pre-release's "3.13.0rc1" gives (3, 13, 0)."""
        match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.version)
        return tuple(int(g) for g in match.groups() if g is not None) if match else ()

    @property
    def short_version(self) -> str:
        """ "3.11": the X.Y that names directories and environments."""
        return ".".join(self.version.split(".")[:2])

    @property
    def build_key(self) -> str:
        """Names what a wheel built by this interpreter can depend on.

        Two interpreters with the same implementation, ABI and platform build
        the same wheel from the same sdist (pip's wheel cache keys on the same
        facts), so they share cache slots; a patch release does not matter.
        """
        tag = self.cache_tag or "unknown"
        facts = [tag, self.soabi, self.ext_suffix, self.platform, self.short_version]
        digest = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]
        return f"{tag}-{self.platform}-{digest}"

    @cached_property
    def tag_ranks(self) -> dict[Any, int]:
        """packaging Tag -> position in :attr:`tags` (lower is better)."""
        from packaging.tags import Tag, parse_tag

        ranks: dict[Tag, int] = {}
        for i, text in enumerate(self.tags):
            for tag in parse_tag(text):
                ranks.setdefault(tag, i)
        return ranks

    def to_json(self) -> dict[str, Any]:
        return {
            "executable": self.executable,
            "version": self.version,
            "implementation": self.implementation,
            "markers": dict(self.markers),
            "tags": list(self.tags),
            "cache_tag": self.cache_tag,
            "site_packages": self.site_packages,
            "magic_number": self.magic_number,
            "base_executable": self.base_executable,
            "soabi": self.soabi,
            "ext_suffix": self.ext_suffix,
            "platform": self.platform,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], executable: str) -> InterpreterInfo:
        return cls(
            executable=executable,
            version=str(data["version"]),
            implementation=str(data["implementation"]),
            markers={str(k): str(v) for k, v in data["markers"].items()},
            tags=tuple(str(t) for t in data["tags"]),
            cache_tag=data.get("cache_tag"),
            site_packages=str(data["site_packages"]),
            magic_number=data.get("magic_number"),
            base_executable=str(data["base_executable"]),
            soabi=data.get("soabi"),
            ext_suffix=data.get("ext_suffix"),
            platform=str(data["platform"]),
        )


def _running() -> InterpreterInfo:
    namespace: dict[str, Any] = {}
    exec(_FACTS, namespace)  # our own constant: the probe's code, run here
    return InterpreterInfo.from_json(namespace["facts"](), sys.executable)


def find_python(python: str | os.PathLike[str]) -> Path:
    """The executable a ``--python`` value names: a path, a command, or "3.12"."""
    text = os.fspath(python)
    if os.sep in text or text.startswith("."):
        path = Path(text).expanduser()
        if not path.exists():
            raise CpkError(f"python {text}: no such file")
        return path.absolute()
    names = [text]
    if text.replace(".", "").isdigit():
        names.insert(0, f"python{text}")  # "3.12" means python3.12 on PATH
    import shutil  # only for a name to find on PATH: shutil loads bz2 and lzma

    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found).absolute()
    raise CpkError(f"python {text}: not found on PATH")


def interpreter_info(
    python: str | os.PathLike[str] | None = None, *, cache_dir: Path | None = None
) -> InterpreterInfo:
    """Facts about the interpreter python names; None means the running one.

    Every answer is cached on disk, keyed by the binary's real path, size
    and mtime: another interpreter is asked once by running the probe; the
    running one computes its facts in-process on a miss. The cache makes the
    running interpreter's facts one small file read on ``cpk run``'s hot
    path, instead of importing ``packaging.tags`` and probing the libc.
    """
    running = python is None or os.fspath(python) == sys.executable
    path = Path(sys.executable) if running else find_python(python)  # type: ignore[arg-type]
    try:
        real = path.resolve(strict=True)
        stat = real.stat()
    except OSError as exc:
        raise CpkError(f"python {python}: cannot read ({exc.strerror or exc})") from None
    from contentpkg.context import Bucket, Context
    from contentpkg.fs import write_cache

    if cache_dir is None:  # callers not handed a Context yet: this process's
        cache_dir = Context.from_environ().cache_dir
    # packaging's install is in the key: its tag logic is part of the answer.
    key_text = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0{_packaging_stamp()}"
    key = hashlib.sha256(key_text.encode()).hexdigest()
    cache_file = cache_dir / Bucket.INTERPRETERS.value / f"{key}.json"
    try:
        return InterpreterInfo.from_json(json.loads(cache_file.read_text()), str(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if running:
        info = _running()
        data = info.to_json()
    else:
        data = _probe(path, python)  # type: ignore[arg-type]
        info = InterpreterInfo.from_json(data, str(path))
    # A cache (fs's rule): a write that fails only costs the next run a probe.
    write_cache(cache_file, json.dumps(data, sort_keys=True).encode())
    return info


def _packaging_tags() -> Path:
    """Where ``packaging.tags`` is, found without importing anything.

    A cache hit must not load packaging (a memo miss on ``cpk run`` takes
    this path); ``find_spec`` of a top-level package only searches sys.path.
    """
    spec = importlib.util.find_spec("packaging")
    if spec is None or spec.origin is None:
        raise CpkError("packaging is not installed beside cpk; reinstall cpk")
    return Path(spec.origin).resolve().parent / "tags.py"


def _packaging_stamp() -> str:
    """packaging's tag logic as installed: its path, size and mtime (an upgrade changes them)."""
    tags = _packaging_tags()
    try:
        st = tags.stat()
    except OSError:
        return str(tags)
    return f"{tags}:{st.st_size}:{st.st_mtime_ns}"


def _probe(path: Path, python: str | os.PathLike[str]) -> dict[str, Any]:
    # Here, not at the top: a warm start answers from the cache, and
    # subprocess (with selectors and signal) is a noticeable part of what
    # ``cpk run`` would otherwise load to build a view.
    import subprocess

    packaging_dir = str(_packaging_tags().parent.parent)
    try:
        proc = subprocess.run(
            [str(path), "-I", "-S", "-c", _PROBE, packaging_dir],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CpkError(f"python {python}: cannot run it ({exc})") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise CpkError(
            f"python {python}: not a working Python interpreter (exit {proc.returncode})",
            details=tail,
        )
    try:
        data = json.loads(proc.stdout)
        InterpreterInfo.from_json(data, str(path))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CpkError(f"python {python}: unexpected answer to the interpreter probe") from None
    return data
