"""The MQTT bridge against a real mosquitto: pub/sub, a broker killed mid-stream, TLS with
client certificates, and the on-disk spool across restarts."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors.ipc import IpcService, MqttBridge, MqttSettings, UnauthorizedError
from actors.ipc._spool import LOG_NAME, read_log
from actors.ipc.client import LocalIpcClient, MqttProperties

from .certs import make_pki
from .conftest import access
from .mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.anyio

CAMERA = "com.example.Camera"


def settings(port: int, tmp_path: Path, **kwargs: Any) -> MqttSettings:
    return MqttSettings("127.0.0.1", port, thing_name="test-thing",
                        spool_dir=tmp_path / "spool", reconnect_min=0.02, reconnect_max=0.2,
                        **kwargs)


@asynccontextmanager
async def running(bridge: MqttBridge) -> AsyncIterator[MqttBridge]:
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        yield bridge
        tg.cancel_scope.cancel()


async def test_publish_and_subscribe_through_the_bridge(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path))
    service = IpcService(iot_core=bridge, access_control={CAMERA: access(
        CAMERA, mqttproxy={"operations": ["*"], "resources": ["things/test-thing/#"]})})
    async with running(bridge), LocalIpcClient(service, CAMERA) as camera, aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="cloud-side") as cloud:
        await cloud.subscribe("things/test-thing/results", qos=1)
        commands = await camera.subscribe_to_iot_core("things/test-thing/commands/#", qos=1)
        await bridge.subscribed()
        await camera.publish_to_iot_core("things/test-thing/results", b'{"label":"cat"}', qos=1)
        await camera.publish_to_iot_core("things/test-thing/results", "qos0 text", qos=0)
        received = []
        with anyio.fail_after(5):
            async for message in cloud.messages:
                received.append(message.payload)
                if len(received) == 2:
                    break
        assert received == [b'{"label":"cat"}', b"qos0 text"]
        await cloud.publish("things/test-thing/commands/restart", b"now", qos=1)
        with anyio.fail_after(5):
            command = await commands.receive()
        assert (command.topic, command.payload) == ("things/test-thing/commands/restart", b"now")
        with pytest.raises(UnauthorizedError, match="other/topic"):
            await camera.publish_to_iot_core("other/topic", b"x")
    assert bridge.statistics().connections == 1


async def test_a_broker_killed_mid_stream_loses_no_qos1_message(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path, fsync="always", timeout=2.0))
    async with running(bridge):
        stream = bridge.subscribe("$test", "stream/#", qos=1)
        await bridge.subscribed()
        seen: list[int] = []

        async def publish_all() -> None:
            for i in range(1000):
                await bridge.publish("stream/numbers", str(i).encode(), qos=1)
                if i == 300:
                    broker.kill()
                elif i == 700:
                    await anyio.to_thread.run_sync(broker.start)
                if i % 10 == 0:
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all)
            with anyio.fail_after(60):
                while len(set(seen)) < 1000:
                    seen.append(int((await stream.receive()).payload))
    assert set(seen) == set(range(1000))
    # In order, except for duplicates of the at-least-once resend after the reconnect.
    firsts = sorted(set(seen), key=seen.index)
    assert firsts == list(range(1000))
    assert bridge.statistics().connections >= 2


async def test_a_broker_that_stops_answering_is_left_and_nothing_is_lost(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    """A broker frozen mid-stream (SIGSTOP: the TCP connection stays up, no PUBACK comes,
    keepalive would take a minute): the bridge ends the connection once the oldest PUBACK
    is `timeout` overdue, reconnects when the broker answers again and resends."""
    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path, timeout=1.0, keepalive=60))
    async with running(bridge):
        stream = bridge.subscribe("$test", "frozen/#", qos=1)
        await bridge.subscribed()
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        try:
            for i in range(50):
                await bridge.publish("frozen/numbers", str(i).encode(), qos=1)
            with anyio.fail_after(10):
                while "no PUBACK within 1 s" not in (bridge.statistics().last_error or ""):
                    await anyio.sleep(0.05)
        finally:
            broker.process.send_signal(signal.SIGCONT)
        seen: set[int] = set()
        with anyio.fail_after(30):
            while len(seen) < 50:
                seen.add(int((await stream.receive()).payload))
    assert seen == set(range(50))
    assert bridge.statistics().connections >= 2


async def test_tls_with_client_certificates(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir, client_name="test-thing")
    broker = mosquitto_factory(tls={"ca": pki["ca"], "cert": pki["server_cert"],
                                    "key": pki["server_key"]})
    bridge = MqttBridge(settings(broker.port, tmp_path, ca_file=pki["ca"],
                                 cert_file=pki["client_cert"], key_file=pki["client_key"]))
    async with running(bridge):
        echo = bridge.subscribe("$test", "secure/echo", qos=1)
        await bridge.subscribed()
        await bridge.publish("secure/echo", b"over TLS", qos=1)
        with anyio.fail_after(5):
            assert (await echo.receive()).payload == b"over TLS"
    # Without a client certificate the broker refuses the connection.
    anonymous = MqttBridge(settings(broker.port, tmp_path / "anon", ca_file=pki["ca"],
                                    timeout=0.5))
    async with running(anonymous):
        with anyio.fail_after(5):
            while not anonymous.statistics().last_error:
                await anyio.sleep(0.01)
        assert not anonymous.connected and anonymous.statistics().connections == 0


async def test_qos1_published_offline_is_delivered_in_order_after_a_runtime_restart(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    offline = MqttBridge(settings(port, tmp_path, fsync="always"))
    async with running(offline):
        for i in range(50):
            await offline.publish("spooled/n", str(i).encode(), qos=1)
        await offline.publish("spooled/n", b"qos0 is not kept", qos=0)
        assert offline.statistics().spooled == 50 and offline.statistics().dropped_qos0 == 1
    assert len(read_log(tmp_path / "spool" / LOG_NAME)[0]) == 50

    broker = mosquitto_factory()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as watcher:
        await watcher.subscribe("spooled/#", qos=1)
        restarted = MqttBridge(settings(broker.port, tmp_path))  # same spool folder
        got: list[bytes] = []
        async with running(restarted):
            with anyio.fail_after(10):
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    got.append(message.payload)
                    if len(got) == 50:
                        break
            with anyio.fail_after(5):
                await restarted.wait_sent()
    assert got == [str(i).encode() for i in range(50)]
    assert read_log(tmp_path / "spool" / LOG_NAME)[0] == []  # nothing left to resend


# A runtime's bridge in its own process: 20 components' worth of concurrent QoS 1
# publishers, each printing the number of every message its publish accepted.
_PUBLISHER = """
import sys
import anyio
from pathlib import Path
from actors.ipc import MqttBridge, MqttSettings

