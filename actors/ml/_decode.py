"""Image files and encoded bytes -> HxWx3 uint8 RGB arrays, shrunk while decoding when it pays.

Pillow decodes JPEG with libjpeg-turbo, which can scale by 1/2, 1/4 or 1/8
inside the inverse DCT (Pillow's "draft" mode): a 1080p camera frame bound
for a 224x224 model is decoded at 480x270 for a fraction of the full cost.
The reduction never goes below the size asked for, so the resize that follows
still only shrinks.

When the optional ``simplejpeg`` package is installed, JPEG data goes through
it instead: the same libjpeg-turbo scaled decode, without Pillow's chunked
reads and 4-byte pixel storage (about 10% less time per 1080p frame here).
Pillow stays the decoder of record: any JPEG simplejpeg refuses (CMYK,
lossless, damaged) is decoded by Pillow, which says what is wrong.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ActorsError

_simplejpeg: Any
try:
    _simplejpeg = importlib.import_module("simplejpeg")
except ImportError:  # optional: Pillow decodes everything
    _simplejpeg = None

JPEG_SIGNATURE = b"\xff\xd8\xff"


class DecodeError(ActorsError, ValueError):
    """An image file or buffer cannot be decoded."""


def decode(source: bytes | bytearray | memoryview | str | os.PathLike[str],
           target_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image (encoded bytes or a file path) to an HxWx3 uint8 RGB array.

    With ``target_size`` = (height, width), the model input it is bound for,
    JPEG images are decoded at the smallest 1/2, 1/4 or 1/8 scale that still
    covers that size in both directions (other formats decode at full size).
    Grey, CMYK, palette and RGBA images come out as RGB. Raises DecodeError
    naming the file (or ``<bytes>``) when it cannot be decoded, and
    FileNotFoundError for a missing file.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    if target_size is not None and (target_size[0] < 1 or target_size[1] < 1):
        raise DecodeError(f"target_size must be positive (height, width), got {target_size}")
    data: bytes | bytearray | memoryview
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file {name} does not exist")
        data = path.read_bytes()
    else:
        data = source
    if _simplejpeg is not None and bytes(data[:3]) == JPEG_SIGNATURE:
        fast = _decode_simplejpeg(data, target_size)
        if fast is not None:
            return fast
    return _decode_pillow(data, target_size, name)


def _decode_simplejpeg(data: bytes | bytearray | memoryview,
                       target_size: tuple[int, int] | None) -> np.ndarray | None:
    """libjpeg-turbo through simplejpeg; None when it cannot (Pillow then decides).

    libjpeg-turbo can scale by any M/8; the reduction is kept to 1/2, 1/4 or
    1/8 as Pillow's draft mode does, so the size never depends on the decoder.
    """
    assert _simplejpeg is not None
    try:
        min_height = min_width = 0
        if target_size is not None:
            full_h, full_w = _simplejpeg.decode_jpeg_header(data)[:2]
            factor = _draft_factor((full_h, full_w), target_size)
            min_height, min_width = -(-full_h // factor), -(-full_w // factor)
        pixels: np.ndarray = _simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=min_height, min_width=min_width)
    except (ValueError, RuntimeError, OSError):
        return None
    return pixels


def _draft_factor(size: tuple[int, int], target_size: tuple[int, int]) -> int:
    """The largest of 1, 2, 4, 8 that divides ``size`` into ``target_size`` (Pillow's rule)."""
    most = min(s // t for s, t in zip(size, target_size, strict=True))
    return next(f for f in (8, 4, 2, 1) if f <= most or f == 1)


def _decode_pillow(data: bytes | bytearray | memoryview, target_size: tuple[int, int] | None,
                   name: str) -> np.ndarray:
    stream = io.BytesIO(data)
    try:
        with Image.open(stream) as image:
            if target_size is not None and image.format == "JPEG":
                height, width = target_size
                image.draft("RGB", (width, height))
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode the image {name}: {exc}; "
                          "give a JPEG, PNG or another format Pillow reads") from exc
