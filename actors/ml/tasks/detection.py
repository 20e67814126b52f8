"""Face detection with MTCNN: image pyramid -> PNet proposals -> RNet -> ONet, in numpy.

The three networks run through any :class:`~actors.ml.runtimes.Runner`; the
glue between them (pyramid, box regression, squaring, cropping, NMS) follows
facenet-pytorch's ``detect_face`` so the pretrained weights see the inputs
they were trained on. Boxes are in the original image's pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import numpy as np

from ..models import ModelManifest
from ..runtimes import Runner
from ._image import load_image, resize, to_chw

THRESHOLD = 0.3


@dataclass(frozen=True)
class Detection:
    """One detected object: label, score and box ``(x_min, y_min, x_max, y_max)`` in pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class MtcnnSettings:
    """facenet-pytorch's defaults: smallest face 20 px, stage thresholds, pyramid factor."""

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union"
        ) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first.

    ``method`` "union" compares intersection over union, "min" intersection
    over the smaller box (MTCNN's last stage). Pixel-inclusive areas (+1).
    """
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[-1])
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


class FaceDetector:
    """MTCNN over three runners (PNet, RNet, ONet) and the model folder's preprocessing."""

    def __init__(self, pnet: Runner, rnet: Runner, onet: Runner, manifest: ModelManifest,
                 settings: MtcnnSettings | None = None, *, label: str = "face") -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.preprocess = manifest.preprocess
        self.settings = settings or MtcnnSettings()
        self.label = label

    def _tensor(self, image: np.ndarray) -> np.ndarray:
        return to_chw(np.ascontiguousarray(image), self.preprocess)

    def _crops(self, image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
        """Crop every box (clipped to the image, 1-based like facenet) and resize to size^2."""
        h, w = image.shape[:2]
        ints = np.trunc(boxes[:, :4]).astype(np.int64)
        x = np.maximum(ints[:, 0], 1)
        y = np.maximum(ints[:, 1], 1)
        ex = np.minimum(ints[:, 2], w)
        ey = np.minimum(ints[:, 3], h)
        valid = (ey > y - 1) & (ex > x - 1)
        batch = np.empty((int(valid.sum()), 3, size, size), dtype=np.float32)
        for j, k in enumerate(np.flatnonzero(valid)):
            crop = image[y[k] - 1:ey[k], x[k] - 1:ex[k]]
            batch[j] = self._tensor(resize(np.ascontiguousarray(crop), size, size, area=True))
        return batch, valid

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        h, w = image.shape[:2]
        scale = 12.0 / s.min_face_size
        smallest = min(h, w) * scale
        found = []
        while smallest >= 12:
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            x = self._tensor(resize(image, ws, hs, area=True))[None]
            out = self.pnet.run_sync(x)
            reg, prob = out["regression"][0], out["prob"][0, 1]
            ys, xs = np.nonzero(prob >= s.thresholds[0])
            if ys.size:
                q1x = np.floor((2 * xs + 1) / scale)
                q1y = np.floor((2 * ys + 1) / scale)
                q2x = np.floor((2 * xs + 12) / scale)
                q2y = np.floor((2 * ys + 12) / scale)
                boxes = np.stack([q1x, q1y, q2x, q2y, prob[ys, xs], *reg[:, ys, xs]], axis=1)
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= s.factor
            smallest *= s.factor
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        refined = np.stack([boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
                            boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh,
                            boxes[:, 4]], axis=1)
        return _square(refined)

    def detect_sync(self, image: str | Path | bytes | np.ndarray,
                    threshold: float = THRESHOLD) -> list[Detection]:
        """Faces in the image, best first, with ONet score >= ``threshold``. Blocks."""
        pixels = load_image(image)
        s = self.settings
        boxes = self._proposals(pixels)
        if boxes.shape[0]:
            batch, valid = self._crops(pixels, boxes, 24)
            boxes = boxes[valid]
            out = self.rnet.run_sync(batch)
            score = out["prob"][:, 1]
            keep = score > s.thresholds[1]
            boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
            reg = out["regression"][keep]
            pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
            boxes = _square(_regress(boxes[pick], reg[pick]))
        if not boxes.shape[0]:
            return []
        batch, valid = self._crops(pixels, boxes, 48)
        boxes = boxes[valid]
        out = self.onet.run_sync(batch)
        score = out["prob"][:, 1]
        keep = score > max(s.thresholds[2], threshold)
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1)
        marks = out["landmarks"][keep]
        reg = out["regression"][keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        px = w[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
        py = h[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return [Detection(self.label, float(boxes[i, 4]),
                          (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                           float(boxes[i, 3])),
                          tuple((float(a), float(b)) for a, b in zip(px[i], py[i], strict=True)))
                for i in pick]

    async def detect(self, image: str | Path | bytes | np.ndarray,
                     threshold: float = THRESHOLD) -> list[Detection]:
        """:meth:`detect_sync` in a worker thread."""
        return await anyio.to_thread.run_sync(self.detect_sync, image, threshold)


def top_detections(detections: Sequence[Detection], k: int = 5, threshold: float = THRESHOLD
                   ) -> list[Detection]:
    """The ``k`` best detections scoring at least ``threshold`` (Greengrass's top-k rule)."""
    ranked = sorted((d for d in detections if d.score >= threshold), key=lambda d: -d.score)
    return ranked[:k]
