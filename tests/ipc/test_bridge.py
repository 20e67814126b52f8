"""The MQTT bridge against a real mosquitto: pub/sub, a broker killed mid-stream, TLS with
client certificates, and the on-disk spool across restarts."""

from __future__ import annotations

import contextlib
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
from actors.ipc.client import LocalIpcClient

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
