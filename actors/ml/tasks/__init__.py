"""Inference tasks: classification and face detection over a runner, results in Greengrass's form.

Loading the sample models::

    from actors.ml.models import ensure_model
    from actors.ml.tasks import open_classifier, open_face_detector

    classifier = await open_classifier(ensure_model("mobilenet_v2"))
    predictions = await classifier.classify("chelsea.png")     # top 5, score >= 0.3
    message = classification_message(predictions)               # Greengrass's format
"""

from __future__ import annotations

from ..models import ModelManifest
from ..runtimes import RunnerOptions, open_runner
from ._image import ImageError, load_image
from .classification import THRESHOLD, TOP_K, Classifier, Prediction, softmax, top_k
from .detection import Detection, FaceDetector, MtcnnSettings, nms, top_detections
from .draw import draw_detections, write_detections
from .messages import (
    IMAGE_CLASSIFICATION,
    OBJECT_DETECTION,
    boundaries,
    classification_message,
    detection_message,
    dumps,
    parse_boundaries,
)


async def open_classifier(manifest: ModelManifest, runtime: str = "onnxruntime",
                          options: RunnerOptions | None = None, *, top_k: int = TOP_K,
                          threshold: float = THRESHOLD) -> Classifier:
    """Load a classification model folder's model and labels (off the event loop)."""
    # A compiled folder (format dlr) keeps the DLR files in its "model" subfolder.
    path = manifest.folder if runtime == "dlr" and manifest.format != "dlr" \
        else manifest.path("model")
    runner = await open_runner(path, runtime, options)
    return Classifier(runner, manifest, top_k=top_k, threshold=threshold)


async def open_face_detector(manifest: ModelManifest, options: RunnerOptions | None = None,
                             settings: MtcnnSettings | None = None) -> FaceDetector:
    """Load the MTCNN folder's three networks (off the event loop): on ONNX Runtime, or
    through DLR for a compiled folder (format dlr: each net compiled for several shapes)."""
    runtime = "dlr" if manifest.format == "dlr" else "onnxruntime"
    pnet = await open_runner(manifest.path("pnet"), runtime, options)
    rnet = await open_runner(manifest.path("rnet"), runtime, options)
    onet = await open_runner(manifest.path("onet"), runtime, options)
    return FaceDetector(pnet, rnet, onet, manifest, settings)


__all__ = [
    "IMAGE_CLASSIFICATION",
    "OBJECT_DETECTION",
    "THRESHOLD",
    "TOP_K",
    "Classifier",
    "Detection",
    "FaceDetector",
    "ImageError",
    "MtcnnSettings",
    "Prediction",
    "boundaries",
    "classification_message",
    "detection_message",
    "draw_detections",
    "dumps",
    "load_image",
    "nms",
    "open_classifier",
    "open_face_detector",
    "parse_boundaries",
    "softmax",
    "top_detections",
    "top_k",
    "write_detections",
]
