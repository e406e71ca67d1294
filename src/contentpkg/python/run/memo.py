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

This is the one module besides :mod:`contentpkg.context` that reads
``os.environ``: it must decide before anything else is imported, and
importing the context (``dataclasses``, ``enum``, ``pathlib``) would cost
more than the whole decision. So the variables and the cache directory rule
are written out here again; the tests hold them equal to the context's.

Anything unexpected (an option this parser does not know, a missing or
stale memo, a changed file) returns to the full path, which checks
everything and writes a new memo.
"""

from __future__ import annotations

import marshal
import os
import sys

# Not ``typing.TYPE_CHECKING`` nor ``collections.abc`` at run time: on the
# hot path, ``collections`` (with keyword, operator, reprlib) cost more than
# the whole memo decision, and the annotations are strings anyway.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

# 2: the script part of the key is set only for existing files;
# 3: the key holds the prefix the command form adds (``x.py`` vs ``python x.py``)
MEMO_FORMAT = 4
#: The cache bucket holding the memos (``context.Bucket.RUN_MEMO``).
MEMO_DIR = "run-memo"

#: ``cpk run`` options taking a value, and flags; anything else falls back.
_VALUE_OPTIONS = frozenset(
    {"--project", "--python", "--index-url", "--extra-index-url", "--find-links", "-f"}
    | {"--with", "--extra", "--group", "--only-group"}
)
_FLAGS = frozenset(
    {"--frozen", "--locked", "--offline", "--prerelease", "--prefer-store"}
    | {"--all-extras", "--all-groups", "--no-default-groups", "--no-dev"}
    | {"--strict-command", "--no-editable"}
)
#: The environment that changes what run would decide: the variables a
#: ``Context`` reads (``context.SETTINGS_VARIABLES``, kept equal by a test).
SETTINGS_VARIABLES = (
    "CPK_HOME",
    "CPK_CACHE_DIR",
    "CPK_STORE_PATH",
    "CPK_INDEX_URL",
    "CPK_EXTRA_INDEX_URL",
    "CPK_FIND_LINKS",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "CPK_APT_SOURCES",
    "CPK_STRICT_COMMAND",
)
_PYTHONS = ("python", "python3")

Stat = tuple[str, int, int, int]  # path, mtime_ns, size, inode; -1s when absent


def cache_dir_of(environ: Mapping[str, str]) -> str:
    """The cache directory, by the rule ``Context.from_environ`` applies."""
    cache = environ.get("CPK_CACHE_DIR")
    if cache:
        return os.path.abspath(os.path.expanduser(cache))
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "contentpkg")
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".cache", "contentpkg")


def script_command(command: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the script a command runs, the command as exec'd): the one place that
    decides whether ``cpk run CMD`` runs a Python script.

    ``x.py`` and ``python x.py`` (or ``python3``) run the file ``x.py``,
    whether or not it has a PEP 723 header; a bare ``x.py`` runs with the
    environment's ``python``, so it needs neither a ``#!`` line nor the
    executable bit.
    """
    args = list(command)
    if args and args[0].endswith(".py") and os.path.isfile(args[0]):
        return os.path.abspath(args[0]), ["python", *args]
    if (
        len(args) > 1
        and os.path.basename(args[0]) in _PYTHONS
        and args[1].endswith(".py")
        and os.path.isfile(args[1])
    ):
        return os.path.abspath(args[1]), args
    return None, args


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


def _key(
    options: Sequence[str],
    command: Sequence[str],
    cwd: str,
    environ: Mapping[str, str],
) -> str:
    """What a memo is valid for. The command itself is not part of it (any
    command runs in the same environment), but the script it runs is (a
    PEP 723 header chooses the environment), and so is the prefix its form
    adds: ``x.py`` is exec'd as ``python x.py``, ``python x.py`` as given,
    so a memo written by one form must never serve the other."""
    script, argv = script_command(command)
    prefix = argv[: len(argv) - len(command)]
    parts = [str(MEMO_FORMAT), sys.executable, cwd, script or "", *prefix, "\0"]
    parts += [_uncredentialed(o) for o in options]
    parts.append("\0")
    parts += [_uncredentialed(environ.get(name, "")) for name in _KEY_VARIABLES]
    return "\0".join(parts)


#: What the key reads from the environment: the settings, and what decides
#: which interpreter ``--python NAME`` finds and which program a command
#: names (PATH), and where the default home is (HOME).
_KEY_VARIABLES = (*SETTINGS_VARIABLES, "PATH", "HOME")


def _uncredentialed(value: str) -> str:
    """``value`` with the ``user:password@`` of every URL in it removed.

    The key is stored in the memo file; index credentials must never be
    written to disk, and they choose nothing about the environment. Plain
    string work: ``urllib.parse`` is not loaded on the hot path.
    """
    if "@" not in value or "://" not in value:
        return value
    out = []
    for word in value.split(" "):
        scheme, sep, rest = word.partition("://")
        netloc, slash, path = rest.partition("/")
        if sep and "@" in netloc:
            word = f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
        out.append(word)
    return " ".join(out)


