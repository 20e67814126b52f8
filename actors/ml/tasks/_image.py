"""Images in, model tensors out: decoding, resizing, and the calls into actors.ml.convert.

:func:`prepare` is the fast path every classifier uses: JPEGs are decoded at
the smallest 1/2, 1/4 or 1/8 scale that still covers the model's resize
(:func:`actors.ml.convert.decode`), the centre crop is taken as a view of the
decoded pixels, and one native pass resizes, normalises and lays the crop out
as NCHW float32 straight into the caller's buffer (a slot of a batch).
:func:`load_image`, :func:`fit` and :func:`to_chw` are the plain Pillow path,
kept for detection's pyramid and as the reference the tests compare with.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..convert import DecodeError, TensorSpec, decode, normalize_chw, to_tensor
from ..models import Preprocess

#: An image file or buffer cannot be decoded (the message names the file).
ImageError = DecodeError


def load_image(source: str | Path | bytes | np.ndarray) -> np.ndarray:
    """A path, encoded bytes or an array -> an HxWx3 uint8 RGB array.

    Greyscale and RGBA images are converted to RGB. Raises ImageError naming
    the file when it cannot be decoded.
    """
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ImageError(f"expected an HxWx3 uint8 image, got {array.shape} {array.dtype}")
        return np.ascontiguousarray(array[:, :, :3])
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot decode the image {name}: {e}") from e


def tensor_spec(preprocess: Preprocess, shrink: float = 1.0) -> TensorSpec:
    """The conversion of ``preprocess`` for a crop ``shrink`` times the model's size:
    area averaging when shrinking by more than 1.5x (as Pillow's antialiased
    resize does), bilinear otherwise."""
    height, width = preprocess.size[-2:]
    return TensorSpec(height, width, "NCHW", "float32", mean=preprocess.mean, std=preprocess.std,
                      scale=preprocess.scale, resize="area" if shrink > 1.5 else "bilinear")


def _crop(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """The part of ``image`` that :func:`fit` keeps, as a view: the centre region that
    becomes ``size`` once the shorter side is scaled to ``resize``."""
    if not preprocess.resize:
        return image
    out_h, out_w = preprocess.size[-2:]
    h, w = image.shape[:2]
    scale = preprocess.resize / min(h, w)
    crop_h, crop_w = min(h, max(1, round(out_h / scale))), min(w, max(1, round(out_w / scale)))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[top:top + crop_h, left:left + crop_w]


def prepare(source: str | Path | bytes | np.ndarray, preprocess: Preprocess,
            out: np.ndarray | None = None) -> np.ndarray:
    """A path, encoded bytes or an HxWx3 array -> the model's 3xHxW float32 input. Blocks.

    ``out`` (3xHxW or 1x3xHxW float32, C-contiguous; a slot of a batch) is
    filled and returned; without it a new array is. Raises ImageError naming
    the file when it cannot be decoded, FileNotFoundError for a missing file.
    """
    if not preprocess.size:
        return to_chw(load_image(source), preprocess, out)
    side = preprocess.resize or max(preprocess.size[-2:])
    if isinstance(source, np.ndarray):
        pixels = load_image(source)
    else:
        pixels = decode(source if isinstance(source, bytes) else Path(source), (side, side))
    crop = _crop(pixels, preprocess)
    spec = tensor_spec(preprocess, crop.shape[0] / preprocess.size[-2])
    target = out if out is not None else np.empty(spec.shape[1:], np.float32)
    to_tensor(crop, spec, target)
    return target


def resize(image: np.ndarray, width: int, height: int, *, area: bool = False) -> np.ndarray:
    """Resize an HxWx3 uint8 image; ``area`` averages source pixels (for shrinking)."""
    method = Image.Resampling.BOX if area else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def fit(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Bring an image to the model's input size: shorter side to ``resize``, then centre crop."""
    if not preprocess.size:
        return image
    out_h, out_w = preprocess.size
    h, w = image.shape[:2]
    if preprocess.resize:
        scale = preprocess.resize / min(h, w)
        w2, h2 = max(out_w, round(w * scale)), max(out_h, round(h * scale))
        image = resize(image, w2, h2)
        top, left = (h2 - out_h) // 2, (w2 - out_w) // 2
        return np.ascontiguousarray(image[top:top + out_h, left:left + out_w])
    return resize(image, out_w, out_h)


def to_chw(image: np.ndarray, preprocess: Preprocess, out: np.ndarray | None = None
           ) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 normalised as the model was trained (no resizing)."""
    return normalize_chw(image, preprocess.mean, preprocess.std, preprocess.scale, out=out)
