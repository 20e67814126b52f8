"""The MQTT bridge: PublishToIoTCore/SubscribeToIoTCore through a real MQTT broker.

One connection (client id = the thing name; TLS with a client certificate, as
AWS IoT Core requires) is kept up by a reconnect loop with exponential
backoff. Outgoing messages go through the :class:`Spool` in order: QoS 1 ones
are kept (on disk when the bridge has a spool folder) until the broker's
PUBACK, and everything not acknowledged when a connection drops is sent again,
in order, on the next one: at-least-once, without loss. QoS 0 messages
published while offline are dropped and counted (Greengrass's default,
``keep_qos0_when_offline=False``).

Incoming messages fan out through a local :class:`Broker` to the
SubscribeToIoTCore streams; the bridge subscribes at the MQTT broker once per
topic filter and again after every reconnect.

A message keeps its retain flag both ways. The bridge speaks MQTT 5 by default
(``version="mqtt5"``, as the nucleus's ``mqtt.version``), so the MQTT 5 fields
of PublishToIoTCore (user properties, message expiry, correlation data,
response topic, payload format, content type) reach the broker, and those of
incoming messages reach the SubscribeToIoTCore streams; over ``mqtt3`` (MQTT
3.1.1) they are dropped, as the nucleus drops them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc

from ._broker import Broker, Overflow, Subscription
from ._errors import ServiceError
from ._message import IotCoreMessage, MqttProperties
from ._spool import FsyncPolicy, Spool
from ._topics import check_topic_filter, check_topic_name

if TYPE_CHECKING:
    import aiomqtt
    from paho.mqtt.properties import Properties

    from ._mqtt_client import Client

log = logging.getLogger("actors.ipc.mqtt")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how the bridge connects (the runtime's MQTT configuration)."""

    host: str
    port: int = 8883
    thing_name: str = "edge-actors-local"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 60
    #: Seconds to wait for the broker's CONNACK (and for other MQTT calls) before giving up.
    timeout: float = 10.0
    spool_dir: Path | None = None
    spool_max_bytes: int = 16 << 20
    #: When an accepted QoS 1 message is on disk (see actors.ipc._spool): ``always``
    #: (fsynced before publish returns; group commit), ``interval`` or ``never``.
    fsync: FsyncPolicy = "always"
    fsync_interval: float = 0.05
    max_inflight: int = 100
    reconnect_min: float = 0.1
    reconnect_max: float = 30.0
    keep_qos0_when_offline: bool = False
    #: The MQTT version spoken to the broker: ``mqtt5`` (the default, as the nucleus's)
    #: carries the MQTT 5 fields of the messages, ``mqtt3`` (3.1.1) drops them.
    version: Literal["mqtt5", "mqtt3"] = "mqtt5"

    def __post_init__(self) -> None:
        if self.version not in ("mqtt5", "mqtt3"):
            raise ValueError(f"MQTT version must be mqtt5 or mqtt3, not {self.version!r}")

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None


@dataclass(frozen=True, slots=True)
class BridgeStatistics:
    connected: bool
    connections: int
    spooled: int
    spooled_bytes: int
    acked: int
    dropped_qos0: int
    received: int
    last_error: str


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _from_paho(properties: Properties) -> MqttProperties | None:
    """The MQTT 5 fields of a received message (None when it has none)."""
    fields = MqttProperties(
        tuple((str(k), str(v)) for k, v in getattr(properties, "UserProperty", ())),
        getattr(properties, "MessageExpiryInterval", None),
        getattr(properties, "CorrelationData", None),
        getattr(properties, "ResponseTopic", None),
        getattr(properties, "PayloadFormatIndicator", None),
        getattr(properties, "ContentType", None))
    return None if fields == _NO_PROPERTIES else fields


_NO_PROPERTIES = MqttProperties()


class _Fanout(Broker):
    """The local broker of incoming messages; tells the bridge when a filter is unused."""

    def __init__(self, on_unused: Callable[[str], None]) -> None:
        super().__init__()
        self._on_unused = on_unused

    def publish_message(self, message: IotCoreMessage) -> int:
        """Deliver a message from the MQTT broker, with its retain flag and MQTT 5 fields,
        to every matching stream (they all drop their oldest when full)."""
        self.published += 1
        n = 0
        for sub in self.subscribers(message.topic):
            sub.deliver(message)
            n += 1
        return n

    def _remove(self, sub: Subscription) -> None:
        super()._remove(sub)
        if not any(s.topic_filter == sub.topic_filter for s in self._trie):
            self._on_unused(sub.topic_filter)


