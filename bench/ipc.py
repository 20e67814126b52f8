"""``ipc``: Greengrass IPC (eventstream RPC) on the component socket.

- The AWS IoT Device SDK's ``publish_to_topic`` round trips (the V2 client,
  blocking, one at a time) against the runtime's IPC server vs against a
  minimal eventstream server written here (the protocol with nothing behind
  it: it answers every request with an empty response). Goal >= 0.9: the
  runtime is not what the SDK waits on. Also the server's own CPU time per
  round trip (its event-loop thread's, from /proc/PID/schedstat), which a
  busy machine's scheduling noise does not move as it moves round trips.
- The project's own client (eventstream) vs the JSON-frame client it
  replaced (the code of commit ``df68efe``, exported with ``git archive``),
  ``publish_to_topic`` round trips, each against its own server. Goal >= 1.0.
- Pub/sub over the socket vs mosquitto + aiomqtt (as in ``pubsub``): >= 1x.

Every server runs in a child process (as mosquitto is a process of its own).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._core import Case, Contender, Goal, Metric, compare_each
from ._registry import Settings, Skip, benchmark

ROUND_TRIPS = Metric("round_trips", "1/s", "higher", "publish_to_topic round trips per second")
SERVER_CPU = Metric("server_cpu", "s", "lower",
                    "the server's event-loop CPU time per round trip (/proc schedstat)")
SDK_90 = Goal("the SDK against the runtime at least 90% of a bare eventstream server", 0.9)
NO_REGRESSION = Goal("our eventstream client at least on par with the JSON-frame client", 1.0)
LEGACY_COMMIT = "df68efe"
REPO = Path(__file__).resolve().parent.parent

BARE_SERVER = r"""
import asyncio, json, struct, sys, zlib
I = struct.Struct(">I")

def header_block(headers):
    out = b""
    for name, value in headers.items():
        raw = name.encode()
        if isinstance(value, int):
            out += bytes([len(raw)]) + raw + b"\x04" + struct.pack(">i", value)
        else:
            data = value.encode()
            out += bytes([len(raw)]) + raw + b"\x07" + struct.pack(">H", len(data)) + data
    return out

def message(headers, payload=b""):
    block = header_block(headers)
    prelude = struct.pack(">II", len(block) + len(payload) + 16, len(block))
    prelude += I.pack(zlib.crc32(prelude))
    body = prelude + block + payload
    return body + I.pack(zlib.crc32(body))

def stream_id(data, headers_len):
    # the :stream-id header's value, found by name in the header block
    at = data.find(b"\x0a:stream-id\x04", 12, 12 + headers_len)
    return struct.unpack_from(">i", data, at + 12)[0]

ACK = message({":message-type": 5, ":message-flags": 1, ":stream-id": 0}, b"{}")

