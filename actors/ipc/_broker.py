"""The local publish/subscribe broker: MQTT topic matching, per-subscriber bounded queues.

Publishing is synchronous fan-out: the publisher's call puts the message in
every matching subscriber's queue and returns. Each subscriber has its own
bounded queue with a declared overflow policy, so one slow subscriber never
delays the others nor grows memory without bound:

- ``DROP_OLDEST`` (default): a full queue drops its oldest message and counts it.
- ``BACKPRESSURE``: ``publish`` waits for room (``publish_nowait`` raises
  :class:`SubscriberFull` *before* delivering to anyone, so a refused publish
  is delivered to no one).

Matching goes through a :class:`TopicTrie`, and the list of subscribers per
published topic is cached until the next subscribe or unsubscribe, so a
publish to a known topic costs one dictionary lookup plus the deliveries.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ._errors import StreamClosed, SubscriberFull
from ._message import Message
from ._topics import TopicTrie, check_topic_filter, check_topic_name, is_wildcard

DEFAULT_QUEUE_SIZE = 1000
_CACHE_LIMIT = 4096


class ReceiveMode(enum.StrEnum):
    """Greengrass's ``receiveMode`` of SubscribeToTopic."""

    RECEIVE_ALL_MESSAGES = "RECEIVE_ALL_MESSAGES"
    RECEIVE_MESSAGES_FROM_OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"


class Overflow(enum.StrEnum):
    """What a subscriber's full queue does with a new message."""

    DROP_OLDEST = "drop-oldest"
    BACKPRESSURE = "backpressure"


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    topic_filter: str
    component: str
    queued: int
    max_queued: int
    delivered: int
    dropped: int
    overflow: Overflow
    closed: bool


class Subscription:
    """A subscriber's bounded queue of messages; async-iterable until closed.

    Made by :meth:`Broker.subscribe`; ``close()`` unsubscribes.
    """

    __slots__ = ("_broker", "_getter", "_items", "_on_close", "_putters", "closed", "component",
                 "delivered", "dropped", "from_others", "max_queued", "overflow",
                 "topic_filter")

    def __init__(self, broker: Broker | None, component: str, topic_filter: str,
                 receive_mode: ReceiveMode, max_queued: int, overflow: Overflow) -> None:
        if max_queued < 1:
            raise ValueError(f"subscriber queue size must be at least 1, got {max_queued}")
        self._broker = broker
        self.component = component
        self.topic_filter = topic_filter
        self.from_others = receive_mode is ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS
        self.max_queued = max_queued
        self.overflow = Overflow(overflow)
        self._items: deque[Any] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self.delivered = 0
        self.dropped = 0
        self.closed = False
        self._on_close: Callable[[], None] | None = None

    # -- producer side (the broker) ------------------------------------------

    def full(self) -> bool:
        return len(self._items) >= self.max_queued

    def deliver(self, item: Any) -> None:
        """Queue ``item``; a full DROP_OLDEST queue drops its oldest (a BACKPRESSURE queue
        is never called full: the broker waits first)."""
        items = self._items
        if len(items) >= self.max_queued:
            items.popleft()
            self.dropped += 1
        items.append(item)
        self.delivered += 1
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def wait_room(self) -> None:
        while len(self._items) >= self.max_queued and not self.closed:
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            finally:
                if putter in self._putters:
                    self._putters.remove(putter)

    # -- consumer side ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def receive_nowait(self) -> Any:
        """The oldest queued message; IndexError when none, StreamClosed when closed and empty."""
        if not self._items and self.closed:
            raise StreamClosed(f"subscription to {self.topic_filter!r} is closed")
        item = self._items.popleft()
        self._wake_putters()
        return item

    def drain(self, limit: int = 0) -> list[Any]:
        """Take every queued message (at most ``limit`` if given) without waiting."""
        items = self._items
        if limit and len(items) > limit:
            out = [items.popleft() for _ in range(limit)]
        else:
            out = list(items)
            items.clear()
        self._wake_putters()
        return out

    async def wait(self) -> None:
        """Wait until a message is queued or the subscription is closed."""
        if self._items or self.closed:
            return
        getter = asyncio.get_running_loop().create_future()
        self._getter = getter
        try:
            await getter
        finally:
            if self._getter is getter:
                self._getter = None

    async def receive(self) -> Any:
        """The next message; raises :class:`StreamClosed` once closed and drained."""
        if not self._items:
            await self.wait()
        return self.receive_nowait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except StreamClosed:
                return

    def _wake_putters(self) -> None:
        while self._putters and len(self._items) < self.max_queued:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)

    def close(self) -> None:
        """Unsubscribe; queued messages can still be received, then iteration ends."""
        if self.closed:
            return
        self.closed = True
        if self._broker is not None:
            self._broker._remove(self)
        if self._on_close is not None:
            self._on_close()
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def statistics(self) -> SubscriptionStatistics:
        return SubscriptionStatistics(self.topic_filter, self.component, len(self._items),
                                      self.max_queued, self.delivered, self.dropped,
                                      self.overflow, self.closed)

    def __repr__(self) -> str:
        return f"<Subscription {self.component} {self.topic_filter!r} queued={len(self._items)}>"


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    subscriptions: int
    published: int
    delivered: int
    dropped: int


