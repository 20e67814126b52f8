"""An aiomqtt client that never registers a reader or writer on a closed socket, and
hands QoS 1 messages to paho without a task each.

aiomqtt (2.x) registers paho's socket with the event loop through
``call_soon_threadsafe(loop.add_reader / add_writer, fd, ...)``. When a
connection fails right after the socket opened (a TLS handshake the broker
refuses, a broker killed mid-connect), paho closes the socket before the
deferred call runs: the loop then registers a closed descriptor (EBADF in the
loop's exception handler) or, worse, a number the process has meanwhile
reused for another file or socket. The guard below drops such a deferred
registration unless paho still holds the very socket it was made for.

``publish_nowait`` gives paho a message and returns its packet id; the PUBACK calls
``on_puback(mid)``. aiomqtt's own ``publish`` waits for the PUBACK in the caller, so a
window of QoS 1 messages in flight costs a task, an event and a pending-call record
per message: that was most of the MQTT bridge's cost per message.

A connect cancelled while it waits for the CONNACK no longer makes the later close of
its socket raise CancelledError in the event loop's reader callback (see
``_on_disconnect``), and leaving the client reads the error of an unexpected
disconnection, which nothing else may have read (see ``__aexit__``).

With ``on_message`` set, each message received is handed to it (topic, payload) as
paho reads it, instead of going through aiomqtt's queue, whose iterator makes a task
and an ``asyncio.wait`` per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt


class _GuardedLoop:
    """The client's view of the event loop: everything passes through except stale
    reader/writer registrations."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: aiomqtt.Client) -> None:
        self._loop = loop
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Any:
        loop = self._loop
        if args and (callback == loop.add_reader or callback == loop.add_writer):
            paho = self._client._client
            sock, fd = paho.socket(), args[0]

            def register_if_still_open() -> None:
                current = paho.socket()
                if current is not None and current is sock and current.fileno() == fd:
                    callback(*args)

            return loop.call_soon_threadsafe(register_if_still_open)
        return loop.call_soon_threadsafe(callback, *args)


class Client(aiomqtt.Client):
    """``aiomqtt.Client`` with the guarded loop and ``publish_nowait`` (see the module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = _GuardedLoop(self._loop, self)  # type: ignore[assignment]
        #: Called with the packet id of each publish the broker acknowledged (in the loop).
        self.on_puback: Callable[[int], None] | None = None
        #: Called with (topic, payload) of each message received (in the loop), instead of
        #: queueing it for ``messages``.
        self.on_message: Callable[[str, bytes], None] | None = None

    def publish_nowait(self, topic: str, payload: bytes, qos: int, retain: bool,
                       properties: Any = None) -> int:
        """Hand a message to paho (sent now, or queued behind paho's in-flight limit);
        returns its packet id. Raises ``aiomqtt.MqttCodeError`` like ``publish``."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        return int(info.mid)

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            # aiomqtt reads an unexpected disconnection's error where ``messages`` is
            # iterated; with ``on_message`` set nothing iterates it, and asyncio would
            # report the error as never retrieved. Whoever needed it has seen it by now.
            disconnected = self._disconnected
            if disconnected.done() and not disconnected.cancelled():
                disconnected.exception()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any = None) -> None:
        # A connect cancelled while it waited for the CONNACK leaves aiomqtt's
        # ``_connected`` future cancelled, and the socket open: when it closes later,
        # aiomqtt asks that future for its exception, which raises CancelledError out of
        # the loop's reader callback. Nobody waits for this connection any more.
        if self._connected.cancelled():
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self.on_message is None:
            super()._on_message(client, userdata, message)
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:  # not MQTT: a topic is UTF-8
            self._logger.warning("dropping a message whose topic is not UTF-8")
            return
        self.on_message(topic, message.payload)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        super()._on_publish(client, userdata, mid, reason_code, properties)
        if self.on_puback is not None:
            self.on_puback(mid)
