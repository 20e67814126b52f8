# cython: language_level=3
"""Eventstream framing in C: the Greengrass IPC socket's per-message work.

The pure-Python codec in ``actors.ipc._eventstream`` is the reference: this
module is its twin for the two things every request and response pays for,
and gives the same results for every input.

- :class:`Decoder` splits a byte stream into ``(headers, payload)`` messages,
  checking both CRCs and decoding the header types RPC uses (true, false,
  int32, byte buffer, string). Anything else (the other header types, a
  non-ASCII header name, any malformed input) goes to the Python functions
  handed to :func:`init`, so rare headers decode, and errors read, exactly as
  they do there.
- :class:`Template` writes the messages of one kind (type, flags and extra
  headers fixed) for a stream id and payload: one allocation, one CRC pass.

The CRC is IEEE CRC-32 (zlib's), computed here slice-by-8 so that the module
needs no zlib headers (it is cross-compiled for armv7l too).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.string cimport memcmp, memcpy

cdef uint32_t _T[8][256]


cdef void _make_table() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0xEDB88320 & (0 - (c & 1)))
        _T[0][i] = c
    for i in range(256):
        c = _T[0][i]
        for k in range(1, 8):
            c = _T[0][c & 0xFF] ^ (c >> 8)
            _T[k][i] = c


_make_table()


cdef inline uint32_t _crc32(uint32_t crc, const uint8_t *p, long long n) noexcept nogil:
    """zlib.crc32(p[:n], crc)"""
    cdef uint32_t one, two
    crc = ~crc
    while n >= 8:
        one = crc ^ (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
                     | (<uint32_t>p[3] << 24))
        two = <uint32_t>p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) \
            | (<uint32_t>p[7] << 24)
        crc = (_T[7][one & 0xFF] ^ _T[6][(one >> 8) & 0xFF] ^ _T[5][(one >> 16) & 0xFF]
               ^ _T[4][one >> 24] ^ _T[3][two & 0xFF] ^ _T[2][(two >> 8) & 0xFF]
               ^ _T[1][(two >> 16) & 0xFF] ^ _T[0][two >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = _T[0][(crc ^ p[0]) & 0xFF] ^ (crc >> 8)
        p += 1
        n -= 1
    return ~crc


cdef inline uint32_t _be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


def crc32(data, unsigned int value=0):
    """zlib.crc32, for the tests that hold this module to zlib."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _crc32(value, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


# The Python codec's pieces, for what this module leaves to it (see init()).
cdef object _check_prelude = None
cdef object _body = None
cdef object _decode_headers = None
cdef object _Error = ValueError
cdef long long _MAX_MESSAGE = 24 << 20
cdef long long _MAX_HEADERS = 128 << 10

# Header names, and short string values, repeat from message to message (the RPC
# headers, the operation, the shape, the content type): two small direct-mapped caches
# of the str objects made for them save an allocation and a decode each time.
cdef enum:
    _SLOTS = 64
    _KEY = 48
cdef uint8_t _keys[2][_SLOTS][_KEY]
cdef int _lens[2][_SLOTS]
cdef list _vals = [[None] * _SLOTS, [None] * _SLOTS]


cdef inline int _slot(const uint8_t *p, int n) noexcept nogil:
    return (n * 31 + p[0] * 7 + p[n - 1] * 13 + p[n >> 1]) & (_SLOTS - 1)


cdef object _cached_str(int which, const uint8_t *p, int n):
    """The str of ``p[:n]`` (a header name, lower-cased, when ``which`` is 0; a string
    value, as is, when 1); None for a name that is not ASCII. Raises UnicodeDecodeError
    for a value that is not UTF-8."""
    cdef int slot, i
    cdef object value
    if n > _KEY or n == 0:
        if which == 0:
            return None if n == 0 else _name(p, n)
        return PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    slot = _slot(p, n)
    if _lens[which][slot] == n and memcmp(_keys[which][slot], p, n) == 0:
        return (<list>_vals[which])[slot]
    if which == 0:
        value = _name(p, n)
        if value is None:
            return None
    else:
        value = PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    memcpy(_keys[which][slot], p, n)
    _lens[which][slot] = n
    (<list>_vals[which])[slot] = value
    return value


cdef object _name(const uint8_t *p, int n):
    cdef int i
    for i in range(n):
        if p[i] >= 0x80:
            return None
    return PyBytes_FromStringAndSize(<const char *>p, n).decode("ascii").lower()


def init(check_prelude, body, decode_headers, error, long long max_message,
         long long max_headers):
    """Hand over the Python codec's functions that raise its errors (and decode the rare
    header types), its error class and its limits: one definition of each."""
    global _check_prelude, _body, _decode_headers, _Error, _MAX_MESSAGE, _MAX_HEADERS
    _check_prelude, _body, _decode_headers, _Error = check_prelude, body, decode_headers, error
    _MAX_MESSAGE, _MAX_HEADERS = max_message, max_headers


cdef object _headers(const uint8_t *p, long long n):
    """The header block's dict, or None when the Python decoder must read it (a header
    type RPC does not use, a name that is not ASCII, or anything malformed)."""
    cdef dict out = {}
    cdef long long pos = 0, size
    cdef int name_len, kind
    cdef object name, value
    while pos < n:
        name_len = p[pos]
        pos += 1
        if name_len == 0 or pos + name_len + 1 > n:
            return None
        name = _cached_str(0, p + pos, name_len)
        if name is None:
            return None
        pos += name_len
        kind = p[pos]
        pos += 1
        if kind == 4:  # int32
            if pos + 4 > n:
                return None
            value = <int32_t>_be32(p + pos)
            pos += 4
        elif kind == 7 or kind == 6:  # string, byte buffer
            if pos + 2 > n:
                return None
            size = (<long long>p[pos] << 8) | p[pos + 1]
            pos += 2
            if pos + size > n:
                return None
            if kind == 7:
                try:
                    value = _cached_str(1, p + pos, <int>size)
                except UnicodeDecodeError:
                    return None
            else:
                value = PyBytes_FromStringAndSize(<const char *>p + pos, size)
            pos += size
        elif kind == 0:
            value = True
        elif kind == 1:
            value = False
        else:
            return None
        out[name] = value
    return out


