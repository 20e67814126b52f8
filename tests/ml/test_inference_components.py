"""The ML stack deployed as Greengrass components: runtime + model + inference,
from the project's recipes and staged artifacts, with real models and images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.ml.stage import stage
from actors.nucleus import Nucleus

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
CLASSIFY = "edge.ImageClassification.ONNX"
DETECT = "edge.ObjectDetection.ONNX"
ONCE = {"merge": {"InferenceInterval": 0}}


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    cache = Path(request.config.cache.mkdir("edge-actors-models"))
    out = tmp_path_factory.mktemp("artifacts")
    stage(REPO / "recipes", out, cache)
    return out


def listening(root: Path) -> tuple[Nucleus, list[tuple[str, Any]], list[str]]:
    """A Nucleus on ``root`` with the messages it publishes and the lines its
    components print collected in two lists."""
    messages: list[tuple[str, Any]] = []
    lines: list[str] = []
    nucleus = Nucleus(root)
    nucleus.on_message(lambda topic, payload: messages.append((topic, payload)))
    nucleus.on_output(lambda name, line: lines.append(line))
    return nucleus, messages, lines


async def test_classification_and_detection_deploy_run_and_publish(tmp_path: Path,
                                                                   staged: Path) -> None:
    nucleus, messages, lines = listening(tmp_path / "root")
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged,
            merge={CLASSIFY: "1.0.0", DETECT: "1.0.0"},
            configuration_update={CLASSIFY: ONCE, DETECT: ONCE}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states([CLASSIFY, DETECT], [State.FINISHED], timeout=120)
        started = [n for n, s in nucleus.status.items() if s.history[:1] == [State.NEW]]
    # Dependencies first: the runtime and model components before the inference ones.
    assert started.index("variant.ONNXRuntime") < started.index(CLASSIFY)
    assert started.index("variant.ONNX.ImageClassification.ModelStore") < \
        started.index(CLASSIFY)
    classified = [p for t, p in messages if t == "ml/dlr/image-classification"]
    detected = [p for t, p in messages if t == "ml/dlr/object-detection"]
    assert len(classified) == len(detected) == 5  # the five sample images, sorted by name
    # Greengrass's message, exactly: string scores, the description with its trailing space.
    chelsea = classified[1]
    assert chelsea["inference-type"] == "image-classification"
    assert chelsea["inference-description"] == "Top 5 predictions with score 0.3 or above "
    labels = [r["Label"] for r in chelsea["inference-results"]]
    assert any("cat" in label for label in labels), labels
    assert all(isinstance(r["Score"], str) for r in chelsea["inference-results"])
    # One face on the astronaut, none on the coffee cup; the drawn image is written.
    astronaut, coffee = detected[0], detected[3]
    assert len(astronaut["inference-results"]) == 1
    assert coffee["inference-results"] == []
    drawn = tmp_path / "root" / "work" / DETECT / "output" / "astronaut-detections.jpg"
    assert drawn.stat().st_size > 10_000
    assert any(line.startswith("chelsea.png") and "cat" in line for line in lines)


async def test_a_bad_configuration_names_the_key_and_the_component_breaks(
        tmp_path: Path, staged: Path) -> None:
    reasons: list[tuple[State, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_state(lambda name, state, reason: reasons.append((state, reason))
                     if name == CLASSIFY else None)
    async with nucleus:
        await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0"},
            configuration_update={CLASSIFY: {"merge": {"ImageDirectory": "/nonexistent"}}}))
        await nucleus.wait_states([CLASSIFY], [State.BROKEN], timeout=60)
    errored = [r for s, r in reasons if s is State.ERRORED]
    assert len(errored) == 3
    assert errored[0].endswith("edge.ImageClassification.ONNX: ImageDirectory '/nonexistent' is "
                               "not a folder; point it at the images to classify")
    assert reasons[-1][0] is State.BROKEN


def test_the_recipe_script_runs_the_same_code_as_a_process(staged: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    import zipfile

    with zipfile.ZipFile(staged / CLASSIFY / "1.0.0" / "sample_images.zip") as archive:
        archive.extract("chelsea.png", images)
    models = tmp_path / "models"
    with zipfile.ZipFile(staged / "variant.ONNX.ImageClassification.ModelStore" / "1.0.0"
                         / "ONNX-mobilenet_v2-ImageClassification.zip") as archive:
        archive.extractall(models / "ONNX-mobilenet_v2-ImageClassification")
    config = {"ImageDirectory": str(images), "ImageName": "chelsea.png", "InferenceInterval": 0,
              "ModelResourceKey": {"model": "ONNX-mobilenet_v2-ImageClassification"}}
    done = subprocess.run(
        [sys.executable, "-m", "actors.ml.components", "classification", "--config",
         json.dumps(config), "--models", str(models)],
        capture_output=True, text=True, timeout=120, check=True)
    published = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert published[0]["topic"] == "ml/dlr/image-classification"
    assert "cat" in published[0]["payload"]["inference-results"][0]["Label"]


# A sitecustomize that makes the ML runtimes unimportable in a real subprocess, as on
# armv7l, where PyPI has no wheel for ONNX Runtime or DLR (with libdlr).
NO_ML_RUNTIME = """
import importlib.abc, importlib.machinery, sys