def memo_path(cache_dir: str | os.PathLike[str], key: str) -> str:
    # The full key is stored and compared, so the name only has to spread
    # keys: a collision costs a memo miss. FNV-1a in Python, because every
    # library hash (zlib, binascii, hashlib) is a shared object that the hot
    # path would load for this one call, which costs more than the loop.
    h = 0xCBF29CE484222325
    for byte in key.encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(cache_dir, MEMO_DIR, f"{h:016x}.marshal")


def try_fast(args: Sequence[str], *, quiet: bool = False) -> None:
    """Exec the command if a valid memo says where; return otherwise.

    ``quiet`` (``cpk -q run``) silences a rebuilt view's summary line; its
    conflicts are warnings, printed anyway, as the full path prints them.
    """
    parsed = split_run_args(args)
    if parsed is None or not parsed[1]:
        return
    options, command = parsed
    try:
        key = _key(options, command, os.getcwd(), os.environ)
        with open(memo_path(cache_dir_of(os.environ), key), "rb") as f:
            memo = marshal.load(f)
    except (OSError, ValueError, EOFError, TypeError):
        return
    if not isinstance(memo, dict) or memo.get("key") != key:
        return
    for recorded in memo["stats"]:
        if stat_of(recorded[0]) != tuple(recorded):
            return
    if not all(os.path.exists(path) for path in memo["exists"]):
        # Only the environment is gone (its view deleted or collected), the
        # inputs are as they were: the same view, made again from the
        # store, without the parser, the project's files or the lock.
        recipe = memo.get("rebuild")
        if not recipe:
            return
        from contentpkg.python.envs.rebuild import rebuild_view

        said = rebuild_view(recipe)
        if said is None:
            return  # something else changed too: the full path says what
        summary, warnings = said
        if not quiet:
            print(summary, file=sys.stderr)
        for warning in warnings:
            print(f"cpk: warning: {warning}", file=sys.stderr)
        if not all(os.path.exists(path) for path in memo["exists"]):
            return
    argv = [*memo["prefix"], *command]
    # The memo is shared by every command; whether this one is in the
    # environment is one access() call, decided afresh each time.
    outside = outside_command(memo["env"], argv[0], os.environ)
    if outside is not None:
        if memo.get("strict", True):
            return  # the full path refuses, in its own words
        print(f"cpk: warning: {outside_warning(argv[0], outside)}", file=sys.stderr)
    exec_in(memo["env"], argv)


