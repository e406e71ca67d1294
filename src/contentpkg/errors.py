"""The one error type the core raises for anything a user can cause.

The core never prints: it raises :class:`CpkError` with a single line that
names the input and the problem, and ``cli.py`` turns it into a message and
a non-zero exit status, never a traceback.
"""


class CpkError(Exception):
    """A failure caused by input or state the user controls.

    ``str(error)`` is the whole message: one line, naming what was wrong.
    ``details`` holds optional extra lines (candidates of an ambiguous spec,
    a conflict chain) that the CLI prints below the message.
    """

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []
