"""A bounded FIFO mailbox built for speed on a deque and bare futures.

anyio's memory object streams move 86k-225k messages/s here against ~1.4M/s
for a bounded ``asyncio.Queue``; the mailbox is on every message's path, so it
is built like the latter, with anyio's vocabulary (``send_nowait``,
``WouldBlock``, ``statistics()``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from ._errors import ActorStopped, MailboxFull


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    queued: int
    max_size: int
    waiting_senders: int
    waiting_receiver: bool
    closed: bool


class Mailbox:
    """Bounded FIFO with one consumer (the actor) and any number of senders.

    ``send_nowait`` raises :class:`MailboxFull` when full; ``send`` waits for
    room (backpressure). ``close`` makes further sends raise
    :class:`ActorStopped` and hands back what is still queued.
    """

    __slots__ = ("_closed", "_getter", "_items", "_max_size", "_putters")

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"mailbox size must be at least 1, got {max_size}")
        self._items: deque[Any] = deque()
        self._max_size = max_size
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def send_nowait(self, item: Any) -> None:
        if self._closed:
            raise ActorStopped("mailbox is closed")
        if len(self._items) >= self._max_size:
            raise MailboxFull(f"mailbox full ({self._max_size} messages)")
        self._items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def send(self, item: Any) -> None:
        # Fast path first: no future is created when there is room.
        while len(self._items) >= self._max_size and not self._closed:
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                # A cancelled sender must not swallow a wake-up meant for the next one.
                if putter in self._putters:
                    self._putters.remove(putter)
                self._wake_putter()
                raise
        self.send_nowait(item)

    def get_nowait(self) -> Any:
        """Pop the oldest item; raises IndexError when empty. Wakes one waiting sender."""
        item = self._items.popleft()
        if self._putters:
            self._wake_putter()
        return item

    async def wait_not_empty(self) -> None:
        """Wait until an item is queued or the mailbox is closed (single consumer)."""
        if self._items or self._closed:
            return
        getter = asyncio.get_running_loop().create_future()
        self._getter = getter
        try:
            await getter
        finally:
            if self._getter is getter:
                self._getter = None

    def wake_receiver(self) -> None:
        """Wake the consumer without an item (a system message is waiting)."""
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def close(self) -> list[Any]:
        """Refuse further sends; return (and remove) whatever was still queued."""
        self._closed = True
        left = list(self._items)
        self._items.clear()
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
        self.wake_receiver()
        return left

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            queued=len(self._items),
            max_size=self._max_size,
            waiting_senders=len(self._putters),
            waiting_receiver=self._getter is not None,
            closed=self._closed,
        )
