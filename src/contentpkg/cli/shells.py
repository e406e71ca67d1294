"""``cpk completion SHELL`` and ``cpk help COMMAND``: both read the parser.

Completion scripts are generated from the parser by ``shtab`` (bash, zsh,
fish), so a new command or option completes without anyone editing a
script; ``help`` prints the same text as ``COMMAND --help``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from contentpkg.errors import CpkError

if TYPE_CHECKING:
    import argparse

COMPLETION_SHELLS = ("bash", "zsh", "fish")


def add_shell_commands(commands: Any, top: argparse.ArgumentParser) -> None:
    """``cpk completion`` and ``cpk help``; top is the whole parser they read."""
    p = commands.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish",
        description="Print a completion script for SHELL, generated from cpk's own "
        "parser. bash: cpk completion bash > ~/.local/share/bash-completion/completions/cpk; "
        "zsh: cpk completion zsh > a directory on $fpath as _cpk; fish: cpk completion fish "
        "> ~/.config/fish/completions/cpk.fish.",
    )
    p.add_argument("shell", metavar="SHELL", choices=COMPLETION_SHELLS, help="bash, zsh or fish")
    p.set_defaults(func=cmd_completion, parser=top)

    p = commands.add_parser(
        "help",
        help="show a command's help",
        description="Show the help of COMMAND (as 'cpk COMMAND --help' does), or of cpk.",
    )
    p.add_argument("topic", metavar="COMMAND", nargs="*", help="a command, e.g. add or store gc")
    p.set_defaults(func=cmd_help, parser=top)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's commands by name.

    argparse has no public way to reach a parser's subcommands; its
    ``_SubParsersAction.choices`` is what shtab and argcomplete read too.
    """
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cmd_help(args: argparse.Namespace) -> int:
    parser = args.parser
    for word in args.topic:
        found = _subparsers(parser).get(word)
        if found is None:
            known = ", ".join(sorted(_subparsers(parser))) or "none"
            raise CpkError(f"help: no command {' '.join(args.topic)!r} (commands: {known})")
        parser = found
    parser.print_help(sys.stdout)
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(args.parser, shell=args.shell))
    sys.stdout.write("\n")
    return 0
