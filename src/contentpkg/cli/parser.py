"""The argument parser: every command's options and help, nothing else."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from contentpkg.cli.elf import cmd_fetch_any, cmd_install, cmd_uninstall
from contentpkg.cli.env import (
    cmd_env,
    cmd_exec,
    cmd_path_add,
    cmd_profile_delete_generations,
    cmd_profile_generations,
    cmd_profile_list,
    cmd_profile_rollback,
    cmd_profile_switch,
)
from contentpkg.cli.examples import EXAMPLES
from contentpkg.cli.housekeeping import add_housekeeping_commands, add_store_du
from contentpkg.cli.options import add_global_options, command_parser_class
from contentpkg.cli.project import add_project_commands
from contentpkg.cli.python import cmd_lock, cmd_run, cmd_shell, cmd_sync
from contentpkg.cli.shells import add_shell_commands
from contentpkg.cli.store import (
    cmd_identify,
    cmd_store_add,
    cmd_store_gc,
    cmd_store_info,
    cmd_store_ls,
    cmd_store_path,
    cmd_store_verify,
)


def _add_index_options(
    p: argparse.ArgumentParser, project: bool = True, interpreter: str = "--python"
) -> None:
    if project:
        p.add_argument(
            "--project",
            metavar="DIR",
            help="the project directory (default: found upward from here)",
        )
    p.add_argument(
        interpreter,
        dest="python",
        metavar="PY",
        help="target interpreter: a path, a command, or a version like 3.12",
    )
    p.add_argument("--index-url", metavar="URL", help="the main package index (default: PyPI)")
    p.add_argument(
        "--extra-index-url",
        metavar="URL",
        action="append",
        help="another index, asked before the main one (repeatable)",
    )
    p.add_argument(
        "--find-links",
        "-f",
        metavar="DIR|URL",
        action="append",
        help="a directory or page of wheels and sdists (repeatable)",
    )
    p.add_argument("--prerelease", action="store_true", help="allow pre-releases everywhere")
    p.add_argument(
        "--prefer-store", action="store_true", help="prefer versions already in the store"
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="revalidate every cached index page, however fresh",
    )


def _add_lock_use_options(p: argparse.ArgumentParser) -> None:
    """--frozen/--locked, and which extras and groups: for sync, run and shell."""
    frozen = p.add_mutually_exclusive_group()
    frozen.add_argument(
        "--frozen", action="store_true", help="use pylock.toml as it is, without checking it"
    )
    frozen.add_argument(
        "--locked",
        action="store_true",
        help="fail if pylock.toml is out of date instead of re-locking",
    )
    _add_selection_options(p)


def _add_project_build_options(p: argparse.ArgumentParser) -> None:
    """How the project itself is installed: for sync and run."""
    p.add_argument(
        "--no-editable",
        action="store_true",
        help="build the project's wheel into the store and use it, instead of an "
        "editable install of the checkout",
    )


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extra", metavar="NAME", action="append", help="include an extra")
    p.add_argument("--group", metavar="NAME", action="append", help="include a dependency group")
    p.add_argument("--all-extras", action="store_true", help="include every extra")
    p.add_argument("--all-groups", action="store_true", help="include every dependency group")
    p.add_argument(
        "--no-default-groups",
        action="store_true",
        help="leave out the default groups (dev, or [tool.uv]/[tool.cpk] default-groups)",
    )
    p.add_argument(
        "--only-group",
        metavar="NAME",
        action="append",
        help="install only this dependency group, without the project's dependencies",
    )
    p.add_argument("--no-dev", action="store_true", help="leave out the dev group")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or for a command in :data:`_ONE_GROUP` only its group
    (or its own parser alone).

    Building all ~50 subparsers costs more than a run of ``cpk ldd FILE``
    itself; a command line naming one of those commands needs only its own.
    Anything else (no command, ``--help``, a typo) gets the whole parser,
    so listings and "invalid choice" errors name every command.
    """
    only = _ONE_GROUP.get(command or "")
    parser = argparse.ArgumentParser(
        prog="cpk",
        description="contentpkg: every package version stored once, by content hash, "
        "and composed per process into the environment a program needs.",
        epilog="run 'cpk help COMMAND' or 'cpk COMMAND --help' for a command's options",
    )
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=command_parser_class(EXAMPLES)
    )

    if only is not None:
        globals()[only](commands)
        return parser
    _add_store_commands(commands)
    _add_python_commands(commands)
    add_project_commands(commands, _add_index_options, _add_selection_options)
    _add_elf_commands(commands)
    _add_environment_commands(commands)
    _add_path_commands(commands)
    _add_remote_commands(commands)
    add_housekeeping_commands(commands)
    add_shell_commands(commands, parser)
    _add_union_commands(commands)
    return parser