class Broker:
    """Local publish/subscribe with MQTT semantics (see the module docstring)."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._trie: TopicTrie[Subscription] = TopicTrie()
        self._cache: dict[str, tuple[Subscription, ...]] = {}
        self._has_backpressure = False
        self.published = 0
        self._retired_delivered = 0
        self._retired_dropped = 0

    def subscribe(self, component: str, topic_filter: str, *,
                  receive_mode: ReceiveMode | str | None = None, queue_size: int | None = None,
                  overflow: Overflow | str = Overflow.DROP_OLDEST) -> Subscription:
        """Subscribe ``component`` to ``topic_filter``; close the result to unsubscribe.

        Without ``receive_mode``, a wildcard filter receives only others' messages
        and an exact topic every message (Greengrass's default).
        """
        check_topic_filter(topic_filter)
        if receive_mode is None:
            mode = (ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS if is_wildcard(topic_filter)
                    else ReceiveMode.RECEIVE_ALL_MESSAGES)
        else:
            mode = ReceiveMode(receive_mode)
        sub = Subscription(self, component, topic_filter, mode,
                           queue_size or self.queue_size, Overflow(overflow))
        self._trie.add(topic_filter, sub)
        self._cache.clear()
        self._has_backpressure = self._has_backpressure or sub.overflow is Overflow.BACKPRESSURE
        return sub

    def _remove(self, sub: Subscription) -> None:
        if self._trie.remove(sub.topic_filter, sub):
            self._cache.clear()
            self._retired_delivered += sub.delivered
            self._retired_dropped += sub.dropped

    def subscribers(self, topic: str) -> tuple[Subscription, ...]:
        """The subscriptions matching ``topic`` (cached until subscriptions change)."""
        subs = self._cache.get(topic)
        if subs is None:
            subs = tuple(self._trie.match(topic))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[topic] = subs
        return subs

    def publish_nowait(self, source: str, topic: str, payload: Any) -> int:
        """Deliver to every matching subscriber now; returns how many got it.

        Raises :class:`InvalidArgumentsError` for a topic with a wildcard and
        :class:`SubscriberFull` (delivering to no one) when a BACKPRESSURE
        subscriber's queue is full.
        """
        subs = self._cache.get(topic)
        if subs is None:
            check_topic_name(topic)
            subs = self.subscribers(topic)
        if self._has_backpressure:
            for sub in subs:
                if sub.overflow is Overflow.BACKPRESSURE and sub.full() and not (
                        sub.from_others and sub.component == source):
                    raise SubscriberFull(
                        f"subscriber {sub.component} to {sub.topic_filter!r} is full")
        message = Message(topic, payload, source)
        self.published += 1
        n = 0
        for sub in subs:
            if sub.from_others and sub.component == source:
                continue
            sub.deliver(message)
            n += 1
        return n

    async def publish(self, source: str, topic: str, payload: Any) -> int:
        """Like :meth:`publish_nowait`, but waits for room in full BACKPRESSURE queues."""
        while True:
            try:
                return self.publish_nowait(source, topic, payload)
            except SubscriberFull:
                for sub in self.subscribers(topic):
                    if sub.overflow is Overflow.BACKPRESSURE and sub.full() and not (
                            sub.from_others and sub.component == source):
                        await sub.wait_room()
                        break

    def statistics(self) -> BrokerStatistics:
        subs = list(self._trie)
        return BrokerStatistics(
            subscriptions=len(subs),
            published=self.published,
            delivered=self._retired_delivered + sum(s.delivered for s in subs),
            dropped=self._retired_dropped + sum(s.dropped for s in subs),
        )

    def close(self) -> None:
        """Close every subscription (their consumers see the end of the stream)."""
        for sub in list(self._trie):
            sub.close()
