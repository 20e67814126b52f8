"""A published message, and the Greengrass JSON shapes that carry one (shared by the
server and the client: nothing here imports the server)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
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


class IotCoreMessage(Message):
    """A message from (or for) the MQTT broker: with its retain flag and MQTT 5 fields."""

    __slots__ = ("properties", "retain")

    def __init__(self, topic: str, payload: Any, source: str, *, retain: bool = False,
                 properties: MqttProperties | None = None) -> None:
        super().__init__(topic, payload, source)
        self.retain = retain
        self.properties = properties

    def __repr__(self) -> str:
        return (f"IotCoreMessage(topic={self.topic!r}, retain={self.retain}, "
                f"properties={self.properties!r}, payload={self.payload!r:.80})")


@dataclass(frozen=True, slots=True)
class MqttProperties:
    """The MQTT 5 fields of a PublishToIoTCore request and of an IoTCoreMessage event
    (Greengrass's names; ``payload_format`` 0 is bytes, 1 UTF-8)."""

    user_properties: tuple[tuple[str, str], ...] = ()
    message_expiry_interval: int | None = None
    correlation_data: bytes | None = None
    response_topic: str | None = None
    payload_format: int | None = None
    content_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields as Greengrass's JSON carries them (only those that are set)."""
        out: dict[str, Any] = {}
        if self.user_properties:
            out["userProperties"] = [{"key": k, "value": v} for k, v in self.user_properties]
        if self.message_expiry_interval is not None:
            out["messageExpiryIntervalSeconds"] = self.message_expiry_interval
        if self.correlation_data is not None:
            out["correlationData"] = b64encode(self.correlation_data)
        if self.response_topic is not None:
            out["responseTopic"] = self.response_topic
        if self.payload_format is not None:
            out["payloadFormat"] = str(self.payload_format)
        if self.content_type is not None:
            out["contentType"] = self.content_type
        return out

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> MqttProperties | None:
        """The fields of a well-formed JSON shape (the server checks requests with
        ``_wire.parse_mqtt_properties``); None when none is set."""
        correlation = fields.get("correlationData")
        payload_format = fields.get("payloadFormat")
        properties = cls(
            tuple((p["key"], p["value"]) for p in fields.get("userProperties") or ()),
            fields.get("messageExpiryIntervalSeconds"),
            base64.b64decode(correlation) if correlation is not None else None,
            fields.get("responseTopic"),
            int(payload_format) if payload_format is not None else None,
            fields.get("contentType"))
        return None if properties == _NO_PROPERTIES else properties


_NO_PROPERTIES = MqttProperties()


def b64encode(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


# a tuple: isinstance with a union (bytes | ...) is several times slower in Python 3.11
_BINARY = (bytes, bytearray, memoryview)


def publish_message(payload: Any) -> dict[str, Any]:
    """The Greengrass ``PublishMessage`` for ``payload`` (bytes -> binaryMessage)."""
    if isinstance(payload, _BINARY):
        return {"binaryMessage": {"message": b64encode(payload)}}
    return {"jsonMessage": {"message": payload}}


def event_message(event: Mapping[str, Any]) -> Message:
    """The :class:`Message` a SubscribeToTopic stream event carries."""
    binary = event.get("binaryMessage")
    if binary is not None:
        return Message(binary["context"]["topic"], base64.b64decode(binary["message"]), "")
    json_message = event["jsonMessage"]
    return Message(json_message["context"]["topic"], json_message["message"], "")


def iot_core_message(event: Mapping[str, Any]) -> IotCoreMessage:
    """The :class:`IotCoreMessage` a SubscribeToIoTCore stream event carries."""
    inner = event["message"]
    return IotCoreMessage(inner["topicName"], base64.b64decode(inner.get("payload", "")),
                          "$iotcore", retain=bool(inner.get("retain", False)),
                          properties=MqttProperties.from_json(inner))
