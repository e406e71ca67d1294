"""The memo that lets a warm ``cpk run`` exec without reading anything twice.

Once ``cpk run`` has prepared an environment, the answer only changes when
one of its inputs does: the project's files (``pyproject.toml``, the
requirements files, a script, local checkouts' metadata), the lock, the
interpreter, the options and the ``CPK_*`` environment, or the project
files that would be found instead (a ``pyproject.toml`` appearing between
here and the project). The memo records the stat of each input
(mtime, size, inode) and the environment it led to; the next run with the
same options stats them, checks that the environment is still there, and
execs. No TOML is parsed, no lock is read, nothing but the standard library
is imported: this module and :func:`exec_in` are all the hot path loads.

Anything unexpected (an option this parser does not know, a missing or
stale memo, a changed file) returns to the full path, which checks
everything and writes a new memo.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from collections.abc import Iterable, Sequence

MEMO_FORMAT = 1
MEMO_DIR = "run-memo"

#: ``cpk run`` options taking a value, and flags; anything else falls back.
_VALUE_OPTIONS = frozenset(
    {"--project", "--python", "--index-url", "--extra-index-url", "--find-links", "-f"}
    | {"--with", "--extra", "--group"}
)
_FLAGS = frozenset({"--frozen", "--locked", "--offline", "--prerelease", "--prefer-store"})
#: The environment that changes what run would decide.
_ENVIRON = (
    "CPK_HOME",
    "CPK_CACHE_DIR",
    "CPK_STORE_PATH",
    "CPK_INDEX_URL",
    "CPK_EXTRA_INDEX_URL",
    "CPK_FIND_LINKS",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
)

Stat = tuple[str, int, int, int]  # path, mtime_ns, size, inode; -1s when absent


def split_run_args(args: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """(options, command) of ``cpk run`` arguments, or None to let argparse decide."""
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, list(args[i + 1 :])
        if arg in _FLAGS:
            options.append(arg)
        elif arg in _VALUE_OPTIONS and i + 1 < len(args):
            options += [arg, args[i + 1]]
            i += 1
        elif "=" in arg and arg.split("=", 1)[0] in _VALUE_OPTIONS:
            options.append(arg)
        elif arg.startswith("-"):
            return None  # --help, a typo, an option added later: argparse's job
        else:
            return options, list(args[i:])
        i += 1
    return None


def stat_of(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1, -1)
    return (path, st.st_mtime_ns, st.st_size, st.st_ino)


def _key(options: Sequence[str], command: Sequence[str], cwd: str) -> str:
    script = ""
    if command and command[0].endswith(".py"):
        script = os.path.abspath(command[0])
    elif (
        len(command) > 1
        and os.path.basename(command[0]) in ("python", "python3")
        and command[1].endswith(".py")
    ):
        script = os.path.abspath(command[1])
    parts = [str(MEMO_FORMAT), sys.executable, cwd, script, *options, "\0"]
    parts += [os.environ.get(name, "") for name in _ENVIRON]
    return "\0".join(parts)


def _memo_path(cache_dir: str, key: str) -> str:
    # zlib's crc32 is builtin and cheap; the full key is stored and compared,
    # so a collision only costs a memo miss.
    name = f"{zlib.crc32(key.encode('utf-8', 'surrogateescape')):08x}.marshal"
    return os.path.join(cache_dir, MEMO_DIR, name)


def _cache_dir() -> str:
    from contentpkg.python.project.settings import default_cache_dir

    return os.fspath(default_cache_dir())


def try_fast(args: Sequence[str]) -> None:
    """Exec the command if a valid memo says where; return otherwise."""
    parsed = split_run_args(args)
    if parsed is None or not parsed[1]:
        return
    options, command = parsed
    try:
        cwd = os.getcwd()
        key = _key(options, command, cwd)
        with open(_memo_path(_cache_dir(), key), "rb") as f:
            memo = marshal.load(f)
    except (OSError, ValueError, EOFError, TypeError):
        return
    if not isinstance(memo, dict) or memo.get("key") != key:
        return
    for recorded in memo["stats"]:
        if stat_of(recorded[0]) != tuple(recorded):
            return
    for path in memo["exists"]:
        if not os.path.exists(path):
            return
    exec_in(memo["env"], [*memo["prefix"], *command])


def write_memo(
    args: Sequence[str],
    env: str,
    inputs: Iterable[str],
    absent: Iterable[str],
    exists: Iterable[str],
    prefix: Sequence[str] = (),
) -> None:
    """Remember that these arguments, with these files as they are now, run in env."""
    parsed = split_run_args(args)
    if parsed is None or not parsed[1]:
        return
    options, command = parsed
    cwd = os.getcwd()
    key = _key(options, command, cwd)
    stats = [stat_of(p) for p in inputs] + [(p, -1, -1, -1) for p in absent]
    memo = {
        "key": key,
        "env": env,
        "stats": stats,
        "exists": list(exists),
        "prefix": list(prefix),
    }
    path = _memo_path(_cache_dir(), key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump(memo, f)
        os.replace(tmp, path)
    except OSError:
        pass  # no memo only means the next run takes the full path


def exec_in(env: str | os.PathLike[str], command: Sequence[str]) -> None:
    """Replace this process with command, run inside env.

    The environment's ``bin/`` comes first on ``PATH`` and ``VIRTUAL_ENV``
    names it, as an activated virtualenv would; ``python`` means the
    environment's interpreter. Exit status and signals are the command's own,
    since there is no cpk process left to stand between.
    """
    from contentpkg.errors import CpkError

    bin_dir = os.path.join(env, "bin")
    environ = dict(os.environ)
    environ["VIRTUAL_ENV"] = os.fspath(env)
    environ["PATH"] = os.pathsep.join([bin_dir, environ.get("PATH", os.defpath)])
    environ.pop("PYTHONHOME", None)
    environ.pop("__PYVENV_LAUNCHER__", None)
    program = command[0]
    if "/" not in program:
        candidate = os.path.join(bin_dir, program)
        if os.access(candidate, os.X_OK):
            program = candidate
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(program, [command[0], *command[1:]], environ)
    except FileNotFoundError:
        raise CpkError(f"{command[0]}: command not found in the environment or on PATH") from None
    except PermissionError:
        raise CpkError(f"{command[0]}: permission denied") from None
