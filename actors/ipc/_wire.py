"""Greengrass's JSON shapes on the server's side of the IPC socket (the wire itself is
eventstream RPC: see :mod:`._rpc`). Binary payloads travel base64-encoded
(``binaryMessage.message``, ``PublishToIoTCore.payload``).
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from ._errors import InvalidArgumentsError
from ._message import (
    IotCoreMessage,
    Message,
    MqttProperties,
    b64encode,
    event_message,
    iot_core_message,
    publish_message,
)

__all__ = ["b64decode", "b64encode", "check_mqtt_properties", "check_mqtt_string",
           "event_message", "iot_core_event", "iot_core_message", "message_event",
           "parse_mqtt_properties", "parse_qos",
           "parse_retain", "publish_message", "publish_message_payload"]



def b64decode(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidArgumentsError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentsError(f"{field} is not valid base64") from None


def publish_message_payload(publish_message: object) -> Any:
    """The payload of a Greengrass ``PublishMessage`` (jsonMessage or binaryMessage)."""
    # type() first: isinstance with an ABC is slow, and JSON gives dicts
    if type(publish_message) is not dict and not isinstance(publish_message, Mapping):
        raise InvalidArgumentsError("publishMessage must hold jsonMessage or binaryMessage")
    json_message = publish_message.get("jsonMessage")
    binary_message = publish_message.get("binaryMessage")
    if (json_message is None) == (binary_message is None):
        raise InvalidArgumentsError("publishMessage must hold exactly one of jsonMessage and "
                                    "binaryMessage")
    if json_message is not None:
        if (type(json_message) is not dict and not isinstance(json_message, Mapping)) \
                or "message" not in json_message:
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
    """A SubscribeToIoTCore stream event (Greengrass's IoTCoreMessage: as the nucleus
    fills it, with the retain flag and the payload format always, the other MQTT 5 fields
    when the message has them)."""
    inner: dict[str, Any] = {"topicName": message.topic, "payload": b64encode(message.payload)}
    if isinstance(message, IotCoreMessage):
        inner["retain"] = message.retain
        if message.properties is not None:
            inner.update(message.properties.to_json())
    else:
        inner["retain"] = False
    inner.setdefault("payloadFormat", "0")
    return {"message": inner}


_MAX_UINT32 = 0xFFFF_FFFF
_MAX_MQTT_STRING = 0xFFFF


# What an MQTT string must not hold: U+0000 and lone surrogates (MQTT 5 section 1.5.4),
# and the control characters and non-characters mosquitto also refuses (it ends the
# connection as malformed: a QoS 1 message would then be sent again on every reconnect).
_BAD_MQTT_CHAR = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]")


def check_mqtt_string(value: object, field: str) -> str:
    """``value`` if an MQTT broker takes it as a UTF-8 string (see ``_BAD_MQTT_CHAR``; at
    most 65,535 bytes); raises :class:`InvalidArgumentsError`."""
    if not isinstance(value, str):
        raise InvalidArgumentsError(f"{field} must be a string")
    bad = _BAD_MQTT_CHAR.search(value)
    if bad is not None:
        raise InvalidArgumentsError(f"{field} holds the character U+{ord(bad.group()):04X}, "
                                    f"which MQTT brokers refuse")
    if len(value) > _MAX_MQTT_STRING // 4 and len(value.encode()) > _MAX_MQTT_STRING:
        raise InvalidArgumentsError(f"{field} is longer than 65535 bytes")
    return value


def parse_retain(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgumentsError(f"retain must be true or false, got {value!r}")
    return value


def _parse_payload_format(value: object) -> int | None:
    table = {"0": 0, "1": 1, "BYTES": 0, "UTF8": 1, 0: 0, 1: 1, None: None}
    try:
        return table[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise InvalidArgumentsError(f"payloadFormat must be 0 or 1 (BYTES, UTF8), "
                                    f"got {value!r}") from None


def parse_mqtt_properties(request: Mapping[str, Any], payload: bytes) -> MqttProperties | None:
    """The MQTT 5 fields of a PublishToIoTCore request, checked (None when none is set)."""
    users = request.get("userProperties")
    user_properties: list[tuple[str, str]] = []
    if users is not None:
        if not isinstance(users, list) or not all(isinstance(i, Mapping) for i in users):
            raise InvalidArgumentsError("userProperties must be a list of {key, value}")
        user_properties = [(item.get("key"), item.get("value")) for item in users]
    correlation = request.get("correlationData")
    properties = MqttProperties(
        tuple(user_properties), request.get("messageExpiryIntervalSeconds"),
        b64decode(correlation, "correlationData") if correlation is not None else None,
        request.get("responseTopic"), _parse_payload_format(request.get("payloadFormat")),
        request.get("contentType"))
    if properties == _NO_PROPERTIES:
        return None
    return check_mqtt_properties(properties, payload)


_NO_PROPERTIES = MqttProperties()


def check_mqtt_properties(properties: MqttProperties, payload: bytes) -> MqttProperties:
    """``properties`` if an MQTT 5 broker takes them with ``payload``; raises
    :class:`InvalidArgumentsError`."""
    for i, (key, value) in enumerate(properties.user_properties):
        check_mqtt_string(key, f"userProperties[{i}].key")
        check_mqtt_string(value, f"userProperties[{i}].value")
    expiry = properties.message_expiry_interval
    if expiry is not None and (not isinstance(expiry, int) or isinstance(expiry, bool)
                               or not 0 <= expiry <= _MAX_UINT32):
        raise InvalidArgumentsError(f"messageExpiryIntervalSeconds must be a whole number of "
                                    f"seconds from 0 to {_MAX_UINT32}, got {expiry!r}")
    correlation = properties.correlation_data
    if correlation is not None and (not isinstance(correlation, bytes)
                                    or len(correlation) > _MAX_MQTT_STRING):
        raise InvalidArgumentsError("correlationData must be at most 65535 bytes")
    response_topic = properties.response_topic
    if response_topic is not None:
        check_mqtt_string(response_topic, "responseTopic")
        if not response_topic or any(c in response_topic for c in "+#"):
            raise InvalidArgumentsError(f"responseTopic must be a topic name, without "
                                        f"wildcards, got {response_topic!r}")
    if properties.payload_format not in (None, 0, 1):
        raise InvalidArgumentsError(f"payloadFormat must be 0 or 1 (BYTES, UTF8), "
                                    f"got {properties.payload_format!r}")
    if properties.payload_format == 1:
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise InvalidArgumentsError("payloadFormat is UTF8 but the payload is not valid "
                                        "UTF-8") from None
    if properties.content_type is not None:
        check_mqtt_string(properties.content_type, "contentType")
    return properties


def parse_qos(value: object) -> int:
    """Greengrass's QOS enum ("0"/"1", AT_MOST_ONCE/AT_LEAST_ONCE) or 0/1."""
    table = {"0": 0, "1": 1, "AT_MOST_ONCE": 0, "AT_LEAST_ONCE": 1, 0: 0, 1: 1, None: 0}
    try:
        return table[value]
    except (KeyError, TypeError):
        raise InvalidArgumentsError(f"qos must be 0 or 1 (AT_MOST_ONCE, AT_LEAST_ONCE), "
                                    f"got {value!r}") from None