#: Commands run once per file or in loops, by the function adding their group
#: (one that no other group adds subcommands to: ``cpk store`` gains
#: ``push``/``pull`` from the remote commands, so it is not here).
_ONE_GROUP = {
    "ldd": "_add_ldd_command",
    "install": "_add_elf_commands",
    "identify": "_add_elf_commands",
    # Its start-up is the union's: building every other subparser cost more
    # than the namespace and the mounts together.
    "enter": "_add_enter_command",
    # A no-op ``cpk lock`` should cost little more than the interpreter's
    # start: every other subparser (each with the global options) would be
    # most of what it adds. These commands' parsers stand alone.
    "lock": "_add_lock_command",
    "sync": "_add_sync_command",
    "fetch": "_add_fetch_command",
    "run": "_add_run_alone",
    "shell": "_add_shell_command",
}


def _add_deb_fetch_options(p: argparse.ArgumentParser, deb_help: str) -> None:
    """``--deb`` and ``--with-recommends``: fetching from the Debian archive."""
    p.add_argument("--deb", action="store_true", help=deb_help)
    p.add_argument(
        "--with-recommends", action="store_true", help="with --deb: also fetch Recommends"
    )
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel adds (default: CPUs)")
    p.add_argument(
        "--dry-run", action="store_true",
        help="with --deb: print what would be fetched and what the system provides; fetch nothing",
    )  # fmt: skip


def _add_store_commands(commands: Any) -> None:
    """``cpk store ...``: the store's own commands."""
    store = commands.add_parser(
        "store",
        help="add, list, inspect, verify and collect store entries",
        description="The content-addressed store: entries name,version,hash, layered as "
        "project (.cpk/store), user ($CPK_HOME) and system ($CPK_STORE_PATH) stores.",
    )
    store_cmds = store.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    store.set_defaults(func=lambda _args: usage(store))

    p = store_cmds.add_parser(
        "add",
        help="add a file, a directory prefix or a .deb as an entry",
        description="Copy a file, a directory tree (a prefix: bin/, lib/, share/...) or a "
        "Debian .deb into the user store as one immutable entry, atomically. Every ELF "
        "file in it gets RUNPATH $ORIGIN:$ORIGIN/<elfname>_deps:$ORIGIN/common_libs; "
        "the entry records its hashes before and after, SONAME and DT_NEEDED.",
    )
    p.add_argument(
        "paths", metavar="PATH", nargs="+",
        help="file, directory or .deb to add; several are added in parallel",
    )  # fmt: skip
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel adds (default: CPUs)")
    p.add_argument("--name", help="package name (default: the .deb's, or the file's name)")
    p.add_argument("--version", help="package version (needed unless PATH is a .deb)")
    p.add_argument(
        "--requires",
        action="append",
        metavar="NAMESPACE:PATH",
        help="a plain file the package needs and the search path it is found on "
        "(e.g. XDG_DATA_DIRS:foo/data.txt); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_store_add)

    p = store_cmds.add_parser(
        "ls",
        help="list entries of every layer",
        description="List entries: name, version, short hash, size, kind and layer.",
    )
    p.add_argument("pattern", nargs="?", help="glob over the name or name,version,hash")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_store_ls)

    spec_help = "name[,version[,hash-prefix]], or an entry's path"
    p = store_cmds.add_parser(
        "path",
        help="print an entry's directory",
        description="Print the directory of the one entry SPEC names.",
    )
    p.add_argument("spec", help=spec_help)
    p.set_defaults(func=cmd_store_path)

    p = store_cmds.add_parser(
        "info",
        help="show an entry's metadata",
        description="Show the metadata of the one entry SPEC names.",
    )
    p.add_argument("spec", help=spec_help)
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=cmd_store_info)

    p = store_cmds.add_parser(
        "verify",
        help="recompute content hashes",
        description="Recompute the content hash of every entry (or "
        "those SPEC names) and list each corrupt one; exit 1 if any.",
    )
    p.add_argument("spec", nargs="?", help="name[,version[,hash-prefix]]")
    p.set_defaults(func=cmd_store_verify)

    p = store_cmds.add_parser(
        "gc",
        help="remove entries no root reaches",
        description="Remove user-store entries that no root under "
        "$CPK_HOME/roots reaches, and prune dangling roots.",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_store_gc)

    add_store_du(store_cmds)


