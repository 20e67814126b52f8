"""Small real actors the kernel tests use."""

from __future__ import annotations

from typing import Any

import anyio

from actors.kernel import Actor


class Boom(Exception):
    """The failure the test actors raise on purpose."""


class Journal:
    """Records what actors did, in order, across instances and restarts."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def add(self, who: str, what: str) -> None:
        self.entries.append((who, what))

    def of(self, what: str) -> list[str]:
        return [who for who, w in self.entries if w == what]

    def count(self, who: str, what: str) -> int:
        return self.entries.count((who, what))


class Worker(Actor):
    """Echoes; 'crash' raises Boom, 'finish' ends normally, ('sleep', s) sleeps."""

    def __init__(self, label: str = "", journal: Journal | None = None) -> None:
        self.label = label
        self.journal = journal or Journal()

    async def on_start(self) -> None:
        self.journal.add(self.label, "start")

    async def on_stop(self) -> None:
        self.journal.add(self.label, "stop")

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom(f"{self.label} crashed on purpose")
        if message == "finish":
            self.finish()
            return "finishing"
        if isinstance(message, tuple) and message[0] == "sleep":
            await anyio.sleep(message[1])
        return message


def worker(label: str, journal: Journal) -> Any:
    return lambda: Worker(label, journal)
