"""How slow work reports progress without the core ever printing.

Core functions that download or build take a :class:`Reporter`; the CLI
passes one backed by ``rich`` when stderr is a terminal, one that prints only
summary lines ("Resolved 4 packages in 0.3s") when it is not, and
:data:`QUIET` under ``-q``. Keeping the protocol here, free of imports, lets
the hot path avoid importing ``rich`` at all.
"""

from __future__ import annotations

from typing import Protocol, TextIO


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

    def summary(self, message: str) -> None:
        """Report what a whole phase did, uv-style ("Resolved 4 packages in
        0.3s"): the lines a log or a pipe keeps when there are no bars."""
        ...


def elapsed(seconds: float) -> str:
    """A duration as a summary line shows it: ``40ms`` below a second, ``2.1s`` above."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.1f}s"


def size_text(size: int) -> str:
    """Bytes as a summary line shows them (``31.0 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


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

    def summary(self, message: str) -> None:
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

    def __init__(self, color: bool = True) -> None:
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
            console=Console(stderr=True, no_color=not color),
            transient=True,
        )
        self.progress.start()

    def task(self, label: str, total: int | None = None) -> Task:
        return _RichTask(self, self.progress.add_task(label, total=total))

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def summary(self, message: str) -> None:
        # Printed above the live bars, which rich keeps at the bottom.
        self.progress.console.print(message, highlight=False)

    def close(self) -> None:
        self.progress.stop()


class _LazyRich:
    """A :class:`_RichReporter` started on first use.

    Commands make their reporter up front, but most runs of ``cpk run``
    download and build nothing: they must not pay for importing ``rich``
    nor flash an empty progress display.
    """

    def __init__(self, stream: TextIO, color: bool = True) -> None:
        self._started: _RichReporter | None = None
        self._stream = stream
        self._color = color

    def _reporter(self) -> _RichReporter:
        if self._started is None:
            self._started = _RichReporter(self._color)
        return self._started

    def task(self, label: str, total: int | None = None) -> Task:
        return self._reporter().task(label, total)

    def note(self, message: str) -> None:
        self._reporter().note(message)

    def summary(self, message: str) -> None:
        if self._started is None:
            # No bars to print above: a plain line, without importing rich
            # (a run that only composes a view says so and execs).
            self._stream.write(message + "\n")
            self._stream.flush()
            return
        self._started.summary(message)

    def close(self) -> None:
        if self._started is not None:
            self._started.close()


class _SummaryLines:
    """No bars (nobody watches them in a pipe or a log): only the summary
    lines, one each, flushed as they come so a slow step shows when it ends."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def task(self, label: str, total: int | None = None) -> Task:
        return _QuietTask()

    def note(self, message: str) -> None:
        pass

    def summary(self, message: str) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()


def reporter_for(
    stream: TextIO, *, quiet: bool = False, progress: bool = True, color: bool = True
) -> Reporter:
    """The reporter of a command: nothing under ``-q``; bars (started on
    first use) and summaries on a terminal; summary lines alone elsewhere,
    or when ``--no-progress`` turned the bars off."""
    if quiet:
        return QUIET
    isatty = getattr(stream, "isatty", None)
    if progress and isatty is not None and isatty():
        return _LazyRich(stream, color)
    return _SummaryLines(stream)
