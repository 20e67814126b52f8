"""What a program embedding the runtime listens to: component state changes, messages
published on the local bus, artifact download progress and lifecycle output; and
waiting until components reach a state. The nucleus is a :class:`Listeners`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from .artifacts import Progress
    from .component import State

__all__ = ["Listeners"]


class Listeners:
    """Listeners by kind, called in the event loop's thread, in registration order."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., None]]] = defaultdict(list)
        self._changed = anyio.Event()

    def on_message(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(topic, payload)`` for every message published through
        ``publish`` (what in-process components publish)."""
        self._listeners["message"].append(listener)

    def on_progress(self, listener: Callable[[Progress], None]) -> None:
        """Call ``listener(report)`` as artifacts download (bytes, total, rate)."""
        self._listeners["progress"].append(listener)

    def on_state(self, listener: Callable[[str, State, str], None]) -> None:
        """Call ``listener(component, state, reason)`` on every state change."""
        self._listeners["state"].append(listener)

    def on_output(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(component, line)`` for every line a lifecycle step prints."""
        self._listeners["output"].append(listener)

    def _emit(self, kind: str, *args: Any) -> None:
        for listener in self._listeners[kind]:
            listener(*args)

    def _state(self, name: str, version: str, state: State, reason: str) -> None:
        self._emit("state", name, state, reason)
        self._changed.set()
        self._changed = anyio.Event()

    async def _until(self, done: Callable[[], bool], timeout: float | None) -> None:
        """Wait, up to ``timeout`` seconds, until ``done()`` after a state change."""
        with anyio.fail_after(timeout):
            while not done():
                await self._changed.wait()
