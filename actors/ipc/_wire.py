"""Greengrass's JSON shapes on the server's side of the IPC socket (the wire itself is
eventstream RPC: see :mod:`._rpc`). Binary payloads travel base64-encoded
(``binaryMessage.message``, ``PublishToIoTCore.payload``).
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ._errors import InvalidArgumentsError
from ._message import Message, b64encode, event_message, iot_core_message, publish_message

__all__ = ["b64decode", "b64encode", "event_message", "iot_core_event", "iot_core_message",
           "message_event", "parse_qos", "publish_message", "publish_message_payload"]



def b64decode(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidArgumentsError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentsError(f"{field} is not valid base64") from None


def publish_message_payload(publish_message: object) -> Any:
    """The payload of a Greengrass ``PublishMessage`` (jsonMessage or binaryMessage)."""
    if not isinstance(publish_message, Mapping):
        raise InvalidArgumentsError("publishMessage must hold jsonMessage or binaryMessage")
    json_message = publish_message.get("jsonMessage")
    binary_message = publish_message.get("binaryMessage")
    if (json_message is None) == (binary_message is None):
        raise InvalidArgumentsError("publishMessage must hold exactly one of jsonMessage and "
                                    "binaryMessage")
    if json_message is not None:
        if not isinstance(json_message, Mapping) or "message" not in json_message:
            raise InvalidArgumentsError("jsonMessage must hold a 'message'")
        return json_message["message"]
    if not isinstance(binary_message, Mapping):
        raise InvalidArgumentsError("binaryMessage must hold a 'message'")
    return b64decode(binary_message.get("message"), "binaryMessage.message")




def message_event(message: Message) -> dict[str, Any]:
    """A SubscribeToTopic stream event (Greengrass's SubscriptionResponseMessage)."""
    context = {"topic": message.topic}
    payload = message.payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return {"binaryMessage": {"message": b64encode(payload), "context": context}}
    return {"jsonMessage": {"message": payload, "context": context}}




def iot_core_event(message: Message) -> dict[str, Any]:
    """A SubscribeToIoTCore stream event (Greengrass's IoTCoreMessage)."""
    return {"message": {"topicName": message.topic, "payload": b64encode(message.payload)}}




def parse_qos(value: object) -> int:
    """Greengrass's QOS enum ("0"/"1", AT_MOST_ONCE/AT_LEAST_ONCE) or 0/1."""
    table = {"0": 0, "1": 1, "AT_MOST_ONCE": 0, "AT_LEAST_ONCE": 1, 0: 0, 1: 1, None: 0}
    try:
        return table[value]
    except (KeyError, TypeError):
        raise InvalidArgumentsError(f"qos must be 0 or 1 (AT_MOST_ONCE, AT_LEAST_ONCE), "
                                    f"got {value!r}") from None
