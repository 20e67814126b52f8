"""Read PyTorch ``.pth`` state dicts with numpy alone, so no build or device needs torch.

Two on-disk formats exist. The zip format (torch >= 1.6) holds ``*/data.pkl``
with each storage in ``*/data/<key>``. The older pickle-stream format is five
things back to back: the magic number, the protocol version and a sys-info
dict (three small pickles), the object pickle whose tensors name their storage
by a persistent id, the list of storage keys, then each storage as an int64
element count followed by its raw little-endian data.

The unpickler is restricted: it resolves only the tensor-rebuild functions,
the storage classes and ``OrderedDict``, so a ``.pth`` file cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._errors import WeightsError

_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stands in for ``torch.<X>Storage``: only its element dtype matters here."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A storage placeholder; ``data`` is filled once the raw bytes are read."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _LazyTensor:
    """A tensor view onto a storage whose bytes may come after the pickle."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise WeightsError("a tensor refers to a storage that the file does not contain")
        item = data.dtype.itemsize
        if not self.size:
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride],
            writeable=False)
        return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_rest: object) -> _LazyTensor:
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: _LazyTensor, *_rest: object) -> _LazyTensor:
    return data


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"refusing to load {module}.{name}: only tensors and dicts of tensors "
                "are read from a .pth file") from None

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsError(f"unknown persistent id {pid!r} in a .pth file")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"unknown storage type {storage_type!r} in a .pth file")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(storage_type.dtype)
        return storage


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_legacy(f: IO[bytes], path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    magic = _Unpickler(f, {}).load()  # restricted too: every pickle in the file is untrusted
    if magic != _MAGIC:
        raise WeightsError(f"{path}: not a PyTorch file (bad magic number)")
    protocol = _Unpickler(f, {}).load()
    if protocol != 1001:
        raise WeightsError(f"{path}: unsupported PyTorch protocol {protocol}")
    sys_info = _Unpickler(f, {}).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise WeightsError(f"{path}: big-endian PyTorch files are not supported")
    result = _Unpickler(f, storages).load()
    keys = _Unpickler(f, {}).load()
    for key in keys:
        storage = storages[str(key)]
        count = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        raw = f.read(count * storage.dtype.itemsize)
        if len(raw) != count * storage.dtype.itemsize:
            raise WeightsError(f"{path}: truncated storage {key}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _materialise(result)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise WeightsError(f"{path}: a zip without data.pkl is not a PyTorch file")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
            raise WeightsError(f"{path}: big-endian PyTorch files are not supported")
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as f:
            result = _Unpickler(f, storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=storage.dtype)
    return _materialise(result)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``.pth``/``.pt`` state dict as ``{name: numpy array}``, in file order.

    Raises WeightsError (a ValueError) for a file that is not a PyTorch state
    dict or that asks for anything but tensors.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            result = _load_zip(path)
        else:
            with path.open("rb") as f:
                result = _load_legacy(f, path)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read as a PyTorch state dict: {e}") from e
    if isinstance(result, dict) and "state_dict" in result:
        result = result["state_dict"]
    if not isinstance(result, dict):
        raise WeightsError(f"{path}: holds a {type(result).__name__}, not a state dict")
    return {str(k): v for k, v in result.items() if isinstance(v, np.ndarray)}
