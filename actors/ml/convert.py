"""Image-to-tensor conversion: the Python front over the ``_native`` Cython kernels.

Each kernel has a pure-numpy twin here; it is the reference the tests compare
the kernel with, and the fallback when the extension is not built (a log line
says so once, at import).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("actors.ml")

try:
    from .. import _native_imgconv as _native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised by the no-extension CI leg
    _native = None
    log.warning("actors._native_imgconv is not built: image conversion uses the numpy "
                "fallback (slower); reinstall with a C compiler to build it")

NATIVE = _native is not None


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
