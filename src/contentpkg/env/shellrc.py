"""Adding a directory to PATH in the user's shell start-up files.

``cpk path add DIR`` writes one marked block per start-up file::

    # >>> cpk path >>>
    # ...
    case ":${PATH}:" in *:'/home/me/bin':*) ;; *) PATH='/home/me/bin'"${PATH:+:${PATH}}"; ... esac
    # <<< cpk path <<<

Re-running rewrites the block in place (adding the new directory to those
already there), so the file never holds two blocks and the same command
twice leaves the same bytes. Each line checks PATH first, because these
files also run in nested shells that inherited PATH already holding DIR.
Directories are put *first* on PATH, as rustup and Nix do: the point of
adding an environment's ``bin`` is that its programs are the ones run.

Which files, and why:

- sh: ``~/.profile``, read by login shells (dash, and bash when it has no
  ``~/.bash_profile``); graphical sessions on most distributions source it
  too, so programs started from menus see the directory.
- bash: ``~/.bashrc``, because an interactive non-login bash (every new
  terminal tab on most desktops) reads only that; and bash's login file,
  ``~/.bash_profile`` or ``~/.bash_login`` when one exists, since bash then
  skips ``~/.profile``.
- zsh: ``${ZDOTDIR:-~}/.zshenv``, the one file every zsh reads (login or
  not, interactive or not: terminals, ``zsh -c`` from editors, ``ssh host
  cmd``), which is where rustup and cargo put PATH for zsh users. On macOS,
  ``/etc/zprofile`` (path_helper) later moves system directories ahead of it
  in login shells; that is the platform's choice and is not fought here.
- fish: ``${XDG_CONFIG_HOME:-~/.config}/fish/conf.d/cpk-path.fish``, a file
  of its own that fish sources at start-up, with a guarded ``set -gx PATH``
  rather than ``fish_add_path``, which by default stores the directory in a
  universal variable: state outside the file, which deleting the file would
  not undo.

Files are replaced atomically (a temporary file in the same directory,
renamed over the old one, keeping its mode); a start-up file that is a
symlink (dotfile managers) is written through to its target, so the link
stays a link.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contentpkg.errors import CpkError
from contentpkg.fs import write_atomic

SHELLS = ("sh", "bash", "zsh", "fish")
BEGIN = "# >>> cpk path >>>"
END = "# <<< cpk path <<<"
_NOTE = "# Written by 'cpk path add'; run it again to add more, delete this block to undo."

_SH_LINE = re.compile(r"case \":\$\{PATH\}:\" in \*:(?P<quoted>[^:]*):\*\)")
_FISH_LINE = re.compile(r"contains -- (?P<quoted>'(?:[^'\\]|\\.)*') \$PATH; ")


@dataclass(frozen=True)
class RcFile:
    """One start-up file, the shells that read it, and its syntax."""

    path: Path
    shells: tuple[str, ...]
    syntax: str  # "sh" (sh, bash and zsh alike) or "fish"


@dataclass(frozen=True)
class RcChange:
    path: Path  # the file as named under HOME (a symlink is written through)
    shells: tuple[str, ...]
    action: str  # "created", "updated" or "unchanged" (what was, or would be, done)
    directories: list[str]  # every directory the block adds, after the change
    block: str  # the block's text after the change


@dataclass(frozen=True)
class PathAddResult:
    directory: Path
    changes: list[RcChange]
    dry_run: bool
    exists: bool  # DIR exists (adding a missing one is allowed; it may come later)
    on_path_now: bool  # DIR is already on this process's PATH

    @property
    def changed(self) -> list[RcChange]:
        return [c for c in self.changes if c.action != "unchanged"]


def add_to_path(
    directory: str | os.PathLike[str],
    shells: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str],
) -> PathAddResult:
    """Add directory to PATH in the start-up files of shells (default: see below).

    Without shells: sh, the user's ``$SHELL``, and every shell whose start-up
    files already exist. Nothing is written when dry_run is true; the result
    says what would change either way. ``environ`` (``HOME``, ``SHELL``,
    ``ZDOTDIR``, ``XDG_CONFIG_HOME``, ``PATH``) is the user's, from the context.
    """
    env = environ
    target = check_directory(directory, env)
    chosen = list(shells) if shells else default_shells(env)
    for shell in chosen:
        if shell not in SHELLS:
            raise CpkError(f"{shell!r}: unknown shell; choose from {', '.join(SHELLS)}")
    # Every file is read and checked before any is written, so a file this
    # cannot handle (a block missing its end marker) changes nothing.
    plans = [_plan(rc, os.fspath(target)) for rc in rc_files(chosen, env)]
    if not dry_run:
        for change, real, data in plans:
            if change.action != "unchanged":
                _write_atomic(real, data, change.path)
    changes = [change for change, _real, _data in plans]
    path_now = [os.path.abspath(p) for p in env.get("PATH", "").split(":") if p]
    return PathAddResult(
        directory=target,
        changes=changes,
        dry_run=dry_run,
        exists=target.is_dir(),
        on_path_now=os.fspath(target) in path_now,
    )


def check_directory(directory: str | os.PathLike[str], environ: Mapping[str, str]) -> Path:
    """DIR made absolute (symlinks kept: a profile's alias must stay an alias)."""
    text = os.fspath(directory)
    if not text:
        raise CpkError("path add: the directory is empty")
    for bad, what in ((":", "':' (the PATH separator)"), ("\n", "a newline"), ("\r", "a CR")):
        if bad in text:
            raise CpkError(f"{text!r}: contains {what}, which cannot be put on PATH")
    if text.startswith("~"):
        home = home_dir(environ)
        text = os.fspath(home) + text[1:] if text == "~" or text.startswith("~/") else text
    return Path(os.path.abspath(text))


def home_dir(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME")
    if not home:
        raise CpkError("path add: HOME is not set; cannot find the shell start-up files")
    return Path(home)


def default_shells(environ: Mapping[str, str]) -> list[str]:
    """sh, the login shell ($SHELL), and every shell with start-up files present."""
    home = home_dir(environ)
    found = {"sh"}
    login = os.path.basename(environ.get("SHELL", ""))
    if login in SHELLS:
        found.add(login)
    if any((home / name).exists() for name in (".bashrc", ".bash_profile", ".bash_login")):
        found.add("bash")
    zdot = _zdotdir(environ)
    if any((zdot / name).exists() for name in (".zshenv", ".zshrc", ".zprofile", ".zlogin")):
        found.add("zsh")
    if (_config_home(environ) / "fish").is_dir():
        found.add("fish")
    return [s for s in SHELLS if s in found]


def rc_files(shells: Sequence[str], environ: Mapping[str, str]) -> list[RcFile]:
    """The start-up files those shells read, each once, in a stable order."""
    home = home_dir(environ)
    files: dict[Path, list[str]] = {}
    syntax: dict[Path, str] = {}

    def want(path: Path, shell: str, kind: str = "sh") -> None:
        files.setdefault(path, [])
        if shell not in files[path]:
            files[path].append(shell)
        syntax[path] = kind

    for shell in SHELLS:
        if shell not in shells:
            continue
        if shell == "sh":
            want(home / ".profile", "sh")
        elif shell == "bash":
            want(home / ".bashrc", "bash")
            login = next(
                (home / n for n in (".bash_profile", ".bash_login") if (home / n).exists()),
                home / ".profile",
            )
            want(login, "bash")
        elif shell == "zsh":
            want(_zdotdir(environ) / ".zshenv", "zsh")
        else:
            want(_config_home(environ) / "fish" / "conf.d" / "cpk-path.fish", "fish", "fish")
    return [RcFile(path, tuple(names), syntax[path]) for path, names in files.items()]


def _zdotdir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("ZDOTDIR") or home_dir(environ))


def _config_home(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME")
    # The XDG spec ignores relative values.
    return Path(xdg) if xdg and os.path.isabs(xdg) else home_dir(environ) / ".config"


# --- the block ---------------------------------------------------------------------


def render_block(directories: Sequence[str], syntax: str) -> str:
    """The marked block adding each directory in turn (the last ends up first)."""
    lines = [BEGIN, _NOTE]
    for directory in directories:
        if syntax == "fish":
            q = _fish_quote(directory)
            lines.append(f"contains -- {q} $PATH; or set -gx PATH {q} $PATH")
        else:
            q = _sh_quote(directory)
            lines.append(
                f'case ":${{PATH}}:" in *:{q}:*) ;; '
                f'*) PATH={q}"${{PATH:+:${{PATH}}}}"; export PATH ;; esac'
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def parse_directories(block_lines: Sequence[str], syntax: str) -> list[str]:
    """The directories a block adds, read back from the lines render_block wrote."""
    found = []
    pattern = _FISH_LINE if syntax == "fish" else _SH_LINE
    for line in block_lines:
        match = pattern.match(line)
        if match is None:
            continue
        quoted = match["quoted"]
        try:
            value = _fish_unquote(quoted) if syntax == "fish" else shlex.split(quoted)[0]
        except (ValueError, IndexError):
            continue
        if value not in found:
            found.append(value)
    return found


def _sh_quote(text: str) -> str:
    # Always quoted (shlex.quote leaves "safe" words bare): one form to read
    # back, and no character of a path is ever a pattern in the case line.
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _fish_quote(text: str) -> str:
    # In fish's single quotes only \\ and \' are escapes.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def _split(text: str, path: Path) -> tuple[list[str], list[str], list[str]] | None:
    """(lines before the first block, the blocks' inner lines, lines after); None if no block.

    Several blocks (a file edited by hand or merged from elsewhere) are
    folded into the first one's place.
    """
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip() == BEGIN]
    if not begins:
        if any(line.rstrip() == END for line in lines):
            raise CpkError(f"{path}: has {END!r} without {BEGIN!r}; fix the file by hand")
        return None
    before = lines[: begins[0]]
    inner: list[str] = []
    after: list[str] = []
    i = begins[0]
    while i < len(lines):
        if lines[i].rstrip() == BEGIN:
            try:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == END)
            except StopIteration:
                raise CpkError(
                    f"{path}: has {BEGIN!r} without {END!r}; fix the file by hand"
                ) from None
            inner += [line.rstrip("\n") for line in lines[i + 1 : end]]
            i = end + 1
        else:
            after.append(lines[i])
            i += 1
    return before, inner, after


def _plan(rc: RcFile, directory: str) -> tuple[RcChange, Path, bytes]:
    """The change to rc, the real file to write and its new bytes."""
    real = Path(os.path.realpath(rc.path))
    try:
        old = real.read_bytes().decode("utf-8", "surrogateescape")
        exists = True
    except FileNotFoundError:
        old, exists = "", False
    except OSError as exc:
        raise CpkError(f"{rc.path}: {exc.strerror or exc}") from None
    parts = _split(old, rc.path)
    if parts is None:
        directories = [directory]
        block = render_block(directories, rc.syntax)
        prefix = old
        if prefix and not prefix.endswith("\n"):
            prefix += "\n"
        if prefix and not prefix.endswith("\n\n"):
            prefix += "\n"  # a blank line before the block, for the reader
        new = prefix + block
    else:
        before, inner, after = parts
        directories = parse_directories(inner, rc.syntax)
        if directory not in directories:
            directories.append(directory)
        block = render_block(directories, rc.syntax)
        new = "".join(before) + block + "".join(after)
    action = "unchanged" if new == old else ("updated" if exists else "created")
    change = RcChange(rc.path, rc.shells, action, directories, block)
    return change, real, new.encode("utf-8", "surrogateescape")


def _write_atomic(real: Path, data: bytes, shown: Path) -> None:
    """Replace real with data in one rename, keeping its mode."""
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(os.stat(real).st_mode)
        except FileNotFoundError:
            mode = 0o644
        # Durable: a start-up file the user relies on at every login.
        write_atomic(real, data, durable=True, mode=mode, exact_mode=True)
    except OSError as exc:
        raise CpkError(f"{shown}: cannot write: {exc.strerror or exc}") from None
