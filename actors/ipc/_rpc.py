"""Eventstream RPC, the layer above the codec that both the server and the client speak.

Every message carries ``:message-type``, ``:message-flags`` and ``:stream-id``
(int32). Stream 0 carries the connection's own messages (CONNECT, CONNECT_ACK,
PING, PING_RESPONSE, PROTOCOL_ERROR, INTERNAL_ERROR); a stream above 0 one
operation's APPLICATION_MESSAGE / APPLICATION_ERROR, the first of which names
the ``operation``. Payloads are JSON with a ``:content-type`` and the
``service-model-type`` of the shape (see :mod:`._model`).
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import TYPE_CHECKING, Any

import orjson

from . import _eventstream
from ._eventstream import MAX_HEADERS, MAX_MESSAGE, EventStreamError, encode, encode_headers

if TYPE_CHECKING:
    from ._model import Operation

APPLICATION_MESSAGE = 0
APPLICATION_ERROR = 1
PING = 2
PING_RESPONSE = 3
CONNECT = 4
CONNECT_ACK = 5
PROTOCOL_ERROR = 6
INTERNAL_ERROR = 7
MESSAGE_TYPES = ("APPLICATION_MESSAGE", "APPLICATION_ERROR", "PING", "PING_RESPONSE",
                 "CONNECT", "CONNECT_ACK", "PROTOCOL_ERROR", "INTERNAL_ERROR")

CONNECTION_ACCEPTED = 1
TERMINATE_STREAM = 2

VERSION = "0.1.0"
CONTENT_TYPE = "application/json"

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_II = struct.Struct(">II")
_TYPE = b"\x0d:message-type\x04"
_FLAGS = b"\x0e:message-flags\x04"
_STREAM = b"\x0a:stream-id\x04"
_crc32 = zlib.crc32


def _rpc(message_type: int, flags: int, stream_id: int) -> bytes:
    return (_TYPE + _I32.pack(message_type) + _FLAGS + _I32.pack(flags) + _STREAM
            + _I32.pack(stream_id))


@functools.lru_cache(maxsize=512)
def shape_headers(shape: str) -> bytes:
    """The ``:content-type`` and ``service-model-type`` headers of ``shape``."""
    return encode_headers({":content-type": CONTENT_TYPE, "service-model-type": shape})


@functools.lru_cache(maxsize=256)
def operation_header(full_name: str) -> bytes:
    return encode_headers({"operation": full_name})


class PyTemplate:
    """The messages of one kind (type, flags and extra headers) but for their stream id
    and payload: the header block around the stream id is encoded once, and so are the
    prelude and its CRC for each message size seen (the sizes of one kind repeat).
    :class:`Template` is its C twin from the native extension, when that is built."""

    __slots__ = ("_leads", "after", "before", "headers_len")

    def __init__(self, message_type: int, flags: int, extra: bytes = b"") -> None:
        self.before = _TYPE + _I32.pack(message_type) + _FLAGS + _I32.pack(flags) + _STREAM
        self.after = extra
        self.headers_len = len(self.before) + 4 + len(extra)
        if self.headers_len > MAX_HEADERS:
            raise EventStreamError(f"{self.headers_len} bytes of headers exceed the limit "
                                   f"of {MAX_HEADERS}")
        #: payload size -> (prelude + the headers before the stream id, their CRC)
        self._leads: dict[int, tuple[bytes, int]] = {}

    def message(self, stream_id: int, payload: bytes = b"") -> bytes:
        """The message on ``stream_id`` carrying ``payload``."""
        size = len(payload)
        lead = self._leads.get(size)
        if lead is None:
            lead = self._lead(size)
        head, crc = lead
        if size <= 4096:  # one join and one CRC call: fewer steps than copies saved
            data = b"".join((head, _I32.pack(stream_id), self.after, payload))
            return data + _U32.pack(_crc32(data))
        middle = _I32.pack(stream_id) + self.after
        crc = _crc32(payload, _crc32(middle, crc))
        return b"".join((head, middle, payload, _U32.pack(crc)))

    def _lead(self, size: int) -> tuple[bytes, int]:
        total = self.headers_len + size + 16
        if total > MAX_MESSAGE:
            raise EventStreamError(f"a message of {total} bytes exceeds the eventstream limit "
                                   f"of {MAX_MESSAGE} bytes (24 MiB)")
        prelude = _II.pack(total, self.headers_len)
        head = prelude + _U32.pack(_crc32(prelude)) + self.before
        lead = (head, _crc32(head))
        if len(self._leads) >= 64:
            self._leads.clear()
        self._leads[size] = lead
        return lead


Template: type[PyTemplate] = (_eventstream._native.Template if _eventstream._native is not None
                              else PyTemplate)

_TEMPLATES: dict[tuple[int, int, str, str | None], PyTemplate] = {}


def template(message_type: int, flags: int, shape: str, operation: str | None = None
             ) -> PyTemplate:
    """The :class:`Template` of the messages of ``shape`` (the first message of a stream
    names its ``operation``)."""
    key = (message_type, flags, shape, operation)
    found = _TEMPLATES.get(key)
    if found is None:
        extra = shape_headers(shape)
        if operation is not None:
            extra = operation_header(operation) + extra
        found = Template(message_type, flags, extra)
        if len(_TEMPLATES) >= 1024:
            _TEMPLATES.clear()
        _TEMPLATES[key] = found
    return found


_RESPONSES: dict[str, PyTemplate] = {}


def response(op: Operation) -> PyTemplate:
    """The :class:`Template` of ``op``'s unary response (ending its stream)."""
    found = _RESPONSES.get(op.response_shape)
    if found is None:
        found = template(APPLICATION_MESSAGE, TERMINATE_STREAM, op.response_shape)
        if len(_RESPONSES) >= 256:
            _RESPONSES.clear()
        _RESPONSES[op.response_shape] = found
    return found


