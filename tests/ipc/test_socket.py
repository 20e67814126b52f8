"""The IPC socket: component processes authenticate with their token, and bad clients are
cut off without disturbing anyone else."""

from __future__ import annotations

import os
import random
import stat
import struct
import sys
import textwrap
import zlib
from typing import Any

import anyio
import orjson
import pytest

from actors.ipc import (
    CallContext,
    Deferral,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    IpcServer,
    IpcService,
    ResourceNotFoundError,
    ServiceError,
    StreamClosed,
    UnauthorizedError,
    _rpc,
)
from actors.ipc._eventstream import Decoder, encode
from actors.ipc.client import IpcClient, SyncIpcClient, connect

pytestmark = pytest.mark.anyio

PUB = "com.example.Publisher"
SUB = "com.example.Subscriber"


async def client_for(server: IpcServer, component: str) -> IpcClient:
    env = server.environment(component)
    return await connect(environ=env)


async def raw_exchange(server: IpcServer, data: bytes, then: bytes = b""
                       ) -> list[tuple[dict[str, Any], Any]]:
    """Send raw bytes (and ``then``, once the first reply came), then read messages until
    the server closes or 0.5 s of silence."""
    async with await anyio.connect_unix(str(server.path)) as stream:
        await stream.send(data)
        buffer = b""
        if then:
            with anyio.fail_after(5):
                buffer += await stream.receive()
            await stream.send(then)
        with anyio.move_on_after(0.5):
            while True:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return [(h, orjson.loads(p) if p.startswith(b"{") else p)
            for h, p in Decoder().feed(buffer)]


def connect_msg(token: str) -> bytes:
    return _rpc.connect(token)


def request_msg(stream_id: int, op: str, body: Any) -> bytes:
    return _rpc.application(stream_id, f"aws.greengrass#{op}Request", body,
                            operation=f"aws.greengrass#{op}")


def kind(headers: dict[str, Any]) -> str:
    return _rpc.MESSAGE_TYPES[headers[":message-type"]]


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
        # a wrong token: CONNECT_ACK without CONNECTION_ACCEPTED, then the connection closes
        replies = await raw_exchange(server, connect_msg("stolen?"))
        assert [(kind(h), h[":message-flags"]) for h, _ in replies] == [("CONNECT_ACK", 0)]
        # a request before CONNECT: PROTOCOL_ERROR
        replies = await raw_exchange(server, request_msg(1, "PublishToTopic", {"topic": "x"}))
        assert [kind(h) for h, _ in replies] == ["PROTOCOL_ERROR"]
        assert "CONNECT" in replies[0][1]["message"]
        await good.publish_to_topic("still/works", {})
    assert server.statistics().refused == 3


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


def reframe(message: bytes, **changes: Any) -> bytes:
    """``message`` with its RPC headers changed (CRCs recomputed)."""
    headers, payload = Decoder().feed(message)[0]
    headers.update(changes)
    for name, value in list(headers.items()):
        if value is None:
            del headers[name]
    return encode(headers, payload)


async def test_malformed_messages_get_protocol_error_and_close_only_their_connection(
        server: IpcServer) -> None:
    good = await client_for(server, PUB)
    async with good:
        stream = await good.subscribe_to_topic("ml/ok")
        token = server.environment(SUB)["SVCUID"]
        publish = request_msg(1, "PublishToTopic", {"topic": "ml/ok", "publishMessage": {
            "jsonMessage": {"message": 1}}})
        bad_crc = bytearray(publish)
        bad_crc[-1] ^= 0xFF
        oversize = struct.pack(">II", server.max_frame + 1, 0)
        oversize += struct.pack(">I", zlib.crc32(oversize)) + b"x" * 16
        cases = {
            "message CRC mismatch": bytes(bad_crc),
            "prelude CRC mismatch": publish[:8] + b"\0\0\0\0" + publish[12:],
            "exceeds the limit": oversize,
            "stream id 3 is not the next one": reframe(publish, **{":stream-id": 3}),
            "without an operation header": reframe(publish, operation=None),
            "message type 9 is not allowed": reframe(publish, **{":message-type": 9}),
            "PING is not allowed on stream 1": reframe(publish, **{":message-type": 2}),
            "APPLICATION_MESSAGE is not allowed on stream 0":
                reframe(publish, **{":stream-id": 0}),
            "no :message-flags header": reframe(publish, **{":message-flags": None}),
            ":stream-id header must be an int32": reframe(publish, **{":stream-id": True}),
            ":message-type header must be an int32": reframe(
                publish, **{":message-type": False}),
            "only one CONNECT": connect_msg(token),
        }
        for expected, bad in cases.items():
            # with CONNECT in the same read, and after its CONNECT_ACK came back
            for replies in (await raw_exchange(server, connect_msg(token) + bad),
                            await raw_exchange(server, connect_msg(token), then=bad)):
                assert kind(replies[0][0]) == "CONNECT_ACK"
                assert replies[0][0][":message-flags"] == 1
                assert kind(replies[-1][0]) == "PROTOCOL_ERROR", (expected, replies)
                assert expected in replies[-1][1]["message"]
        await good.publish_to_topic("ml/ok", {"alive": True})
        assert (await stream.receive()).payload == {"alive": True}
    assert server.statistics().protocol_errors == 2 * len(cases)


