"""The orphan sweeper: kills what an earlier runtime on the same root left running."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio

from ..kernel import Actor
from ._actor import kill_orphans

log = logging.getLogger("actors.component")


def sweep(root: Path, instance: str) -> None:
    """Kill every process of an earlier runtime on ``root`` (see :func:`kill_orphans`)."""
    killed = kill_orphans(root, instance)
    if killed:
        log.warning("killed %d component process(es) left by a previous runtime on %s",
                    killed, root)


class OrphanSweeper(Actor):
    """Sweeps for orphans again after start: a runtime killed between fork and
    exec leaves a child that only shows its environment once it has exec'ed."""

    def __init__(self, root: Path, instance: str) -> None:
        self._root = root
        self._instance = instance

    async def on_start(self) -> None:
        self.task_group.start_soon(self._later)

    async def _later(self) -> None:
        for delay in (0.2, 1.0, 5.0):
            await anyio.sleep(delay)
            await anyio.to_thread.run_sync(sweep, self._root, self._instance)

    async def receive(self, message: Any) -> None:
        raise TypeError(f"orphan sweeper takes no messages (got {message!r})")
