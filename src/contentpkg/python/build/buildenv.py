"""Throwaway, isolated Python environments for running PEP 517 hooks.

A build backend must see its declared build requirements and nothing else:
not the user's site-packages, not the user site, not whatever the interpreter
running cpk happens to have installed. A :class:`BuildEnv` is the smallest
thing CPython treats as a virtual environment (``pyvenv.cfg`` with
``include-system-site-packages = false`` and ``bin/python`` beside it), so the
interpreter's own ``site`` module does the isolating, exactly as it does for
``python -m venv``. The build requirements are not copied in: one ``.pth``
file in the environment's site-packages adds each wheel entry's
``site-packages/`` with :func:`site.addsitedir`, so the ``.pth`` files those
entries ship are honoured as they would be after a real install.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from contentpkg.context import Context
from contentpkg.errors import CpkError
from contentpkg.fs import discard
from contentpkg.python.interpreter import InterpreterInfo, interpreter_info
from contentpkg.store.entry import Entry

# Variables that would make the build interpreter look somewhere else for its
# standard library or modules, or make pip (if a backend shells out to it)
# obey the user's configuration instead of the build's.
_DROPPED_PREFIXES = ("PIP_",)
_DROPPED = frozenset(
    {"PYTHONPATH", "PYTHONHOME", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__", "CONDA_PREFIX"}
)

_PTH_NAME = "_cpk_build_env.pth"


def clean_environ(base: Mapping[str, str]) -> dict[str, str]:
    """An environment (``ctx.environ``) minus what would leak the user's setup in.

    ``PYTHONDONTWRITEBYTECODE`` and the user's other settings stay: only
    what redirects module lookup or configures pip is removed.
    """
    env = dict(base)
    for key in list(env):
        if key in _DROPPED or key.startswith(_DROPPED_PREFIXES):
            del env[key]
    return env


class BuildEnv:
    """A temporary virtual environment whose packages are store entries.

    Use as a context manager, or call :meth:`close`; the whole directory is
    removed then. ``parent`` places it inside another temporary directory
    (one build's scratch space) instead of the system's temporary directory.
    """

    def __init__(
        self,
        entries: Iterable[Entry],
        *,
        python: str | os.PathLike[str] | InterpreterInfo | None = None,
        parent: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # What hooks start from: the caller's Context's environment. None is
        # kept for callers not handed a Context yet (this process's).
        self.base_environ: Mapping[str, str] = (
            environ if environ is not None else Context.from_environ().environ
        )
        self.interpreter = (
            python if isinstance(python, InterpreterInfo) else interpreter_info(python)
        )
        self.entries: list[Entry] = list(entries)
        sites = []
        for entry in self.entries:
            if entry.kind != "wheel":
                raise CpkError(
                    f"{entry.dirname}: a {entry.kind} entry cannot join a Python build "
                    "environment; only wheel entries can"
                )
            site_dir = entry.path / "site-packages"
            if site_dir.is_dir():
                sites.append(site_dir)
        self._own_dir = tempfile.mkdtemp(prefix="cpk-build-env-", dir=parent)
        self.path = Path(self._own_dir)
        try:
            self._create(sites)
        except BaseException:
            self.close()
            raise

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    @property
    def site_packages(self) -> Path:
        return self.path / self.interpreter.site_packages

    def _create(self, sites: Sequence[Path]) -> None:
        # The same skeleton and scripts as a view's: what makes CPython treat
        # the directory as a venv, and console scripts on PATH (some backends
        # run tools such as cmake, ninja or cython by name).
        from contentpkg.python.envs.views import write_scripts, write_skeleton

        write_skeleton(self.path, self.interpreter, prompt="cpk-build")
        self.site_packages.mkdir(parents=True)
        # One import line, executed by site at start-up: addsitedir appends
        # each entry's site-packages and processes the .pth files it holds,
        # which a plain path line in a .pth file would not do. site exec()s
        # the line in a function's locals, which a comprehension's own scope
        # cannot see, hence map(). ascii() keeps the file ASCII whatever the
        # paths and the locale encoding are.
        paths = ", ".join(ascii(os.fspath(s)) for s in sites)
        line = f"import site; list(map(site.addsitedir, ({paths},)))\n" if sites else ""
        (self.site_packages / _PTH_NAME).write_text(line, encoding="ascii")
        write_scripts(self.bin_dir, self.python, self.entries)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a hook runs with: cleaned, venv active."""
        env = clean_environ(self.base_environ if base is None else base)
        env["VIRTUAL_ENV"] = os.fspath(self.path)
        env["PATH"] = os.pathsep.join(
            p for p in (os.fspath(self.bin_dir), env.get("PATH", os.defpath)) if p
        )
        return env

    def run(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        cwd: str | os.PathLike[str] | None = None,
        extra_environ: Mapping[str, str] | None = None,
        output: IO[bytes] | None = None,
    ) -> int:
        """Run cmd in this environment, stdout and stderr both into output
        (a file opened for binary writing); returns the exit status."""
        env = self.environ()
        env.update(extra_environ or {})
        sink: IO[bytes] | int = output if output is not None else subprocess.DEVNULL
        proc = subprocess.run(
            [os.fspath(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
        return proc.returncode

    def close(self) -> None:
        # Best effort: this runs while a build's own error propagates, which a
        # failure to clean up must not replace. fs.remove_tree handles what
        # backends leave behind (read-only directories, as copies of
        # read-only store content keep their modes).
        discard(self._own_dir)

    def __enter__(self) -> BuildEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
