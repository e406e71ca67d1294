"""How slow work reports progress without the core ever printing.

Core functions that download or build take a :class:`Reporter`; the CLI
passes one backed by ``rich`` when stderr is a terminal, and everything else
gets :data:`QUIET`, which does nothing. Keeping the protocol here, free of
imports, lets the hot path avoid importing ``rich`` at all.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    def advance(self, amount: int) -> None: ...

    def done(self, message: str | None = None) -> None: ...


class Reporter(Protocol):
    def task(self, label: str, total: int | None = None) -> Task:
        """Start a unit of work (a download of total bytes, a build)."""
        ...

    def note(self, message: str) -> None:
        """Report one finished step ("fetched x 1.0", "built y 2.0")."""
        ...


class _QuietTask:
    def advance(self, amount: int) -> None:
        pass

    def done(self, message: str | None = None) -> None:
        pass


class _Quiet:
    def task(self, label: str, total: int | None = None) -> Task:
        return _QuietTask()

    def note(self, message: str) -> None:
        pass


QUIET: Reporter = _Quiet()
