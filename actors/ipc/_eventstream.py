"""The eventstream codec: the framing under Greengrass IPC (aws-c-event-stream's format).

A message is::

    total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32

big-endian, both CRCs IEEE CRC-32 (``zlib.crc32``): the prelude's over its
first 8 bytes, the message's over everything before it. A message is at most
24 MiB (``MAX_MESSAGE``). A header is ``name_len u8, name, type u8, value``
with the value types of :class:`HeaderType`. Header names are
case-insensitive: decoded names are lower-cased.

Encoding picks a header's type from its Python value: ``bool`` -> true/false,
``int`` -> int32, ``bytes`` -> byte buffer, ``str`` -> string,
``datetime`` -> timestamp, ``uuid.UUID`` -> UUID; :class:`Int8`,
:class:`Int16` and :class:`Int64` force the other integer widths. Decoding
gives the same Python types back (int8/16/64 as plain ``int``).

Every malformed input raises :class:`EventStreamError` with what was wrong
and where; a :class:`Decoder` fed a byte stream stops at the first bad
message (the stream cannot be resynchronised after it).

:class:`Decoder` is the C twin from the native extension
(``actors._native_eventstream``) when it is built, else :class:`PyDecoder`;
both give the same results for every input (the tests hold them to it).
"""

from __future__ import annotations

import enum
import importlib
import logging
import struct
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "MAX_HEADERS",
    "MAX_MESSAGE",
    "NATIVE",
    "PRELUDE",
    "Decoder",
    "EventStreamError",
    "HeaderType",
    "Int8",
    "Int16",
    "Int64",
    "PyDecoder",
    "decode",
    "encode",
    "encode_headers",
    "is_prelude",
]

MAX_MESSAGE = 24 << 20
"""The largest message aws-c-event-stream accepts (event_stream.h), prelude and CRC included."""
MAX_HEADERS = 128 << 10
"""The largest header block aws-c-event-stream accepts."""
PRELUDE = 12
_OVERHEAD = PRELUDE + 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_crc32 = zlib.crc32


class EventStreamError(ValueError):
    """Bytes that are not a valid eventstream message (the message says what and where)."""


class HeaderType(enum.IntEnum):
    TRUE = 0
    FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTE_BUF = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


class Int8(int):
    """An int sent as an int8 header."""


class Int16(int):
    """An int sent as an int16 header."""


class Int64(int):
    """An int sent as an int64 header."""


_FIXED = {HeaderType.BYTE: struct.Struct(">b"), HeaderType.INT16: struct.Struct(">h"),
          HeaderType.INT32: struct.Struct(">i"), HeaderType.INT64: struct.Struct(">q"),
          HeaderType.TIMESTAMP: struct.Struct(">q")}
_INT_TYPES: dict[type, HeaderType] = {Int8: HeaderType.BYTE, Int16: HeaderType.INT16,
                                      Int64: HeaderType.INT64}


def _encode_header(name: str, value: Any) -> bytes:
    raw = name.encode()
    if not 0 < len(raw) < 256:
        raise EventStreamError(f"header name {name!r} must be 1 to 255 bytes long")
    head = bytes((len(raw),)) + raw
    if value is True:
        return head + b"\x00"
    if value is False:
        return head + b"\x01"
    if isinstance(value, int):
        kind = _INT_TYPES.get(type(value), HeaderType.INT32)
        try:
            return head + bytes((kind,)) + _FIXED[kind].pack(value)
        except struct.error:
            raise EventStreamError(f"header {name}: {value} does not fit in {kind.name}") from None
    if isinstance(value, str):
        value = value.encode()
        kind = HeaderType.STRING
    elif isinstance(value, bytes | bytearray | memoryview):
        kind = HeaderType.BYTE_BUF
    elif isinstance(value, datetime):
        millis = (round(value.timestamp() * 1000) if value.tzinfo is None
                  else round((value - _EPOCH) / timedelta(milliseconds=1)))
        return head + b"\x08" + _FIXED[HeaderType.TIMESTAMP].pack(millis)
    elif isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    else:
        raise EventStreamError(f"header {name}: no eventstream type for {type(value).__name__}")
    if len(value) > 0xFFFF:
        raise EventStreamError(f"header {name}: value of {len(value)} bytes exceeds 65535")
    return head + bytes((kind,)) + struct.pack(">H", len(value)) + bytes(value)


