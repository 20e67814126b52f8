"""Image-to-tensor conversion: the Python front over the ``_native`` Cython kernels.

:func:`to_tensor` turns a decoded image (HxWx3 RGB, HxW grey or HxWx4 RGBA,
uint8) into a model's input tensor as a :class:`TensorSpec` describes it, in one
pass: resize (bilinear or area, optionally letterboxed), channel order,
normalisation, layout and dtype, written straight into ``out`` when given
(for example the runtime's input buffer). :func:`decode` reads JPEG bytes or
files, shrinking while decoding when the model input is much smaller.

Each kernel has a pure-numpy twin (``*_reference``); it is what the tests
compare the kernel with, and the fallback when the extension is not built (a
log line says so once, at import).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ._decode import DecodeError, decode
from ._reference import to_tensor_reference as _fill_reference
from ._spec import (
    ChannelOrder,
    ConversionError,
    DType,
    Layout,
    Placement,
    ResizeMethod,
    TensorSpec,
    TensorSpecError,
    placement,
)

__all__ = [
    "NATIVE",
    "ChannelOrder",
    "ConversionError",
    "DType",
    "DecodeError",
    "Layout",
    "Placement",
    "ResizeMethod",
    "TensorSpec",
    "TensorSpecError",
    "decode",
    "normalize_chw",
    "normalize_chw_reference",
    "placement",
    "to_tensor",
    "to_tensor_reference",
]

log = logging.getLogger("actors.ml")

_native: Any
try:
    _native = importlib.import_module("actors._native_imgconv")
except ImportError:  # pragma: no cover - exercised by the no-extension CI leg
    _native = None
    log.warning("actors._native_imgconv is not built: image conversion uses the numpy "
                "fallback (slower); reinstall with a C compiler to build it")

NATIVE = _native is not None

_LAYOUT_CODE = {"NCHW": 0, "NHWC": 1}
_DTYPE_CODE = {"float32": 0, "uint8": 1, "int8": 2}
_MODE_CODE = {"bilinear": 0, "area": 1}


@lru_cache(maxsize=64)
def _kernel_args(spec: TensorSpec) -> tuple[float, ...]:
    """The spec folded into the kernel's per-channel numbers: mul, add, border value."""
    mul, add = spec.affine()
    pad = tuple(spec.pad_value * m + a for m, a in zip(mul, add, strict=True))
    return (*mul, *add, *pad)


def _pixels(image: np.ndarray) -> np.ndarray:
    """Check the image; return it as HxWxC (C in 1, 3, 4) with packed pixels."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ConversionError(
            f"expected a uint8 image array, got {type(image).__name__} "
            f"{getattr(image, 'dtype', '')}".rstrip())
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ConversionError(
            f"expected an HxW grey, HxWx3 RGB or HxWx4 RGBA uint8 image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ConversionError(f"the image is empty: shape {image.shape}")
    c = image.shape[2]
    if image.strides[2] != 1 or image.strides[1] != c or image.strides[0] < 0:
        image = np.ascontiguousarray(image)
    return image


def _output(spec: TensorSpec, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return np.empty(spec.shape, dtype=spec.dtype)
    inner = spec.shape[1:]
    if (not isinstance(out, np.ndarray) or out.dtype != np.dtype(spec.dtype)
            or not out.flags.c_contiguous or not out.flags.writeable
            or out.shape[-3:] != inner or out.size != 3 * spec.height * spec.width):
        raise ConversionError(
            f"out must be a writable C-contiguous {spec.dtype} array of shape {spec.shape} "
            f"or {inner}, got {getattr(out, 'shape', None)} {getattr(out, 'dtype', None)}")
    return out


def to_tensor(image: np.ndarray, spec: TensorSpec, out: np.ndarray | None = None, *,
              image_order: ChannelOrder = "RGB", threads: int = 1) -> np.ndarray:
    """Convert a uint8 image to the tensor ``spec`` describes; returns ``out`` (or a new array).

    ``image`` is HxW grey, HxWx3 (in ``image_order``: RGB as Pillow decodes,
    BGR as OpenCV does) or HxWx4 RGBA (alpha ignored). ``out``, when given, must
    be a C-contiguous array of the spec's dtype with shape ``spec.shape`` or
    ``spec.shape[1:]`` (one slot of a batch); it is filled completely. Runs
    without the GIL in the native kernel: call it from a worker thread.
    ``threads`` > 1 splits the rows over that many threads (at most 8): worth it
    for large frames when cores are idle, as memory reads then overlap.
    Raises ConversionError for an image or ``out`` that does not fit.
    """
    pixels = _pixels(image)
    target = _output(spec, out)
    where = placement(pixels.shape[:2], spec)
    swap = image_order != spec.channel_order
    if _native is None:
        _fill_reference(pixels, spec, where, swap, target)
        return target
    _native.resize_convert(
        pixels, target, spec.height, spec.width, where.top, where.left, where.height,
        where.width, _LAYOUT_CODE[spec.layout], _DTYPE_CODE[spec.dtype],
        _MODE_CODE[spec.resize], swap, *_kernel_args(spec), threads=max(1, threads))
    return target


def to_tensor_reference(image: np.ndarray, spec: TensorSpec, out: np.ndarray | None = None, *,
                        image_order: ChannelOrder = "RGB") -> np.ndarray:
    """numpy twin of :func:`to_tensor` (float64 inside; the kernel is fixed point)."""
    pixels = _pixels(image)
    target = _output(spec, out)
    _fill_reference(pixels, spec, placement(pixels.shape[:2], spec),
                    image_order != spec.channel_order, target)
    return target


# The first kernel: no resize, HxWx3 -> 3xHxW float32. Kept for callers that
# resize elsewhere (actors.ml.tasks); new code uses to_tensor.

def _params(mean: Sequence[float], std: Sequence[float], scale: float) -> tuple[np.ndarray, ...]:
    mean_a = np.asarray(mean, dtype=np.float32).reshape(3)
    std_a = np.asarray(std, dtype=np.float32).reshape(3)
    if np.any(std_a == 0):
        raise ValueError(f"std must be non-zero per channel, got {list(std_a)}")
    mul = (np.float32(scale) / std_a).astype(np.float32)
    add = (-mean_a / std_a).astype(np.float32)
    return mul, add


def _check(image: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    h, w = image.shape[:2]
    if out is None:
        return np.empty((3, h, w), dtype=np.float32)
    if out.shape != (3, h, w) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape (3, {h}, {w}), "
                         f"got {out.shape} {out.dtype}")
    return out


def normalize_chw_reference(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                            scale: float = 1.0 / 255.0, out: np.ndarray | None = None
                            ) -> np.ndarray:
    """numpy twin of :func:`normalize_chw`."""
    out = _check(image, out)
    mul, add = _params(mean, std, scale)
    planes = image.transpose(2, 0, 1)
    np.multiply(planes, mul[:, None, None], out=out, casting="unsafe")
    np.add(out, add[:, None, None], out=out)
    return out


def normalize_chw(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                  scale: float = 1.0 / 255.0, out: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 with ``(pixel * scale - mean) / std`` per channel.

    Writes into ``out`` when given (for example the runtime's input buffer).
    Raises ValueError for a wrong shape or dtype or a zero std.
    """
    if _native is None:
        return normalize_chw_reference(image, mean, std, scale, out)
    out = _check(image, out)
    mul, add = _params(mean, std, scale)
    _native.hwc_to_chw_normalize(np.ascontiguousarray(image), out, mul, add)
    return out
