"""LocalIpcClient: the client API for a component running in-process (an actor).

Direct calls into the :class:`IpcService` (no socket, no encoding), with the
same authorization as over the socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from ._broker import Overflow, ReceiveMode, Subscription
from ._errors import ProtocolError
from ._message import MqttProperties, b64encode
from ._service import CallContext, IpcService, StreamResult


def _payload(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


class LocalIpcClient:
    """The client API for an in-process component: direct calls, no socket, same checks."""

    def __init__(self, service: IpcService, component: str) -> None:
        self.service = service
        self.component = component
        self._streams: list[Subscription] = []

    async def publish_to_topic(self, topic: str, message: Any) -> None:
        await self.service.publish_to_topic(self.component, topic, message)

    def publish_to_topic_nowait(self, topic: str, message: Any) -> None:
        """Publish without waiting; raises SubscriberFull if a backpressure queue is full."""
        self.service.publish_to_topic_nowait(self.component, topic, message)

    async def subscribe_to_topic(self, topic: str, receive_mode: ReceiveMode | str | None = None,
                                 *, queue_size: int | None = None,
                                 overflow: Overflow | str = Overflow.DROP_OLDEST
                                 ) -> Subscription:
        return self._keep(self.service.subscribe_to_topic(
            self.component, topic, receive_mode, queue_size=queue_size, overflow=overflow))

    async def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0, *,
                                  retain: bool = False,
                                  properties: MqttProperties | None = None) -> None:
        await self.service.publish_to_iot_core(self.component, topic, _payload(payload), qos,
                                               retain=retain, properties=properties)

    async def subscribe_to_iot_core(self, topic: str, qos: int = 0) -> Subscription:
        return self._keep(self.service.subscribe_to_iot_core(self.component, topic, qos))

    async def get_configuration(self, key_path: Sequence[str] = (),
                                component_name: str | None = None) -> Any:
        response = await self.service.get_configuration(self.component, key_path, component_name)
        return response["value"]

    async def update_configuration(self, key_path: Sequence[str],
                                   value_to_merge: Mapping[str, Any],
                                   timestamp: float | None = None) -> None:
        await self.service.update_configuration(self.component, key_path, value_to_merge,
                                                timestamp)

    async def subscribe_to_configuration_update(
        self, key_path: Sequence[str] = (), component_name: str | None = None
    ) -> Subscription:
        return self._keep(self.service.subscribe_to_configuration_update(
            self.component, key_path, component_name))

    async def update_state(self, state: str) -> None:
        self.service.update_state(self.component, state)

    async def defer_component_update(self, deployment_id: str, message: str = "",
                                     recheck_after_ms: int = 0) -> None:
        self.service.defer_component_update(self.component, deployment_id, message,
                                            recheck_after_ms)

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        result = await self.service.call(CallContext(self.component), operation, request)
        if isinstance(result, StreamResult):
            result.stream.close()
            raise ProtocolError(f"{operation} is a streaming operation: use call_stream")
        return result

    def _keep(self, sub: Subscription) -> Subscription:
        self._streams = [s for s in self._streams if not s.closed]
        self._streams.append(sub)
        return sub

    async def close(self) -> None:
        for sub in self._streams:
            sub.close()
        self._streams.clear()

    async def infer(self, component: str, image: bytes, name: str = "") -> dict[str, Any]:
        """``component``'s result message for one encoded image (the ``Infer`` operation)."""
        reply = await self.call("Infer", {"componentName": component,
                                          "image": b64encode(image), "imageName": name})
        result: dict[str, Any] = reply["result"]
        return result

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
