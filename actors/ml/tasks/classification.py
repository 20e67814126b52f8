"""Image classification: pixels -> model -> top-k labels with scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import numpy as np

from ..models import ModelManifest
from ..runtimes import Runner
from ._image import prepare

TOP_K = 5
THRESHOLD = 0.3


@dataclass(frozen=True)
class Prediction:
    """One class the model saw: its index in the labels, its name, its probability."""

    index: int
    label: str
    score: float


def softmax(values: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = values - values.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


def looks_like_probabilities(values: np.ndarray) -> bool:
    """True when every row is non-negative and sums to 1 (within float32 rounding)."""
    return bool(np.all(values >= 0) and np.allclose(values.sum(axis=-1), 1.0, atol=1e-3))


def top_k(scores: np.ndarray, labels: Sequence[str], k: int = TOP_K,
          threshold: float = THRESHOLD, *, apply_softmax: bool | None = None
          ) -> list[Prediction]:
    """The ``k`` best classes of one output row whose probability is at least ``threshold``.

    ``apply_softmax``: True for logits, False for probabilities, None to decide
    from the values. Labels missing for an index show as ``class <index>``.
    """
    row = np.asarray(scores, dtype=np.float32).reshape(-1)
    if apply_softmax is None:
        apply_softmax = not looks_like_probabilities(row)
    probs = softmax(row) if apply_softmax else row
    k = max(0, min(k, probs.size))
    best = np.argpartition(-probs, k - 1)[:k] if k else np.empty(0, dtype=np.intp)
    best = best[np.argsort(-probs[best], kind="stable")]
    return [Prediction(int(i), labels[i] if i < len(labels) else f"class {i}", float(probs[i]))
            for i in best if probs[i] >= threshold]


class Classifier:
    """A classification model with its runner, preprocessing and labels.

    ``await classify(image)`` decodes and prepares the image and runs the model
    in worker threads; ``classify_batch`` takes already prepared tensors, for
    callers that batch.
    """

    def __init__(self, runner: Runner, manifest: ModelManifest, labels: Sequence[str] | None = None,
                 *, top_k: int = TOP_K, threshold: float = THRESHOLD) -> None:
        self.runner = runner
        self.manifest = manifest
        self.labels = list(labels) if labels is not None else manifest.read_labels()
        self.top_k = top_k
        self.threshold = threshold
        self._logits = manifest.output == "logits"

    def prepare(self, image: str | Path | bytes | np.ndarray, out: np.ndarray | None = None
                ) -> np.ndarray:
        """Decode (if needed, shrinking while decoding), crop, resize and normalise: a
        3xHxW float32 tensor, written into ``out`` when given (a slot of a batch). Blocks."""
        return prepare(image, self.manifest.preprocess, out)

    def classify_batch(self, batch: np.ndarray) -> list[list[Prediction]]:
        """Run an Nx3xHxW batch now (blocking) and return each image's top-k."""
        output = next(iter(self.runner.run_sync(batch).values()))
        return [top_k(row, self.labels, self.top_k, self.threshold, apply_softmax=self._logits)
                for row in output.reshape(output.shape[0], -1)]

    def classify_sync(self, image: str | Path | bytes | np.ndarray) -> list[Prediction]:
        """Prepare and classify one image, blocking."""
        return self.classify_batch(self.prepare(image)[None])[0]

    async def classify(self, image: str | Path | bytes | np.ndarray) -> list[Prediction]:
        """:meth:`classify_sync` off the event loop."""
        tensor = await anyio.to_thread.run_sync(self.prepare, image)
        output = await self.runner.run(tensor[None])
        row = next(iter(output.values()))[0]
        return top_k(row, self.labels, self.top_k, self.threshold, apply_softmax=self._logits)