def outside_command(
    env: str | os.PathLike[str], program: str, environ: Mapping[str, str]
) -> str | None:
    """Where ``program`` runs from when the environment does not have it.

    None when the command is a path (the user chose the file), is in the
    environment's ``bin/``, or is nowhere at all (exec then says "not
    found"). Otherwise the file ``PATH`` gives: a program outside the
    environment, under another interpreter and other packages, which the
    user must hear about (DESIGN.md invariant 7).
    """
    if "/" in program:
        return None
    if os.access(os.path.join(env, "bin", program), os.X_OK):
        return None
    for directory in os.get_exec_path(dict(environ)):
        candidate = os.path.join(directory or ".", program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def outside_warning(program: str, path: str) -> str:
    """The one line said when a command runs from outside the environment."""
    return (
        f"{program} is not in the environment; running {path} from PATH, outside it"
        " (--strict-command makes this an error)"
    )


def write_memo(
    cache_dir: str | os.PathLike[str],
    environ: Mapping[str, str],
    args: Sequence[str],
    env: str,
    inputs: Iterable[str],
    absent: Iterable[str],
    exists: Iterable[str],
    *,
    strict: bool = False,
    rebuild: Mapping[str, object] | None = None,
) -> str | None:
    """Remember that these ``cpk run`` arguments, with these files as they
    are now, run in env; return the memo's path (None when nothing was written).

    ``rebuild`` is how to make env again if it is deleted while every input
    stays as it is (see :func:`try_fast`), or None when only the full path can.

    ``cache_dir`` and ``environ`` are the command's context: the same
    directory and variables :func:`try_fast` derives from the process.
    """
    parsed = split_run_args(args)
    if parsed is None or not parsed[1]:
        return None
    options, command = parsed
    _, argv = script_command(command)
    key = _key(options, command, os.getcwd(), environ)
    stats = [stat_of(p) for p in inputs] + [(p, -1, -1, -1) for p in absent]
    memo = {
        "key": key,
        "env": env,
        "stats": stats,
        "exists": list(exists),
        "prefix": argv[: len(argv) - len(command)],
        # Whether a command from outside the environment is refused
        # (--strict-command, CPK_STRICT_COMMAND, [tool.cpk] strict-command).
        "strict": strict,
        "rebuild": dict(rebuild) if rebuild is not None else None,
    }
    # Only a missed memo writes one, so the file-system module (standard
    # library too, but bigger) is loaded only then. The memo is a cache:
    # renamed into place whole, never fsynced, and a failure only means
    # the next run takes the full path.
    from contentpkg.fs import write_cache

    path = memo_path(cache_dir, key)
    return path if write_cache(path, marshal.dumps(memo), mode=0o600) else None


def exec_in(
    env: str | os.PathLike[str],
    command: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> None:
    """Replace this process with command, run inside env.

    The environment's ``bin/`` comes first on ``PATH`` and ``VIRTUAL_ENV``
    names it, as an activated virtualenv would; ``python`` means the
    environment's interpreter. ``environ`` is what the command inherits
    (default: this process's). Exit status and signals are the command's
    own, since there is no cpk process left to stand between.
    """
    bin_dir = os.path.join(env, "bin")
    child = dict(os.environ if environ is None else environ)
    child["VIRTUAL_ENV"] = os.fspath(env)
    child["PATH"] = os.pathsep.join([bin_dir, child.get("PATH", os.defpath)])
    child.pop("PYTHONHOME", None)
    child.pop("__PYVENV_LAUNCHER__", None)
    program = command[0]
    if "/" not in program:
        candidate = os.path.join(bin_dir, program)
        if os.access(candidate, os.X_OK):
            program = candidate
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(program, [command[0], *command[1:]], child)
    except (FileNotFoundError, PermissionError) as exc:
        # Named here, not imported above: the hot path loads nothing it does
        # not need, and a failed exec is the rare case. The statuses are a
        # shell's, as ``cpk exec`` gives them (env/execution.py).
        from contentpkg.errors import ExecError

        if isinstance(exc, FileNotFoundError):
            raise ExecError(
                f"{command[0]}: command not found in the environment or on PATH",
                command=command[0],
                status=127,
            ) from None
        raise ExecError(
            f"{command[0]}: permission denied", command=command[0], status=126
        ) from None


# A no-op ``cpk lock`` the same way: once a lock was found current (or made
# so), the answer stays "up to date" until one of the files the fingerprint
# is made from, or the lock itself, changes. Without this, confirming a
# current lock costs the parser, the context, TOML and the lock's parse:
# twice what the interpreter's own start costs.

#: ``cpk lock`` options the lock memo reads; anything else (``--upgrade``,
#: ``--check``, ``--refresh``, ``-q`` after the command) takes the full path.
_LOCK_VALUE_OPTIONS = frozenset(
    {"--project", "--python", "--index-url", "--extra-index-url", "--find-links", "-f"}
)
_LOCK_FLAGS = frozenset({"--prerelease", "--prefer-store"})


def split_lock_args(args: Sequence[str]) -> list[str] | None:
    """The options of ``cpk lock`` arguments, or None to let argparse decide."""
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _LOCK_FLAGS:
            options.append(arg)
        elif arg in _LOCK_VALUE_OPTIONS and i + 1 < len(args):
            options += [arg, args[i + 1]]
            i += 1
        elif "=" in arg and arg.split("=", 1)[0] in _LOCK_VALUE_OPTIONS:
            options.append(arg)
        else:
            return None
        i += 1
    return options


def _lock_key(options: Sequence[str], cwd: str, environ: Mapping[str, str]) -> str:
    """What a lock memo is valid for; it starts with ``lock`` so that it can
    never equal a run memo's key (those start with the format number)."""
    parts = ["lock", str(MEMO_FORMAT), sys.executable, cwd, "\0"]
    parts += [_uncredentialed(o) for o in options]
    parts.append("\0")
    parts += [_uncredentialed(environ.get(name, "")) for name in _KEY_VARIABLES]
    return "\0".join(parts)


def current_lock_memo(args: Sequence[str]) -> tuple[str, int] | None:
    """(the lock file's name, its package count) when a valid memo says the
    project's lock is current for these ``cpk lock`` arguments; None otherwise."""
    options = split_lock_args(args)
    if options is None:
        return None
    try:
        key = _lock_key(options, os.getcwd(), os.environ)
        with open(memo_path(cache_dir_of(os.environ), key), "rb") as f:
            memo = marshal.load(f)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(memo, dict) or memo.get("key") != key:
        return None
    for recorded in memo["stats"]:
        if stat_of(recorded[0]) != tuple(recorded):
            return None
    return memo["lock"], memo["packages"]


def write_lock_memo(
    cache_dir: str | os.PathLike[str],
    environ: Mapping[str, str],
    args: Sequence[str],
    lock: str,
    packages: int,
    stats: Iterable[Stat],
) -> str | None:
    """Remember that the lock at path ``lock`` (of ``packages`` packages) is
    current for these ``cpk lock`` arguments while the files stay as
    ``stats`` (:func:`stat_of` each, taken before the files were read) say;
    return the memo's path (None when nothing was written)."""
    options = split_lock_args(args)
    if options is None:
        return None
    key = _lock_key(options, os.getcwd(), environ)
    memo = {
        "key": key,
        "stats": list(stats),
        "lock": os.path.basename(lock),
        "packages": packages,
    }
    from contentpkg.fs import write_cache

    path = memo_path(cache_dir, key)
    return path if write_cache(path, marshal.dumps(memo), mode=0o600) else None