def _add_with_file_options(p: argparse.ArgumentParser) -> None:
    """``--with-requirements`` and ``--with-editable``, as uv spells them."""
    p.add_argument(
        "--with-requirements",
        dest="with_requirements",
        metavar="FILE",
        action="append",
        help="add the requirements of a pip requirements file for this run only (repeatable)",
    )
    p.add_argument(
        "--with-editable",
        dest="with_editable",
        metavar="PATH",
        action="append",
        help="add a local project, editable, for this run only (repeatable)",
    )


def _add_python_commands(commands: Any) -> None:
    """``cpk lock``, ``sync``, ``fetch``, ``run``, ``shell``: the project commands."""
    _add_lock_command(commands)
    _add_sync_command(commands)
    _add_fetch_command(commands)
    _add_run_command(commands)
    _add_shell_command(commands)


def _add_lock_command(commands: Any) -> None:
    """``cpk lock``: resolve into pylock.toml."""
    p = commands.add_parser(
        "lock",
        help="resolve the project's dependencies into pylock.toml",
        description="Resolve the project's declared dependencies (pyproject.toml or "
        "requirements.txt) for the target interpreter and write a PEP 751 pylock.toml. "
        "Does nothing when the lock is up to date with its inputs.",
    )
    _add_index_options(p)
    upgrade = p.add_mutually_exclusive_group()
    upgrade.add_argument(
        "--upgrade",
        "-U",
        action="store_true",
        help="re-resolve everything to the newest allowed versions",
    )
    upgrade.add_argument(
        "--upgrade-package",
        "-P",
        metavar="NAME",
        action="append",
        help="let only this package move (repeatable)",
    )
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the lock is out of date"
    )
    # No --extra/--group: the lock holds every extra and group (as `uv lock`).
    p.set_defaults(func=cmd_lock)


def _add_sync_command(commands: Any) -> None:
    """``cpk sync``: lock if needed, then fetch what the store lacks."""
    p = commands.add_parser(
        "sync",
        help="make every package of the lock present in the store",
        description="Lock if the inputs changed, then fetch (or build) every locked "
        "package that the store lacks, and compile its bytecode.",
    )
    _add_index_options(p)
    _add_lock_use_options(p)
    _add_project_build_options(p)
    p.set_defaults(func=cmd_sync)


