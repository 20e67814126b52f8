"""Download progress: the frozen report the store emits, and a rich progress bar for the CLI.

The store calls a plain callback (the deployment flow forwards it to the bus);
:func:`progress_bar` is the CLI's renderer of the same reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True, slots=True)
class Progress:
    """One artifact's download so far: bytes done of ``total`` at ``rate`` bytes/s."""

    component: str
    uri: str
    done: int
    total: int | None
    rate: float
    finished: bool = False


ProgressCallback = Callable[[Progress], None]


class RateMeter:
    """Bytes per second since the first byte of one artifact (resumes included)."""

    def __init__(self, component: str, uri: str, total: int | None,
                 callback: ProgressCallback | None) -> None:
        self.component, self.uri, self.total = component, uri, total
        self._callback = callback
        self._start = time.monotonic()
        self.done = 0

    def add(self, nbytes: int) -> None:
        self.done += nbytes
        self._report(finished=False)

    def rewind(self, done: int) -> None:
        """A retry starts again from ``done`` bytes (what was kept on disk)."""
        self.done = done

    def finish(self) -> None:
        self._report(finished=True)

    def _report(self, finished: bool) -> None:
        if self._callback is None:
            return
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self._callback(Progress(self.component, self.uri, self.done, self.total, rate, finished))


@contextmanager
def progress_bar(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A rich progress bar with one line per artifact; yields the callback to pass to ``fetch``."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress

    tasks: dict[tuple[str, str], TaskID] = {}
    with RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                      transient=False) as bar:

        def update(report: Progress) -> None:
            key = (report.component, report.uri)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{report.component} {report.uri}", total=report.total)
            bar.update(tasks[key], completed=report.done, total=report.total)

        yield update
