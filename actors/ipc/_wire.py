"""The IPC socket's wire format: length-prefixed orjson frames, and Greengrass message shapes.

A frame is a 4-byte big-endian length followed by that many bytes of one JSON
object (orjson). Binary payloads travel base64-encoded, as in Greengrass's
JSON shapes (``binaryMessage.message``, ``PublishToIoTCore.payload``).

Frames from the client::

    {"id": 0, "op": "Connect", "request": {"authToken": "<SVCUID>", "componentName": "..."}}
    {"id": 7, "op": "PublishToTopic", "request": {...}}
    {"id": 8, "close": true}                  # close the stream opened by request 8

Frames from the server::

    {"id": 7, "response": {...}}
    {"id": 7, "error": {"type": "UnauthorizedError", "message": "..."}}
    {"id": 8, "event": {...}}                 # one stream message
    {"id": 8, "end": {}}                      # the stream ended (maybe with "error")
    {"id": null, "error": {"type": "ProtocolError", ...}}   # then the connection closes
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from ._broker import Message
from ._errors import InvalidArgumentsError, ProtocolError

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20


def encode_frame(obj: Any) -> bytes:
    body = orjson.dumps(obj)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into decoded frames; raises :class:`ProtocolError` on a bad one."""

    __slots__ = ("_buffer", "error", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The complete frames in the stream so far. After a bad frame, ``error`` is set and
        only the frames before it are returned (the stream cannot be resynchronised)."""
        if self.error is not None:
            return []
        try:
            return self._feed(data)
        except ProtocolError as exc:
            self.error = exc
            return exc.args[1] if len(exc.args) > 1 else []

    def _feed(self, data: bytes) -> list[dict[str, Any]]:
        buffer = self._buffer
        buffer += data
        frames: list[dict[str, Any]] = []
        pos = 0
        end = len(buffer)
        try:
            while end - pos >= 4:
                (size,) = HEADER.unpack_from(buffer, pos)
                if size > self.max_frame:
                    raise ProtocolError(
                        f"frame of {size} bytes exceeds the limit of {self.max_frame} bytes",
                        frames)
                if end - pos - 4 < size:
                    break
                body = memoryview(buffer)[pos + 4:pos + 4 + size]
                try:
                    frame = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise ProtocolError(f"frame is not valid JSON: {exc}", frames) from None
                finally:
                    body.release()
                if not isinstance(frame, dict):
                    raise ProtocolError(
                        f"frame must be a JSON object, got {type(frame).__name__}", frames)
                frames.append(frame)
                pos += 4 + size
        finally:
            if pos:
                del buffer[:pos]
        return frames


def b64encode(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


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


def publish_message(payload: Any) -> dict[str, Any]:
    """The Greengrass ``PublishMessage`` for ``payload`` (bytes -> binaryMessage)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return {"binaryMessage": {"message": b64encode(payload)}}
    return {"jsonMessage": {"message": payload}}


def message_event(message: Message) -> dict[str, Any]:
    """A SubscribeToTopic stream event (Greengrass's SubscriptionResponseMessage)."""
    context = {"topic": message.topic}
    payload = message.payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return {"binaryMessage": {"message": b64encode(payload), "context": context}}
    return {"jsonMessage": {"message": payload, "context": context}}


def event_message(event: Mapping[str, Any]) -> Message:
    """The :class:`Message` a SubscribeToTopic stream event carries."""
    binary = event.get("binaryMessage")
    if binary is not None:
        return Message(binary["context"]["topic"], base64.b64decode(binary["message"]), "")
    json_message = event["jsonMessage"]
    return Message(json_message["context"]["topic"], json_message["message"], "")


def iot_core_event(message: Message) -> dict[str, Any]:
    """A SubscribeToIoTCore stream event (Greengrass's IoTCoreMessage)."""
    return {"message": {"topicName": message.topic, "payload": b64encode(message.payload)}}


def iot_core_message(event: Mapping[str, Any]) -> Message:
    inner = event["message"]
    return Message(inner["topicName"], base64.b64decode(inner["payload"]), "$iotcore")


def parse_qos(value: object) -> int:
    """Greengrass's QOS enum ("0"/"1", AT_MOST_ONCE/AT_LEAST_ONCE) or 0/1."""
    table = {"0": 0, "1": 1, "AT_MOST_ONCE": 0, "AT_LEAST_ONCE": 1, 0: 0, 1: 1, None: 0}
    try:
        return table[value]
    except (KeyError, TypeError):
        raise InvalidArgumentsError(f"qos must be 0 or 1 (AT_MOST_ONCE, AT_LEAST_ONCE), "
                                    f"got {value!r}") from None
