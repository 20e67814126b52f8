"""TVM's ``.params`` file (an NDArray list), the weights file of a DLR graph-executor folder.

Layout (little-endian): list magic 0xF7E58D4F05049CB7, a reserved u64, the
names (u64 count, then u64 length + UTF-8 bytes each), the arrays (u64 count,
then each: array magic 0xDD5E40F096B4A13F, reserved u64, device type and id
as i32, ndim i32, dtype code/bits/lanes as u8/u8/u16, the shape as i64s, the
byte size as i64, the raw data).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import WeightsError

LIST_MAGIC = 0xF7E58D4F05049CB7
ARRAY_MAGIC = 0xDD5E40F096B4A13F
_CPU = 1
_CODES = {"i": 0, "u": 1, "f": 2}
_KINDS = {v: k for k, v in _CODES.items()}


def dumps(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays (C order, CPU) the way ``tvm.runtime.save_param_dict`` does."""
    out = [struct.pack("<QQ", LIST_MAGIC, 0), struct.pack("<Q", len(arrays))]
    for name in arrays:
        raw = name.encode()
        out.append(struct.pack("<Q", len(raw)) + raw)
    out.append(struct.pack("<Q", len(arrays)))
    for name, value in arrays.items():
        array = np.ascontiguousarray(value)
        if array.dtype.kind not in _CODES:
            raise WeightsError(f"array {name!r}: dtype {array.dtype} has no TVM code")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        out.append(struct.pack("<QQiii", ARRAY_MAGIC, 0, _CPU, 0, array.ndim))
        out.append(struct.pack("<BBH", _CODES[array.dtype.kind], array.dtype.itemsize * 8, 1))
        out.append(struct.pack(f"<{array.ndim}q", *array.shape))
        out.append(struct.pack("<q", len(data)) + data)
    return b"".join(out)


def save(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    Path(path).write_bytes(dumps(arrays))


def loads(blob: bytes) -> dict[str, np.ndarray]:
    """Read a ``.params`` blob back; raises WeightsError when it is not one."""
    view = memoryview(blob)
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(view):
            raise WeightsError("truncated TVM params file")
        values = struct.unpack_from(fmt, view, pos)
        pos += size
        return values

    magic, _ = take("<QQ")
    if magic != LIST_MAGIC:
        raise WeightsError("not a TVM params file (bad magic)")
    (count,) = take("<Q")
    names = []
    for _ in range(count):
        (length,) = take("<Q")
        names.append(bytes(view[pos:pos + length]).decode())
        pos += length
    (count2,) = take("<Q")
    if count2 != count:
        raise WeightsError("TVM params file: names and arrays differ in number")
    arrays = {}
    for name in names:
        magic, _, _, _, ndim = take("<QQiii")
        if magic != ARRAY_MAGIC:
            raise WeightsError(f"TVM params file: bad array magic for {name!r}")
        code, bits, _lanes = take("<BBH")
        shape = take(f"<{ndim}q")
        (size,) = take("<q")
        dtype = np.dtype(f"<{_KINDS[code]}{bits // 8}")
        arrays[name] = np.frombuffer(bytes(view[pos:pos + size]), dtype=dtype).reshape(shape)
        pos += size
    return arrays
