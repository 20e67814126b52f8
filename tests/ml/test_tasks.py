"""Classification and face detection on real photographs, and Greengrass's result messages."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from actors.ml.models import ModelManifest
from actors.ml.tasks import (
    Detection,
    ImageError,
    Prediction,
    classification_message,
    detection_message,
    dumps,
    load_image,
    nms,
    open_classifier,
    open_face_detector,
    parse_boundaries,
    softmax,
    top_detections,
    top_k,
    write_detections,
)

pytest_plugins = ["tests.ml._model_fixtures"]
pytestmark = pytest.mark.anyio

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("model", ["mobilenet", "efficientnet"])
async def test_chelsea_is_a_cat(model: str, chelsea: Path,
                                request: pytest.FixtureRequest) -> None:
    manifest: ModelManifest = request.getfixturevalue(model)
    classifier = await open_classifier(manifest, top_k=5, threshold=0.0)
    predictions = await classifier.classify(chelsea)
    assert len(predictions) == 5
    assert predictions[0].index in CATS
    assert [p.score for p in predictions] == sorted((p.score for p in predictions), reverse=True)
    assert sum(p.index in CATS for p in predictions) >= 2
    assert "cat" in predictions[0].label
    # The default rule (top 5, score >= 0.3) keeps only confident classes.
    classifier.top_k, classifier.threshold = 5, 0.3
    confident = await classifier.classify(chelsea.read_bytes())  # noqa: ASYNC240
    assert confident and all(p.score >= 0.3 for p in confident)
    assert confident[0] == predictions[0]


async def test_batches_give_the_same_answers(mobilenet: ModelManifest, chelsea: Path,
                                             coffee: Path) -> None:
    classifier = await open_classifier(mobilenet, threshold=0.0)
    batch = np.stack([classifier.prepare(chelsea), classifier.prepare(coffee)])
    cat, cup = classifier.classify_batch(batch)
    assert cat[0].index in CATS
    assert cup[0].index not in CATS
    assert cat == classifier.classify_sync(chelsea)


async def test_astronaut_has_one_face_around_her_face(mtcnn: ModelManifest,
                                                     astronaut: Path) -> None:
    detector = await open_face_detector(mtcnn)
    faces = await detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "face" and face.score > 0.95
    x0, y0, x1, y1 = face.box
    # Eileen Collins' face in the 512x512 photograph: about x 175-275, y 55-180.
    assert 150 < x0 < 200 and 40 < y0 < 90 and 250 < x1 < 300 and 150 < y1 < 200
    (lx, ly), (rx, ry) = face.landmarks[:2]  # the eyes: level, left one on the left
    assert x0 < lx < rx < x1 and abs(ly - ry) < 15


async def test_no_faces_on_a_cup_of_coffee(mtcnn: ModelManifest, coffee: Path) -> None:
    detector = await open_face_detector(mtcnn)
    assert await detector.detect(coffee) == []


async def test_detections_are_drawn_onto_the_image(mtcnn: ModelManifest, astronaut: Path,
                                                   tmp_path: Path) -> None:
    detector = await open_face_detector(mtcnn)
    image = load_image(astronaut)
    faces = await detector.detect(image)
    out = write_detections(image, faces, tmp_path / "boxed.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxed.jpg"]  # noqa: ASYNC240
    with Image.open(out) as written:
        assert written.format == "JPEG" and written.size == (512, 512)
        drawn = np.asarray(written.convert("RGB")).astype(int)
    x0, y0, x1, y1 = (round(v) for v in faces[0].box)
    edge = drawn[(y0 + y1) // 2, x0 - 1:x0 + 2]  # the box's left edge is red
    assert (edge[:, 0] > 180).any() and (edge[:, 1] < 90).any()
    inside = drawn[(y0 + y1) // 2, (x0 + x1) // 2]
    assert abs(inside - image[(y0 + y1) // 2, (x0 + x1) // 2]).max() < 40  # face untouched


def test_top_k_threshold_and_softmax() -> None:
    labels = [f"c{i}" for i in range(6)]
    logits = np.array([0.0, 5.0, 1.0, 4.0, -2.0, 0.5], dtype=np.float32)
    best = top_k(logits, labels, k=3, threshold=0.0)
    assert [p.label for p in best] == ["c1", "c3", "c2"]
    assert best[0].score == pytest.approx(float(softmax(logits)[1]))
    assert [p.index for p in top_k(logits, labels, k=5, threshold=0.3)] == [1]
    probs = softmax(logits)
    assert top_k(probs, labels, k=1) == top_k(logits, labels, k=1)  # softmax not applied twice
    assert top_k(np.array([0.2, 0.8]), ["a"], k=2, threshold=0.1)[0].label == "class 1"
    assert top_k(logits, labels, k=0) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], float)
    scores = np.array([0.9, 0.95, 0.5, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.5, "min").tolist() == [1, 2]  # small box inside a big one
    assert nms(np.empty((0, 4)), np.empty(0), 0.5).tolist() == []


def test_messages_follow_greengrass_format() -> None:
    when = datetime(2021, 1, 1, 0, 0, 0)
    preds = [Prediction(282, "tiger cat", 0.5882352941176471)]
    message = classification_message(preds, now=when)
    assert message == {
        "timestamp": "2021-01-01 00:00:00.000000",
        "inference-type": "image-classification",
        "inference-description": "Top 5 predictions with score 0.3 or above ",
        "inference-results": [{"Label": "tiger cat", "Score": "0.5882353"}],
    }
    assert orjson.loads(dumps(message)) == message
    faces = [Detection("face", 0.99, (180.5, 61.25, 268.0, 174.75)),
             Detection("face", 0.2, (1, 2, 3, 4))]
    kept = top_detections(faces, k=5, threshold=0.3)
    detection = detection_message(kept, top_k=5, threshold=0.3, now=when)
    assert detection["inference-type"] == "object-detection"
    (result,) = detection["inference-results"]
    assert set(result) == {"Label", "Score", "Boundaries"}
    assert result["Label"] == "face" and result["Score"] == "0.99"
    assert isinstance(result["Boundaries"], str)
    assert parse_boundaries(result["Boundaries"]) == (180.5, 61.25, 268.0, 174.75)
    # Greengrass's own drawing code reads Boundaries with numpy like this.
    np.testing.assert_allclose(np.array(result["Boundaries"][1:-1].split(), dtype=float),
                               [180.5, 61.25, 268.0, 174.75])


def test_undecodable_images_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(tmp_path / "broken.jpg")
    grey = load_image(np.zeros((4, 5), np.uint8))
    assert grey.shape == (4, 5, 3)