cdef class Decoder:
    """Splits a byte stream into messages ``(headers, payload)``: the twin of
    ``actors.ipc._eventstream.PyDecoder`` (same attributes, same results)."""

    cdef bytearray _buffer
    cdef long long _need
    cdef public long long max_message
    cdef public long long then_max
    cdef public object error

    def __init__(self, max_message=None, long long then_max=0):
        self._buffer = bytearray()
        self._need = 0
        self.max_message = _MAX_MESSAGE if max_message is None else max_message
        self.then_max = then_max
        self.error = None

    @property
    def buffered(self):
        return len(self._buffer)

    @property
    def expected(self):
        """The size of the incomplete message being read (0 before its prelude)."""
        return self._need

    def feed(self, data):
        if self.error is not None:
            return []
        cdef bytearray buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []  # the rest of a long message: parsed once it is complete
            data = bytes(buffer)
            del buffer[:]
        elif type(data) is not bytes:
            data = bytes(data)
        cdef bytes raw = data
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(raw)
        cdef long long pos = 0, end = PyBytes_GET_SIZE(raw), total, headers_len, stop, start
        cdef uint32_t crc
        cdef list out = []
        cdef object headers
        self._need = 0
        try:
            while end - pos >= 12:
                total = _be32(p + pos)
                headers_len = _be32(p + pos + 4)
                crc = _be32(p + pos + 8)
                if (_crc32(0, p + pos, 8) != crc or total > self.max_message or total < 16
                        or headers_len > total - 16 or headers_len > _MAX_HEADERS):
                    _check_prelude(total, headers_len, crc, raw[pos:pos + 8], self.max_message)
                if end - pos < total:
                    self._need = total
                    break
                stop = pos + total - 4
                if _crc32(crc, p + pos + 8, stop - pos - 8) != _be32(p + stop):
                    _body(raw, pos, total, headers_len, crc)  # raises, saying why
                start = pos + 12
                if headers_len:
                    headers = _headers(p + start, headers_len)
                    if headers is None:
                        headers = _decode_headers(raw[start:start + headers_len])
                else:
                    headers = {}
                out.append((headers, raw[start + headers_len:stop]))
                pos += total
                if self.then_max:
                    self.max_message, self.then_max = self.then_max, 0
        except _Error as exc:
            self.error = exc
            return out
        if pos < end:
            buffer += memoryview(raw)[pos:]
        return out


_TYPE = b"\x0d:message-type\x04"
_FLAGS = b"\x0e:message-flags\x04"
_STREAM = b"\x0a:stream-id\x04"


cdef class Template:
    """The messages of one kind (type, flags and extra headers) but for their stream id
    and payload: the twin of ``actors.ipc._rpc.PyTemplate``."""

    cdef readonly bytes before
    cdef readonly bytes after
    cdef readonly long long headers_len

    def __init__(self, int32_t message_type, int32_t flags, bytes extra=b""):
        cdef bytearray before = bytearray(_TYPE)
        before += (<uint32_t>message_type).to_bytes(4, "big")
        before += _FLAGS
        before += (<uint32_t>flags).to_bytes(4, "big")
        before += _STREAM
        self.before = bytes(before)
        self.after = extra
        self.headers_len = len(self.before) + 4 + len(extra)
        if self.headers_len > _MAX_HEADERS:
            raise _Error(f"{self.headers_len} bytes of headers exceed the limit of "
                         f"{_MAX_HEADERS}")

    def message(self, int32_t stream_id, payload=b""):
        """The message on ``stream_id`` carrying ``payload``."""
        cdef Py_buffer view
        cdef const uint8_t *src
        cdef long long size, total
        cdef bint held = False
        cdef bytes out
        cdef uint8_t *q
        cdef uint8_t *at
        if type(payload) is bytes:
            src = <const uint8_t *>PyBytes_AS_STRING(payload)
            size = PyBytes_GET_SIZE(payload)
        else:
            PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
            held = True
            src = <const uint8_t *>view.buf
            size = view.len
        try:
            total = self.headers_len + size + 16
            if total > _MAX_MESSAGE:
                raise _Error(f"a message of {total} bytes exceeds the eventstream limit of "
                             f"{_MAX_MESSAGE} bytes (24 MiB)")
            out = PyBytes_FromStringAndSize(NULL, total)
            q = <uint8_t *>PyBytes_AS_STRING(out)
            _put32(q, <uint32_t>total)
            _put32(q + 4, <uint32_t>self.headers_len)
            _put32(q + 8, _crc32(0, q, 8))
            at = q + 12
            memcpy(at, PyBytes_AS_STRING(self.before), PyBytes_GET_SIZE(self.before))
            at += PyBytes_GET_SIZE(self.before)
            _put32(at, <uint32_t>stream_id)
            at += 4
            memcpy(at, PyBytes_AS_STRING(self.after), PyBytes_GET_SIZE(self.after))
            at += PyBytes_GET_SIZE(self.after)
            if size:
                memcpy(at, src, size)
            _put32(q + total - 4, _crc32(0, q, total - 4))
            return out
        finally:
            if held:
                PyBuffer_Release(&view)
