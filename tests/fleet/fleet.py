"""A fleet under test: mosquitto (TLS, per-device certificates, the generated ACLs,
persistence), the registry, a controller, and devices: real runtimes (a Nucleus and its
DeviceAgent each, several in this process, each with its own root folder)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from actors.fleet import Registry
from actors.fleet._agent import DeviceAgent
from actors.fleet._controller import Controller, RolloutResult
from actors.fleet._link import BrokerSettings
from actors.fleet._topics import mosquitto_acl
from actors.nucleus import Nucleus

from ..ipc.mosquitto import Mosquitto
from .conftest import write
from .servers import Pki, RegistryServer

# Long-running components: a dependency that FINISHED leaves the supervisor, and a
# dependent started after that fails to start (the runtime's behaviour today).
STACK = {
    "test.Runtime": """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.Runtime
ComponentVersion: '{version}'
Manifests:
  - Platform: {{os: linux}}
    Lifecycle:
      Run: echo runtime {version}; exec sleep 3600
""",
    "test.Model": """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.Model
ComponentVersion: '{version}'
Manifests:
  - Platform: {{os: linux}}
    Lifecycle:
      Run: cat {{artifacts:path}}/labels.txt; exec sleep 3600
    Artifacts:
      - URI: s3://build/labels.txt
""",
    "test.App": """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.App
ComponentVersion: '{version}'
ComponentConfiguration:
  DefaultConfiguration:
    Greeting: hello
ComponentDependencies:
  test.Runtime: {{VersionRequirement: '^1.0.0'}}
  test.Model: {{VersionRequirement: '^1.0.0'}}
Manifests:
  - Platform: {{os: linux}}
    Lifecycle:
      Install: {install}
      Run: echo "{version} {{configuration:/Greeting}}" >> runs.txt; exec sleep 3600
""",
}


def publish_stack(registry_dir: Path, versions: Mapping[str, str],
                  broken: bool = False) -> list[tuple[Path, Path]]:
    """Recipe files and artifact folders for the stack at ``versions``."""
    out = []
    for name, version in versions.items():
        recipe = write(registry_dir / f"{name}-{version}.yaml", STACK[name].format(
            version=version, install="exit 1" if broken and name == "test.App" else "'true'"))
        write(registry_dir / "artifacts" / name / version / "labels.txt",
              f"labels of {name} {version}\n")
        out.append((recipe, registry_dir / "artifacts"))
    return out


class Fleet:
    def __init__(self, folder: Path, registry: RegistryServer, url: str) -> None:
        self.folder = folder
        self.registry_server = registry
        self.url = url
        self.pki = Pki(folder / "pki")
        broker_dir = folder / "broker"
        broker_dir.mkdir(parents=True)
        self.broker = Mosquitto(broker_dir, persistence=True, tls={
            "ca": self.pki.bundle, "cert": self.pki.server[0], "key": self.pki.server[1]})
        acl = write(broker_dir / "acl", mosquitto_acl(["fleet-controller"]))
        with self.broker.config.open("a") as config:
            config.write(f"acl_file {acl}\n")
        self.broker.start()
        self.devices: dict[str, Device] = {}

    def settings(self, thing: str | None = None, **extra: Any) -> BrokerSettings:
        cert, key = self.pki.controller() if thing is None else self.pki.thing(thing)
        return BrokerSettings("127.0.0.1", self.broker.port, client_id=thing or "",
                              ca_file=self.pki.ca, cert_file=cert, key_file=key,
                              reconnect_max=0.5, **extra)

    def registry(self) -> Registry:
        return Registry(self.url, self.registry_server.settings())

    async def publish(self, versions: Mapping[str, str], broken: bool = False) -> None:
        async with self.registry() as registry:
            for recipe, artifacts in publish_stack(self.folder / "build", versions, broken):
                await registry.publish(recipe, artifacts)

    async def deploy(self, target: str, components: Mapping[str, str], *,
                     wait: float | None = 120.0, inline_limit: int = 32 * 1024,
                     **policies: Any) -> RolloutResult:
        async with self.registry() as registry:
            controller = Controller(registry, self.settings(), inline_limit=inline_limit)
            deployment = await controller.create(target, components, **policies)
            return await controller.rollout(deployment, await controller.things(target),
                                            wait=wait)

    def stop(self) -> None:
        self.broker.kill()


@dataclasses.dataclass
class Device:
    thing: str
    nucleus: Nucleus
    agent: DeviceAgent
    scope: anyio.CancelScope


@asynccontextmanager
async def devices(fleet: Fleet, things: list[str]) -> AsyncIterator[dict[str, Device]]:
    """Start a runtime and its agent for each thing; stop them all on exit."""
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        started: dict[str, Device] = {}
        for thing in things:
            started[thing] = await start_device(fleet, tg, thing)
        try:
            yield started
        finally:
            for device in started.values():
                device.scope.cancel()


async def start_device(fleet: Fleet, tg: Any, thing: str) -> Device:
    ready: list[Device] = []

    async def serve(task_status: Any) -> None:
        with anyio.CancelScope() as scope:
            async with Nucleus(fleet.folder / "devices" / thing, thing_name=thing) as nucleus:
                agent = DeviceAgent(nucleus, fleet.settings(thing), fleet.url)
                async with anyio.create_task_group() as inner:
                    await inner.start(agent.run)
                    ready.append(Device(thing, nucleus, agent, scope))
                    task_status.started()
                    await anyio.sleep_forever()

    await tg.start(serve)
    fleet.devices[thing] = ready[0]
    return ready[0]
