"""Images in, model tensors out: decoding, resizing, and the one call into actors.ml.convert.

Everything that turns pixels into a model's input goes through
:func:`to_chw`, so the richer conversion API (decode-time scaling, writing
straight into the runtime's buffer) replaces one function here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import ActorsError
from ..convert import normalize_chw
from ..models import Preprocess


class ImageError(ActorsError, ValueError):
    """An image file or buffer cannot be decoded."""


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
