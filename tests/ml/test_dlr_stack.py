"""The DLR stack deployed as Greengrass components: variant.DLR, the compiled model store
and the DLR inference component, from the project's recipes and staged artifacts."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.ml.stage import stage
from actors.nucleus import Nucleus

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(
    importlib.util.find_spec("dlr") is None or shutil.which("gcc") is None,
    reason="DLR (pip install dlr==1.6.0, x86_64 Linux) and gcc are needed")]

REPO = Path(__file__).resolve().parents[2]
CLASSIFY = "edge.ImageClassification.DLR"
DETECT = "edge.ObjectDetection.DLR"
ONCE = {"merge": {"InferenceInterval": 0}}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    cache = Path(request.config.cache.mkdir("edge-actors-models"))
    out = tmp_path_factory.mktemp("artifacts")
    made = stage(REPO / "recipes", out, cache)
    assert out / "variant.DLR.ImageClassification.ModelStore" / "1.0.0" / \
        "DLR-mobilenet_v2-x86_64-cpu-ImageClassification.zip" in made
    assert out / "variant.DLR.ObjectDetection.ModelStore" / "1.0.0" / \
        "DLR-mtcnn-x86_64-cpu-FaceDetection.zip" in made
    return out


async def test_the_dlr_stacks_find_the_cat_and_the_astronaut_s_face(
        tmp_path: Path, staged: Path) -> None:
    messages: list[tuple[str, Any]] = []
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_message(lambda topic, payload: messages.append((topic, payload)))
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged,
            merge={CLASSIFY: "1.0.0", DETECT: "1.0.0"},
            configuration_update={CLASSIFY: ONCE, DETECT: ONCE}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states([CLASSIFY, DETECT], [State.FINISHED], timeout=240)
        deployed = set(nucleus.status)
    assert {"variant.DLR", "variant.DLR.ImageClassification.ModelStore",
            "variant.DLR.ObjectDetection.ModelStore"} <= deployed
    assert not {"variant.ONNXRuntime", "variant.ONNX.ImageClassification.ModelStore",
                "variant.ONNX.FaceDetection.ModelStore"} & deployed
    classified = [p for t, p in messages if t == "ml/dlr/image-classification"]
    detected = [p for t, p in messages if t == "ml/dlr/object-detection"]
    assert len(classified) == len(detected) == 5
    labels = [r["Label"] for r in classified[1]["inference-results"]]  # chelsea.png
    assert any("cat" in label for label in labels), labels
    assert any("(dlr, mobilenet_v2" in line for line in lines), lines
    assert any(line.startswith("chelsea.png") and "cat" in line for line in lines)
    # One face on the astronaut, none on the coffee cup.
    astronaut, coffee = detected[0], detected[3]
    assert len(astronaut["inference-results"]) == 1
    assert coffee["inference-results"] == []
