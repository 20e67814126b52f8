"""One MQTT connection kept up for the fleet: the controller's and each device's.

A persistent session (clean_session false, the client id fixed) with QoS 1
subscriptions, made again on every connection; reconnects with exponential
backoff. Outgoing messages wait in an outbox, keyed: a newer message under a
key replaces one not yet acknowledged (a device's health, a deployment's
status), and whatever the broker has not acknowledged when a connection drops
is sent again on the next: at least once, in order per key.

Messages are handed to paho as they come (up to 64 awaiting their PUBACK), and
the PUBACK removes them from the outbox: no task, timer or task group per
message (a fleet's devices send two or three messages a deployment each, and
that bookkeeping was most of their CPU). One watchdog ends a connection whose
oldest PUBACK is overdue; the next connection sends the outbox again. Messages
received are handed to ``on_message`` as paho reads them, without a task each
either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.abc

from ._errors import FleetError

if TYPE_CHECKING:
    import aiomqtt

    from ..ipc._mqtt_client import Client

log = logging.getLogger("actors.fleet.mqtt")


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to reach the broker: ``mqtt://host:port`` or ``mqtts://host:port``
    (TLS, with the client's own certificate)."""

    host: str
    port: int = 8883
    client_id: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool = True
    clean_session: bool = False
    keepalive: int = 30
    timeout: float = 10.0
    reconnect_min: float = 0.1
    reconnect_max: float = 10.0

    @classmethod
    def parse(cls, url: str, *, client_id: str, ca: Path | None = None,
              cert: Path | None = None, key: Path | None = None) -> BrokerSettings:
        parts = urlsplit(url if "://" in url else f"mqtts://{url}")
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise FleetError(f"--broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = parts.scheme == "mqtts" or ca is not None or cert is not None
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), client_id, ca, cert,
                   key, tls)

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file),
                                    str(self.key_file) if self.key_file else None)
        return context


WINDOW = 64  # QoS 1 messages awaiting their PUBACK, per connection


def _code(granted: Any) -> int:
    """A SUBACK return code: an int (MQTT 3.1.1) or paho's ReasonCode."""
    return int(getattr(granted, "value", granted))


@dataclass
class _Out:
    topic: str
    payload: bytes
    retain: bool
    generation: int


