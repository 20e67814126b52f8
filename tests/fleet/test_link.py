"""The fleet's MQTT link against a real mosquitto: a broker that stops answering (SIGSTOP:
the TCP connection stays up, no PUBACK comes) is left once the oldest PUBACK is overdue,
and the outbox goes again on the next connection, the newest message under each key."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import orjson
import pytest

from actors.fleet._link import BrokerSettings, Link
from actors.fleet._status import retained

from ..ipc import mosquitto as mq

pytestmark = pytest.mark.anyio


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[mq.Mosquitto]:
    if not mq.available():
        pytest.skip(mq.INSTALL_HINT)
    (tmp_path / "mosquitto").mkdir()
    made = mq.Mosquitto(tmp_path / "mosquitto")
    made.start()
    try:
        yield made
    finally:
        made.kill()


async def test_a_frozen_broker_is_left_and_the_outbox_goes_again(broker: mq.Mosquitto
                                                                 ) -> None:
    settings = BrokerSettings("127.0.0.1", broker.port, client_id="link-test", tls=False,
                              timeout=1.0, keepalive=60)
    link = Link(settings, [], lambda topic, payload: None)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        with anyio.fail_after(10):
            await link.wait_connected()
        link.publish("fleet/things/t/status", orjson.dumps({"before": True}), retain=True)
        with anyio.fail_after(10):
            await link.wait_sent()
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        try:
            for i in range(100):  # more than the window of 64 awaiting their PUBACK
                link.publish(f"fleet/things/t{i}/status", orjson.dumps({"n": i}), retain=True)
            for i in range(3):  # a newer message under one key replaces the older
                link.publish("fleet/things/t/status", orjson.dumps({"frozen": i}),
                             retain=True)
            with anyio.fail_after(10):
                while "no PUBACK within 1 s" not in link.last_error:
                    await anyio.sleep(0.05)
        finally:
            broker.process.send_signal(signal.SIGCONT)
        with anyio.fail_after(30):
            await link.wait_sent()
        assert link.connections >= 2
        tg.cancel_scope.cancel()
    seen = await retained(settings, "fleet/things/+/status")
    assert seen["t"] == {"frozen": 2}
    assert {t: seen.get(t) for t in (f"t{i}" for i in range(100))} == {
        f"t{i}": {"n": i} for i in range(100)}


async def test_messages_go_to_the_callback_and_a_failing_one_keeps_the_connection(
        broker: mq.Mosquitto) -> None:
    """Received messages are handed to ``on_message`` as paho reads them, not queued for
    aiomqtt's iterator (a task each); an error in the handler is that message's."""
    from actors.fleet._status import publish_once

    settings = BrokerSettings("127.0.0.1", broker.port, client_id="link-in", tls=False)
    got: list[tuple[str, bytes]] = []

    def on_message(topic: str, payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("a handler's bug")
        got.append((topic, payload))

    await publish_once(dataclasses.replace(settings, client_id="link-pub"),
                       "test/in/retained", b"kept", retain=True)
    link = Link(settings, ["test/in/#"], on_message)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        with anyio.fail_after(10):
            await link.wait_connected()
        for payload in (b"bad", b"after"):
            await publish_once(dataclasses.replace(settings, client_id="link-pub"),
                               "test/in/live", payload)
        with anyio.fail_after(10):
            while len(got) < 2:
                await anyio.sleep(0.02)
        client = link._client
        assert client is not None and len(client.messages) == 0  # nothing queued
        assert link.received == 3 and link.connections == 1
        # Nothing in flight and no iterator over aiomqtt's messages: a dropped
        # connection is still noticed, and made again.
        broker.restart()
        with anyio.fail_after(20):
            while link.connections < 2 or not link.connected:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert got[:2] == [("test/in/retained", b"kept"), ("test/in/live", b"after")]