def message(message_type: int, stream_id: int, payload: bytes = b"", flags: int = 0,
            extra: bytes = b"") -> bytes:
    """One RPC message; ``extra`` is a header block (e.g. :func:`shape_headers`)."""
    return encode(_rpc(message_type, flags, stream_id) + extra, payload)


def application(stream_id: int, shape: str, body: Any, flags: int = 0,
                operation: str | None = None) -> bytes:
    """An APPLICATION_MESSAGE carrying ``body`` (JSON) as ``shape``."""
    return template(APPLICATION_MESSAGE, flags, shape, operation).message(
        stream_id, orjson.dumps(body))


def error(stream_id: int, shape: str, text: str) -> bytes:
    """An APPLICATION_ERROR (ending the stream) of error shape ``shape``."""
    return encode(_rpc(APPLICATION_ERROR, TERMINATE_STREAM, stream_id) + shape_headers(shape),
                  orjson.dumps({"message": text}))


def connection_error(message_type: int, text: str) -> bytes:
    """A PROTOCOL_ERROR or INTERNAL_ERROR on stream 0 (the connection closes after it)."""
    return encode(_rpc(message_type, 0, 0) + shape_headers("aws.greengrass#ServiceError"),
                  orjson.dumps({"message": text}))


def connect(token: str) -> bytes:
    """The client's CONNECT, as the SDK sends it."""
    return encode(_rpc(CONNECT, 0, 0) + encode_headers({":version": VERSION}),
                  orjson.dumps({"authToken": token}))


def rpc_fields(headers: dict[str, Any]) -> tuple[int, int, int]:
    """``(message type, flags, stream id)``; ValueError when one is missing or not int32."""
    try:
        message_type = headers[":message-type"]
        flags = headers[":message-flags"]
        stream_id = headers[":stream-id"]
    except KeyError as exc:
        raise ValueError(f"the message has no {exc.args[0]} header") from None
    for name, value in ((":message-type", message_type), (":message-flags", flags),
                        (":stream-id", stream_id)):
        if type(value) is not int:
            raise ValueError(f"the {name} header must be an int32, got {value!r}")
    return message_type, flags, stream_id