def encode_headers(headers: dict[str, Any]) -> bytes:
    """The header block for ``headers`` (reusable: encode constant headers once)."""
    return b"".join([_encode_header(name, value) for name, value in headers.items()])


def encode(headers: dict[str, Any] | bytes, payload: bytes = b"") -> bytes:
    """One message; ``headers`` is a mapping or a block made by :func:`encode_headers`."""
    block = headers if isinstance(headers, bytes) else encode_headers(headers)
    total = len(block) + len(payload) + _OVERHEAD
    if total > MAX_MESSAGE:
        raise EventStreamError(f"a message of {total} bytes exceeds the eventstream limit of "
                               f"{MAX_MESSAGE} bytes (24 MiB)")
    if len(block) > MAX_HEADERS:
        raise EventStreamError(f"{len(block)} bytes of headers exceed the limit of {MAX_HEADERS}")
    prelude = struct.pack(">II", total, len(block))
    prelude += _U32.pack(_crc32(prelude))
    crc = _crc32(payload, _crc32(block, _crc32(prelude)))
    return b"".join((prelude, block, payload, _U32.pack(crc)))


_NAMES: dict[bytes, str] = {}
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")


def decode_headers(data: bytes, where: str = "message") -> dict[str, Any]:
    """The headers of one header block (names lower-cased)."""
    headers: dict[str, Any] = {}
    names = _NAMES
    pos, end = 0, len(data)
    while pos < end:
        name_len = data[pos]
        pos += 1
        if name_len == 0 or pos + name_len + 1 > end:
            raise EventStreamError(f"{where}: header at byte {pos - 1} is truncated or has an "
                                   f"empty name")
        raw = data[pos:pos + name_len]
        name = names.get(raw)
        if name is None:
            try:
                name = raw.decode().lower()
            except UnicodeDecodeError:
                raise EventStreamError(f"{where}: header name at byte {pos} is not "
                                       "UTF-8") from None
            if len(names) < 1024:
                names[raw] = name
        pos += name_len
        kind = data[pos]
        pos += 1
        value: Any
        if kind == 4:  # int32, the RPC headers: first
            if pos + 4 > end:
                raise EventStreamError(f"{where}: header {name} (INT32) is truncated")
            (value,) = _I32.unpack_from(data, pos)
            pos += 4
        elif kind == 7 or kind == 6:
            if pos + 2 > end:
                raise EventStreamError(f"{where}: header {name} has a truncated length")
            (size,) = _U16.unpack_from(data, pos)
            pos += 2
            if pos + size > end:
                raise EventStreamError(f"{where}: header {name}: {size} bytes of value, "
                                       f"{end - pos} left in the header block")
            value = data[pos:pos + size]
            pos += size
            if kind == 7:
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise EventStreamError(f"{where}: header {name}: string value is not "
                                           f"UTF-8") from None
        elif kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif kind in _FIXED:
            fixed = _FIXED[HeaderType(kind)]
            if pos + fixed.size > end:
                raise EventStreamError(f"{where}: header {name} ({HeaderType(kind).name}) "
                                       f"is truncated")
            (value,) = fixed.unpack_from(data, pos)
            pos += fixed.size
            if kind == HeaderType.TIMESTAMP:
                try:
                    # Not fromtimestamp: a 32-bit time_t (armhf) ends in 2038.
                    value = _EPOCH + timedelta(milliseconds=value)
                except (OverflowError, OSError, ValueError):
                    raise EventStreamError(f"{where}: header {name}: timestamp {value} ms is "
                                           f"out of range") from None
        elif kind == 9:
            if pos + 16 > end:
                raise EventStreamError(f"{where}: header {name} (UUID) is truncated")
            value = uuid.UUID(bytes=data[pos:pos + 16])
            pos += 16
        else:
            raise EventStreamError(f"{where}: header {name} has unknown type {kind}")
        headers[name] = value
    return headers