async def main() -> None:
    bridge = MqttBridge(MqttSettings("127.0.0.1", int(sys.argv[1]), thing_name="test-thing",
                                     spool_dir=Path(sys.argv[2]), reconnect_min=0.05,
                                     reconnect_max=0.2))
    numbers = iter(range(10**9))

    async def publisher() -> None:
        for i in numbers:
            await bridge.publish("durable/n", str(i).encode(), qos=1)
            sys.stdout.write(f"{i}\\n")
            sys.stdout.flush()
            await anyio.sleep(0)  # as a component's IPC round trip would

    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        for _ in range(20):
            tg.start_soon(publisher)

anyio.run(main)
"""


async def test_every_qos1_message_accepted_survives_a_kill_9_of_the_runtime(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory()
    broker.stop()  # offline: everything accepted waits in the spool
    spool = tmp_path / "spool"
    child = await anyio.open_process(
        [sys.executable, "-c", _PUBLISHER, str(broker.port), str(spool)], stderr=None)
    assert child.stdout is not None
    lines = BufferedByteReceiveStream(child.stdout)
    accepted: list[str] = []
    try:
        with anyio.fail_after(60):
            while len(accepted) < 1500:
                accepted.append((await lines.receive_until(b"\n", 64)).decode())
    finally:
        # SIGKILL mid-stream, as a power cut or the OOM killer would. (Once only: a second
        # kill() polls, and so reaps, the dead child before asyncio's watcher can.)
        child.kill()
    with contextlib.suppress(anyio.IncompleteRead, anyio.EndOfStream):
        while True:  # what it accepted before it died (a torn last line says nothing)
            accepted.append((await lines.receive_until(b"\n", 64)).decode())
    await child.wait()
    assert child.returncode == -signal.SIGKILL

    # The broker is back and the runtime restarts on the same spool: each accepted
    # message reaches the broker.
    await anyio.to_thread.run_sync(broker.start)
    got: set[bytes] = set()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as watcher:
        await watcher.subscribe("durable/#", qos=1)
        restarted = MqttBridge(settings(broker.port, tmp_path))
        async with running(restarted):
            with anyio.fail_after(30):
                await restarted.wait_sent()
            with anyio.move_on_after(10):  # the broker's deliveries to the watcher
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    got.add(message.payload)
                    if got >= {n.encode() for n in accepted}:
                        break
    lost = {n.encode() for n in accepted} - got
    assert not lost, f"{len(lost)} of {len(accepted)} accepted messages lost"


def test_a_torn_spool_tail_is_ignored(tmp_path: Path) -> None:
    from actors.ipc._spool import Record, _encode_ack, _encode_pub

    log = tmp_path / LOG_NAME
    records = [Record(i, "t/x", bytes([i]) * 10, 1) for i in range(5)]
    data = b"".join(_encode_pub(r) for r in records) + _encode_ack(2)
    log.write_bytes(data + _encode_pub(Record(5, "t/x", b"torn", 1))[:-3])
    pending, below, valid = read_log(log)
    assert [r.seq for r in pending] == [2, 3, 4] and below == 2 and valid == len(data)


async def test_component_processes_reach_iot_core_over_the_socket(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    from actors.ipc import IpcServer
    from actors.ipc.client import connect

    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path))
    service = IpcService(iot_core=bridge, access_control={CAMERA: access(
        CAMERA, mqttproxy={"operations": ["*"], "resources": ["things/+/echo"]})})
    server = IpcServer(service, tmp_path / "ipc.socket")
    async with running(bridge), anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with await connect(environ=server.environment(CAMERA)) as camera:
            echo = await camera.subscribe_to_iot_core("things/+/echo", qos=1)
            await bridge.subscribed()
            await camera.publish_to_iot_core("things/cam/echo", b"\x00binary\xff", qos=1)
            with anyio.fail_after(5):
                message = await echo.receive()
            assert (message.topic, message.payload) == ("things/cam/echo", b"\x00binary\xff")
            with pytest.raises(UnauthorizedError):
                await camera.subscribe_to_iot_core("#")
        tg.cancel_scope.cancel()


async def test_the_spool_is_bounded_and_compacts_atomically(tmp_path: Path) -> None:
    from actors.ipc import Spool, SpoolFull

    spool = Spool(tmp_path, max_bytes=4 << 20, fsync="never")
    spool.load()
    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.run)
        payload = b"x" * 1024
        records = [spool.append("t/compact", payload, 1) for _ in range(3000)]
        with pytest.raises(SpoolFull, match="limit"):
            for _ in range(2000):
                spool.append("t/compact", payload, 1)
        kept = len(spool.records)
        for record in spool.records.copy():
            if record.seq < kept - 10:
                spool.ack(record.seq)
        with anyio.fail_after(5):
            while (tmp_path / LOG_NAME).stat().st_size > 1 << 20:
                spool._dirty.set()
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(spool.close)
    pending, _, _ = read_log(tmp_path / LOG_NAME)
    assert [r.seq for r in pending] == list(range(kept - 10, kept))
    assert records[0].seq == 0 and not (tmp_path / "spool.tmp").exists()


async def test_qos0_messages_sent_write_nothing_to_the_log(tmp_path: Path) -> None:
    """QoS 0 messages are never logged, so acknowledging them alone writes nothing (an
    ack record per message cost a worker-thread write each: the bridge sent QoS 0 at
    0.36x a bare aiomqtt client); a QoS 1 record leaving still moves the log's mark."""
    from actors.ipc import Spool

    spool = Spool(tmp_path, fsync="never")
    spool.load()
    log_file = tmp_path / LOG_NAME
    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.run)
        for record in [spool.append("t/zero", b"x", 0) for _ in range(100)]:
            spool.ack(record.seq)
        await anyio.sleep(0.05)
        assert log_file.stat().st_size == 0 and not spool._dirty.is_set()
        kept = spool.append("t/one", b"y", 1)
        zero = spool.append("t/zero", b"x", 0)
        with anyio.fail_after(5):
            await spool.wait_durable(kept)
        logged = log_file.stat().st_size
        spool.ack(zero.seq)  # behind the unacknowledged QoS 1 record: nothing moves
        spool.ack(kept.seq)  # the mark passes it: one ack record
        with anyio.fail_after(5):
            while log_file.stat().st_size == logged:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(spool.close)
    pending, _, _ = read_log(log_file)
    assert pending == []


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
async def test_a_qos1_record_is_in_the_log_when_its_publish_returns(
        tmp_path: Path, policy: str) -> None:
    from actors.ipc import Spool

    spool = Spool(tmp_path, fsync=policy, fsync_interval=0.05)  # type: ignore[arg-type]
    spool.load()
    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.run)
        for i in range(3):
            records = [spool.append("t/durable", f"{i}.{j}".encode(), 1) for j in range(5)]
            with anyio.fail_after(5):
                for record in records:
                    await spool.wait_durable(record)
            # What a kill -9 right now would leave: every accepted record.
            on_disk = [r.payload for r in read_log(tmp_path / LOG_NAME)[0]]
            assert on_disk[-5:] == [f"{i}.{j}".encode() for j in range(5)]
        tg.cancel_scope.cancel()


