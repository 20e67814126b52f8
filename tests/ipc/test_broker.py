"""The local broker: receive modes, payload kinds, bounded queues and slow subscribers."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from actors.ipc import (
    Broker,
    InvalidArgumentsError,
    IpcService,
    Overflow,
    ReceiveMode,
    StreamClosed,
    SubscriberFull,
    UnauthorizedError,
)
from actors.ipc.client import LocalIpcClient

pytestmark = pytest.mark.anyio


async def test_json_and_binary_messages_reach_matching_subscribers() -> None:
    broker = Broker()
    exact = broker.subscribe("B", "ml/dlr/result")
    wild = broker.subscribe("C", "ml/+/result")
    other = broker.subscribe("D", "logs/#")
    assert broker.publish_nowait("A", "ml/dlr/result", {"label": "tabby", "score": 0.9}) == 2
    assert broker.publish_nowait("A", "ml/dlr/result", b"\x00\xffraw") == 2
    for sub in (exact, wild):
        first, second = await sub.receive(), await sub.receive()
        assert first.payload == {"label": "tabby", "score": 0.9} and not first.is_binary
        assert second.payload == b"\x00\xffraw" and second.is_binary
        assert first.topic == "ml/dlr/result" and first.source == "A"
    assert len(other) == 0


async def test_receive_modes_follow_greengrass() -> None:
    broker = Broker()
    own_all = broker.subscribe("A", "t/x", receive_mode=ReceiveMode.RECEIVE_ALL_MESSAGES)
    own_others = broker.subscribe("A", "t/x",
                                  receive_mode=ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS)
    # Greengrass's default: a wildcard filter hears only others, an exact topic everything.
    default_exact = broker.subscribe("A", "t/x")
    default_wild = broker.subscribe("A", "t/+")
    broker.publish_nowait("A", "t/x", {"n": 1})
    broker.publish_nowait("B", "t/x", {"n": 2})
    assert [m.payload["n"] for m in own_all.drain()] == [1, 2]
    assert [m.payload["n"] for m in own_others.drain()] == [2]
    assert [m.payload["n"] for m in default_exact.drain()] == [1, 2]
    assert [m.payload["n"] for m in default_wild.drain()] == [2]


async def test_wildcards_in_publish_topics_are_refused() -> None:
    broker = Broker()
    for topic in ("a/+", "a/#", "a/*"):
        with pytest.raises(InvalidArgumentsError):
            broker.publish_nowait("A", topic, {})


async def test_a_full_drop_oldest_queue_drops_its_oldest_and_counts() -> None:
    broker = Broker()
    sub = broker.subscribe("B", "t", queue_size=3)
    for i in range(10):
        broker.publish_nowait("A", "t", i)
    assert [m.payload for m in sub.drain()] == [7, 8, 9]
    stats = sub.statistics()
    assert stats.dropped == 7 and stats.delivered == 10 and stats.overflow is Overflow.DROP_OLDEST
    assert broker.statistics().dropped == 7


async def test_a_slow_subscriber_does_not_stall_the_others() -> None:
    broker = Broker()
    slow = broker.subscribe("Slow", "sensor/#", queue_size=10)  # never reads
    fast = broker.subscribe("Fast", "sensor/#", queue_size=10)
    received = []

    async def consume() -> None:
        async for message in fast:
            received.append(message.payload)
            if len(received) == 5000:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        for i in range(5000):
            broker.publish_nowait("Camera", "sensor/frame", i)
            if i % 8 == 0:
                # the fast consumer keeps up; the slow one never reads
                await anyio.lowlevel.checkpoint()
    assert received == list(range(5000))
    assert len(slow) == 10 and slow.statistics().dropped == 4990  # bounded memory


async def test_backpressure_makes_publish_wait_and_publish_nowait_refuse() -> None:
    broker = Broker()
    sub = broker.subscribe("B", "t", queue_size=2, overflow=Overflow.BACKPRESSURE)
    other = broker.subscribe("C", "t", queue_size=100)
    broker.publish_nowait("A", "t", 1)
    broker.publish_nowait("A", "t", 2)
    with pytest.raises(SubscriberFull):
        broker.publish_nowait("A", "t", 3)
    assert len(other) == 2  # a refused publish reached no one
    async with anyio.create_task_group() as tg:
        tg.start_soon(broker.publish, "A", "t", 3)
        await anyio.sleep(0.01)
        assert len(sub) == 2  # still waiting for room
        assert (await sub.receive()).payload == 1
    assert [m.payload for m in sub.drain()] == [2, 3]
    assert sub.statistics().dropped == 0


async def test_closing_a_subscription_unsubscribes_and_ends_iteration() -> None:
    broker = Broker()
    sub = broker.subscribe("B", "t/#")
    broker.publish_nowait("A", "t/1", "x")
    sub.close()
    assert broker.publish_nowait("A", "t/1", "y") == 0
    assert [m.payload async for m in sub] == ["x"]
    with pytest.raises(StreamClosed):
        await sub.receive()
    assert broker.statistics().subscriptions == 0


async def test_in_process_client_is_authorized_like_a_process() -> None:
    service = IpcService(access_control={"A": {"accessControl": {"aws.greengrass.ipc.pubsub": {
        "A:1": {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["out/*"]}}}}})
    async with LocalIpcClient(service, "A") as client:
        with pytest.raises(UnauthorizedError, match="A is not authorized"):
            await client.subscribe_to_topic("out/x")
        with pytest.raises(UnauthorizedError, match="in/x"):
            await client.publish_to_topic("in/x", {})
        watcher = service.broker.subscribe("$test", "out/#")
        await client.publish_to_topic("out/x", {"ok": True})
        client.publish_to_topic_nowait("out/y", b"raw")
        assert [m.topic for m in watcher.drain()] == ["out/x", "out/y"]
