"""The native eventstream codec (``actors._native_eventstream``) against its Python twin:
the same messages, the same errors, byte for byte the same encodings, for every input."""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.ipc import _eventstream, _rpc
from actors.ipc._eventstream import EventStreamError, PyDecoder, encode

from .test_eventstream import header_maps, mutate, reframe

if os.environ.get("EDGE_ACTORS_NO_EXT"):
    pytest.skip("the no-extension leg: the Python codec only", allow_module_level=True)

native = _eventstream._native


def test_the_extension_is_built_and_in_use() -> None:
    assert native is not None, "actors._native_eventstream did not build or import"
    assert _eventstream.NATIVE and _eventstream.Decoder is native.Decoder
    assert _rpc.Template is native.Template


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, (1 << 32) - 1))
def test_crc32_is_zlibs(data: bytes, start: int) -> None:
    assert native.crc32(data, start) == zlib.crc32(data, start)
    assert native.crc32(data) == zlib.crc32(data)


def outcome(decoder: Any, chunks: list[bytes]) -> tuple[Any, ...]:
    got = []
    for chunk in chunks:
        got += decoder.feed(chunk)
    error = decoder.error
    return (got, type(error), str(error) if error else None, decoder.buffered,
            decoder.expected, decoder.max_message)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(header_maps, st.binary(max_size=64)), min_size=1, max_size=4),
       st.data())
def test_mutated_streams_decode_the_same_in_c_and_python(
        messages: list[tuple[dict[str, Any], bytes]], data: st.DataObject) -> None:
    """Flipped bytes, cut or extended messages, wrong lengths, fixed-up CRCs, every
    header type, fed in random pieces: the same messages and the same error, word for
    word, from both decoders."""
    raw = bytearray(b"".join(encode(h, p) for h, p in messages))
    mutate(raw, data, 0)
    if data.draw(st.booleans()) and len(raw) >= 16:  # make the first message's CRCs right
        total = min(struct.unpack_from(">I", raw)[0], len(raw))
        struct.pack_into(">I", raw, 8, zlib.crc32(raw[:8]))
        if total >= 16:
            struct.pack_into(">I", raw, total - 4, zlib.crc32(raw[:total - 4]))
    limit = data.draw(st.sampled_from([_eventstream.MAX_MESSAGE, 64, 200]))
    then = data.draw(st.sampled_from([0, _eventstream.MAX_MESSAGE]))
    chunks = split(bytes(raw), data.draw(st.lists(st.integers(0, 1 << 12), max_size=5)))
    ours = outcome(native.Decoder(limit, then_max=then), chunks)
    assert ours == outcome(PyDecoder(limit, then_max=then), chunks)
    assert ours[1] in (type(None), EventStreamError)


@pytest.mark.parametrize("block", [
    b"\x01a\x02", b"\x01a\x03\x00", b"\x01a\x04\x00\x00", b"\x01a\x05\x00", b"\x01a\x06\x00",
    b"\x01a\x07\x00\x09abc", b"\x01a\x08\x00", b"\x01a\x09" + b"\x00" * 15, b"\x01a\x0a",
    b"\x05ab", b"\x00\x00", b"\x01a\x07\x00\x02\xff\xfe", b"\x02\xc3\x84\x07\x00\x01x",
    b"\x01A\x02\x05\x01B\x03\x00\x07",
])
def test_every_header_block_python_refuses_or_reads_reads_the_same(block: bytes) -> None:
    data = reframe(block, b"payload")
    assert outcome(native.Decoder(), [data]) == outcome(PyDecoder(), [data])


def test_names_and_values_sharing_a_cache_slot_are_told_apart() -> None:
    """The caches of header names and string values are direct-mapped by length and three
    bytes: strings that agree on those must still decode as themselves."""
    look_alikes = ["axccd", "ayccd", "AXCCD", "a-ccd"]
    decoder = native.Decoder()
    for _ in range(3):
        for text in look_alikes:
            message = encode({text: text, "v": text}, b"")
            assert decoder.feed(message) == [({text.lower(): text, "v": text}, b"")]
    long_name = "n" * 200  # longer than a cache key
    assert decoder.feed(encode({long_name: "x" * 300}, b"")) == [
        ({long_name: "x" * 300}, b"")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(8)), st.integers(0, 3), st.binary(max_size=80),
       st.integers(-(1 << 31), (1 << 31) - 1), st.binary(max_size=5000))
def test_templates_encode_the_same_bytes(message_type: int, flags: int, extra: bytes,
                                         stream_id: int, payload: bytes) -> None:
    ours = native.Template(message_type, flags, extra)
    theirs = _rpc.PyTemplate(message_type, flags, extra)
    assert (ours.before, ours.after, ours.headers_len) == (
        theirs.before, theirs.after, theirs.headers_len)
    encoded = ours.message(stream_id, payload)
    assert encoded == theirs.message(stream_id, payload)
    assert ours.message(stream_id, bytearray(payload)) == encoded
    assert ours.message(stream_id, memoryview(payload)) == encoded


def test_template_limits_raise_eventstream_errors() -> None:
    with pytest.raises(EventStreamError, match="exceed the limit"):
        native.Template(0, 0, b"\x01a\x06" + b"\x00" * (_eventstream.MAX_HEADERS + 1))
    with pytest.raises(EventStreamError, match="24 MiB"):
        native.Template(0, 0).message(1, b"\0" * _eventstream.MAX_MESSAGE)