# -- retain and the MQTT 5 fields ---------------------------------------------------------

FULL = MqttProperties(user_properties=(("unit", "celsius"), ("unit", "kelvin"), ("é", "日本")),
                      message_expiry_interval=3600, correlation_data=b"\x00req-42\xff",
                      response_topic="things/test-thing/replies", payload_format=1,
                      content_type="application/json")


async def _retained(port: int, topic_filter: str, count: int, *, version: str = "mqtt5"
                    ) -> list[aiomqtt.Message]:
    """The messages a client that subscribes only now gets: the broker's retained ones."""
    protocol = aiomqtt.ProtocolVersion.V5 if version == "mqtt5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", port, identifier="late-subscriber",
                              protocol=protocol) as late:
        await late.subscribe(topic_filter, qos=1)
        got: list[aiomqtt.Message] = []
        with anyio.fail_after(5):
            async for message in late.messages:
                got.append(message)
                if len(got) == count:
                    break
        return sorted(got, key=lambda m: str(m.topic))


def _fields(message: aiomqtt.Message) -> MqttProperties | None:
    from actors.ipc._bridge import _from_paho

    return None if message.properties is None else _from_paho(message.properties)


async def test_a_retained_publish_reaches_a_subscriber_that_comes_later(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    from actors.ipc import IpcServer
    from actors.ipc.client import connect

    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path))
    service = IpcService(iot_core=bridge, access_control={CAMERA: access(
        CAMERA, mqttproxy={"operations": ["*"], "resources": ["things/test-thing/#"]})})
    server = IpcServer(service, tmp_path / "ipc.socket")
    async with running(bridge), anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with await connect(environ=server.environment(CAMERA)) as camera:
            await bridge.wait_connected()
            await camera.publish_to_iot_core("things/test-thing/state/q0", b"zero", qos=0,
                                             retain=True)
            await camera.publish_to_iot_core("things/test-thing/state/q1", b"one", qos=1,
                                             retain=True)
            await camera.publish_to_iot_core("things/test-thing/state/plain", b"gone", qos=1)
            await bridge.wait_sent()
            # A cloud client subscribing after the fact gets the two retained ones only.
            late = await _retained(broker.port, "things/test-thing/state/#", 2)
            assert [(str(m.topic), m.payload, m.retain) for m in late] == [
                ("things/test-thing/state/q0", b"zero", True),
                ("things/test-thing/state/q1", b"one", True)]
            # So does a component's SubscribeToIoTCore stream opened now, flagged retained.
            stream = await camera.subscribe_to_iot_core("things/test-thing/state/+", qos=1)
            got = []
            with anyio.fail_after(5):
                while len(got) < 2:
                    got.append(await stream.receive())
            assert sorted((m.topic, m.payload, m.retain) for m in got) == [
                ("things/test-thing/state/q0", b"zero", True),
                ("things/test-thing/state/q1", b"one", True)]
            # A live message on the same stream is not flagged (the broker clears it).
            await camera.publish_to_iot_core("things/test-thing/state/q1", b"two", qos=1,
                                             retain=True)
            with anyio.fail_after(5):
                live = await stream.receive()
            assert (live.payload, live.retain) == (b"two", False)
            # An empty retained payload clears the topic's retained message (MQTT).
            await camera.publish_to_iot_core("things/test-thing/state/q0", b"", qos=1,
                                             retain=True)
            await bridge.wait_sent()
            late = await _retained(broker.port, "things/test-thing/state/#", 1)
            assert [(str(m.topic), m.payload) for m in late] == [
                ("things/test-thing/state/q1", b"two")]
        tg.cancel_scope.cancel()


