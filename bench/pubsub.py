"""``pubsub``: local publish/subscribe in-process and over the IPC socket vs mosquitto on
loopback with a Python client (aiomqtt), and the MQTT bridge vs a bare aiomqtt client.

Local pub/sub, two cases:

- throughput: one publisher streams N JSON messages to one subscriber (ours: a
  backpressure queue of 1000 so nothing is dropped; the socket client keeps 16
  publishes in flight); the time is from the first publish to the N-th message
  received.
- latency: one message in flight; publish-to-receive time of each, p50 and p99.

Ours in-process is :class:`LocalIpcClient` on the broker; ours over the socket
is the IPC server in a child process (as mosquitto is a process of its own)
with :class:`IpcClient` publisher and subscriber in this one. The peer is
mosquitto on 127.0.0.1 with an aiomqtt publisher and subscriber (QoS 0).

MQTT bridge: N messages through :class:`MqttBridge` to mosquitto until every
one is sent (QoS 0) or acknowledged (QoS 1), vs a bare aiomqtt client doing
the same, with the same in-flight window (100) for QoS 1.

Skipped (with the reason) when mosquitto or aiomqtt is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from ._core import Case, Contender, Goal, Metric, compare_each
from ._loops import LoopKind, loop_kinds, run_on
from ._registry import Settings, Skip, benchmark

THROUGHPUT = Metric("throughput", "msg/s", "higher", "messages per second")
P50 = Metric("p50", "s", "lower", "median publish-to-receive latency")
P99 = Metric("p99", "s", "lower", "99th percentile publish-to-receive latency")
TEN_X = Goal("in-process pub/sub at least 10x mosquitto + aiomqtt on loopback", 10.0)
ON_PAR = Goal("socket IPC at least on par with mosquitto + aiomqtt on loopback", 1.0)
BRIDGE_80 = Goal("MQTT bridge at least 80% of a bare aiomqtt client", 0.8)

TOPIC = "bench/pubsub"
ALLOW_ALL = {name: {"accessControl": {"aws.greengrass.ipc.pubsub": {f"{name}:1": {
    "operations": ["*"], "resources": ["*"]}}}} for name in ("bench.pub", "bench.sub")}
SOCKET_CLIENTS_IN_FLIGHT = 16
BRIDGE_IN_FLIGHT = 100

SERVER_CHILD = """
import json, sys, anyio
from actors.ipc import IpcServer, IpcService
access = json.loads(sys.argv[2])
async def main():
    service = IpcService(access_control=access)
    server = IpcServer(service, sys.argv[1])
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        tokens = {name: service.register_component(name) for name in access}
        print(json.dumps(tokens), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes stdin
        tg.cancel_scope.cancel()
try:
    import uvloop
    anyio.run(main, backend_options={"use_uvloop": True})
except ImportError:
    anyio.run(main)
"""


def _mosquitto() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(path, os.X_OK):
        raise Skip("mosquitto is not installed (apt-get install -y mosquitto)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mosquitto_broker() -> Iterator[int]:
    """A fresh mosquitto on 127.0.0.1; yields its port."""
    binary = _mosquitto()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
        lines = ["allow_anonymous true", f"listener {port} 127.0.0.1", "log_dest none",
                 "max_queued_messages 1000000", "max_inflight_messages 0"]
        if os.geteuid() == 0:
            import pwd
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        config = Path(tmp) / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("mosquitto did not start")
                time.sleep(0.005)
            yield port
        finally:
            process.kill()
            process.wait()


@contextlib.contextmanager
def ipc_server_process() -> Iterator[tuple[str, dict[str, str]]]:
    """The IPC server in a child process; yields (socket path, tokens by component)."""
    import json

    with tempfile.TemporaryDirectory(prefix="bench-ipc-") as tmp:
        path = str(Path(tmp) / "ipc.socket")
        process = subprocess.Popen([sys.executable, "-c", SERVER_CHILD, path,
                                    json.dumps(ALLOW_ALL)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
        try:
            assert process.stdout is not None
            tokens = json.loads(process.stdout.readline())
            yield path, tokens
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the measured bodies -------------------------------------------------------------------
# Each returns (seconds for N streamed messages) or (latencies of M one-at-a-time messages).

Publish = Callable[[int], Awaitable[None]]


async def _stream(publish: Publish, receive_count: Callable[[], Awaitable[int]], n: int,
                  in_flight: int = 1) -> float:
    async def consume() -> None:
        count = 0
        while count < n:
            count += await receive_count()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    start = time.perf_counter()

    async def publisher(offset: int) -> None:
        for i in range(offset, n, in_flight):
            await publish(i)

    if in_flight == 1:
        await publisher(0)
    else:
        async with asyncio.TaskGroup() as tg:
            for k in range(in_flight):
                tg.create_task(publisher(k))
    await consumer
    return time.perf_counter() - start


async def _latencies(publish: Publish, receive_one: Callable[[], Awaitable[Any]], m: int
                     ) -> list[float]:
    out = []
    for i in range(m):
        start = time.perf_counter()
        await publish(i)
        await receive_one()
        out.append(time.perf_counter() - start)
    return out


async def ours_inprocess(n: int, latency: bool) -> Any:
    from actors.ipc import IpcService, Overflow
    from actors.ipc.client import LocalIpcClient

    service = IpcService(access_control=ALLOW_ALL)
    pub = LocalIpcClient(service, "bench.pub")
    sub = await LocalIpcClient(service, "bench.sub").subscribe_to_topic(
        TOPIC, queue_size=1000, overflow=Overflow.BACKPRESSURE)

    async def publish(i: int) -> None:
        await pub.publish_to_topic(TOPIC, {"seq": i})

    async def receive_count() -> int:
        await sub.wait()
        return len(sub.drain())

    try:
        if latency:
            return await _latencies(publish, sub.receive, n)
        return await _stream(publish, receive_count, n)
    finally:
        sub.close()


async def ours_socket(n: int, latency: bool, path: str, tokens: dict[str, str]) -> Any:
    from actors.ipc.client import IpcClient

    pub = await IpcClient(path, tokens["bench.pub"]).connect()
    subscriber = await IpcClient(path, tokens["bench.sub"], queue_size=100_000).connect()
    sub = await subscriber.subscribe_to_topic(TOPIC)

    async def publish(i: int) -> None:
        await pub.publish_to_topic(TOPIC, {"seq": i})

    async def receive_count() -> int:
        await sub.wait()
        return len(sub.drain())

    try:
        if latency:
            return await _latencies(publish, sub.receive, n)
        return await _stream(publish, receive_count, n, SOCKET_CLIENTS_IN_FLIGHT)
    finally:
        sub.close()
        await pub.close()
        await subscriber.close()


async def peer_mosquitto(n: int, latency: bool, port: int) -> Any:
    import aiomqtt
    import orjson

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-sub",
                              max_queued_incoming_messages=0) as subscriber, \
            aiomqtt.Client("127.0.0.1", port, identifier="bench-pub") as publisher:
        await subscriber.subscribe(TOPIC, qos=0)
        messages = subscriber.messages.__aiter__()

        async def publish(i: int) -> None:
            await publisher.publish(TOPIC, orjson.dumps({"seq": i}), qos=0)

        async def receive_count() -> int:
            message = await messages.__anext__()
            orjson.loads(message.payload)  # type: ignore[arg-type]
            return 1

        if latency:
            return await _latencies(publish, messages.__anext__, n)
        return await _stream(publish, receive_count, n)


async def ours_bridge(n: int, qos: int, port: int) -> float:
    import anyio

    from actors.ipc import MqttBridge, MqttSettings

    with tempfile.TemporaryDirectory(prefix="bench-spool-") as tmp:
        bridge = MqttBridge(MqttSettings("127.0.0.1", port, thing_name="bench-bridge",
                                         spool_dir=Path(tmp), max_inflight=BRIDGE_IN_FLIGHT))
        async with anyio.create_task_group() as tg:
            await tg.start(bridge.run)
            await bridge.wait_connected()
            payload = b'{"label": "tabby cat", "score": 0.91}'
            start = time.perf_counter()
            if qos == 0:
                for _ in range(n):
                    await bridge.publish(TOPIC, payload, qos)
            else:
                # A QoS 1 publish returns once its record is fsynced: publishers in
                # flight at once (as the peer's publishes awaiting their PUBACK) share
                # each fsync (group commit).
                window = asyncio.Semaphore(BRIDGE_IN_FLIGHT)

                async def one() -> None:
                    try:
                        await bridge.publish(TOPIC, payload, qos)
                    finally:
                        window.release()

                async with asyncio.TaskGroup() as tasks:
                    for _ in range(n):
                        await window.acquire()
                        tasks.create_task(one())
            await bridge.wait_sent()
            elapsed = time.perf_counter() - start
            tg.cancel_scope.cancel()
    return elapsed


async def peer_bridge(n: int, qos: int, port: int) -> float:
    import aiomqtt

    payload = b'{"label": "tabby cat", "score": 0.91}'
    # MQTT 5, as the bridge speaks it by default (the nucleus's mqtt.version).
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare",
                              protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=BRIDGE_IN_FLIGHT) as client:
        client.pending_calls_threshold = BRIDGE_IN_FLIGHT + 16
        start = time.perf_counter()
        if qos == 0:
            for _ in range(n):
                await client.publish(TOPIC, payload, qos=0)
        else:
            window = asyncio.Semaphore(BRIDGE_IN_FLIGHT)

            async def one() -> None:
                try:
                    await client.publish(TOPIC, payload, qos=1)
                finally:
                    window.release()

            async with asyncio.TaskGroup() as tg:
                for _ in range(n):
                    await window.acquire()
                    tg.create_task(one())
        return time.perf_counter() - start


# -- the cases -------------------------------------------------------------------------------


def _kind() -> LoopKind:
    return loop_kinds()[0]


def _throughput(run: Callable[[], Awaitable[float]], n: int) -> Callable[[], dict[str, float]]:
    return lambda: {"throughput": n / run_on(_kind(), run)}


def _latency(run: Callable[[], Awaitable[list[float]]]) -> Callable[[], dict[str, float]]:
    def sample() -> dict[str, float]:
        values = run_on(_kind(), run)
        return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}
    return sample


def _with_socket(body: Callable[[str, dict[str, str]], Awaitable[Any]]
                 ) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        with ipc_server_process() as (path, tokens):
            await asyncio.sleep(0)
            return await body(path, tokens)
    return run


def _with_broker(body: Callable[[int], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        with mosquitto_broker() as port:
            return await body(port)
    return run


@benchmark(
    "pubsub",
    "local pub/sub in-process and over the IPC socket vs mosquitto + aiomqtt; MQTT bridge vs "
    "bare aiomqtt",
    goals=(TEN_X, ON_PAR, BRIDGE_80),
)
def build(settings: Settings) -> list[Case]:
    _mosquitto()
    try:
        import aiomqtt  # noqa: F401
    except ImportError as exc:
        raise Skip("aiomqtt is not installed (pip install aiomqtt)") from exc
    n = settings.pick(20_000, 2_000)
    m = settings.pick(2_000, 200)
    bridge_n = settings.pick(10_000, 1_000)
    samples = settings.pick(7, 2)

    def streams(latency: bool, count: int) -> tuple[Contender, ...]:
        wrap = _latency if latency else (lambda run: _throughput(run, count))
        return (
            Contender("ours-inprocess", "ours", wrap(lambda: ours_inprocess(count, latency)),
                      "LocalIpcClient -> broker -> subscriber queue"),
            Contender("ours-socket", "ours", wrap(_with_socket(
                lambda path, tokens: ours_socket(count, latency, path, tokens))),
                "IpcClient -> IPC server process -> IpcClient"),
            Contender("mosquitto", "peer", wrap(_with_broker(
                lambda port: peer_mosquitto(count, latency, port))),
                "aiomqtt -> mosquitto (loopback, QoS 0) -> aiomqtt"),
        )

    bridge: list[Contender] = []
    pairs: list[tuple[str, str]] = []
    for qos in (0, 1):
        bridge += [
            Contender(f"ours-bridge-qos{qos}", "ours", _throughput(_with_broker(
                lambda port, qos=qos: ours_bridge(bridge_n, qos, port)), bridge_n),  # type: ignore[misc]
                f"MqttBridge.publish QoS {qos} (spooled, in-flight window {BRIDGE_IN_FLIGHT}"
                + (f"; {BRIDGE_IN_FLIGHT} publishers, each accepted once fsynced)" if qos
                   else ")")),
            Contender(f"aiomqtt-qos{qos}", "peer", _throughput(_with_broker(
                lambda port, qos=qos: peer_bridge(bridge_n, qos, port)), bridge_n),  # type: ignore[misc]
                f"bare aiomqtt publish QoS {qos}"),
        ]
        pairs.append((f"ours-bridge-qos{qos}", f"aiomqtt-qos{qos}"))
    kind = _kind()
    return [
        Case(name=f"pub/sub throughput, {n} messages ({kind})", metrics=(THROUGHPUT,),
             contenders=streams(False, n),
             comparisons=(*compare_each([("ours-inprocess", "mosquitto")], goal=TEN_X),
                          *compare_each([("ours-socket", "mosquitto")], goal=ON_PAR)),
             samples=samples, warmup=1, params={"messages": n, "loop": kind}),
        Case(name=f"pub/sub latency, one in flight, {m} messages ({kind})", metrics=(P50, P99),
             contenders=streams(True, m),
             comparisons=compare_each([("ours-inprocess", "mosquitto"),
                                       ("ours-socket", "mosquitto")]),
             samples=samples, warmup=1, params={"messages": m, "loop": kind}),
        Case(name=f"MQTT bridge to mosquitto, {bridge_n} messages ({kind})",
             metrics=(THROUGHPUT,), contenders=tuple(bridge),
             comparisons=compare_each(pairs, goal=BRIDGE_80),
             samples=samples, warmup=1, params={"messages": bridge_n, "loop": kind,
                                                "in_flight": BRIDGE_IN_FLIGHT}),
    ]
