"""The IPC socket: component processes authenticate with their token, and bad clients are
cut off without disturbing anyone else."""

from __future__ import annotations

import os
import random
import stat
import struct
import sys
import textwrap
from typing import Any

import anyio
import orjson
import pytest

from actors.ipc import (
    CallContext,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    IpcServer,
    IpcService,
    ResourceNotFoundError,
    StreamClosed,
    UnauthorizedError,
)
from actors.ipc.client import IpcClient, SyncIpcClient, connect

pytestmark = pytest.mark.anyio

PUB = "com.example.Publisher"
SUB = "com.example.Subscriber"


async def client_for(server: IpcServer, component: str) -> IpcClient:
    env = server.environment(component)
    return await connect(environ=env)


async def raw_exchange(server: IpcServer, data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, then read frames until the server closes or 0.5 s of silence."""
    frames: list[dict[str, Any]] = []
    async with await anyio.connect_unix(str(server.path)) as stream:
        await stream.send(data)
        buffer = b""
        with anyio.move_on_after(0.5):
            while True:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
        while len(buffer) >= 4:
            (size,) = struct.unpack_from(">I", buffer)
            frames.append(orjson.loads(buffer[4:4 + size]))
            buffer = buffer[4 + size:]
    return frames


def frame(obj: Any) -> bytes:
    body = orjson.dumps(obj)
    return struct.pack(">I", len(body)) + body


async def test_publish_and_subscribe_between_component_processes(server: IpcServer) -> None:
    publisher = await client_for(server, PUB)
    subscriber = await client_for(server, SUB)
    async with publisher, subscriber:
        assert subscriber.component == SUB
        stream = await subscriber.subscribe_to_topic("ml/#")
        await publisher.publish_to_topic("ml/dlr/image-classification",
                                         {"mappedInferenceResult": "tabby", "score": 0.91})
        await publisher.publish_to_topic("ml/frames", b"\x89PNG\x00")
        first, second = await stream.receive(), await stream.receive()
        assert first.topic == "ml/dlr/image-classification"
        assert first.payload == {"mappedInferenceResult": "tabby", "score": 0.91}
        assert second.payload == b"\x89PNG\x00"
        with pytest.raises(UnauthorizedError, match=f"{SUB} is not authorized.*PublishToTopic"):
            await subscriber.publish_to_topic("ml/x", {})
        with pytest.raises(UnauthorizedError, match="other/topic"):
            await subscriber.subscribe_to_topic("other/topic")
        with pytest.raises(InvalidArgumentsError, match="wildcard"):
            await publisher.publish_to_topic("ml/+", {})
        stream.close()
        await publisher.publish_to_topic("ml/after", {})
        assert [m async for m in stream] == []


async def test_the_socket_is_private_to_the_runtime_user(server: IpcServer) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_a_bad_token_closes_only_that_connection(server: IpcServer) -> None:
    good = await client_for(server, PUB)
    async with good:
        with pytest.raises(UnauthorizedError, match="not valid"):
            await IpcClient(str(server.path), "not-a-token").connect()
        replies = await raw_exchange(server, frame({"id": 1, "op": "PublishToTopic",
                                                    "request": {"topic": "x"}}))
        assert replies[-1]["error"]["type"] == "UnauthorizedError"
        await good.publish_to_topic("still/works", {})
    assert server.statistics().refused == 2


async def test_token_theft_is_refused(server: IpcServer, service: IpcService) -> None:
    subscriber_token = service.register_component(SUB)
    # Claiming to be another component with one's token is refused.
    with pytest.raises(UnauthorizedError, match=f"does not belong to component {PUB}"):
        await IpcClient(str(server.path), subscriber_token, component_name=PUB).connect()
    # A stolen token acts only as its owner: the owner's rights, the owner's configuration.
    thief = await IpcClient(str(server.path), subscriber_token).connect()
    async with thief:
        assert thief.component == SUB
        with pytest.raises(UnauthorizedError):
            await thief.publish_to_topic("ml/x", {})
        await thief.update_configuration([], {"topic": "changed"})
        assert (await thief.get_configuration(["topic"])) == {"topic": "changed"}
        assert (await thief.get_configuration(["threshold"], PUB)) == {"threshold": 0.5}
    # A new token (a restarted component) revokes the old one.
    service.register_component(SUB)
    with pytest.raises(UnauthorizedError):
        await IpcClient(str(server.path), subscriber_token).connect()


async def test_oversize_and_malformed_frames_close_only_their_connection(
        server: IpcServer) -> None:
    good = await client_for(server, PUB)
    async with good:
        stream = await good.subscribe_to_topic("ml/ok")
        token = server.environment(SUB)["SVCUID"]
        connect_frame = frame({"id": 0, "op": "Connect", "request": {"authToken": token}})
        for bad in (struct.pack(">I", server.max_frame + 1) + b"x" * 16,
                    struct.pack(">I", 5) + b"{nope",
                    frame([1, 2, 3]),
                    frame({"op": "PublishToTopic"})):
            replies = await raw_exchange(server, connect_frame + bad)
            assert replies[0]["response"]["componentName"] == SUB
            assert replies[-1]["id"] is None and replies[-1]["error"]["type"] == "ProtocolError"
        await good.publish_to_topic("ml/ok", {"alive": True})
        assert (await stream.receive()).payload == {"alive": True}
    assert server.statistics().protocol_errors == 4


OPS = ["PublishToTopic", "SubscribeToTopic", "GetConfiguration", "UpdateConfiguration",
       "SubscribeToConfigurationUpdate", "UpdateState", "DeferComponentUpdate",
       "PublishToIoTCore", "SubscribeToIoTCore", "Connect", "NoSuchOp", ""]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**40, 1.5])
    if kind == 2:
        return "".join(rng.choice("ab/+#*$\x00é") for _ in range(rng.randrange(6)))
    if kind == 3:
        return rng.choice(["ml/x", "#", "", "RECEIVE_ALL_MESSAGES", "RUNNING", "1"])
    if kind == 4:
        return rng.random()
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["topic", "publishMessage", "jsonMessage", "binaryMessage", "message", "keyPath",
            "valueToMerge", "timestamp", "state", "qos", "topicName", "payload", "receiveMode",
            "componentName", "deploymentId", "recheckAfterMs", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_request(rng: random.Random) -> bytes:
    """A well-framed request with random content: it reaches the operation handlers."""
    if rng.random() < 0.05:
        return frame({"id": rng.randrange(1000), "close": True})
    return frame({"id": rng.randrange(1, 1000), "op": rng.choice(OPS),
                  "request": random_json(rng)})


def random_frame(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        body = rng.randbytes(rng.randrange(40))
        return struct.pack(">I", len(body)) + body
    if kind == 1:
        return struct.pack(">I", rng.choice([2**31, 2**32 - 1, 70_000])) + b"{}"
    if kind == 2:
        return frame(random_json(rng))
    request = {"id": rng.choice([rng.randrange(1, 1000), None, "7", -1, True]),
               "op": rng.choice(OPS), "request": random_json(rng)}
    if rng.random() < 0.1:
        request = {"id": rng.randrange(1000), "close": True}
    return frame(request)


async def test_ten_thousand_fuzzed_frames_leave_the_server_serving(
        server: IpcServer, service: IpcService, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20261125)
    watcher = await client_for(server, PUB)
    async with watcher:
        stream = await watcher.subscribe_to_topic("health/check")
        token = service.register_component(SUB)
        sent = 0
        round_number = 0
        while sent < 10_000:
            hostile = rng.random() < 0.3
            batch = [random_frame(rng) if hostile else random_request(rng) for _ in range(50)]
            sent += len(batch)
            prefix = b""
            if rng.random() < 0.8:
                prefix = frame({"id": 0, "op": "Connect", "request": {"authToken": token}})
            await raw_exchange_quick(server, prefix + b"".join(batch))
            round_number += 1
            if round_number % 20 == 0:
                await watcher.publish_to_topic("health/check", {"round": round_number})
                assert (await stream.receive()).payload == {"round": round_number}
        assert await watcher.get_configuration(["model", "name"]) == {"name": "mobilenet"}
    # Every fuzzed request was answered by validation, none by a crash in a handler.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    stats = server.statistics()
    assert stats.requests > 2000 and stats.protocol_errors > 20 and stats.refused > 10
    with anyio.fail_after(5):
        while server.statistics().connections:
            await anyio.sleep(0.01)


SENTINEL = frame({"id": 424242, "op": "GetConfiguration", "request": {}})


async def raw_exchange_quick(server: IpcServer, data: bytes) -> None:
    """Send, then read until the server answered the sentinel request or closed."""
    async with await anyio.connect_unix(str(server.path)) as stream:
        try:
            await stream.send(data + SENTINEL)
            received = b""
            with anyio.fail_after(5):
                while b'"id":424242' not in received:
                    received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass


async def test_configuration_operations_and_the_timestamp_rule(server: IpcServer) -> None:
    client = await client_for(server, PUB)
    async with client:
        assert await client.get_configuration() == {"threshold": 0.5,
                                                    "model": {"name": "mobilenet"}}
        assert await client.get_configuration(["threshold"]) == {"threshold": 0.5}
        with pytest.raises(ResourceNotFoundError, match="/model/size"):
            await client.get_configuration(["model", "size"])
        updates = await client.subscribe_to_configuration_update(["model"])
        await client.update_configuration(["model"], {"name": "resnet"}, timestamp=2_000)
        assert await updates.receive() == {"componentName": PUB, "keyPath": ["model", "name"]}
        with pytest.raises(FailedUpdateConditionCheckError, match="/model/name"):
            await client.update_configuration(["model"], {"name": "older"}, timestamp=1_000)
        assert await client.get_configuration(["model", "name"]) == {"name": "resnet"}
        await client.update_configuration([], {"threshold": 0.7})  # now: newer than 2000 ms
        assert len(updates) == 0  # /threshold is not under /model
        await client.update_configuration(["model"], {"size": 224}, timestamp=3_000)
        assert await updates.receive() == {"componentName": PUB, "keyPath": ["model", "size"]}


async def test_configuration_updates_reach_a_plain_script(server: IpcServer) -> None:
    env = server.environment(SUB)
    other = await client_for(server, PUB)

    def script() -> list[Any]:
        with SyncIpcClient(env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                           env["SVCUID"]) as ipc:
            updates = ipc.subscribe_to_configuration_update(["model"], PUB)
            ready.set()
            event = updates.receive(timeout=5)
            value = ipc.get_configuration(["model", "name"], PUB)
            updates.close()
            return [event, value]

    ready = anyio.Event()

    async with other, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def run_script() -> None:
            results.extend(await anyio.to_thread.run_sync(script))

        ready = _ThreadEvent()
        tg.start_soon(run_script)
        await anyio.to_thread.run_sync(ready.wait)
        await other.update_configuration(["model"], {"name": "efficientnet"})
    assert results == [{"componentName": PUB, "keyPath": ["model", "name"]},
                       {"name": "efficientnet"}]


class _ThreadEvent:
    def __init__(self) -> None:
        import threading
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self) -> None:
        self._event.wait(5)


async def test_state_deferral_and_registered_operations(server: IpcServer,
                                                        service: IpcService) -> None:
    states: list[tuple[str, str]] = []
    service.on_state(lambda component, state: states.append((component, state)))

    async def list_components(ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"components": [{"componentName": ctx.component, "state": "RUNNING"}]}

    service.register_operation("ListComponents", list_components)
    client = await client_for(server, PUB)
    async with client:
        await client.update_state("RUNNING")
        with pytest.raises(InvalidArgumentsError, match="state must be"):
            await client.update_state("BROKEN")
        await client.defer_component_update("deployment-7", "busy inferring", 60_000)
        listing = await client.call("ListComponents", {})
        with pytest.raises(InvalidArgumentsError, match="unknown IPC operation"):
            await client.call("RestartComponent", {})
    assert states == [(PUB, "RUNNING")]
    assert service.deferrals[0].deployment_id == "deployment-7"
    assert service.deferrals[0].recheck_after_ms == 60_000
    assert listing == {"components": [{"componentName": PUB, "state": "RUNNING"}]}


async def test_a_component_process_connects_from_its_environment(server: IpcServer) -> None:
    client = await client_for(server, SUB)
    async with client:
        stream = await client.subscribe_to_topic("ml/hello")
        code = textwrap.dedent("""
            from actors.ipc.client import connect_sync
            with connect_sync() as ipc:
                config = ipc.get_configuration(["model", "name"])
                ipc.publish_to_topic("ml/hello", {"from": ipc.component, **config})
            print("done")
        """)
        env = {**os.environ, **server.environment(PUB)}
        result = await anyio.run_process([sys.executable, "-c", code], env=env, check=False)
        assert result.returncode == 0, result.stderr.decode()
        message = await stream.receive()
        assert message.payload == {"from": PUB, "name": "mobilenet"}


async def test_a_closed_server_ends_client_streams(service: IpcService, tmp_path: Any) -> None:
    server = IpcServer(service, tmp_path / "ipc.socket")
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        client = await client_for(server, SUB)
        stream = await client.subscribe_to_topic("ml/x")
        tg.cancel_scope.cancel()
    with anyio.fail_after(5):
        assert [m async for m in stream] == []
    with pytest.raises(StreamClosed):
        await client.publish_to_topic("ml/x", {})
    await client.close()
    assert not server.path.exists()


def test_connect_outside_the_runtime_says_why() -> None:
    from actors.ipc.client import connect_sync

    with pytest.raises(StreamClosed, match="SVCUID"):
        connect_sync(environ={})


async def test_a_subscriber_process_that_stops_reading_stalls_no_one(
        server: IpcServer, service: IpcService) -> None:
    token = service.register_component(SUB)
    async with await anyio.connect_unix(str(server.path)) as stuck:
        await stuck.send(frame({"id": 0, "op": "Connect", "request": {"authToken": token}})
                         + frame({"id": 1, "op": "SubscribeToTopic",
                                  "request": {"topic": "ml/frames"}}))
        # ... and never reads again.
        publisher = await client_for(server, PUB)
        reader = await client_for(server, SUB)
        async with publisher, reader:
            stream = await reader.subscribe_to_topic("ml/frames")
            blob = "x" * 2048
            received = 0
            for i in range(3000):
                await publisher.publish_to_topic("ml/frames", {"i": i, "blob": blob})
                received += len(stream.drain())
            with anyio.fail_after(5):
                while received < 3000:
                    await stream.wait()
                    received += len(stream.drain())
    assert received == 3000
    assert service.broker.statistics().dropped > 0  # the stuck one's queue, bounded
