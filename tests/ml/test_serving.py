"""Inference components serving: Infer requests (actor ask, IPC, the CLI) answered while
the component runs, and the directory watch that classifies files as they arrive."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.component import ComponentNotServing, State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.ipc import InvalidArgumentsError, ResourceNotFoundError, UnauthorizedError
from actors.ipc.client import IpcClient
from actors.ml.requests import Infer
from actors.ml.tasks import ImageError
from actors.nucleus import Nucleus

from .test_inference_components import CLASSIFY, DETECT, REPO, listening, staged

pytest_plugins = ["tests.ml._model_fixtures"]
pytestmark = pytest.mark.anyio
__all__ = ["staged"]  # the session fixture, shared with the deployment tests

CATS = ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")


async def _wait(condition: Any, timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


async def test_infer_requests_are_answered_while_the_components_run(
        tmp_path: Path, staged: Path, chelsea: Path, astronaut: Path) -> None:
    nucleus = Nucleus(tmp_path / "root")
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0",
                                                                     DETECT: "1.0.0"},
            configuration_update={name: {"merge": {"ImageName": "coffee.png"}}
                                  for name in (CLASSIFY, DETECT)}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states([CLASSIFY, DETECT], [State.RUNNING], timeout=60)
        # The actor messaging API: several requests at once, each its own answer.
        cat_bytes = chelsea.read_bytes()  # noqa: ASYNC240
        replies: list[Any] = [None] * 6

        async def ask(i: int) -> None:
            replies[i] = await nucleus.ask(CLASSIFY, Infer(cat_bytes, "chelsea.png"))

        async with anyio.create_task_group() as tg:
            for i in range(len(replies)):
                tg.start_soon(ask, i)
        for reply in replies:
            assert reply["inference-type"] == "image-classification"
            assert reply["image-name"] == "chelsea.png"
            assert reply["inference-results"][0]["Label"] in CATS
        faces = await nucleus.ask(DETECT, Infer(astronaut.read_bytes()))  # noqa: ASYNC240
        assert faces["inference-type"] == "object-detection"
        assert [r["Label"] for r in faces["inference-results"]] == ["face"]
        # A bad image fails its request, not the component.
        with pytest.raises(ImageError, match="cannot decode"):
            await nucleus.ask(CLASSIFY, Infer(b"not an image"))
        with pytest.raises(ComponentNotServing, match="variant.ONNXRuntime .*serves no"):
            await nucleus.ask("variant.ONNXRuntime", Infer(cat_bytes))
        with pytest.raises(ComponentNotServing, match="deployments is not running"):
            await nucleus.ask("deployments", Infer(cat_bytes))

        # Over IPC: the CLI identity may; a component needs an inference policy.
        token = (tmp_path / "root" / "cli.token").read_text().strip()
        socket = str(tmp_path / "root" / "ipc.socket")
        async with await IpcClient(socket, token).connect() as cli:
            reply = await cli.infer(CLASSIFY, cat_bytes, "chelsea.png")
            assert reply["inference-results"][0]["Label"] in CATS
            with pytest.raises(InvalidArgumentsError, match="cannot decode"):
                await cli.infer(CLASSIFY, b"junk")
            with pytest.raises(ResourceNotFoundError, match="edge.Nothing is not running"):
                await cli.infer("edge.Nothing", cat_bytes)
        app = nucleus.ipc.register_component("edge.App")
        async with await IpcClient(socket, app).connect() as client:
            with pytest.raises(UnauthorizedError, match="edge.App is not authorized"):
                await client.infer(CLASSIFY, cat_bytes)
        nucleus.ipc.set_access_control("edge.App", {"accessControl": {
            "edge-actors.ipc.inference": {"edge.App:inference:1": {
                "operations": ["edge-actors#Infer"], "resources": [CLASSIFY]}}}})
        async with await IpcClient(socket, app).connect() as client:
            reply = await client.infer(CLASSIFY, cat_bytes)
            assert reply["inference-results"][0]["Label"] in CATS

        # The CLI, as a real process against the running runtime.
        done = await anyio.run_process(
            [sys.executable, "-m", "actors", "infer", "--root", str(tmp_path / "root"),
             "-n", CLASSIFY, str(chelsea)], check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert '"image-name": "chelsea.png"' in done.stdout.decode()
        assert any(label in done.stdout.decode() for label in CATS)
        history = list(nucleus.status[CLASSIFY].history)
    assert history == [State.NEW, State.INSTALLED, State.RUNNING]  # nothing restarted


async def test_watch_mode_classifies_images_as_they_arrive(tmp_path: Path, staged: Path,
                                                           chelsea: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    nucleus, messages, lines = listening(tmp_path / "root")
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0"},
            configuration_update={CLASSIFY: {"merge": {
                "ImageDirectory": str(incoming), "WatchDirectory": "true"}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await _wait(lambda: any(line.startswith("watching") for line in lines))
        await anyio.sleep(0.3)  # the watcher starts after the line
        shutil.copy(chelsea, incoming / "cat.png")
        await _wait(lambda: messages)
        topic, payload = messages[0]
        assert topic == "ml/dlr/image-classification"
        assert payload["image-name"] == "cat.png"
        assert payload["inference-results"][0]["Label"] in CATS
        # A file that is not an image is reported and skipped; the watch goes on.
        (incoming / "notes.jpg").write_bytes(b"\xff\xd8\xff not a picture")
        await _wait(lambda: any("notes.jpg" in line and "skipped" in line for line in lines))
        (incoming / "readme.txt").write_text("not matched by ImageName *")
        shutil.copy(chelsea, incoming / "cat2.png")
        await _wait(lambda: len(messages) == 2)
        assert messages[1][1]["image-name"] == "cat2.png"
        # A configuration update ends the watch: one pass over the folder, then done.
        record = await nucleus.deploy(DeploymentRequest(configuration_update={CLASSIFY: {
            "merge": {"WatchDirectory": "false", "InferenceInterval": 0}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states([CLASSIFY], [State.FINISHED], timeout=60)
    assert len(messages) == 4  # cat.png and cat2.png again, in name order, unnamed
    assert "image-name" not in messages[2][1]
    assert State.ERRORED not in nucleus.status[CLASSIFY].history


def test_run_watch_keeps_classifying_until_interrupted(tmp_path: Path, staged: Path,
                                                       chelsea: Path) -> None:
    import signal
    import subprocess
    import threading
    import time

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "actors", "run", "--root", str(tmp_path / "root"),
         "--recipeDir", str(REPO / "recipes"), "--artifactDir", str(staged),
         "--merge", f"{CLASSIFY}=1.0.0", "--watch", str(incoming)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(text in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.05)

    try:
        wait_for(f"[{CLASSIFY}] watching {incoming}")
        time.sleep(0.3)
        shutil.copy(chelsea, incoming / "arrived.png")
        wait_for(f"[{CLASSIFY}] arrived.png")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        reader.join(10)
    output = "".join(lines)
    assert code == 0, output
    assert any(label in output for label in CATS)
    assert "published 1 message(s) on ml/dlr/image-classification" in output


def _video(path: Path, image: Path, frames: int = 3) -> Path:
    """A real MJPEG video of ``image``: read through OpenCV as a camera would be."""
    import cv2
    import numpy as np
    from PIL import Image

    with Image.open(image) as opened:
        bgr = np.ascontiguousarray(np.asarray(opened.convert("RGB"))[:, :450, ::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                             (bgr.shape[1], bgr.shape[0]))
    for _ in range(frames):
        writer.write(bgr)
    writer.release()
    return path


async def test_use_camera_reads_frames_from_the_camera_source(tmp_path: Path, staged: Path,
                                                              chelsea: Path) -> None:
    video = await anyio.to_thread.run_sync(_video, tmp_path / "camera.avi", chelsea)
    nucleus, messages, lines = listening(tmp_path / "root")
    reasons: list[str] = []
    nucleus.on_state(lambda name, state, reason: reasons.append(reason)
                     if name == CLASSIFY and state is State.ERRORED else None)
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=staged, merge={CLASSIFY: "1.0.0"},
            configuration_update={CLASSIFY: {"merge": {
                "UseCamera": "true", "CameraSource": str(video), "InferenceInterval": 0}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states([CLASSIFY], [State.FINISHED], timeout=60)
        assert len(messages) == 1
        assert messages[0][1]["inference-results"][0]["Label"] in CATS
        assert any(line.startswith("camera.avi frame") for line in lines)
        # No camera there: the component says which source and what to do.
        await nucleus.deploy(DeploymentRequest(configuration_update={CLASSIFY: {"merge": {
            "CameraSource": "/dev/video97"}}}))
        await _wait(lambda: reasons)
    assert "no camera at /dev/video97" in reasons[0]
    assert "set UseCamera to false" in reasons[0]