class MqttBridge:
    """The runtime's connection to IoT Core (or any MQTT broker); run it with :meth:`run`."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes,
                           fsync=settings.fsync, fsync_interval=settings.fsync_interval)
        self._fanout = _Fanout(self._unused)
        self._filters: dict[str, int] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = anyio.Event()
        self.connections = 0
        self.dropped_qos0 = 0
        self.received = 0
        self.last_error = ""
        self._loaded = False
        self._changes: deque[tuple[str, int | None]] = deque()
        self._changed = anyio.Event()
        self._in_flight = 0
        # QoS 1 publishes awaiting their PUBACK on this connection: packet id -> (spool
        # seq, loop time sent), oldest first.
        self._awaiting: dict[int, tuple[int, float]] = {}
        #: called with True / False when the connection comes up / goes down
        #: (SubscribeToIoTCoreConnectionStatus)
        self.status_listeners: list[Callable[[bool], None]] = []

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def wait_connected(self) -> None:
        while self._client is None:
            await self._connected.wait()

    async def wait_sent(self) -> None:
        """Wait until everything published so far was sent (QoS 0) or acknowledged (QoS 1)."""
        await self.spool.wait_empty()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Keep the connection up and the spool written until cancelled."""
        try:
            import aiomqtt  # noqa: F401
        except ImportError as exc:
            raise ServiceError("the MQTT bridge needs aiomqtt: pip install aiomqtt") from exc
        if not self._loaded:
            await anyio.to_thread.run_sync(self.spool.load)
            self._loaded = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.spool.run)
                task_status.started()
                await self._connection_loop()
        finally:
            self._fanout.close()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.spool.close)
            self.spool.closed()

    async def _connection_loop(self) -> None:
        import aiomqtt

        from ._mqtt_client import Client

        s = self.settings
        delay = s.reconnect_min
        tls_context = await anyio.to_thread.run_sync(self._tls_context) if s.tls else None
        # A clean session on every connection, in either version (MQTT 5: clean start and
        # no session expiry interval).
        session: dict[str, Any] = (
            {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": True}
            if s.version == "mqtt5" else
            {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": True})
        while True:
            try:
                async with Client(
                    s.host, s.port, identifier=s.thing_name, keepalive=s.keepalive,
                    tls_context=tls_context, max_inflight_messages=s.max_inflight,
                    timeout=s.timeout, **session,
                ) as client:
                    # The send window keeps up to max_inflight publishes pending on purpose.
                    client.pending_calls_threshold = s.max_inflight + 16
                    self.connections += 1
                    delay = s.reconnect_min
                    log.info("MQTT bridge connected to %s:%d as %s", s.host, s.port,
                             s.thing_name)
                    # A fresh session: every filter in use is subscribed again, before
                    # anything is sent (the broker handles one connection's packets in
                    # order), so our own streams miss none of our resent messages.
                    self._changes.clear()
                    for topic_filter, qos in list(self._filters.items()):
                        await client.subscribe(topic_filter, qos)
                    self._client = client
                    self._connected.set()
                    self._tell_status(True)
                    try:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(self._receive, client)
                            tg.start_soon(self._apply_changes, client)
                            tg.start_soon(self._watch_pubacks)
                            await self._send(client)
                    except BaseExceptionGroup as group:
                        # A lost connection fails the connection's tasks with MqttError.
                        mqtt_errors, rest = group.split(aiomqtt.MqttError)
                        if rest is not None or mqtt_errors is None:
                            raise
                        raise _first(mqtt_errors) from None
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                log.warning("MQTT bridge to %s:%d: %s; reconnecting in %.2g s", s.host, s.port,
                            exc, delay)
            finally:
                was_connected = self._client is not None
                self._client = None
                self._awaiting.clear()
                self._connected = anyio.Event()
                if was_connected:
                    self._tell_status(False)
            if not self.settings.keep_qos0_when_offline:
                self.dropped_qos0 += self.spool.drop_qos0()
            await anyio.sleep(delay)
            delay = min(delay * 2, s.reconnect_max)

    def _tell_status(self, connected: bool) -> None:
        for listener in list(self.status_listeners):
            try:
                listener(connected)
            except Exception:
                log.exception("MQTT connection status listener %r failed", listener)

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(
            cafile=str(s.ca_file) if s.ca_file is not None else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.cert_file is not None:
            context.load_cert_chain(str(s.cert_file),
                                    str(s.key_file) if s.key_file is not None else None)
        return context

    async def _receive(self, client: aiomqtt.Client) -> None:
        # Ends with MqttError when the connection drops, which ends the connection's tasks.
        async for message in client.messages:
            self.received += 1
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = str(payload).encode() if payload is not None else b""
            properties = (_from_paho(message.properties) if message.properties is not None
                          else None)
            self._fanout.publish_message(IotCoreMessage(
                str(message.topic), bytes(payload), "$iotcore", retain=bool(message.retain),
                properties=properties))

    async def _send(self, client: Client) -> None:
        # QoS 1 messages are handed to paho in the spool's order, up to max_inflight
        # awaiting their PUBACK, which acknowledges them in the spool (on_puback: no task
        # per message). A QoS 0 message is written before the next one goes.
        spool = self.spool
        window = asyncio.Semaphore(self.settings.max_inflight)
        clock = asyncio.get_running_loop().time

        def puback(mid: int) -> None:
            sent = self._awaiting.pop(mid, None)
            if sent is not None:
                spool.ack(sent[0])
                window.release()

        client.on_puback = puback
        try:
            seq = spool.first()
            while True:
                record = spool.get(seq)
                if record is None:
                    if seq < spool.first():
                        seq = spool.first()
                    elif seq >= spool.next_seq:
                        await spool.wait_new(seq)
                    else:
                        seq += 1  # acknowledged out of order meanwhile
                    continue
                seq += 1
                properties = (None if record.properties is None
                              else self._to_paho(record.properties))
                if record.qos == 0:
                    # No timeout (aiomqtt's makes a task and a timer per message): a
                    # dead connection fails it, as it fails the whole connection.
                    await client.publish(record.topic, record.payload, qos=0,
                                         retain=record.retain, properties=properties,
                                         timeout=math.inf)
                    spool.ack(record.seq)
                    continue
                await window.acquire()
                # No timeout per message either: _watch_pubacks ends a connection whose
                # oldest PUBACK is overdue.
                mid = client.publish_nowait(record.topic, record.payload, record.qos,
                                            record.retain, properties)
                self._awaiting[mid] = (record.seq, clock())
        finally:
            client.on_puback = None

    async def _watch_pubacks(self) -> None:
        # A PUBACK overdue by `timeout` means a dead connection nobody noticed: the
        # MqttError ends this connection and the next one resends from the spool.
        import aiomqtt

        timeout = self.settings.timeout
        loop = asyncio.get_running_loop()
        while True:
            await anyio.sleep(min(1.0, timeout / 4))
            if self._awaiting:
                _, sent = next(iter(self._awaiting.values()))  # the oldest still waiting
                if loop.time() - sent > timeout:
                    raise aiomqtt.MqttError(
                        f"no PUBACK within {timeout:g} s (the connection is dead)")

    def _to_paho(self, properties: MqttProperties | None) -> Properties | None:
        if properties is None or self.settings.version != "mqtt5":
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if properties.user_properties:
            out.UserProperty = list(properties.user_properties)
        if properties.message_expiry_interval is not None:
            out.MessageExpiryInterval = properties.message_expiry_interval
        if properties.correlation_data is not None:
            out.CorrelationData = properties.correlation_data
        if properties.response_topic is not None:
            out.ResponseTopic = properties.response_topic
        if properties.payload_format is not None:
            out.PayloadFormatIndicator = properties.payload_format
        if properties.content_type is not None:
            out.ContentType = properties.content_type
        return out

    # -- the IotCore interface of the IPC service ----------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False,
                      properties: MqttProperties | None = None) -> None:
        """Queue a message for the broker; returns once it is spooled (QoS 1: in the
        spool's log, fsynced unless the fsync policy is ``never``, so an accepted message
        survives a kill -9 and, fsynced, a power loss), with its retain flag and MQTT 5
        ``properties`` (sent only over MQTT 5). QoS 0 while offline is dropped (and
        counted)."""
        check_topic_name(topic)
        if qos not in (0, 1):
            raise ServiceError(f"QoS {qos} is not supported (0 or 1)")
        if qos == 0 and self._client is None and not self.settings.keep_qos0_when_offline:
            self.dropped_qos0 += 1
            return
        record = self.spool.append(topic, payload, qos, retain=retain, properties=properties)
        await self.spool.wait_durable(record)

    def subscribe(self, component: str, topic_filter: str, qos: int = 0,
                  *, queue_size: int | None = None) -> Subscription:
        """A stream of the messages the broker sends on ``topic_filter``."""
        check_topic_filter(topic_filter)
        sub = self._fanout.subscribe(component, topic_filter, receive_mode="RECEIVE_ALL_MESSAGES",
                                     queue_size=queue_size, overflow=Overflow.DROP_OLDEST)
        previous = self._filters.get(topic_filter)
        if previous is None or qos > previous:
            self._filters[topic_filter] = qos
            self._changes.append((topic_filter, qos))
            self._changed.set()
        return sub

    async def subscribed(self) -> None:
        """Wait until the broker acknowledged every subscription made so far."""
        # A helper for tests and start-up code, not a hot path: polling keeps it simple.
        while self._changes or self._in_flight or self._client is None:  # noqa: ASYNC110
            await anyio.sleep(0.005)

    def _unused(self, topic_filter: str) -> None:
        self._filters.pop(topic_filter, None)
        self._changes.append((topic_filter, None))
        self._changed.set()

    async def _apply_changes(self, client: aiomqtt.Client) -> None:
        # The connection's own task: (un)subscribes at the broker as streams come and go.
        while True:
            while self._changes:
                topic_filter, qos = self._changes.popleft()
                self._in_flight += 1
                try:
                    if qos is None:
                        await client.unsubscribe(topic_filter)
                    else:
                        await client.subscribe(topic_filter, qos)
                finally:
                    self._in_flight -= 1
            self._changed = anyio.Event()
            await self._changed.wait()

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(self.connected, self.connections, len(self.spool.records),
                                self.spool.bytes, self.spool.acked_count, self.dropped_qos0,
                                self.received, self.last_error)
