"""The eventstream codec: framing, both CRCs, every header type, the 24 MiB limit, clear
errors; checked against the bytes the real AWS IoT Device SDK sends, and fuzzed."""

from __future__ import annotations

import socket
import struct
import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.ipc._eventstream import (
    MAX_MESSAGE,
    Decoder,
    EventStreamError,
    Int8,
    Int16,
    Int64,
    decode,
    encode,
    is_prelude,
)

ALL_TYPES: dict[str, Any] = {
    "t": True, "f": False, "i8": Int8(-5), "i16": Int16(-30000), "i32": 2_000_000_000,
    "i64": Int64(-(1 << 60)), "buf": b"\x00\xffbytes", "str": "héllo",
    "ts": datetime(2026, 12, 4, 17, 0, 1, 250000, tzinfo=UTC),
    "after2038": datetime(2100, 1, 1, tzinfo=UTC),  # past a 32-bit time_t (armhf)
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # fromtimestamp ends in 2038 on armhf


def test_every_header_type_round_trips() -> None:
    data = encode(ALL_TYPES, b"payload")
    headers, payload = decode(data)
    assert payload == b"payload"
    assert headers == ALL_TYPES
    total, _, prelude_crc = struct.unpack_from(">III", data)
    assert total == len(data) and prelude_crc == zlib.crc32(data[:8])
    assert struct.unpack_from(">I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    assert is_prelude(data)


def test_header_names_are_case_insensitive() -> None:
    headers, _ = decode(encode({":Message-Type": 4}))
    assert headers == {":message-type": 4}


def test_a_message_without_headers_or_payload_is_16_bytes() -> None:
    data = encode({}, b"")
    assert len(data) == 16 and decode(data) == ({}, b"")


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda d: d[:8] + b"\0\0\0\0" + d[12:], "prelude CRC mismatch"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "message CRC mismatch"),
    (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "message CRC mismatch"),
    (lambda d: d[:10], "shorter than the 16-byte minimum"),
])
def test_corruption_is_named(mutate: Any, error: str) -> None:
    with pytest.raises(EventStreamError, match=error):
        decode(mutate(encode({"a": "b"}, b"x")))