async def test_ping_cancel_and_a_stream_ended_by_the_runtime(server: IpcServer) -> None:
    token = server.environment(PUB)["SVCUID"]
    replies = await raw_exchange(server, connect_msg(token)
                                 + _rpc.message(_rpc.PING, 0, b"hello")
                                 + request_msg(1, "SubscribeToTopic", {"topic": "a/b"})
                                 + _rpc.message(_rpc.APPLICATION_MESSAGE, 1, b"",
                                                _rpc.TERMINATE_STREAM)
                                 + request_msg(2, "PublishToTopic", {
                                     "topic": "a/b", "publishMessage": {
                                         "jsonMessage": {"message": 1}}}))
    assert [(kind(h), h[":stream-id"], h.get("service-model-type")) for h, _ in replies] == [
        ("CONNECT_ACK", 0, None), ("PING_RESPONSE", 0, None),
        ("APPLICATION_MESSAGE", 1, "aws.greengrass#SubscribeToTopicResponse"),
        ("APPLICATION_MESSAGE", 2, "aws.greengrass#PublishToTopicResponse")]
    # the cancelled subscription got nothing; the unary response ends its stream
    assert replies[3][0][":message-flags"] == _rpc.TERMINATE_STREAM
    assert replies[2][0][":message-flags"] == 0


async def test_an_unauthenticated_connection_is_closed_after_the_deadline(
        service: IpcService, tmp_path: Any) -> None:
    from actors.ipc._server import Limits

    server = IpcServer(service, tmp_path / "s", limits=Limits(auth_timeout=0.2))
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with await anyio.connect_unix(str(server.path)) as idle:
            with anyio.fail_after(3):
                buffer = b""
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:
                        buffer += await idle.receive()
        [(headers, payload)] = Decoder().feed(buffer)
        assert kind(headers) == "PROTOCOL_ERROR" and b"within 0.2 s" in payload
        # and before authentication only small messages are read
        async with await anyio.connect_unix(str(server.path)) as big:
            await big.send(request_msg(1, "PublishToTopic", {"x": "y" * 20_000})[:64])
            replies = Decoder().feed(await big.receive())
            assert b"limit of 16384" in replies[0][1]
        tg.cancel_scope.cancel()


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


def random_request(rng: random.Random, stream_id: int) -> bytes:
    """A well-framed request with random content: it reaches the operation handlers."""
    return request_msg(stream_id, rng.choice(OPS), random_json(rng))


def random_message(rng: random.Random, stream_id: int) -> bytes:
    """A mutated message: flipped bytes (CRCs fixed up or not), cut, wrong lengths,
    truncated headers of every type, unknown message types, stream ids out of order."""
    message = bytearray(random_request(rng, stream_id))
    kind = rng.randrange(8)
    if kind == 0:
        message[rng.randrange(len(message))] = rng.randrange(256)
    elif kind == 1:
        struct.pack_into(">I", message, 0, rng.choice([0, 15, 17, 2**31, 2**32 - 1]))
    elif kind == 2:  # a truncated header block of some type, CRCs right
        header_type = rng.randrange(12)
        block = b"\x01a" + bytes([header_type]) + rng.randbytes(rng.randrange(3))
        return _reframe_raw(block)
    elif kind == 3:
        return reframe(bytes(message), **{":message-type": rng.choice([8, 99, -1, 5, 4])})
    elif kind == 4:
        return reframe(bytes(message), **{":stream-id": rng.choice([0, stream_id + 2, -3])})
    elif kind == 5:
        del message[rng.randrange(12, len(message)):]
        return bytes(message) + rng.randbytes(rng.randrange(8))
    elif kind == 6:
        return rng.randbytes(rng.randrange(12, 64))
    else:  # a flipped byte with both CRCs made right again
        message[rng.randrange(12, len(message) - 4)] ^= 1 << rng.randrange(8)
        struct.pack_into(">I", message, len(message) - 4, zlib.crc32(message[:-4]))
    return bytes(message)


