"""BrokerActor: the IPC room as one actor in the supervision tree.

The actor owns the socket server and the MQTT bridge as tasks of its own task
group, so they stop with it and a crash of either restarts them together
under the nucleus's supervisor. The :class:`IpcService` (broker,
authorization, tokens) is made outside the actor and survives restarts:
in-process subscriptions and registered tokens are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..kernel import Actor
from ..layout import SOCKET_NAME
from ._broker import BrokerStatistics
from ._server import DEFAULT_MAX_FRAME, IpcServer, ServerStatistics
from ._service import IpcService

if TYPE_CHECKING:  # the bridge (aiomqtt, the spool) loads only when one is configured
    from ._bridge import BridgeStatistics, MqttBridge, MqttSettings


@dataclass(frozen=True, slots=True)
class Publish:
    """Tell the broker actor to publish (for actors that hold only its ref)."""

    source: str
    topic: str
    payload: Any


@dataclass(frozen=True, slots=True)
class GetStatistics:
    """Ask the broker actor for an :class:`IpcStatistics`."""


@dataclass(frozen=True, slots=True)
class IpcStatistics:
    broker: BrokerStatistics
    server: ServerStatistics | None
    bridge: BridgeStatistics | None


class BrokerActor(Actor):
    """Runs ``service``'s socket server at ``<root>/ipc.socket`` and the MQTT bridge."""

    @classmethod
    def for_runtime(cls, service: IpcService, root: Path, mqtt: MqttSettings | None
                    ) -> BrokerActor:
        """The runtime's broker actor: the socket under ``root`` and, when ``mqtt`` is
        given, the MQTT bridge (aiomqtt and the spool load only then)."""
        bridge = None
        if mqtt is not None:
            from ._bridge import MqttBridge

            bridge = MqttBridge(mqtt)
        return cls(service, root=root, bridge=bridge)

    def __init__(self, service: IpcService, *, root: Path | None = None,
                 bridge: MqttBridge | None = None, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.service = service
        self.server = (IpcServer(service, Path(root) / SOCKET_NAME, max_frame=max_frame)
                       if root is not None else None)
        self.bridge = bridge
        if bridge is not None:
            service.iot_core = bridge

    async def on_start(self) -> None:
        if self.server is not None:
            await self.task_group.start(self.server.serve)
        if self.bridge is not None:
            await self.task_group.start(self.bridge.run)

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Publish):
            return await self.service.broker.publish(message.source, message.topic,
                                                     message.payload)
        if isinstance(message, GetStatistics):
            return IpcStatistics(
                self.service.broker.statistics(),
                self.server.statistics() if self.server is not None else None,
                self.bridge.statistics() if self.bridge is not None else None)
        raise TypeError(f"{self.name}: unknown message {message!r}")