class Link:
    """Run with ``await tg.start(link.run)``; ``on_message(topic, payload)`` is called for
    every message received, in order."""

    def __init__(self, settings: BrokerSettings, subscriptions: list[str],
                 on_message: Callable[[str, bytes], None],
                 will: tuple[str, bytes] | None = None,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_connect = on_connect
        self.will = will
        self.connections = 0
        self.sent = 0
        self.received = 0
        self.refused: list[str] = []  # subscriptions the broker refused (ACL)
        self.last_error = ""
        self._outbox: dict[str, _Out] = {}  # not acknowledged yet, by key
        self._unsent: dict[str, None] = {}  # keys to send on this connection, in order
        self._inflight: dict[int, tuple[str, int, float]] = {}  # mid -> key, generation, sent
        self._window = WINDOW
        self._generation = 0
        self._new = asyncio.Event()  # reused (clear, wait): one wake-up per PUBACK
        self._drained = anyio.Event()
        self._connected = anyio.Event()
        self._client: aiomqtt.Client | None = None

    # -- outgoing ----------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                key: str | None = None) -> None:
        """Queue a QoS 1 message; under ``key`` (default: the topic) it replaces one not
        yet acknowledged."""
        self._generation += 1
        key = key or topic
        self._outbox[key] = _Out(topic, payload, retain, self._generation)
        self._unsent.pop(key, None)
        self._unsent[key] = None  # sent after what was queued before it
        if self._drained.is_set():
            self._drained = anyio.Event()
        self._new.set()

    async def wait_sent(self) -> None:
        """Wait until the broker acknowledged everything queued so far."""
        while self._outbox:
            await self._drained.wait()

    async def wait_connected(self) -> None:
        while self._client is None:
            await self._connected.wait()

    @property
    def connected(self) -> bool:
        return self._client is not None

    # -- the connection ----------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Keep the connection up until cancelled."""
        import aiomqtt

        from ..ipc._mqtt_client import Client

        s = self.settings
        if not s.client_id:
            s = self.settings = dataclasses.replace(s, client_id=f"fleet-{uuid.uuid4().hex[:12]}")
        context = await anyio.to_thread.run_sync(s.tls_context)
        will = None if self.will is None else aiomqtt.Will(self.will[0], self.will[1], qos=1,
                                                           retain=True)
        delay = s.reconnect_min
        task_status.started()
        while True:
            try:
                async with Client(s.host, s.port, identifier=s.client_id,
                                  clean_session=s.clean_session, keepalive=s.keepalive,
                                  tls_context=context, will=will, timeout=s.timeout,
                                  max_queued_incoming_messages=0) as client:
                    client.pending_calls_threshold = 1 << 16
                    self.connections += 1
                    delay = s.reconnect_min
                    # Set before subscribing: the retained messages follow the SUBACK.
                    client.on_message = self._receive
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._watch_pubacks)
                        tg.start_soon(self._watch_connection, client)
                        for topic_filter in self.subscriptions:
                            granted = await client.subscribe(topic_filter, qos=1)
                            if any(_code(g) >= 0x80 for g in granted):
                                self.refused.append(topic_filter)
                                log.error("the broker refused subscription %s for %s",
                                          topic_filter, s.client_id)
                        self._client = client
                        self._connected.set()
                        if self.on_connect is not None:
                            self.on_connect()
                        await self._send(client)
            except* aiomqtt.MqttError as group:
                self.last_error = str(group.exceptions[0])
                log.info("MQTT %s to %s:%d: %s; reconnecting in %.2g s", s.client_id, s.host,
                         s.port, self.last_error, delay)
            finally:
                self._client = None
                self._connected = anyio.Event()
            await anyio.sleep(delay)
            delay = min(delay * 2, s.reconnect_max)

    def _receive(self, topic: str, payload: bytes) -> None:
        # Called by paho as it reads the socket: an error here is this message's, logged,
        # not the connection's.
        self.received += 1
        try:
            self.on_message(topic, bytes(payload))
        except Exception:
            log.exception("%s: handling a message on %s", self.settings.client_id, topic)

    @staticmethod
    async def _watch_connection(client: Client) -> None:
        # Nothing iterates aiomqtt's messages (which would raise when the connection
        # drops): this ends the connection's task group when paho says it is gone.
        import aiomqtt

        disconnected = client._disconnected  # aiomqtt keeps it there
        await asyncio.wait([disconnected])  # not cancelling the future when cancelled
        if not disconnected.cancelled():
            disconnected.result()  # the MqttError that ended it
        raise aiomqtt.MqttError("disconnected")

    async def _send(self, client: Client) -> None:
        # Every message not acknowledged goes again on a new connection, oldest first.
        self._inflight.clear()
        self._window = WINDOW
        self._unsent = dict.fromkeys(sorted(self._outbox,
                                            key=lambda k: self._outbox[k].generation))
        client.on_puback = self._puback
        try:
            while True:
                if not self._unsent or not self._window:
                    if not self._outbox:
                        self._drained.set()
                    self._new.clear()
                    await self._new.wait()
                    continue
                key = next(iter(self._unsent))
                del self._unsent[key]
                out = self._outbox[key]
                mid = client.publish_nowait(out.topic, out.payload, 1, out.retain)
                self._inflight[mid] = (key, out.generation, time.monotonic())
                self._window -= 1
        finally:
            client.on_puback = None

    def _puback(self, mid: int) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return
        key, generation, _ = sent
        self.sent += 1
        current = self._outbox.get(key)
        if current is not None and current.generation == generation:
            del self._outbox[key]
        self._window += 1
        self._new.set()

    async def _watch_pubacks(self) -> None:
        # A PUBACK overdue by the timeout means a dead connection nobody noticed: the
        # MqttError ends this connection and the next one sends the outbox again.
        import aiomqtt

        timeout = self.settings.timeout
        while True:
            await anyio.sleep(min(1.0, timeout / 4))
            if self._inflight:
                _, _, sent = next(iter(self._inflight.values()))  # the oldest waiting
                if time.monotonic() - sent > timeout:
                    raise aiomqtt.MqttError(
                        f"no PUBACK within {timeout:g} s (the connection is dead)")
