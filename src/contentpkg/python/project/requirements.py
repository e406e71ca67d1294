"""pip-style requirements files: the subset of the format cpk honours.

Options cpk cannot honour (``--pre``, ``--only-binary``...) are errors
rather than silently ignored, because ignoring them would lock something
other than what the file asks for. The same reader takes ``cpk run``'s
``--with``, ``--with-editable`` and ``--with-requirements`` values, as
lines of a file in the working directory, so every spelling pip accepts
there means the same thing. Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from contentpkg.errors import CpkError
from contentpkg.python.names import canonical_name
from contentpkg.python.project.models import IndexSettings, ProjectInputs, Source
from contentpkg.python.project.pep508 import NAME, validate_requirements
from contentpkg.python.project.pep621 import read_static_project
from contentpkg.python.project.sources import add_url_sources, find_links_location

REQUIREMENTS_TXT = "requirements.txt"

# pip's definition of a comment in a requirements file.
_COMMENT = re.compile(r"(^|\s+)#.*$")

# pip's ${VAR} expansion: upper-case names only, so $HOME-like text and
# lower-case templates stay as written (pip's own rule).
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")

_OPTIONS_HELP = "-r, -c, -e, -i/--index-url, --extra-index-url, -f/--find-links, --no-index, --hash"
# option spelling -> (canonical name, takes a value)
_OPTIONS: dict[str, tuple[str, bool]] = {
    "-r": ("requirement", True),
    "--requirement": ("requirement", True),
    "-c": ("constraint", True),
    "--constraint": ("constraint", True),
    "-e": ("editable", True),
    "--editable": ("editable", True),
    "-i": ("index-url", True),
    "--index-url": ("index-url", True),
    "--extra-index-url": ("extra-index-url", True),
    "-f": ("find-links", True),
    "--find-links": ("find-links", True),
    "--no-index": ("no-index", False),
}


#: The digests --hash may name (pip's hash-checking mode), with their hex length.
_HASH_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class RequirementsReader:
    """A pip-compatible reader for the subset of the format cpk honours.

    Options cpk cannot honour (``--pre``, ``--only-binary``...) are errors
    rather than silently ignored, because ignoring them would lock
    something other than what the file asks for. Relative paths are taken
    relative to the file that names them (pip takes some relative to the
    working directory, which makes a lock depend on where it was made).
    ``environ`` is what ``${VAR}`` expands from (None: this process's
    environment, read through the Context only when a line uses it).
    """

    def __init__(self, validate: bool, environ: Mapping[str, str] | None = None) -> None:
        self.validate = validate
        self.environ = environ
        self.requirements: list[str] = []
        #: ``-c`` files' requirements: they narrow versions, add nothing.
        self.constraints: list[str] = []
        self.index_url: str | None = None
        self.extra_index_urls: list[str] = []
        self.find_links: list[str] = []
        self.no_index = False
        self.sources: dict[str, Source] = {}
        self.hashes: dict[str, list[str]] = {}
        self.files: list[Path] = []
        self._stack: list[Path] = []
        # Inside a -c file every requirement is a constraint (pip's rule;
        # a -r inside it reads requirements again, as pip's does).
        self._constraint = False
        self.uses_environment = False

    @property
    def has_index_options(self) -> bool:
        return bool(self.index_url or self.extra_index_urls or self.find_links or self.no_index)

    def inputs(
        self,
        root: Path,
        input_file: Path,
        index: IndexSettings,
        sources: dict[str, Source],
        kind: Literal["requirements", "script"] = "requirements",
    ) -> ProjectInputs:
        """Combine with ``[tool.cpk]`` settings; the requirements file's own
        options come second, as options given later do on pip's command line."""
        settings = IndexSettings(
            index_url=self.index_url or index.index_url,
            extra_index_urls=tuple(_dedupe([*index.extra_index_urls, *self.extra_index_urls])),
            find_links=tuple(_dedupe([*index.find_links, *self.find_links])),
            no_index=self.no_index or index.no_index,
        )
        return ProjectInputs(
            root=root,
            input_file=input_file.absolute(),
            kind=kind,
            requirements=_dedupe(self.requirements),
            index=settings,
            sources={**sources, **self.sources},
            hashes={name: tuple(sorted(set(h))) for name, h in self.hashes.items()},
            files=tuple(self.files),
            constraints=_dedupe(self.constraints),
            uses_environment=self.uses_environment,
        )

    def read_arguments(self, items: Sequence[tuple[str, str]], base: Path) -> None:
        """Read command-line values as requirement lines relative to ``base``.

        Each item is (option as shown in errors, line): ``--with`` values are
        plain lines (a requirement, a path, ``-e PATH``, ``-r FILE``),
        ``--with-editable P`` arrives as ``-e P`` and ``--with-requirements
        F`` as ``-r F``.
        """
        for label, line in items:
            text = line.strip()
            if not text:
                raise CpkError(f"{label}: empty value")
            self._line(base, label, Path(label), 0, self._expand(text))

    def read(self, file: Path, origin: tuple[Path, int] | None) -> None:
        file = Path(os.path.normpath(file))
        if file in self._stack:
            chain = " -> ".join(p.name for p in [*self._stack, file])
            raise CpkError(f"{self._stack[-1]}: requirements files include each other: {chain}")
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as error:
            where = (
                ""
                if not origin
                else f"{origin[0]}:{origin[1]}: "
                if origin[1]
                else f"{origin[0]}: "
            )
            raise CpkError(f"{where}cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CpkError(f"{file}: not UTF-8 text") from None
        self._stack.append(file)
        if file not in self.files:
            self.files.append(file)
        for lineno, line in _logical_lines(text):
            self._line(file.parent, f"{file}:{lineno}", file, lineno, self._expand(line))
        self._stack.pop()

    def _expand(self, line: str) -> str:
        """``${VAR}`` from the environment, as pip expands it (unset: kept)."""
        if "${" not in line:
            return line
        if self.environ is None:
            from contentpkg.context import Context

            self.environ = Context.from_environ().environ
        environ = self.environ
        self.uses_environment = self.uses_environment or bool(_ENV_VAR.search(line))
        return _ENV_VAR.sub(lambda m: environ.get(m.group(1), m.group(0)), line)

    def _line(self, base: Path, where: str, file: Path, lineno: int, line: str) -> None:
        """One logical line; relative paths are relative to ``base``."""
        if line.startswith("-"):
            try:
                tokens = shlex.split(line)
            except ValueError as error:
                raise CpkError(f"{where}: cannot parse options: {error}") from None
            for option, value in _options(tokens, where):
                self._option(base, where, file, lineno, option, value)
            return
        line = _bare_url(line, where)
        # As pip does: the requirement ends at the first word that starts
        # with a dash; what follows are per-requirement options.
        words = line.split()
        cut = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        req = " ".join(words[:cut])
        hashes: list[str] = []
        rest = words[cut:]
        i = 0
        while i < len(rest):
            word = rest[i]
            if word == "--hash" and i + 1 < len(rest):
                hashes.append(rest[i + 1])
                i += 2
            elif word.startswith("--hash="):
                hashes.append(word.removeprefix("--hash="))
                i += 1
            else:
                raise CpkError(
                    f"{where}: unsupported option {word.split('=', 1)[0]!r} after a "
                    "requirement (cpk supports --hash)"
                )
        for digest in hashes:
            algorithm, sep, value = digest.partition(":")
            want = _HASH_HEX_LENGTHS.get(algorithm.lower())
            if (
                not sep
                or want is None
                or len(value) != want
                or not re.fullmatch(r"[0-9a-fA-F]+", value)
            ):
                # pip accepts only sha256/384/512 in hash-checking mode; a
                # weaker or cut digest would pin nothing.
                raise CpkError(
                    f"{where}: malformed --hash {digest[:80]!r} (expected sha256:<64 hex digits>)"
                )
        if req.startswith((".", "/", "~")):
            if self._constraint:
                raise CpkError(f"{where}: a constraint names a version, not a path ({req})")
            name = self._local(base, where, req, editable=False)
            req = name
        elif self.validate:
            validate_requirements([req], file, lineno or None)
        if self._constraint:
            if "@" in req.split(";", 1)[0]:
                raise CpkError(f"{where}: a constraint names a version, not a URL ({req})")
            self.constraints.append(req)
        else:
            add_url_sources([req], base, where, self.sources)
            self.requirements.append(req)
        if hashes:
            match = NAME.match(req)
            if match:
                key = canonical_name(match.group(1))
                self.hashes.setdefault(key, []).extend(
                    f"{a.lower()}:{v.lower()}" for a, _, v in (h.partition(":") for h in hashes)
                )

    def _option(
        self, base: Path, where: str, file: Path, lineno: int, option: str, value: str
    ) -> None:
        if option in ("requirement", "constraint"):
            flag = "-r" if option == "requirement" else "-c"
            if "://" in value:
                raise CpkError(f"{where}: {flag} {value}: only local files can be included")
            outer = self._constraint
            self._constraint = option == "constraint"
            try:
                self.read(base / os.path.expanduser(value), (file, lineno))
            finally:
                self._constraint = outer
        elif self._constraint and option == "editable":
            raise CpkError(f"{where}: -e has no meaning in a constraints file")
        elif option == "editable" and value.startswith("git+"):
            # pip clones an editable repository into src/ for you to change;
            # cpk installs the locked commit instead, and says so.
            req = _bare_url(value, where)
            logging.getLogger(__name__).warning(
                f"{where}: -e {value}: installed from its locked commit, not as an "
                "editable checkout (clone it and use -e PATH to edit it)"
            )
            self.requirements.append(req)
        elif option == "editable":
            self.requirements.append(self._local(base, where, value, editable=True))
        elif option == "index-url":
            self.index_url = value
        elif option == "extra-index-url":
            self.extra_index_urls.append(value)
        elif option == "find-links":
            self.find_links.append(find_links_location(value, base))
        elif option == "no-index":
            self.no_index = True

    def _local(self, base: Path, where: str, spec: str, *, editable: bool) -> str:
        """Record a local directory as a source and return its project name."""
        if "://" in spec or spec.startswith(("git+", "hg+", "svn+", "bzr+")):
            raise CpkError(
                f"{where}: {spec}: an editable install needs a local directory "
                "(for a repository, write NAME @ git+URL without -e)"
            )
        path_part, _, fragment = spec.partition("#")
        extras = ""
        bracket = re.search(r"\[[^\]]*\]$", path_part)
        if bracket:  # ./B[dev]: the extras belong to the requirement, not the path
            path_part, extras = path_part[: bracket.start()], bracket.group(0)
        path = Path(os.path.normpath(base / os.path.expanduser(path_part)))
        if not path.is_dir():
            raise CpkError(f"{where}: {path_part} is not a directory")
        name = _project_name(path) or _egg_name(fragment)
        if not name:
            raise CpkError(
                f"{where}: cannot tell the project name of {path_part} "
                "(no [project].name in its pyproject.toml; add #egg=NAME)"
            )
        key = canonical_name(name)
        self.sources[key] = Source(name=key, path=path, editable=editable)
        return name + extras


def read_with(
    items: Sequence[str], base: Path, environ: Mapping[str, str] | None = None
) -> RequirementsReader:
    """``cpk run``'s ``--with`` values, read as requirement lines in ``base``.

    The command line hands ``--with-editable P`` over as ``-e P`` and
    ``--with-requirements F`` as ``-r F`` (quoted), so a value means what the
    same line in a requirements file means: ``.`` or a path is the project
    there, ``-e PATH`` an editable checkout, ``-r FILE`` a file's requirements
    (with its ``-c``, ``--hash`` and index lines).
    """
    reader = RequirementsReader(validate=False, environ=environ)
    labelled = []
    for item in items:
        flag = item.split(None, 1)[0] if item.startswith("-") else ""
        label = {"-e": "--with-editable", "-r": "--with-requirements"}.get(flag, "--with")
        labelled.append((label, item))
    reader.read_arguments(labelled, base)
    return reader


def _bare_url(line: str, where: str) -> str:
    """A line that is only a URL (``git+https://...#egg=name``, a wheel's
    URL) as ``name @ URL``, as pip reads it; other lines unchanged."""
    words = line.split(";", 1)[0].split()
    head = words[0] if words else ""
    if not re.match(r"^[a-z][a-z0-9+.-]*://", head) and not head.startswith("file:"):
        return line
    url_part, _, fragment = head.partition("#")
    name = _egg_name(fragment)
    if name is None:
        filename = url_part.rstrip("/").rsplit("/", 1)[-1]
        if filename.endswith(".whl"):
            name = filename.split("-", 1)[0]
    if not name:
        raise CpkError(f"{where}: {head}: name the project (NAME @ URL, or #egg=NAME)")
    return f"{name} @ {line}"


def _egg_name(fragment: str) -> str | None:
    for part in fragment.split("&"):
        if part.startswith("egg="):
            return part[4:] or None
    return None


def _project_name(directory: Path) -> str | None:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return None
    _, project = read_static_project(pyproject)
    return project.name if project is not None else None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join continuation lines and drop comments, as pip's ``preprocess`` does.

    The line number of a joined line is that of its first physical line, so
    errors point where the requirement starts.
    """
    pending: list[str] = []
    first = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        is_comment = bool(_COMMENT.match(line))
        if line.endswith("\\") and not is_comment:
            if not pending:
                first = lineno
            pending.append(line[:-1])
            continue
        if pending:
            # A comment line ends a continuation rather than joining it.
            pending.append(" " + line if is_comment else line)
            joined, start = "".join(pending), first
            pending = []
        else:
            joined, start = line, lineno
        joined = _COMMENT.sub("", joined).strip()
        if joined:
            yield start, joined
    if pending:
        joined = _COMMENT.sub("", "".join(pending)).strip()
        if joined:
            yield first, joined


def _options(tokens: Sequence[str], where: str) -> Iterator[tuple[str, str]]:
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        spelling, value = token, None
        if token.startswith("--") and "=" in token:
            spelling, value = token.split("=", 1)
        elif not token.startswith("--") and len(token) > 2 and token[:2] in _OPTIONS:
            spelling, value = token[:2], token[2:]  # -rfile, -ihttps://...
        if spelling not in _OPTIONS:
            if not token.startswith("-"):
                raise CpkError(f"{where}: unexpected {token!r} among options")
            raise CpkError(
                f"{where}: unsupported option {spelling!r} (cpk supports {_OPTIONS_HELP})"
            )
        name, takes_value = _OPTIONS[spelling]
        if takes_value and value is None:
            if i >= len(tokens):
                raise CpkError(f"{where}: option {spelling} needs a value")
            value = tokens[i]
            i += 1
        elif not takes_value and value is not None:
            raise CpkError(f"{where}: option {spelling} takes no value")
        yield name, value or ""


# --------------------------------------------------------------------------
# PEP 723 scripts


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
