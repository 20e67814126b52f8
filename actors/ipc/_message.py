"""A published message, and the Greengrass JSON shapes that carry one (shared by the
server and the client: nothing here imports the server)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any


class Message:
    """One published message: ``payload`` is ``bytes`` (a binary message) or a JSON value.

    Immutable by convention (a plain slotted class: it is made once per
    publish, and a frozen dataclass costs several times more to construct).
    """

    __slots__ = ("payload", "source", "topic")

    def __init__(self, topic: str, payload: Any, source: str) -> None:
        self.topic = topic
        self.payload = payload
        self.source = source

    @property
    def is_binary(self) -> bool:
        return isinstance(self.payload, bytes | bytearray | memoryview)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, source={self.source!r}, "
                f"payload={self.payload!r:.80})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Message) and self.topic == other.topic
                and self.payload == other.payload and self.source == other.source)

    __hash__ = None  # type: ignore[assignment]


def b64encode(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


def publish_message(payload: Any) -> dict[str, Any]:
    """The Greengrass ``PublishMessage`` for ``payload`` (bytes -> binaryMessage)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return {"binaryMessage": {"message": b64encode(payload)}}
    return {"jsonMessage": {"message": payload}}


def event_message(event: Mapping[str, Any]) -> Message:
    """The :class:`Message` a SubscribeToTopic stream event carries."""
    binary = event.get("binaryMessage")
    if binary is not None:
        return Message(binary["context"]["topic"], base64.b64decode(binary["message"]), "")
    json_message = event["jsonMessage"]
    return Message(json_message["context"]["topic"], json_message["message"], "")


def iot_core_message(event: Mapping[str, Any]) -> Message:
    """The :class:`Message` a SubscribeToIoTCore stream event carries."""
    inner = event["message"]
    return Message(inner["topicName"], base64.b64decode(inner["payload"]), "$iotcore")
