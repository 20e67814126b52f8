"""The pure-numpy twin of the native image-to-tensor kernel.

It computes in float64 what ``_native/imgconv_kernels.h`` computes in fixed
point: the same geometry (OpenCV's INTER_LINEAR pixel centres with clamped
edges; INTER_AREA coverage weights), the same channel order, normalisation,
quantisation (round half up, clamped) and letterbox border. The tests hold
the kernel to it, and it is the fallback when the extension is not built.
"""

from __future__ import annotations

import math

import numpy as np

from ._spec import Placement, TensorSpec


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: first source index, second source index, weight of the second."""
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    s = np.maximum(s, 0.0)
    i0 = np.floor(s).astype(np.intp)
    f = s - i0
    edge = i0 >= n_in - 1
    i0[edge] = n_in - 1
    f[edge] = 0.0
    return i0, np.minimum(i0 + 1, n_in - 1), f


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` weights: each output averages the source span it covers."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for d in range(n_out):
        lo, hi = d * scale, (d + 1) * scale
        for i in range(math.floor(lo), min(n_in, math.ceil(hi))):
            m[d, i] = (min(i + 1, hi) - max(i, lo)) / scale
    return m


def _resize_axis(image: np.ndarray, n_out: int, axis: int, area: bool) -> np.ndarray:
    n_in = image.shape[axis]
    if area and n_in > n_out:
        return np.moveaxis(np.tensordot(area_matrix(n_in, n_out), image, axes=(1, axis)), 0, axis)
    i0, i1, f = bilinear_taps(n_in, n_out)
    shape = [1] * image.ndim
    shape[axis] = n_out
    f = f.reshape(shape)
    blended: np.ndarray = np.take(image, i0, axis=axis) * (1.0 - f)
    blended += np.take(image, i1, axis=axis) * f
    return blended


def resize_reference(image: np.ndarray, height: int, width: int, area: bool = False
                     ) -> np.ndarray:
    """HxWxC uint8 -> height x width x C float64, vertical pass first as the kernel does."""
    rows = _resize_axis(image.astype(np.float64), height, 0, area)
    return _resize_axis(rows, width, 1, area)


def as_three_channels(image: np.ndarray) -> np.ndarray:
    """HxW grey, HxWx1, HxWx3 or HxWx4 -> HxWx3 (grey replicated, alpha dropped)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def store(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float values already scaled to the stored unit -> the spec's dtype (round half up)."""
    if spec.dtype == "float32":
        return values.astype(np.float32)
    lo, hi = (0, 255) if spec.dtype == "uint8" else (-128, 127)
    rounded: np.ndarray = np.floor(np.clip(values, lo, hi) + 0.5)
    return rounded.astype(spec.dtype)


def to_tensor_reference(image: np.ndarray, spec: TensorSpec, where: Placement,
                        swap_rb: bool, out: np.ndarray) -> None:
    """Fill ``out`` (the spec's (..., 3, H, W) or (..., H, W, 3) shape) from ``image``."""
    mul, add = spec.affine()
    mul_a, add_a = np.asarray(mul), np.asarray(add)
    pixels = as_three_channels(image)
    if swap_rb:
        pixels = pixels[:, :, ::-1]
    resized = resize_reference(pixels, where.height, where.width, spec.resize == "area")
    full = np.empty((spec.height, spec.width, 3), dtype=np.float64)
    full[...] = spec.pad_value * mul_a + add_a
    full[where.top:where.top + where.height, where.left:where.left + where.width] = (
        resized * mul_a + add_a)
    tensor = store(full, spec)
    if spec.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    out.reshape(tensor.shape)[...] = tensor