_TYPE_NAME = b"\x0d:message-type\x04"
_FLAGS_NAME = b"\x0e:message-flags\x04"
_STREAM_NAME = b"\x0a:stream-id\x04"
_RPC_NAMES = (":message-type", ":message-flags", ":stream-id")
# the three RPC headers, in the order both the SDK and this project send them
_RPC_TRIPLE = struct.Struct(">15si16si12si")
_BLOCKS: dict[bytes, tuple[int, dict[str, Any]]] = {}


def decode_rpc_headers(block: bytes) -> dict[str, Any]:
    """:func:`decode_headers`, remembering blocks that differ only in the values of their
    ``:message-type``, ``:message-flags`` and ``:stream-id`` headers (RPC messages repeat
    their other headers: the operation, the shape, the content type)."""
    at = block.find(_TYPE_NAME)
    if at < 0 or at + 55 > len(block):
        return decode_headers(block)
    _, message_type, flags_name, flags, stream_name, stream_id = _RPC_TRIPLE.unpack_from(
        block, at)
    if flags_name != _FLAGS_NAME or stream_name != _STREAM_NAME:
        return decode_headers(block)
    key = block[at + 55:] if at == 0 else block[:at] + block[at + 55:]
    cached = _BLOCKS.get(key)
    if cached is not None and cached[0] == at:
        headers = cached[1].copy()
        headers[":message-type"] = message_type
        headers[":message-flags"] = flags
        headers[":stream-id"] = stream_id
        return headers
    headers = decode_headers(block)
    # Remembered only when the three are headers, not bytes inside a value, and the
    # only ones of their names: then every block with the same other bytes decodes the
    # same but for their values. They are headers when the bytes before them decode on
    # their own (a header boundary, where decoding the whole block then reads them).
    try:
        others = {**decode_headers(block[:at]), **decode_headers(block[at + 55:])}
    except EventStreamError:
        return headers
    if not any(name in others for name in _RPC_NAMES):
        if len(_BLOCKS) >= 256:
            _BLOCKS.clear()
        _BLOCKS[key] = (at, headers.copy())
    return headers


def check_prelude(total: int, headers_len: int, crc: int, prelude: bytes | memoryview,
                  max_message: int) -> None:
    if _crc32(prelude) != crc:
        raise EventStreamError(f"prelude CRC mismatch (0x{crc:08x} sent, "
                               f"0x{_crc32(prelude):08x} computed)")
    if total < _OVERHEAD:
        raise EventStreamError(f"total length {total} is shorter than the 16-byte minimum")
    if total > max_message:
        raise EventStreamError(f"message of {total} bytes exceeds the limit of "
                               f"{max_message} bytes")
    if headers_len > total - _OVERHEAD or headers_len > MAX_HEADERS:
        raise EventStreamError(f"headers length {headers_len} does not fit in a message of "
                               f"{total} bytes")


def decode(data: bytes, max_message: int = MAX_MESSAGE) -> tuple[dict[str, Any], bytes]:
    """The headers and payload of exactly one message."""
    if len(data) < _OVERHEAD:
        raise EventStreamError(f"{len(data)} bytes are shorter than the 16-byte minimum")
    total, headers_len, crc = _PRELUDE.unpack_from(data)
    check_prelude(total, headers_len, crc, data[:8], max_message)
    if total != len(data):
        raise EventStreamError(f"total length says {total} bytes, got {len(data)}")
    return _body(bytes(data), 0, total, headers_len, crc)


