"""The error types the core raises for anything a user can cause.

The core never prints: it raises :class:`CpkError` (or a subclass) with a
single line that names the input and the problem, and the command line turns
it into a message and a non-zero exit status, never a traceback.

Subclasses carry what went wrong as data, as resolvelib's
``ResolutionImpossible(causes)`` and installer's ``InvalidRecordEntry``
do, so code that can recover catches the narrow type and reads its fields
instead of matching message text. Standard library only: the run memo's hot
path imports this module.
"""

from __future__ import annotations

# collections.abc for annotations only: at run time it brings collections
# (keyword, operator, reprlib), more than ``cpk ldd FILE`` spends answering.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class CpkError(Exception):
    """A failure caused by input or state the user controls.

    ``str(error)`` is the whole message: one line, naming what was wrong.
    ``details`` holds optional extra lines (candidates of an ambiguous spec,
    a conflict chain) that the CLI prints below the message.
    """

    def __init__(self, message: str, details: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class NotFoundError(CpkError):
    """Something named does not exist: an entry spec, a project, a package."""

    def __init__(self, message: str, *, what: str = "", details: Sequence[str] | None = None):
        super().__init__(message, details)
        self.what = what


class AmbiguousSpecError(CpkError):
    """A spec matched more than one entry; ``candidates`` lists them."""

    def __init__(self, message: str, *, spec: str, candidates: Sequence[str]) -> None:
        super().__init__(message, list(candidates))
        self.spec = spec
        self.candidates = list(candidates)


class InvalidInputError(CpkError):
    """A file given to cpk is malformed: a wheel, a ``.deb``, an ELF, a TOML file.

    ``path`` names the input; the message says what is wrong with it.
    """

    def __init__(self, message: str, *, path: str = "", details: Sequence[str] | None = None):
        super().__init__(message, details)
        self.path = path


class HashMismatchError(CpkError):
    """Bytes did not hash to what a lock, an index, RECORD or the store expected.

    The one line is composed here from the parts, so that a wheel, a
    ``.deb``, a registry blob and an image are refused in the same words:
    ``SUBJECT: sha256 mismatch (expected E from EXPECTED_FROM, got A from
    ORIGIN); HINT``, the optional parts left out when empty. ``subject`` is
    what was checked (a file name, a URL, a wheel member, a blob);
    ``expected_from`` who named the expected hash (``the index``, ``its
    RECORD``); ``origin`` where the bytes came from (a URL, a registry), so
    a mirror serving other bytes can be told from a corrupt cache; ``hint``
    what the user can make of it.
    """

    def __init__(
        self,
        *,
        subject: str,
        expected: str,
        actual: str,
        algorithm: str = "sha256",
        expected_from: str = "",
        origin: str = "",
        hint: str = "",
        details: Sequence[str] | None = None,
    ) -> None:
        named = f" from {expected_from}" if expected_from else ""
        got = f" from {origin}" if origin else ""
        tail = f"; {hint}" if hint else ""
        message = f"{subject}: {algorithm} mismatch (expected {expected}{named}, got {actual}{got})"
        super().__init__(message + tail, details)
        self.subject = subject
        self.expected = expected
        self.actual = actual
        self.algorithm = algorithm
        self.expected_from = expected_from
        self.origin = origin


class ResolutionError(CpkError):
    """Requirements that no set of versions satisfies.

    ``chains`` holds one line per conflicting requirement chain, as the
    resolver found them (``a 1.0 requires b<2``).
    """

    def __init__(self, message: str, *, chains: Sequence[str] = ()) -> None:
        super().__init__(message, list(chains))
        self.chains = list(chains)


class LockOutdatedError(CpkError):
    """``--locked`` was given and the lock does not match the project's inputs."""


class LockUnreadableError(InvalidInputError):
    """A lock file exists but cannot be read (a merge conflict, a hand edit)."""


class BuildError(CpkError):
    """A PEP 517 build failed; ``log`` holds the backend's last output lines."""

    def __init__(self, message: str, *, project: str, log: Sequence[str] = ()) -> None:
        super().__init__(message, list(log))
        self.project = project
        self.log = list(log)


class MissingLibraryError(CpkError):
    """An ELF needs a soname that no chosen entry provides.

    ``missing`` maps each soname to who needs it; ``searched`` lists where it
    was looked for.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: dict[str, list[str]],
        searched: Sequence[str] = (),
        details: Sequence[str] | None = None,
    ) -> None:
        super().__init__(message, details)
        self.missing = missing
        self.searched = list(searched)


class ConflictError(CpkError):
    """A change would overwrite something cpk did not put there."""


class ExecError(CpkError):
    """A command could not be started in place of cpk.

    ``status`` is what a shell would exit with: 127 when the command is not
    found, 126 when it cannot be executed.
    """

    def __init__(self, message: str, *, command: str, status: int) -> None:
        super().__init__(message)
        self.command = command
        self.status = status


class WriteFailedError(CpkError):
    """Writing failed for want of room or permission, not because of the input.

    ``path`` is where cpk was writing (a store, a cache directory) and
    ``operation`` what it was doing (``extracting six-1.16.0-py3-none-any.whl``),
    so a full disk is not mistaken for a corrupt package; ``errno`` is the
    system's code (``ENOSPC``, ``EDQUOT``, ``EROFS``...).
    """

    def __init__(self, message: str, *, path: str, operation: str, errno: int) -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation
        self.errno = errno


def write_failed(exc: OSError, path: object, operation: str) -> WriteFailedError:
    """The one-line error for an OSError raised while writing below ``path``.

    Reads as ``no space left on device writing <path> (<operation>)``: what
    ran out, where, doing what.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    return WriteFailedError(
        f"{reason} writing {path} ({operation})",
        path=str(path),
        operation=operation,
        errno=exc.errno or 0,
    )


class LockMismatchError(CpkError):
    """A lock that does not cover the running interpreter or the selection:
    another Python version or platform, or no file for a selected package."""
