"""BrokerActor: the IPC room running as an actor of the supervision tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.ipc import BrokerActor, GetStatistics, IpcService, Publish
from actors.ipc.client import IpcClient
from actors.kernel import ActorSystem

pytestmark = pytest.mark.anyio


async def test_the_broker_actor_serves_the_socket_and_takes_publish_messages(
        tmp_path: Path) -> None:
    service = IpcService(access_control={"com.example.Viewer": {"accessControl": {
        "aws.greengrass.ipc.pubsub": {"viewer:1": {
            "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["$nucleus/#"]}}}}})
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: BrokerActor(service, root=tmp_path), name="broker")
        socket_path = tmp_path / "ipc.socket"
        assert socket_path.exists()
        viewer = await IpcClient(str(socket_path),
                                 service.register_component("com.example.Viewer")).connect()
        async with viewer:
            states = await viewer.subscribe_to_topic("$nucleus/components/+/state")
            await ref.tell(Publish("nucleus", "$nucleus/components/com.example.Model/state",
                                   {"state": "RUNNING"}))
            message = await states.receive()
            assert message.payload == {"state": "RUNNING"}
            stats = await ref.ask(GetStatistics())
            assert stats.server.connections == 1 and stats.broker.published == 1
        await ref.stop()
    assert not socket_path.exists()
