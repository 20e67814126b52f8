"""Progress on stderr while benchmarks run: rich progress bars on a terminal, else plain lines.

Plain lines (one per case and per benchmark) keep logs readable when stderr is
a file or a pipe, as under CI or a test.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    """Told what is running; shows it."""

    def start(self, benchmark: str) -> None: ...
    def plan(self, total_samples: int) -> None: ...
    def case(self, name: str) -> None: ...
    def tick(self, contender: str) -> None: ...
    def finish(self, status: str, seconds: float, reason: str | None) -> None: ...
    def close(self) -> None: ...


def _headline(status: str, seconds: float, reason: str | None) -> str:
    """``ok in 1.2 s`` or ``skipped in 0.0 s: <last line of the reason>``."""
    text = f"{status} in {seconds:.1f} s"
    if reason:
        text += ": " + reason.strip().splitlines()[-1]
    return text


class PlainProgress:
    """One line per case started and per benchmark finished."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._benchmark = ""

    def start(self, benchmark: str) -> None:
        self._benchmark = benchmark

    def plan(self, total_samples: int) -> None:
        self._print(f"{self._benchmark}: {total_samples} samples to take")

    def case(self, name: str) -> None:
        self._print(f"{self._benchmark}: {name}")

    def tick(self, contender: str) -> None:
        pass

    def finish(self, status: str, seconds: float, reason: str | None) -> None:
        self._print(f"{self._benchmark}: {_headline(status, seconds, reason)}")

    def close(self) -> None:
        pass

    def _print(self, text: str) -> None:
        print(f"[bench] {text}", file=self._stream, flush=True)


class RichProgress:
    """A progress bar per benchmark, showing the case and contender being sampled."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("[bold]{task.fields[benchmark]:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(file=stream),
        )
        self._bars.start()
        self._task: int | None = None
        self._case = ""

    def start(self, benchmark: str) -> None:
        self._task = self._bars.add_task("building", total=None, benchmark=benchmark)

    def plan(self, total_samples: int) -> None:
        self._update(total=total_samples)

    def case(self, name: str) -> None:
        self._case = name
        self._update(description=name)

    def tick(self, contender: str) -> None:
        self._update(advance=1, description=f"{self._case} · {contender}")

    def finish(self, status: str, seconds: float, reason: str | None) -> None:
        self._update(description=_headline(status, seconds, reason))

    def close(self) -> None:
        self._bars.stop()

    def _update(self, **fields: object) -> None:
        if self._task is not None:
            self._bars.update(self._task, **fields)  # type: ignore[arg-type]


def make_progress(stream: TextIO = sys.stderr) -> Progress:
    """:class:`RichProgress` on a terminal (when rich is installed), else :class:`PlainProgress`."""
    if stream.isatty():
        try:
            return RichProgress(stream)
        except ImportError:
            pass
    return PlainProgress(stream)