class Bare(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer, self.connected = transport, b"", False
    def data_received(self, data):
        buffer = self.buffer + data
        while len(buffer) >= 12:
            total, headers_len = struct.unpack_from(">II", buffer)
            if len(buffer) < total:
                break
            one, buffer = buffer[:total], buffer[total:]
            if not self.connected:
                self.connected = True
                self.transport.write(ACK)
                continue
            self.transport.write(message({
                ":message-type": 0, ":message-flags": 2,
                ":stream-id": stream_id(one, headers_len), ":content-type": "application/json",
                "service-model-type": "aws.greengrass#PublishToTopicResponse"}, b"{}"))
        self.buffer = buffer

async def main():
    server = await asyncio.get_running_loop().create_unix_server(Bare, sys.argv[1])
    print(json.dumps({"bench.pub": "any"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

RUNTIME_SERVER = """
import json, sys, anyio
from actors.ipc import IpcServer, IpcService
access = {"bench.pub": {"accessControl": {"aws.greengrass.ipc.pubsub": {"bench.pub:1": {
    "operations": ["*"], "resources": ["*"]}}}}}
async def main():
    service = IpcService(access_control=access)
    server = IpcServer(service, sys.argv[1])
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        print(json.dumps({"bench.pub": service.register_component("bench.pub")}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
        tg.cancel_scope.cancel()
try:
    import uvloop
    anyio.run(main, backend_options={"use_uvloop": True})
except ImportError:
    anyio.run(main)
"""

# Our client's round trips, with whatever `actors` is first on sys.path (today's, or the
# JSON-frame one exported from git): the API is the same.
CLIENT = """
import asyncio, json, sys, time
from actors.ipc.client import IpcClient
async def main(path, token, n):
    client = await IpcClient(path, token).connect()
    for i in range(200):
        await client.publish_to_topic("bench/ipc", {"seq": i})
    start = time.perf_counter()
    for i in range(n):
        await client.publish_to_topic("bench/ipc", {"seq": i})
    elapsed = time.perf_counter() - start
    await client.close()
    print(json.dumps(n / elapsed))
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``'s main thread (its event loop), from /proc/PID/schedstat (ns)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


@contextlib.contextmanager
def server_process(code: str, env: dict[str, str] | None = None
                   ) -> Iterator[tuple[str, str, int]]:
    """A server in a child process; yields (socket path, the bench.pub token, its pid)."""
    with tempfile.TemporaryDirectory(prefix="bench-ipc-") as tmp:
        path = str(Path(tmp) / "ipc.socket")
        process = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            token = json.loads(process.stdout.readline())["bench.pub"]
            yield path, token, process.pid
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def sdk_round_trips(code: str, n: int) -> dict[str, float]:
    from awsiot import greengrasscoreipc
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

    with server_process(code) as (path, token, pid):
        client = GreengrassCoreIPCClientV2(greengrasscoreipc.connect(ipc_socket=path,
                                                                     authtoken=token))
        message = PublishMessage(json_message=JsonMessage(message={"seq": 1}))
        try:
            for _ in range(100):
                client.publish_to_topic(topic="bench/ipc", publish_message=message)
            cpu = cpu_seconds(pid)
            start = time.perf_counter()
            for _ in range(n):
                client.publish_to_topic(topic="bench/ipc", publish_message=message)
            elapsed = time.perf_counter() - start
            cpu = cpu_seconds(pid) - cpu
        finally:
            client.close()
    return {"round_trips": n / elapsed, "server_cpu": cpu / n}


def client_round_trips(pythonpath: str, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    with server_process(RUNTIME_SERVER, env) as (path, token, _):
        out = subprocess.run([sys.executable, "-c", CLIENT, path, token, str(n)], env=env,
                             check=True, capture_output=True, text=True).stdout
    return {"round_trips": float(out.strip().splitlines()[-1])}


def export_legacy(into: Path) -> Path:
    """The `actors` package of the JSON-frame commit, pure Python, under ``into``."""
    if not (REPO / ".git").exists():
        raise Skip("the JSON-frame client comes from git history: no .git here")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", LEGACY_COMMIT, "actors"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise Skip(f"commit {LEGACY_COMMIT} (the JSON-frame client) is not in this clone: "
                   f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


@benchmark(
    "ipc",
    "Greengrass IPC (eventstream RPC): the SDK against the runtime vs a bare eventstream "
    "server; our client vs the JSON-frame client it replaced; pub/sub vs mosquitto",
    goals=(SDK_90, NO_REGRESSION),
)
def build(settings: Settings) -> list[Case]:
    try:
        import awsiot  # noqa: F401
    except ImportError as exc:
        raise Skip("awsiotsdk is not installed (pip install awsiotsdk)") from exc
    n = settings.pick(5_000, 500)
    samples = settings.pick(7, 2)
    folder = tempfile.mkdtemp(prefix="bench-ipc-legacy-")
    atexit.register(shutil.rmtree, folder, True)
    legacy = export_legacy(Path(folder))
    current = str(REPO)
    cases = [
        Case(name=f"SDK publish_to_topic round trips, {n} one at a time",
             metrics=(ROUND_TRIPS, SERVER_CPU),
             contenders=(
                 Contender("sdk-runtime", "ours", lambda: sdk_round_trips(RUNTIME_SERVER, n),
                           "GreengrassCoreIPCClientV2 -> the runtime's IPC server"),
                 Contender("sdk-bare", "peer", lambda: sdk_round_trips(BARE_SERVER, n),
                           "GreengrassCoreIPCClientV2 -> a bare eventstream server"),
             ),
             comparisons=(*compare_each([("sdk-runtime", "sdk-bare")], ("round_trips",),
                                        goal=SDK_90),
                          *compare_each([("sdk-runtime", "sdk-bare")], ("server_cpu",))),
             samples=samples, warmup=1, params={"round_trips": n}),
        Case(name=f"our client publish_to_topic round trips, {n} one at a time",
             metrics=(ROUND_TRIPS,),
             contenders=(
                 Contender("client-eventstream", "ours",
                           lambda: client_round_trips(current, n),
                           "IpcClient over eventstream RPC -> IPC server"),
                 Contender("client-json-frames", "peer",
                           lambda: client_round_trips(str(legacy), n),
                           f"IpcClient over JSON frames ({LEGACY_COMMIT}) -> its IPC server"),
             ),
             comparisons=compare_each([("client-eventstream", "client-json-frames")],
                                      goal=NO_REGRESSION),
             samples=samples, warmup=1, params={"round_trips": n}),
    ]
    cases += _pubsub_case(settings)
    return cases


def _pubsub_case(settings: Settings) -> list[Case]:
    from . import pubsub

    try:
        pubsub._mosquitto()
        import aiomqtt  # noqa: F401
    except (Skip, ImportError):
        return []
    n = settings.pick(20_000, 2_000)

    def throughput(run: Any) -> Any:
        return pubsub._throughput(run, n)
    return [Case(
        name=f"pub/sub over the socket vs mosquitto, {n} messages",
        metrics=(pubsub.THROUGHPUT,),
        contenders=(
            Contender("ours-socket", "ours", throughput(pubsub._with_socket(
                lambda path, tokens: pubsub.ours_socket(n, False, path, tokens))),
                "IpcClient -> IPC server process -> IpcClient (eventstream)"),
            Contender("mosquitto", "peer", throughput(pubsub._with_broker(
                lambda port: pubsub.peer_mosquitto(n, False, port))),
                "aiomqtt -> mosquitto (loopback, QoS 0) -> aiomqtt"),
        ),
        comparisons=compare_each([("ours-socket", "mosquitto")], goal=pubsub.ON_PAR),
        samples=settings.pick(5, 2), warmup=1, params={"messages": n})]