def _reframe_raw(block: bytes) -> bytes:
    prelude = struct.pack(">II", len(block) + 16, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    return prelude + block + struct.pack(">I", zlib.crc32(prelude + block))


async def test_ten_thousand_fuzzed_messages_leave_the_server_serving(
        server: IpcServer, service: IpcService, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(20261204)
    watcher = await client_for(server, PUB)
    sdk = SdkRoundTrips(server.environment(PUB))
    if sdk.available:
        sdk.start()
    async with watcher:
        stream = await watcher.subscribe_to_topic("health/check")
        token = service.register_component(SUB)
        sent = 0
        round_number = 0
        while sent < 10_000:
            hostile = rng.random() < 0.5
            batch = [random_message(rng, i) if hostile and rng.random() < 0.3
                     else random_request(rng, i) for i in range(1, 51)]
            sent += len(batch)
            prefix = connect_msg(token) if rng.random() < 0.8 else b""
            # half the time after CONNECT_ACK (requests then are answered as they are read)
            await raw_exchange_quick(server, prefix, b"".join(batch), rng.random() < 0.5)
            round_number += 1
            if round_number % 20 == 0:
                await watcher.publish_to_topic("health/check", {"round": round_number})
                assert (await stream.receive()).payload == {"round": round_number}
        assert await watcher.get_configuration(["model", "name"]) == {"name": "mobilenet"}
        during = sdk.count
        if sdk.available:
            await anyio.to_thread.run_sync(sdk.stop)
    # a legitimate SDK client kept its round trips during the fuzzing and after it
    if sdk.available:
        assert during > 10 and sdk.count > during and sdk.error is None, sdk.error
    # Every fuzzed request was answered by validation, none by a crash in a handler.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    stats = server.statistics()
    assert stats.requests > 2000 and stats.protocol_errors > 20 and stats.refused > 10
    with anyio.fail_after(5):
        while server.statistics().connections:
            await anyio.sleep(0.01)


class SdkRoundTrips:
    """The AWS IoT Device SDK's V2 client publishing in a thread until stopped."""

    def __init__(self, env: dict[str, str]) -> None:
        import importlib.util
        import threading

        self.available = importlib.util.find_spec("awsiot") is not None
        self.env = env
        self.count = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        from awsiot import greengrasscoreipc
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        try:
            client = GreengrassCoreIPCClientV2(greengrasscoreipc.connect(
                ipc_socket=self.env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                authtoken=self.env["SVCUID"]))
            message = PublishMessage(json_message=JsonMessage(message={"sdk": True}))
            while True:
                client.publish_to_topic(topic="sdk/round/trip", publish_message=message)
                self.count += 1
                if self.stopping.is_set():
                    break
            stop_at = self.count + 10  # and some more after the fuzzing
            while self.count < stop_at:
                client.publish_to_topic(topic="sdk/round/trip", publish_message=message)
                self.count += 1
            client.close()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)


async def raw_exchange_quick(server: IpcServer, prefix: bytes, data: bytes,
                             wait_ack: bool) -> None:
    """Send, then read until the server closed or went quiet for a moment."""
    async with await anyio.connect_unix(str(server.path)) as stream:
        try:
            if wait_ack and prefix:
                await stream.send(prefix)
                with anyio.move_on_after(1):
                    await stream.receive()
                prefix = b""
            await stream.send(prefix + data)
            with anyio.move_on_after(0.05):
                while True:
                    await stream.receive()
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
    deferrals: list[Deferral] = []
    service.on_deferral(deferrals.append)

    async def list_components(ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"components": [{"componentName": ctx.component, "state": "RUNNING"}]}

    service.register_operation("ListThings", list_components)
    client = await client_for(server, PUB)
    async with client:
        await client.update_state("RUNNING")
        with pytest.raises(InvalidArgumentsError, match="state must be"):
            await client.update_state("BROKEN")
        await client.defer_component_update("deployment-7", "busy inferring", 60_000)
        listing = await client.call("ListThings", {})
        with pytest.raises(ServiceError, match="RestartComponent is not supported"):
            await client.call("RestartComponent", {})
    assert states == [(PUB, "RUNNING")]
    assert [(d.deployment_id, d.recheck_after_ms) for d in deferrals] == [
        ("deployment-7", 60_000)]
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
        await stuck.send(connect_msg(token) + request_msg(1, "SubscribeToTopic",
                                                          {"topic": "ml/frames"}))
        # ... and never reads again.
        publisher = await client_for(server, PUB)
        reader = await client_for(server, SUB)
        async with publisher, reader:
            stream = await reader.subscribe_to_topic("ml/frames")
            blob = "x" * 4096
            received = 0
            for i in range(3000):
                await publisher.publish_to_topic("ml/frames", {"i": i, "blob": blob})
                received += len(stream.drain())
            with anyio.fail_after(5):
                while received < 3000:
                    await stream.wait()
                    received += len(stream.drain())
            stats = server.statistics()
    assert received == 3000
    # the stuck one's events beyond its output budget were dropped and counted
    assert stats.dropped_events > 0
    assert stats.output_bytes <= server.limits.output_per_connection


KILLED = """
import os, signal, sys
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
ipc = GreengrassCoreIPCClientV2()
for i in range(5):
    ipc.subscribe_to_topic(topic=f"ml/stream/{i}", on_stream_event=print)
print("subscribed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_a_component_killed_mid_stream_leaves_no_subscriptions(
        server: IpcServer, service: IpcService) -> None:
    pytest.importorskip("awsiot", reason="awsiotsdk is not installed")
    before = service.broker.statistics().subscriptions
    env = {**os.environ, **server.environment(SUB)}
    result = await anyio.run_process([sys.executable, "-c", KILLED], env=env, check=False)
    assert result.returncode == -9 and b"subscribed" in result.stdout, result.stderr
    with anyio.fail_after(5):
        while service.broker.statistics().subscriptions != before:
            await anyio.sleep(0.01)
    with anyio.fail_after(5):
        while server.statistics().connections:
            await anyio.sleep(0.01)


async def test_a_request_that_cannot_be_encoded_leaves_the_connection_working(
        server: IpcServer) -> None:
    """The request is refused before it takes a stream id: no gap in the ids, which the
    runtime would answer with PROTOCOL_ERROR, closing the connection."""
    unencodable = {"topic": "ml/x", "publishMessage": {"jsonMessage": {"message": object()}}}
    async with await client_for(server, PUB) as client:
        with pytest.raises(TypeError):
            await client.call("PublishToTopic", unencodable)
        with pytest.raises(TypeError):
            await client.stream("SubscribeToTopic", {"topic": object()})
        stream = await client.subscribe_to_topic("ml/#", "RECEIVE_ALL_MESSAGES")
        await client.publish_to_topic("ml/after", {"n": 1})
        assert (await stream.receive()).payload == {"n": 1}
    env = server.environment(PUB)

    def script() -> None:
        with SyncIpcClient(env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                           env["SVCUID"]) as ipc:
            with pytest.raises(TypeError):
                ipc.call("PublishToTopic", unencodable)
            with pytest.raises(TypeError):
                ipc.stream("SubscribeToTopic", {"topic": object()})
            stream = ipc.subscribe_to_topic("ml/#", "RECEIVE_ALL_MESSAGES")
            ipc.publish_to_topic("ml/after", {"n": 2})
            assert stream.receive(timeout=5).payload == {"n": 2}

    await anyio.to_thread.run_sync(script)
    assert server.statistics().protocol_errors == 0


async def test_a_plain_script_calls_from_many_threads(server: IpcServer) -> None:
    """Requests of several threads reach the runtime in the order of their stream ids."""
    env = server.environment(PUB)

    def script() -> int:
        import threading

        with SyncIpcClient(env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                           env["SVCUID"]) as ipc:
            done: list[int] = []

            def publish(worker: int) -> None:
                for i in range(200):
                    ipc.publish_to_topic(f"ml/{worker}", {"i": i})
                done.append(worker)
            threads = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            return len(done)

    assert await anyio.to_thread.run_sync(script) == 8
    assert server.statistics().protocol_errors == 0