async def test_a_retained_qos1_message_spooled_offline_is_retained_after_a_restart(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory()
    broker.stop()  # offline: the messages wait in the spool, and the runtime stops
    offline = MqttBridge(settings(broker.port, tmp_path))
    async with running(offline):
        await offline.publish("spooled/state", b"kept", qos=1, retain=True, properties=FULL)
        await offline.publish("spooled/plain", b"not retained", qos=1)
        await offline.publish("spooled/q0", b"dropped offline", qos=0, retain=True)
    pending = read_log(tmp_path / "spool" / LOG_NAME)[0]
    assert [(r.topic, r.retain, r.properties) for r in pending] == [
        ("spooled/state", True, FULL), ("spooled/plain", False, None)]

    await anyio.to_thread.run_sync(broker.start)
    restarted = MqttBridge(settings(broker.port, tmp_path))  # the same spool folder
    async with running(restarted):
        with anyio.fail_after(10):
            await restarted.wait_sent()
    late = await _retained(broker.port, "spooled/#", 1)
    assert [(str(m.topic), m.payload, m.retain) for m in late] == [
        ("spooled/state", b"kept", True)]
    assert _fields(late[0]) == FULL
    assert read_log(tmp_path / "spool" / LOG_NAME)[0] == []


def _old_record(seq: int, topic: str, payload: bytes, qos: int = 1) -> bytes:
    """A message record exactly as the spool wrote it before retain was kept."""
    import struct
    import zlib

    body = struct.pack(">cQBH", b"P", seq, qos, len(topic.encode())) + topic.encode() + payload
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


def _old_ack(below: int) -> bytes:
    import struct
    import zlib

    body = struct.pack(">cQ", b"A", below)
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


async def test_a_spool_written_before_retain_was_kept_still_loads_and_sends(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / LOG_NAME).write_bytes(
        _old_record(0, "old/a", b"acked") + _old_record(1, "old/b", b"one")
        + _old_ack(1) + _old_record(2, "old/c", b"two"))
    pending, below, _ = read_log(spool_dir / LOG_NAME)
    assert [(r.seq, r.topic, r.payload, r.retain, r.properties) for r in pending] == [
        (1, "old/b", b"one", False, None), (2, "old/c", b"two", False, None)]
    assert below == 1

    broker = mosquitto_factory()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as watcher:
        await watcher.subscribe("old/#", qos=1)
        bridge = MqttBridge(settings(broker.port, tmp_path))
        async with running(bridge):
            # New messages go in the same log after the old ones: a plain one still as an
            # old-style record (a runtime before this change reads it), a retained one not.
            await bridge.publish("old/d", b"three", qos=1)
            await bridge.publish("old/e", b"four", qos=1, retain=True)
            got = []
            with anyio.fail_after(10):
                async for message in watcher.messages:
                    got.append((str(message.topic), message.payload, message.retain))
                    if len(got) == 4:
                        break
    assert got == [("old/b", b"one", False), ("old/c", b"two", False),
                   ("old/d", b"three", False), ("old/e", b"four", False)]
    data = (spool_dir / LOG_NAME).read_bytes()
    assert _old_record(3, "old/d", b"three") in data
    late = await _retained(broker.port, "old/#", 1)
    assert [(str(m.topic), m.payload, m.retain) for m in late] == [("old/e", b"four", True)]


@pytest.mark.parametrize("version", ["mqtt5", "mqtt3"])
async def test_the_mqtt5_fields_round_trip_through_the_bridge(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, version: str) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from actors.ipc import IpcServer
    from actors.ipc.client import connect

    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path, version=version))
    service = IpcService(iot_core=bridge, access_control={CAMERA: access(
        CAMERA, mqttproxy={"operations": ["*"], "resources": ["things/test-thing/#"]})})
    server = IpcServer(service, tmp_path / "ipc.socket")
    async with running(bridge), anyio.create_task_group() as tg, aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="cloud-side",
            protocol=aiomqtt.ProtocolVersion.V5) as cloud:
        await tg.start(server.serve)
        await cloud.subscribe("things/test-thing/up", qos=1)
        async with await connect(environ=server.environment(CAMERA)) as camera:
            down = await camera.subscribe_to_iot_core("things/test-thing/down", qos=1)
            await bridge.subscribed()
            # Component -> bridge -> broker -> a cloud client.
            await camera.publish_to_iot_core("things/test-thing/up", b'{"t": 21.5}', qos=1,
                                             properties=FULL)
            with anyio.fail_after(5):
                up = await anext(aiter(cloud.messages))
            # Cloud -> broker -> bridge -> the component's stream.
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("reply-to", "me")]
            properties.CorrelationData = b"\x07corr"
            properties.ResponseTopic = "things/test-thing/up"
            properties.ContentType = "text/plain"
            properties.PayloadFormatIndicator = 1
            properties.MessageExpiryInterval = 600
            await cloud.publish("things/test-thing/down", b"hello", qos=1,
                                properties=properties)
            with anyio.fail_after(5):
                message = await down.receive()
        tg.cancel_scope.cancel()
    assert up.payload == b'{"t": 21.5}'
    assert message.payload == b"hello"
    if version == "mqtt3":  # MQTT 3.1.1 has no properties: dropped both ways (the event
        # says BYTES, as the nucleus's always does)
        assert _fields(up) is None and message.properties == MqttProperties(payload_format=0)
        return
    sent = _fields(up)
    assert sent is not None and sent.message_expiry_interval is not None
    # The broker counts down the expiry interval while it holds the message.
    assert 3590 <= sent.message_expiry_interval <= 3600
    assert sent == dataclasses.replace(FULL, message_expiry_interval=sent.message_expiry_interval)
    received = message.properties
    assert received is not None and received.message_expiry_interval is not None
    assert 590 <= received.message_expiry_interval <= 600
    assert received == MqttProperties(
        user_properties=(("reply-to", "me"),),
        message_expiry_interval=received.message_expiry_interval,
        correlation_data=b"\x07corr", response_topic="things/test-thing/up",
        payload_format=1, content_type="text/plain")


