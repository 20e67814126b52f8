"""Inference results in Greengrass's message format, serialised with orjson.

The DLR and TensorFlow Lite inference components publish::

    {"timestamp": "2021-01-01 00:00:00.000000",
     "inference-type": "image-classification",
     "inference-description": "Top 5 predictions with score 0.3 or above ",
     "inference-results": [{"Label": "tiger cat", "Score": "0.5882353"}]}

with ``"inference-type": "object-detection"`` and a ``"Boundaries"`` entry
(``"[x_min y_min x_max y_max]"``, numpy's print form, which their drawing code
parses) for detections. Scores and boundaries are strings there, and so here.
Our boundaries are in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from .classification import Prediction
from .detection import Detection

IMAGE_CLASSIFICATION = "image-classification"
OBJECT_DETECTION = "object-detection"


def _timestamp(now: datetime | None) -> str:
    # str(datetime.now()) drops the microseconds when they are 0; keep the width fixed.
    return (now or datetime.now()).isoformat(sep=" ", timespec="microseconds")


def _description(top_k: int, threshold: float) -> str:
    return f"Top {top_k} predictions with score {threshold} or above "


def _score(value: float) -> str:
    return str(np.float32(value))


def classification_message(predictions: Sequence[Prediction], top_k: int = 5,
                           threshold: float = 0.3, now: datetime | None = None
                           ) -> dict[str, Any]:
    """The message a Greengrass image-classification component publishes."""
    return {
        "timestamp": _timestamp(now),
        "inference-type": IMAGE_CLASSIFICATION,
        "inference-description": _description(top_k, threshold),
        "inference-results": [{"Label": p.label, "Score": _score(p.score)} for p in predictions],
    }


def boundaries(box: Sequence[float]) -> str:
    """``"[x_min y_min x_max y_max]"`` as numpy prints a float32 array."""
    return str(np.asarray(box, dtype=np.float32))


def detection_message(detections: Sequence[Detection], top_k: int = 5, threshold: float = 0.3,
                      now: datetime | None = None) -> dict[str, Any]:
    """The message a Greengrass object-detection component publishes."""
    return {
        "timestamp": _timestamp(now),
        "inference-type": OBJECT_DETECTION,
        "inference-description": _description(top_k, threshold),
        "inference-results": [{"Label": d.label, "Score": _score(d.score),
                               "Boundaries": boundaries(d.box)} for d in detections],
    }


def dumps(message: dict[str, Any]) -> bytes:
    """The message as compact JSON bytes, ready to publish."""
    return orjson.dumps(message)


def parse_boundaries(text: str) -> tuple[float, float, float, float]:
    """Read a ``Boundaries`` string back (the way Greengrass's drawing code does)."""
    values = [float(v) for v in text.strip()[1:-1].split()]
    if len(values) != 4:
        raise ValueError(f"Boundaries must hold 4 numbers, got {text!r}")
    return values[0], values[1], values[2], values[3]