class _Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("onnxruntime", "dlr"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)

sys.meta_path.insert(0, _Absent())
"""


def without_ml_runtime(tmp_path: Path) -> dict[str, str]:
    """The environment of a subprocess that cannot import onnxruntime or dlr."""
    site = tmp_path / "no-ml-runtime"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_ML_RUNTIME)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_the_runtime_starts_and_deploys_without_any_ml_runtime(tmp_path: Path) -> None:
    env = without_ml_runtime(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "No module named 'onnxruntime'" in probe.stderr
    done = subprocess.run(
        [sys.executable, "-m", "actors", "run", "--root", str(tmp_path / "root"),
         "--recipeDir", str(REPO / "recipes"), "--artifactDir", str(REPO / "recipes" / "artifacts"),
         "--merge", "com.example.HelloWorld=1.0.0", "--exit-when-done"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello, world" in done.stdout + done.stderr


@pytest.mark.parametrize(("task", "runtime", "lacks"), [
    ("classification", "onnxruntime", "ONNX Runtime (onnxruntime) is not installed: install it "
                                      "into the Python that runs edge-actors (pip install "
                                      "'edge-actors[onnxruntime]')"),
    ("detection", "onnxruntime", "ONNX Runtime (onnxruntime) is not installed"),
])
# (DLR is never missing: without libdlr, DLR folders run on the graph executor.)
def test_an_inference_component_without_its_runtime_says_which_and_how_to_get_it(
        staged: Path, tmp_path: Path, task: str, runtime: str, lacks: str) -> None:
    import platform
    import zipfile

    if platform.machine() != "x86_64":
        pytest.skip("the advice expected here is x86_64's")
    store, folder = (("variant.ONNX.ImageClassification.ModelStore",
                      "ONNX-mobilenet_v2-ImageClassification") if task == "classification" else
                     ("variant.ONNX.FaceDetection.ModelStore", "ONNX-mtcnn-FaceDetection"))
    models = tmp_path / "models"
    with zipfile.ZipFile(staged / store / "1.0.0" / f"{folder}.zip") as archive:
        archive.extractall(models / folder)
    config = {"ImageDirectory": str(tmp_path), "InferenceInterval": 0, "Runtime": runtime,
              "ModelResourceKey": {"model": folder}}
    name = CLASSIFY if task == "classification" else DETECT
    done = subprocess.run(
        [sys.executable, "-m", "actors.ml.components", task, "--name", name, "--config",
         json.dumps(config), "--models", str(models), "--work", str(tmp_path)],
        env=without_ml_runtime(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"{name} cannot load its model: {lacks}"), done.stderr


async def test_artifact_progress_is_reported_and_published(tmp_path: Path, staged: Path) -> None:
    reports: list[Any] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_progress(reports.append)
    async with nucleus:
        published = nucleus.ipc.broker.subscribe("test", "$nucleus/artifacts/progress")
        await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0"},
            configuration_update={CLASSIFY: ONCE}))
        on_bus = published.drain()
        published.close()
    finished = {(r.component, r.uri.rsplit("/", 1)[-1]) for r in reports if r.finished}
    assert ("variant.ONNX.ImageClassification.ModelStore",
            "ONNX-mobilenet_v2-ImageClassification.zip") in finished
    assert (CLASSIFY, "sample_images.zip") in finished
    assert on_bus and {"component", "uri", "done", "total", "rate"} <= set(on_bus[-1].payload)


async def test_a_configuration_update_takes_effect_without_a_restart(tmp_path: Path,
                                                                    staged: Path) -> None:
    messages: list[tuple[str, Any]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_message(lambda topic, payload: messages.append((topic, payload)))
    async with nucleus:
        await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0"},
            configuration_update={CLASSIFY: {"merge": {"ImageName": "coffee.png"}}}))
        # InferenceInterval is 3600 s: one inference now, then it waits.
        with anyio.fail_after(60):
            while not messages:
                await anyio.sleep(0.05)
        # A new topic needs the accessControl to allow it: updated in the same MERGE.
        policy = {"aws.greengrass.ipc.pubsub": {f"{CLASSIFY}:pubsub:1": {
            "resources": ["ml/custom"]}}}
        record = await nucleus.deploy(DeploymentRequest(configuration_update={CLASSIFY: {
            "merge": {"ImageName": "chelsea.png", "PublishResultsOnTopic": "ml/custom",
                      "TopK": 1, "accessControl": policy}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        with anyio.fail_after(60):
            while len(messages) < 2:
                await anyio.sleep(0.05)
        history = list(nucleus.status[CLASSIFY].history)
        granted = await nucleus.ipc.configuration.get(CLASSIFY, ["ImageName"])
    # The same running instance took the new settings: no stop, no second start.
    assert history == [State.NEW, State.INSTALLED, State.RUNNING]
    assert messages[0][0] == "ml/dlr/image-classification"
    assert messages[0][1]["inference-results"][0]["Label"] == "espresso"
    topic, payload = messages[1]
    assert topic == "ml/custom"
    assert len(payload["inference-results"]) == 1
    assert "cat" in payload["inference-results"][0]["Label"]
    assert granted == "chelsea.png"  # what components read over IPC


@pytest.mark.parametrize(("update", "message"), [
    ({"InferenceNice": 20}, "InferenceNice must be from 0 (the event loop's priority) to 19 "
                            "(the lowest), got 20"),
    ({"InferenceNice": "low"}, "ThreadsAlone and InferenceNice must be numbers"),
    ({"ModelRuns": 0}, "MaxBatchSize and ModelRuns must be at least 1"),
    ({"Accelerator": "gpu"}, "Accelerator 'gpu' is not available here; use cpu"),
    ({"UseCamera": "true", "WatchDirectory": "true"}, "UseCamera and WatchDirectory are both "
                                                      "true"),
])
def test_settings_errors_name_the_component_and_the_key(tmp_path: Path, update: dict[str, Any],
                                                        message: str) -> None:
    from actors.component._context import ComponentContext
    from actors.ml.components import InferenceConfigError, _settings

    def context(configuration: dict[str, Any]) -> ComponentContext:
        return ComponentContext(name=CLASSIFY, version="1.0.0", configuration=configuration,
                                work=tmp_path, artifacts=tmp_path, decompressed=tmp_path,
                                thing_name="thing")

    assert _settings(context({}), "topic").nice == 5  # the inference threads' default
    with pytest.raises(InferenceConfigError, match="^" + CLASSIFY + ": .*") as caught:
        _settings(context(update), "topic")
    assert message in str(caught.value)