def _add_fetch_command(commands: Any) -> None:
    """``cpk fetch``: requirements (or .debs) into the store, no lock."""
    p = commands.add_parser(
        "fetch",
        help="resolve requirements and put them into the store",
        description="Resolve REQ... and fetch or build each resolved package into "
        "the store, without any lock file or environment.",
    )
    p.add_argument(
        "requirements", nargs="+", metavar="REQ",
        help="a PEP 508 requirement (with --deb: a Debian package name)",
    )  # fmt: skip
    _add_index_options(p, project=False)
    _add_deb_fetch_options(p, "NAME... are Debian packages: resolve them against the "
                           "archive apt's sources name and put each .deb the store lacks "
                           "into it")  # fmt: skip
    p.set_defaults(func=cmd_fetch_any)


def _add_run_command(commands: Any) -> None:
    """``cpk run``: a command in the project's environment."""
    p = commands.add_parser(
        "run",
        help="run a command in the project's environment",
        description="Find the project (or the PEP 723 script CMD runs), lock and sync "
        "if needed, compose its environment from the store, and exec CMD in it: a "
        "console script of the environment, python, or any program.",
    )
    _add_index_options(p)
    p.add_argument(
        "--with",
        dest="with_",
        metavar="REQ",
        action="append",
        help="add a requirement for this run only (the lock is not changed): a PEP 508 "
        "requirement, a path ('.', '../lib'), or a requirements-file line ('-e PATH', "
        "'-r FILE')",
    )
    _add_with_file_options(p)
    p.add_argument(
        "--with-elf",
        dest="with_elf",
        metavar="SPEC",
        action="append",
        help="add a native package from the store: its programs on PATH, its libraries "
        "on the loader's path (so ctypes.CDLL('libfoo.so.1') finds them)",
    )
    _add_lock_use_options(p)
    _add_project_build_options(p)
    p.add_argument(
        "--strict-command",
        action="store_true",
        help="fail when CMD is not in the environment, instead of running it from PATH "
        "with a warning (also CPK_STRICT_COMMAND=1, [tool.cpk] strict-command = true)",
    )
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="CMD...", help="the command and its arguments"
    )
    p.set_defaults(func=cmd_run)


def _add_shell_command(commands: Any) -> None:
    """``cpk shell``: a subshell in the project's environment or in ENV."""
    p = commands.add_parser(
        "shell",
        help="start a subshell in the project's environment, or in ENV",
        description="Start $SHELL with the project's environment first on PATH and "
        "VIRTUAL_ENV set, made as for 'cpk run'; or, given ENV (a profile name or an env "
        "dir), with ENV's bindings and CPK_ENV set. Nothing is sourced into your shell: "
        "exit the subshell and everything is as it was.",
    )
    p.add_argument("env", metavar="ENV", nargs="?", help="a profile name or a path to an env dir")
    p.add_argument("--shell", metavar="SHELL", help="the shell to start (default: $SHELL)")
    _add_index_options(p)
    _add_lock_use_options(p)
    p.set_defaults(func=cmd_shell)