async def test_publish_to_iot_core_refuses_what_the_broker_would_refuse(
        mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    from actors.ipc import InvalidArgumentsError

    broker = mosquitto_factory()
    bridge = MqttBridge(settings(broker.port, tmp_path))
    service = IpcService(iot_core=bridge, access_control={CAMERA: access(
        CAMERA, mqttproxy={"operations": ["*"], "resources": ["*"]})})
    async with running(bridge), LocalIpcClient(service, CAMERA) as camera:
        await bridge.wait_connected()
        bad: list[tuple[str, MqttProperties | None, bytes]] = [
            ("tab\there", None, b"x"),  # mosquitto ends the connection on these
            ("t", MqttProperties(user_properties=(("k", "v\x01"),)), b"x"),
            ("t", MqttProperties(payload_format=1), b"\xff not utf-8"),
            ("t", MqttProperties(response_topic="replies/#"), b"x"),
            ("t", MqttProperties(message_expiry_interval=1 << 32), b"x"),
        ]
        for topic, properties, payload in bad:
            with pytest.raises(InvalidArgumentsError):
                await camera.publish_to_iot_core(topic, payload, qos=1, retain=True,
                                                 properties=properties)
        assert bridge.statistics().spooled == 0
        # The connection is still the first one, and takes a good message.
        await camera.publish_to_iot_core("t", b"fine", qos=1, properties=FULL)
        with anyio.fail_after(5):
            await bridge.wait_sent()
    assert bridge.statistics().connections == 1
