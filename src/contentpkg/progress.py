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


class _RichTask:
    def __init__(self, reporter: _RichReporter, task_id: int) -> None:
        self._reporter = reporter
        self._id = task_id

    def advance(self, amount: int) -> None:
        self._reporter.progress.advance(self._id, amount)  # type: ignore[arg-type]

    def done(self, message: str | None = None) -> None:
        self._reporter.progress.remove_task(self._id)  # type: ignore[arg-type]
        if message:
            self._reporter.progress.console.print(f"[dim]{message}[/dim]", highlight=False)


class _RichReporter:
    """Transient progress bars on stderr; rich is imported only here."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.progress.start()

    def task(self, label: str, total: int | None = None) -> Task:
        return _RichTask(self, self.progress.add_task(label, total=total))

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def close(self) -> None:
        self.progress.stop()


class _LazyRich:
    """A :class:`_RichReporter` started on first use.

    Commands make their reporter up front, but most runs of ``cpk run``
    download and build nothing: they must not pay for importing ``rich``
    nor flash an empty progress display.
    """

    def __init__(self) -> None:
        self._started: _RichReporter | None = None

    def _reporter(self) -> _RichReporter:
        if self._started is None:
            self._started = _RichReporter()
        return self._started

    def task(self, label: str, total: int | None = None) -> Task:
        return self._reporter().task(label, total)

    def note(self, message: str) -> None:
        self._reporter().note(message)

    def close(self) -> None:
        if self._started is not None:
            self._started.close()


def terminal_reporter(stream: object) -> Reporter:
    """Progress bars when stream is a terminal (started on first use),
    :data:`QUIET` otherwise."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return _LazyRich()
    return QUIET
