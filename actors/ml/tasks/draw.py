"""Draw detection boxes onto an image and write it (Greengrass's detection components do too)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .detection import Detection


def draw_detections(image: np.ndarray, detections: Sequence[Detection],
                    colour: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    """A copy of the HxWx3 uint8 image with each box and ``label : score`` drawn on it."""
    canvas = Image.fromarray(image).convert("RGB")
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(min(canvas.size) / 200))
    for d in detections:
        x0, y0, x1, y1 = d.box
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = f"{d.label} : {d.score:.2f}"
        left, top, right, bottom = pen.textbbox((x0, y0), text)
        y_text = max(0.0, y0 - (bottom - top) - 2 * width)
        pen.rectangle((x0, y_text, x0 + (right - left) + 4, y_text + (bottom - top) + 4),
                      fill=colour)
        pen.text((x0 + 2, y_text + 1), text, fill=(255, 255, 255))
    return canvas


def write_detections(image: np.ndarray, detections: Sequence[Detection], path: str | Path,
                     quality: int = 95) -> Path:
    """Draw the boxes and write the image to ``path`` (format from its suffix), atomically."""
    path = Path(path)
    canvas = draw_detections(image, detections)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
            canvas.save(f, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