def reframe(headers: bytes, payload: bytes = b"") -> bytes:
    """A message with a hand-made header block and correct CRCs."""
    prelude = struct.pack(">II", len(headers) + len(payload) + 16, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(("block", "error"), [
    (b"\x01a\x02", "BYTE.*truncated"),
    (b"\x01a\x03\x00", "INT16.*truncated"),
    (b"\x01a\x04\x00\x00", "INT32.*truncated"),
    (b"\x01a\x05\x00", "INT64.*truncated"),
    (b"\x01a\x06\x00", "truncated length"),
    (b"\x01a\x07\x00\x09abc", "9 bytes of value"),
    (b"\x01a\x08\x00", "TIMESTAMP.*truncated"),
    (b"\x01a\x09" + b"\x00" * 15, "UUID.*truncated"),
    (b"\x01a\x0a", "unknown type 10"),
    (b"\x05ab", "truncated or has an empty name"),
    (b"\x00\x00", "empty name"),
    (b"\x01a\x07\x00\x02\xff\xfe", "not UTF-8"),
])
def test_truncated_and_unknown_headers_are_named(block: bytes, error: str) -> None:
    with pytest.raises(EventStreamError, match=error):
        decode(reframe(block))


def test_lengths_that_do_not_fit_are_refused() -> None:
    prelude = struct.pack(">II", 20, 10)
    bad = prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\0" * 8
    with pytest.raises(EventStreamError, match="headers length 10 does not fit"):
        decode(bad)
    prelude = struct.pack(">II", MAX_MESSAGE + 1, 0)
    huge = prelude + struct.pack(">I", zlib.crc32(prelude))
    decoder = Decoder()
    assert decoder.feed(huge) == []
    assert decoder.error is not None and "exceeds the limit of 25165824" in str(decoder.error)
    with pytest.raises(EventStreamError, match="24 MiB"):
        encode({}, b"\0" * MAX_MESSAGE)


def test_the_decoder_splits_a_stream_anywhere() -> None:
    messages = [({"n": i, "s": "x" * i}, bytes(range(i))) for i in range(40)]
    stream = b"".join(encode(h, p) for h, p in messages)
    for step in (1, 7, 64, len(stream)):
        decoder = Decoder()
        got: list[tuple[dict[str, Any], bytes]] = []
        for start in range(0, len(stream), step):
            got += decoder.feed(stream[start:start + step])
        assert got == messages and decoder.buffered == 0 and decoder.error is None


def test_the_decoder_keeps_messages_before_a_bad_one_and_stops() -> None:
    good = encode({"a": 1}, b"1")
    decoder = Decoder()
    assert decoder.feed(good + good[:5] + b"\xff" * 20) == [({"a": 1}, b"1")]
    assert decoder.error is not None
    assert decoder.feed(good) == []  # no resynchronisation after a bad message


def test_a_small_limit_refuses_larger_messages() -> None:
    decoder = Decoder(max_message=64)
    decoder.feed(encode({}, b"x" * 100))
    assert decoder.error is not None and "limit of 64" in str(decoder.error)


def test_decodes_the_connect_message_the_real_sdk_sends(tmp_path: Path) -> None:
    greengrasscoreipc = pytest.importorskip("awsiot.greengrasscoreipc")

    path = str(tmp_path / "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received = bytearray()

    def accept() -> None:
        conn, _ = server.accept()
        conn.settimeout(5)
        while len(received) < 16 or len(received) < struct.unpack_from(">I", received)[0]:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received.extend(chunk)
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    with pytest.raises(Exception):  # noqa: B017 - the server closes without a CONNECT_ACK
        greengrasscoreipc.connect(ipc_socket=path, authtoken="the-token", timeout=2)
    thread.join()
    server.close()
    headers, payload = decode(bytes(received))
    assert headers[":message-type"] == 4 and headers[":stream-id"] == 0
    assert headers[":version"] == "0.1.0"
    assert payload == b'{"authToken": "the-token"}'


header_values = st.one_of(
    st.booleans(), st.integers(-(1 << 31), (1 << 31) - 1),
    st.integers(-128, 127).map(Int8), st.integers(-(1 << 15), (1 << 15) - 1).map(Int16),
    st.integers(-(1 << 63), (1 << 63) - 1).map(Int64), st.binary(max_size=64),
    st.text(max_size=32), st.uuids(),
    st.integers(-(10 ** 12), 10 ** 13).map(lambda ms: EPOCH + timedelta(milliseconds=ms)))
header_maps = st.dictionaries(st.text(min_size=1, max_size=12).map(str.lower).filter(
    lambda s: 0 < len(s.encode()) < 256), header_values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(header_maps, st.binary(max_size=256))
def test_round_trip_property(headers: dict[str, Any], payload: bytes) -> None:
    assert decode(encode(headers, payload)) == (headers, payload)


def mutate(raw: bytearray, data: st.DataObject, least: int) -> None:
    """Up to 4 (at least ``least``) flipped bytes, cuts, extensions and wrong lengths."""
    for _ in range(data.draw(st.integers(least, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "extend", "length"]))
        if kind == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[data.draw(st.integers(0, len(raw))):]
        elif kind == "extend":
            raw += data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "length" and len(raw) >= 8:
            struct.pack_into(">I", raw, data.draw(st.sampled_from([0, 4])),
                             data.draw(st.integers(0, (1 << 32) - 1)))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_maps, st.binary(max_size=64), st.data())
def test_mutated_messages_decode_or_raise_eventstream_error(
        headers: dict[str, Any], payload: bytes, data: st.DataObject) -> None:
    """Flipped bytes, cut or extended messages, fixed-up CRCs: never anything but a clean
    EventStreamError (or, where the mutation kept it valid, a message)."""
    raw = bytearray(encode(headers, payload))
    mutate(raw, data, 1)
    if data.draw(st.booleans()) and len(raw) >= 16:  # make the CRCs right again
        struct.pack_into(">I", raw, 8, zlib.crc32(raw[:8]))
        struct.pack_into(">I", raw, len(raw) - 4, zlib.crc32(raw[:-4]))
    decoder = Decoder()
    try:
        decode(bytes(raw))
    except EventStreamError:
        pass
    decoder.feed(bytes(raw))
    assert decoder.error is None or isinstance(decoder.error, EventStreamError)


def test_repeated_rpc_header_blocks_decode_like_fresh_ones() -> None:
    """Blocks that differ only in :stream-id are remembered; look-alikes are not fooled."""
    from actors.ipc._eventstream import _BLOCKS

    _BLOCKS.clear()
    base = {":message-type": 0, ":message-flags": 0}
    for stream_id in (1, 2, 3):
        assert decode(encode({**base, ":stream-id": stream_id, "operation": "x"}))[0][
            ":stream-id"] == stream_id
    assert len(_BLOCKS) == 1
    # a later duplicate (another case) wins, cached or not
    tricky = encode({**base, ":stream-id": 5, ":STREAM-ID": Int64(9)})
    assert decode(tricky)[0][":stream-id"] == 9
    assert decode(encode({**base, ":stream-id": 6, ":STREAM-ID": Int64(9)}))[0][
        ":stream-id"] == 9
    # the pattern inside a string value is not a header
    inside = encode({"note": "\n:stream-id\x04\x00\x00\x00\x07 tail", ":stream-id": 3})
    assert decode(inside)[0] == {"note": "\n:stream-id\x04\x00\x00\x00\x07 tail",
                                 ":stream-id": 3}


def test_rpc_headers_after_others_are_remembered_and_look_alikes_are_not() -> None:
    """The SDK sends its shape headers before the RPC ones: such blocks are remembered
    too; the three RPC headers' bytes inside a value, or repeated after them, are not
    taken for them."""
    from actors.ipc._eventstream import _BLOCKS

    _BLOCKS.clear()
    for stream_id in (1, 2, 3):
        headers = {":content-type": "application/json", ":message-type": 0,
                   ":message-flags": 2, ":stream-id": stream_id, "operation": "x"}
        assert decode(encode(headers)) == (headers, b"")
    assert len(_BLOCKS) == 1
    triple = encode({":message-type": 7, ":message-flags": 7, ":stream-id": 7})[12:-4]
    for stream_id in (1, 2):
        inside = {"note": triple, ":message-type": 0, ":message-flags": 0,
                  ":stream-id": stream_id}
        assert decode(encode(inside))[0] == inside
    for stream_id in (1, 2):
        repeated = {":message-type": 0, ":message-flags": 0, ":stream-id": stream_id,
                    "x": 1, ":Message-Flags": Int16(5)}
        assert decode(encode(repeated))[0] == {":message-type": 0, ":message-flags": 5,
                                               ":stream-id": stream_id, "x": 1}