def _add_elf_commands(commands: Any) -> None:
    """``cpk install``, ``uninstall``, ``identify``, ``ldd``: native programs."""
    p = commands.add_parser(
        "install",
        help="install a package's programs with their libraries into an env dir",
        description="Assemble WHERE as a relocatable env dir: each program as a real file "
        "bin/<name>-<version> with bin/<name> linking to it, the shared library closure "
        "from the store in lib/ (glibc from the system), share/ files, and a manifest of "
        "back-references. Copy WHERE anywhere (cp -a, cp -rL, tar) and it keeps working.",
    )
    p.add_argument(
        "spec", metavar="SPEC", help="name[,version[,hash-prefix]] of a package or an executable"
    )
    p.add_argument("where", metavar="WHERE", nargs="?", help="env dir to install into")
    p.add_argument(
        "--libs",
        action="append",
        metavar="DIR[,DIR...]",
        help="env dirs whose libraries are reached by symlink instead of placed again",
    )
    p.add_argument(
        "--system-libs",
        action="store_true",
        help="leave libraries no store entry provides to the system's loader",
    )
    p.add_argument(
        "--profile",
        "-p",
        metavar="NAME",
        help="install into a new generation of this profile (the default without WHERE: 'default')",
    )
    p.add_argument(
        "--link-mode",
        choices=["auto", "reflink", "clone", "hardlink", "copy", "symlink"],
        help="how files are placed: auto (default: reflink where the file system can, "
        "else hard links to the store's read-only files), reflink, hardlink, copy "
        "(WHERE shares nothing with the store), symlink (data and libraries link to the store)",
    )
    p.add_argument(
        "--with-docs",
        action="store_true",
        help="also install the packages' -doc and -man packages found in the store",
    )
    p.add_argument(
        "--python",
        dest="python_tool",
        action="store_true",
        help="SPEC is a Python requirement: put its scripts in bin/, each running in "
        "the tool's own view (like pipx or uv tool, with nothing copied)",
    )
    _add_index_options(p, project=False, interpreter="--interpreter")
    p.add_argument(
        "--with-recommends", action="store_true",
        help="when SPEC is fetched from the Debian archive, also fetch its Recommends",
    )  # fmt: skip
    p.set_defaults(func=cmd_install, project=None, extra=None, group=None)

    p = commands.add_parser(
        "uninstall",
        help="remove packages from an env dir or a profile",
        description="Remove the named packages from WHERE (or a new generation of the "
        "profile), with the libraries only they needed; files cpk did not install are "
        "left alone. The counterpart of 'cpk install'.",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--from", dest="where", metavar="WHERE", help="env dir to remove from")
    p.add_argument(
        "--profile", "-p", metavar="NAME", help="profile to remove from (default: 'default')"
    )
    p.set_defaults(func=cmd_uninstall)

    p = commands.add_parser(
        "identify",
        help="say which entry a file came from",
        description="Hash each FILE and name the store entries and "
        "paths that hold the same bytes; exit 1 if one is unknown.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_identify)
    _add_ldd_command(commands)


def _add_run_alone(commands: Any) -> None:
    """``cpk run``'s parser alone, with the option the union commands give it."""
    _add_run_command(commands)
    _add_run_union_option(commands)


def _add_ldd_command(commands: Any) -> None:
    """``cpk ldd``: defined beside its command (``cpk ldd ...`` builds it alone,
    through ``cli/ldd.py:build_ldd_parser``)."""
    from contentpkg.cli.ldd import add_ldd_command

    add_ldd_command(commands)


def _add_environment_commands(commands: Any) -> None:
    """cpk profile, cpk env and cpk exec (cpk shell ENV is with shell above)."""
    import argparse

    # Spelled out, not imported from env.bindings: building the parser must
    # not import the bindings module for every command (tests keep the two
    # lists equal).
    SHELLS = ("sh", "bash", "zsh", "fish")

    profile = commands.add_parser(
        "profile",
        help="list profiles, show their generations, switch, roll back, delete",
        description="A profile is an alias symlink ($CPK_HOME/profiles/NAME) to a numbered "
        "generation, each a complete env dir. Every install or remove makes a new "
        "generation and switches the alias atomically; old generations stay (and keep "
        "their store entries) until deleted. NAME defaults to 'default'.",
    )
    profile_cmds = profile.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")
    profile.set_defaults(func=lambda _args: usage(profile))

    p = profile_cmds.add_parser("list", help="list profiles and their current generations")
    p.set_defaults(func=cmd_profile_list)

    p = profile_cmds.add_parser(
        "generations",
        help="show a profile's history",
        description="List every generation of the profile: number, date, what it was "
        "made for, what changed, and which one is current.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.set_defaults(func=cmd_profile_generations)

    p = profile_cmds.add_parser(
        "switch",
        help="make generation N current",
        description="Point the profile at generation N, with one atomic rename.",
    )
    p.add_argument("number", metavar="N", type=int, help="generation number")
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.set_defaults(func=cmd_profile_switch)

    p = profile_cmds.add_parser(
        "rollback",
        help="switch to the generation before the current one",
        description="Point the profile at the newest generation older than the current one.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="profile (default: default)")
    p.set_defaults(func=cmd_profile_rollback)

    p = profile_cmds.add_parser(
        "delete-generations",
        help="delete old generations (never the current one)",
        description="Delete generations N... of the profile, or every generation older "
        "than AGE except the current one. Run 'cpk store gc' afterwards to free the store "
        "entries only they used.",
    )
    p.add_argument("args", metavar="[NAME] N", nargs="*", help="profile name, then numbers")
    p.add_argument("--older-than", metavar="AGE", help="an age like 30d, 12h or 2w")
    p.set_defaults(func=cmd_profile_delete_generations)

    p = commands.add_parser(
        "env",
        help="print an environment's bindings as shell code",
        description="Print the bindings of ENV (a profile name, default 'default', or a "
        "path to an env dir): PATH, MANPATH where man-db cannot derive it, XDG_DATA_DIRS, "
        "and, as comments, what is found without a variable. Apply with "
        'eval "$(cpk env)" (sh, bash, zsh) or cpk env --shell fish | source.',
    )
    p.add_argument("env", metavar="ENV", nargs="?", help="a profile name or an env dir")
    p.add_argument(
        "--shell", choices=SHELLS, help="dialect to print (default: from $SHELL, else sh)"
    )
    p.add_argument(
        "--list", action="store_true", help="print a table of every binding instead of code"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also check every placed file against the manifest's sha256; exit 1 when "
        "one changed or a required plain file is missing",
    )
    p.set_defaults(func=cmd_env)

    p = commands.add_parser(
        "exec",
        help="run one command in an environment",
        description="Run CMD with ENV's bindings (and CPK_ENV) in its environment; the "
        "exit status is CMD's.",
    )
    p.add_argument("env", metavar="ENV", help="a profile name or an env dir")
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command to run"
    )
    p.set_defaults(func=cmd_exec)


def _add_path_commands(commands: Any) -> None:
    """cpk path add."""
    path = commands.add_parser(
        "path",
        help="put a directory on PATH in your shell start-up files",
        description="Edit your shell start-up files so that new shells have a directory "
        "on PATH. A separate, explicit step: cpk install never does it.",
    )
    path_cmds = path.add_subparsers(dest="path_command", metavar="SUBCOMMAND")
    path.set_defaults(func=lambda _args: usage(path))
    p = path_cmds.add_parser(
        "add",
        help="add DIR to PATH in sh/bash, zsh and fish start-up files",
        description="Add DIR (made absolute; symlinks kept) first on PATH, in a marked "
        "block of each start-up file: ~/.profile (sh), ~/.bashrc and bash's login file "
        "(bash), ${ZDOTDIR:-~}/.zshenv (zsh), ~/.config/fish/conf.d/cpk-path.fish (fish). "
        "Running it again changes nothing; another DIR joins the same block. Default "
        "shells: sh, $SHELL, and every shell whose start-up files exist.",
    )
    p.add_argument("directory", metavar="DIR", help="the directory to add, e.g. WHERE/bin")
    p.add_argument(
        "--shell",
        action="append",
        choices=("sh", "bash", "zsh", "fish"),
        help="a shell to configure (repeatable; default: see above)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    p.set_defaults(func=cmd_path_add)


def _add_remote_commands(commands: Any) -> None:
    """``cpk key ...``, ``cpk remote ...``, ``cpk store push`` and ``cpk store pull``."""
    from contentpkg.cli import remote as r

    key = commands.add_parser(
        "key",
        help="make and trust ed25519 keys that sign pushed entries",
        description="Entries pushed to a remote are signed; pulls accept only entries "
        "signed by a trusted key.",
    )
    key_cmds = key.add_subparsers(dest="key_command", metavar="SUBCOMMAND")
    key.set_defaults(func=lambda _args: usage(key))
    p = key_cmds.add_parser(
        "generate", help="write a key pair: FILE (private, mode 0600) and FILE.pub"
    )
    p.add_argument("file", help="where to write the private key")
    p.set_defaults(func=r.cmd_key_generate)
    p = key_cmds.add_parser("trust", help="trust a public key for pulls")
    p.add_argument("file", help="a public key (FILE.pub)")
    p.set_defaults(func=r.cmd_key_trust)
    p = key_cmds.add_parser("list", help="list the ids of trusted keys")
    p.set_defaults(func=r.cmd_key_list)

    remote = commands.add_parser(
        "remote",
        help="configure remote stores (OCI registries) consulted before other sources",
        description="Remotes are consulted in order, before the index, a build or the "
        "Debian archive. CPK_REMOTES (space-separated oci:// URLs) replaces this list.",
    )
    remote_cmds = remote.add_subparsers(dest="remote_command", metavar="SUBCOMMAND")
    remote.set_defaults(func=lambda _args: usage(remote))
    p = remote_cmds.add_parser("add", help="add a remote at the end of the list")
    p.add_argument("name", help="a short name for the remote")
    p.add_argument("url", help="oci://HOST[:PORT]/PREFIX")
    p.add_argument(
        "--insecure", action="store_true", help="plain HTTP to a host that is not loopback"
    )
    p.set_defaults(func=r.cmd_remote_add)
    p = remote_cmds.add_parser("list", help="list remotes in the order they are consulted")
    p.set_defaults(func=r.cmd_remote_list)
    p = remote_cmds.add_parser("remove", help="remove a remote")
    p.add_argument("name")
    p.set_defaults(func=r.cmd_remote_remove)

    store = commands.choices["store"]
    store_cmds = next(a for a in store._actions if isinstance(a, argparse._SubParsersAction))
    p = store_cmds.add_parser(
        "push",
        help="push entries and what they reference to a remote, signed",
        description="Push entries (and everything they reference) to an OCI registry, "
        "each signed with an ed25519 key; blobs the registry has are skipped.",
    )
    p.add_argument("remote", help="oci://HOST[:PORT]/PREFIX or a configured remote's name")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="name[,version[,hash-prefix]]")
    p.add_argument("--all", action="store_true", help="every entry of the store")
    p.add_argument("--lock", metavar="FILE", help="every package a pylock.toml names")
    p.add_argument("--profile", metavar="NAME", help="every entry of a profile")
    p.add_argument("--sign-key", metavar="FILE", help="private key (default: $CPK_SIGNING_KEY)")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP to any host")
    p.add_argument("--jobs", type=int, default=8, help="parallel transfers (default 8)")
    p.set_defaults(func=r.cmd_store_push)
    p = store_cmds.add_parser(
        "pull",
        help="pull entries from a remote, verified",
        description="Pull the newest entry each SPEC matches (or every package of a lock) "
        "with what it references; signatures and content hashes are checked first.",
    )
    p.add_argument("remote", help="oci://HOST[:PORT]/PREFIX or a configured remote's name")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="name[,version[,hash-prefix]]")
    p.add_argument("--lock", metavar="FILE", help="every package a pylock.toml names")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP to any host")
    p.add_argument("--jobs", type=int, default=8, help="parallel transfers (default 8)")
    p.set_defaults(func=r.cmd_store_pull)


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _add_union_commands(commands: Any) -> None:
    """``cpk enter``, and ``cpk run --union``."""
    _add_enter_command(commands)
    _add_run_union_option(commands)


def _add_run_union_option(commands: Any) -> None:
    """cpk run --union: the project's entries overlaid into one site-packages."""
    commands.choices["run"].add_argument(
        "--union", action="store_true",
        help="run with the environment's packages overlaid into one site-packages in a "
        "private mount namespace, instead of reached through the view's links",
    )  # fmt: skip


def _add_enter_command(commands: Any) -> None:
    """``cpk enter``: defined beside its command (its start-up path builds it alone)."""
    from contentpkg.cli.union import add_enter_command

    add_enter_command(commands)
