"""Fixtures of the IPC tests: a running IPC service and socket server, and real mosquitto
brokers (the fixture never installs mosquitto: CI's setup does; without it those tests skip)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.ipc import InMemoryConfiguration, IpcServer, IpcService

from . import mosquitto as mq

PUBSUB_ALL = {"operations": ["*"], "resources": ["*"]}


def access(component: str, pubsub: dict[str, Any] | None = None,
           mqttproxy: dict[str, Any] | None = None) -> dict[str, Any]:
    """A component configuration with one policy per given service."""
    control: dict[str, Any] = {}
    if pubsub is not None:
        control["aws.greengrass.ipc.pubsub"] = {f"{component}:pubsub:1": pubsub}
    if mqttproxy is not None:
        control["aws.greengrass.ipc.mqttproxy"] = {f"{component}:mqttproxy:1": mqttproxy}
    return {"accessControl": control}


@pytest.fixture
def service() -> IpcService:
    return IpcService(
        access_control={
            "com.example.Publisher": access("com.example.Publisher", PUBSUB_ALL),
            "com.example.Subscriber": access("com.example.Subscriber", {
                "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["ml/#"]}),
        },
        configuration=InMemoryConfiguration({
            "com.example.Publisher": {"threshold": 0.5, "model": {"name": "mobilenet"}},
            "com.example.Subscriber": {"topic": "ml/results"},
        }),
    )


@pytest.fixture
async def server(service: IpcService, tmp_path: Path) -> AsyncIterator[IpcServer]:
    ipc = IpcServer(service, tmp_path / "ipc.socket", max_frame=64 * 1024)
    async with anyio.create_task_group() as tg:
        await tg.start(ipc.serve)
        yield ipc
        tg.cancel_scope.cancel()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., mq.Mosquitto]]:
    if not mq.available():
        pytest.skip(mq.INSTALL_HINT)
    started: list[mq.Mosquitto] = []

    def make(**kwargs: Any) -> mq.Mosquitto:
        directory = tmp_path / f"mosquitto-{len(started)}"
        directory.mkdir()
        broker = mq.Mosquitto(directory, **kwargs)
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.kill()