def _body(data: bytes, pos: int, total: int, headers_len: int, prelude_crc: int
          ) -> tuple[dict[str, Any], bytes]:
    """The message at ``pos`` whose prelude (CRC ``prelude_crc``) was checked."""
    end = pos + total - 4
    (crc,) = _U32.unpack_from(data, end)
    # the message's CRC goes on from the prelude's (over its first 8 bytes); a small
    # message is copied (cheaper than a memoryview), a large one is not
    if total <= 4096:
        computed = _crc32(data[pos + 8:end], prelude_crc)
    else:
        with memoryview(data) as view:
            computed = _crc32(view[pos + 8:end], prelude_crc)
    if computed != crc:
        raise EventStreamError(f"message CRC mismatch (0x{crc:08x} sent, 0x{computed:08x} "
                               f"computed)")
    start = pos + PRELUDE
    headers = decode_rpc_headers(data[start:start + headers_len]) if headers_len else {}
    return headers, data[start + headers_len:end]


def is_prelude(data: bytes) -> bool:
    """Whether the first 12 bytes of ``data`` are a valid eventstream prelude."""
    return len(data) >= PRELUDE and _U32.unpack_from(data, 8)[0] == _crc32(data[:8])


class PyDecoder:
    """Splits a byte stream into messages ``(headers, payload)``.

    :meth:`feed` returns the complete messages so far; after a bad one it
    sets ``error`` and returns only those before it. ``max_message`` may be
    changed at any time; ``then_max`` replaces it after the first message (a
    small limit for the first, CONNECT, message). ``buffered``
    is the number of bytes held for an incomplete message.
    """

    __slots__ = ("_buffer", "_need", "error", "max_message", "then_max")

    def __init__(self, max_message: int = MAX_MESSAGE, then_max: int = 0) -> None:
        self._buffer = bytearray()
        self._need = 0
        self.max_message = max_message
        #: if set, the limit from the second message on (the first one, CONNECT, small)
        self.then_max = then_max
        self.error: EventStreamError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def expected(self) -> int:
        """The size of the incomplete message being read (0 before its prelude)."""
        return self._need

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        if self.error is not None:
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []  # the rest of a long message: parsed once it is complete
            data = bytes(buffer)
            buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        out: list[tuple[dict[str, Any], bytes]] = []
        pos, end = 0, len(data)
        self._need = 0
        unpack = _PRELUDE.unpack_from
        try:
            while end - pos >= PRELUDE:
                total, headers_len, crc = unpack(data, pos)
                computed = _crc32(data[pos:pos + 8])
                if computed != crc or total > self.max_message or total < _OVERHEAD \
                        or headers_len > total - _OVERHEAD or headers_len > MAX_HEADERS:
                    check_prelude(total, headers_len, crc, data[pos:pos + 8],
                                  self.max_message)
                if end - pos < total:
                    self._need = total
                    break
                if total > 4096:
                    out.append(_body(data, pos, total, headers_len, crc))
                else:  # _body, inline for the small messages of RPC
                    stop = pos + total - 4
                    computed = _crc32(data[pos + 8:stop], crc)
                    if computed != _U32.unpack_from(data, stop)[0]:
                        _body(data, pos, total, headers_len, crc)  # raises, saying why
                    start = pos + PRELUDE
                    split = start + headers_len
                    out.append((decode_rpc_headers(data[start:split]) if headers_len else {},
                                data[split:stop]))
                pos += total
                if self.then_max:
                    self.max_message, self.then_max = self.then_max, 0
        except EventStreamError as exc:
            self.error = exc
            return out
        if pos < end:
            buffer += memoryview(data)[pos:]
        return out


_native: Any
try:
    _native = importlib.import_module("actors._native_eventstream")
except ImportError:  # pragma: no cover - exercised by the no-extension CI leg
    _native = None
    logging.getLogger("actors.ipc").info(
        "actors._native_eventstream is not built: the IPC socket uses the pure-Python "
        "eventstream codec (slower); reinstall with a C compiler to build it")
else:
    _native.init(check_prelude, _body, decode_headers, EventStreamError, MAX_MESSAGE,
                 MAX_HEADERS)

NATIVE = _native is not None
"""Whether :class:`Decoder` (and ``_rpc.Template``) are the native extension's."""
Decoder: type[PyDecoder] = _native.Decoder if _native is not None else PyDecoder
