"""The inference components' entry points, run in process by the runtime.

Configuration keys are Greengrass's (``aws.greengrass.DLRImageClassification``
and ``aws.greengrass.DLRObjectDetection``): ``ImageDirectory``, ``ImageName``,
``InferenceInterval``, ``PublishResultsOnTopic``, ``ModelResourceKey``,
``UseCamera``, ``Accelerator``. Beyond them:

- ``ImageName`` may be a pattern (``"*"``, ``"*.jpg"``): every matching image
  in the folder, in name order; ``InferenceInterval: 0`` runs once and finishes;
- ``UseCamera: true`` takes a frame from ``CameraSource`` (default
  ``/dev/video0``; a video file or stream URL works too) each InferenceInterval,
  through :mod:`actors.ml.camera` (OpenCV); without a camera the error says so;
- ``WatchDirectory: true`` classifies the images in ImageDirectory, then each
  new or rewritten file matching ImageName as it arrives (its message carries
  ``image-name``), until the configuration changes;
- ``Infer`` requests (:class:`actors.ml.requests.Infer`: image bytes in, the
  result message out) are answered while the component runs, over IPC, the
  CLI (``edge-actors infer``) or ``Nucleus.ask``;
- ``Runtime`` (onnxruntime, dlr), ``TopK``, ``ScoreThreshold`` choose the runner
  and the results; how classification uses the machine (see
  :mod:`actors.ml.tasks.batching`): ``ModelRuns`` worker threads (default 2),
  each decoding its image and running it with ``ThreadsPerRun`` threads
  (default 1), so one image decodes while another runs; a request that finds
  nothing else in flight runs on a second session
  with ``ThreadsAlone`` threads (default 0: one per core; set it equal to
  ThreadsPerRun to save that session's memory, about 24 MiB for MobileNetV2);
  ``MaxBatchSize`` (default 1) lets the requests that queue while the model is
  busy run as one batch: it pays where a run's fixed cost dominates (an
  accelerator, a small model), not for MobileNetV2 on ONNX Runtime's CPU
  provider, where batches of 2 and 4 measured 12% and 20% fewer images/s here;
  ``InferenceNice`` (default 5, 0 to 19) lowers the inference threads (the pipeline
  workers, the runtime's thread pool) below the runtime's event loop, so a request
  or an IPC call is not kept waiting behind a busy one (:mod:`actors.ml._priority`).

Images are classified through a pipeline, but results are published in the
images' order. An image that cannot be decoded is reported and skipped.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from ..component._context import ComponentContext
from ..kernel import ActorsError
from ._priority import DEFAULT_NICE
from .camera import DEFAULT_SOURCE, FrameSource, open_camera
from .models import load_manifest
from .requests import Infer
from .runtimes import RunnerOptions, RuntimeUnavailable
from .tasks import (
    ImageError,
    Prediction,
    classification_message,
    detection_message,
    load_image,
    open_classifier,
    open_face_detector,
    top_detections,
    write_detections,
)
from .tasks.batching import Pipeline, PipelineOptions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLASSIFICATION_TOPIC = "ml/dlr/image-classification"
DETECTION_TOPIC = "ml/dlr/object-detection"


class InferenceConfigError(ActorsError, ValueError):
    """An inference component's configuration is unusable: names the key and what to do."""


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Settings:
    """An inference component's configuration, checked."""

    topic: str
    interval: float
    top_k: int
    threshold: float
    runtime: str
    watch: bool
    max_batch: int
    runs: int
    threads: int
    threads_alone: int
    nice: int
    camera: str | None  # the camera source, with UseCamera

    @property
    def model_key(self) -> tuple[object, ...]:
        """What the loaded model (and the open camera) depend on: a change means
        loading it again."""
        return (self.runtime, self.max_batch, self.runs, self.threads, self.threads_alone,
                self.nice, self.camera)


def _settings(ctx: ComponentContext, default_topic: str) -> Settings:
    config = ctx.configuration
    try:
        interval = float(config.get("InferenceInterval", 3600))
        top_k = int(config.get("TopK", 5))
        threshold = float(config.get("ScoreThreshold", 0.3))
        max_batch = int(config.get("MaxBatchSize", 1))
        runs = int(config.get("ModelRuns", 2))
        threads = int(config.get("ThreadsPerRun", 1))
        threads_alone = int(config.get("ThreadsAlone", 0))
        nice = int(config.get("InferenceNice", DEFAULT_NICE))
    except (TypeError, ValueError) as exc:
        raise InferenceConfigError(
            f"{ctx.name}: InferenceInterval, TopK, ScoreThreshold, MaxBatchSize, ModelRuns, "
            f"ThreadsPerRun, ThreadsAlone and InferenceNice must be numbers: {exc}") from None
    if min(max_batch, runs) < 1 or min(threads, threads_alone) < 0:
        raise InferenceConfigError(
            f"{ctx.name}: MaxBatchSize and ModelRuns must be at least 1, ThreadsPerRun and "
            "ThreadsAlone at least 0 (0: the runtime's default, one per core)")
    if not 0 <= nice <= 19:
        raise InferenceConfigError(
            f"{ctx.name}: InferenceNice must be from 0 (the event loop's priority) to 19 "
            f"(the lowest), got {nice}")
    accelerator = str(config.get("Accelerator", "cpu")).lower()
    if accelerator not in ("cpu", "auto"):
        raise InferenceConfigError(f"{ctx.name}: Accelerator {accelerator!r} is not available "
                                   "here; use cpu")
    camera = None
    if _flag(config.get("UseCamera", "false")):
        camera = str(config.get("CameraSource") or DEFAULT_SOURCE)
    watch = _flag(config.get("WatchDirectory", "false"))
    if camera and watch:
        raise InferenceConfigError(f"{ctx.name}: UseCamera and WatchDirectory are both true; "
                                   "a component reads the camera or watches a folder, not both")
    return Settings(str(config.get("PublishResultsOnTopic") or default_topic), interval, top_k,
                    threshold, str(config.get("Runtime") or "onnxruntime"), watch, max_batch,
                    runs, threads, threads_alone, nice, camera)


def _model_folder(ctx: ComponentContext) -> Path:
    """The model folder: ModelResourceKey (per machine, as Greengrass keys it) inside
    the decompressed artifacts of the model component this one depends on."""
    keys = ctx.configuration.get("ModelResourceKey") or {}
    if not isinstance(keys, Mapping):
        raise InferenceConfigError(f"{ctx.name}: ModelResourceKey must map machine types "
                                   f"to model folder names, got {keys!r}")
    machine = platform.machine()
    folder_name = keys.get(machine) or keys.get("model")
    if not folder_name:
        raise InferenceConfigError(f"{ctx.name}: ModelResourceKey has no entry for this "
                                   f"machine ({machine}) and no 'model' entry")
    for dependency in ctx.dependencies.values():
        candidate = dependency.decompressed / str(folder_name)
        if (candidate / "edge-model.json").is_file():
            return candidate
    searched = ", ".join(str(d.decompressed) for d in ctx.dependencies.values()) or "none"
    raise InferenceConfigError(
        f"{ctx.name}: model folder {folder_name!r} (ModelResourceKey) is not in the "
        f"decompressed artifacts of any dependency (searched: {searched}); deploy the model "
        "component that ships it")


def _directory(ctx: ComponentContext) -> tuple[Path, str]:
    directory = Path(str(ctx.configuration.get("ImageDirectory") or ""))
    if not directory.is_dir():
        raise InferenceConfigError(f"{ctx.name}: ImageDirectory {str(directory)!r} is not a "
                                   "folder; point it at the images to classify")
    return directory, str(ctx.configuration.get("ImageName") or "*")


def _matches(path: Path, pattern: str) -> bool:
    if not fnmatch.fnmatchcase(path.name, pattern):
        return False
    return pattern != "*" or path.suffix.lower() in IMAGE_SUFFIXES


def _images(ctx: ComponentContext, *, allow_none: bool = False) -> list[Path]:
    directory, name = _directory(ctx)
    if any(c in name for c in "*?["):
        images = sorted(p for p in directory.iterdir() if p.is_file() and _matches(p, name))
    else:
        images = [directory / name]
    missing = [str(p) for p in images if not p.is_file()]
    if missing or (not images and not allow_none):
        what = ", ".join(missing) or f"{directory} has no image matching {name!r}"
        raise InferenceConfigError(f"{ctx.name}: no image to read: {what} (check "
                                   "ImageDirectory and ImageName)")
    return images


# ---------------------------------------------------------------- the shared loop

#: What the component infers on: an image file, or a camera frame (HxWx3 RGB).
Source = Path | np.ndarray
#: (a name for the image, the image) -> its result message and the line printed for it.
FileInference = Callable[[str, Source], Awaitable[tuple[dict[str, Any], str]]]


def named(result: dict[str, Any], name: str | None) -> dict[str, Any]:
    """An Infer reply: the result message, with ``image-name`` when the request named one."""
    return {**result, "image-name": name} if name else result


@dataclass
class _Loaded:
    """One loaded model as the shared loop uses it."""

    infer_file: FileInference
    infer_request: Callable[[Infer], Awaitable[dict[str, Any]]]
    depth: int  # images in flight in a pass
    #: Takes settings that need no reload (TopK, ScoreThreshold, the topic...).
    configure: Callable[[Settings], None]


async def _ordered(ctx: ComponentContext, loaded: _Loaded, settings: Settings,
                   images: Sequence[tuple[str, Source]], *, named: bool) -> None:
    """Run ``images`` (name, image) through the model ``depth`` at a time; publish in
    their order."""
    window = anyio.Semaphore(loaded.depth)
    results: list[tuple[dict[str, Any], str] | ImageError | None] = [None] * len(images)
    done = [anyio.Event() for _ in images]

    async def one(i: int) -> None:
        try:
            results[i] = await loaded.infer_file(*images[i])
        except (ImageError, FileNotFoundError) as exc:
            results[i] = exc if isinstance(exc, ImageError) else ImageError(str(exc))
        finally:
            done[i].set()

    async def feed() -> None:
        for i in range(len(images)):
            await window.acquire()
            tg.start_soon(one, i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed)
        for i, (name, _) in enumerate(images):
            await done[i].wait()
            window.release()
            result = results[i]
            if isinstance(result, ImageError):
                ctx.log.warning("%s: skipped %s: %s", ctx.name, name, result)
                ctx.output(f"{name:<24} skipped: {result}")
                continue
            assert result is not None
            message, line = result
            if named:
                message = {**message, "image-name": name}
            await ctx.publish(settings.topic, message)
            ctx.output(line)


def _fresh(changes: Iterable[tuple[Any, str]], pattern: str,
           seen: dict[Path, tuple[int, int]]) -> list[Path]:
    """The added or modified files matching ``pattern`` whose content is new, sorted."""
    from watchfiles import Change

    fresh = []
    for change, raw in changes:
        path = Path(raw)
        if change is Change.deleted or not _matches(path, pattern):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        # A copy in progress shows up again when it is rewritten: the same size
        # and time means the same content, done already.
        if seen.get(path) != (stat.st_mtime_ns, stat.st_size):
            seen[path] = (stat.st_mtime_ns, stat.st_size)
            fresh.append(path)
    return sorted(fresh)


async def _watch(ctx: ComponentContext, loaded: _Loaded, settings: Settings) -> None:
    """Infer on each new or rewritten image in ImageDirectory until the configuration changes."""
    from watchfiles import awatch

    directory, name = _directory(ctx)
    seen: dict[Path, tuple[int, int]] = {}
    ctx.output(f"watching {directory} for {name!r}")
    async with anyio.create_task_group() as tg:

        async def until_changed() -> None:
            await ctx.wait_configuration_change()
            tg.cancel_scope.cancel()

        tg.start_soon(until_changed)
        async for changes in awatch(directory, recursive=False, debounce=400):
            fresh = await anyio.to_thread.run_sync(_fresh, changes, name, seen)
            if fresh:
                await _ordered(ctx, loaded, settings, [(p.name, p) for p in fresh], named=True)


class _Current:
    """The model being served; Infer requests wait while it (re)loads."""

    def __init__(self) -> None:
        self.loaded: _Loaded | None = None
        self.ready = anyio.Event()

    def set(self, loaded: _Loaded | None) -> None:
        self.loaded = loaded
        if loaded is not None:
            self.ready.set()
        elif self.ready.is_set():
            self.ready = anyio.Event()

    async def get(self) -> _Loaded:
        while self.loaded is None:
            await self.ready.wait()
        return self.loaded


async def _pass_images(ctx: ComponentContext, settings: Settings,
                       camera: FrameSource | None) -> list[tuple[str, Source]]:
    """What one pass infers on: a frame from the camera, or the configured files."""
    if camera is not None:
        frame = await anyio.to_thread.run_sync(camera.read)
        return [(f"{Path(camera.name).name} frame", frame)]
    images = await anyio.to_thread.run_sync(
        functools.partial(_images, ctx, allow_none=settings.watch))
    return [(p.name, p) for p in images]


async def _serve(ctx: ComponentContext, default_topic: str,
                 load: Callable[[Path, Settings, AsyncExitStack], Awaitable[_Loaded]]) -> None:
    """The loop both inference components share: load the model, infer on the configured
    images (then watch, or sleep InferenceInterval), answer Infer requests meanwhile
    (from the start: they wait for the model), and take configuration updates without
    a restart, loading the model again only when ModelResourceKey or a model setting
    changed."""
    current = _Current()

    def answer(message: Any) -> Awaitable[dict[str, Any]]:
        # Not a coroutine: with the model loaded, what infer_request returns (for
        # classification the pipeline's future itself) is the reply, with no task.
        if not isinstance(message, Infer):
            raise TypeError(f"{ctx.name} answers Infer requests, not {message!r}")
        loaded = current.loaded
        return loaded.infer_request(message) if loaded else when_loaded(message)

    async def when_loaded(message: Infer) -> dict[str, Any]:
        return await (await current.get()).infer_request(message)

    ctx.serve(answer)
    try:
        while True:
            settings = _settings(ctx, default_topic)
            folder = _model_folder(ctx)
            async with AsyncExitStack() as stack:
                try:
                    loaded = await load(folder, settings, stack)
                except RuntimeUnavailable as exc:
                    # The runtime itself runs without any ML runtime (armv7l has no wheel
                    # for one): each inference component says what it lacks.
                    raise RuntimeUnavailable(f"{ctx.name} cannot load its model: {exc}") from exc
                camera = None
                if settings.camera is not None:
                    camera = await anyio.to_thread.run_sync(open_camera, settings.camera)
                    stack.callback(camera.close)
                current.set(loaded)
                try:
                    while True:
                        loaded.configure(settings)
                        await _ordered(ctx, loaded, settings,
                                       await _pass_images(ctx, settings, camera), named=False)
                        if settings.watch:
                            await _watch(ctx, loaded, settings)
                        elif settings.interval <= 0:
                            return
                        else:
                            await ctx.wait_configuration_change(settings.interval)
                        new = _settings(ctx, default_topic)
                        if new.model_key != settings.model_key or _model_folder(ctx) != folder:
                            break
                        settings = new
                finally:
                    current.set(None)
    finally:
        ctx.serve(None)


# ---------------------------------------------------------------- the two components

async def classification(ctx: ComponentContext) -> None:
    """Classify ImageDirectory/ImageName every InferenceInterval seconds (or as files
    arrive, with WatchDirectory) and publish; answer Infer requests meanwhile."""

    async def load(folder: Path, settings: Settings, stack: AsyncExitStack) -> _Loaded:
        current = [settings]
        manifest = await anyio.to_thread.run_sync(load_manifest, folder)
        classifier = await open_classifier(
            manifest, settings.runtime,
            RunnerOptions(threads=settings.threads, concurrency=settings.runs, nice=settings.nice))
        alone = classifier
        if settings.threads_alone != settings.threads and classifier.runner.options.concurrency > 1:
            # A second session of the same model for requests that run alone.
            alone = await open_classifier(
                manifest, settings.runtime,
                RunnerOptions(threads=settings.threads_alone, nice=settings.nice))
        options = PipelineOptions(runs=settings.runs, max_batch=settings.max_batch,
                                  nice=settings.nice)
        pipeline = await stack.enter_async_context(Pipeline(classifier, options, alone=alone))
        ctx.output(f"{'image':<24} {'top-1 label':<36} {'score':>6}   "
                   f"({settings.runtime}, {manifest.name}, {pipeline.runs} run(s) of up to "
                   f"{settings.max_batch})")

        def message(predictions: Any) -> dict[str, Any]:
            s = current[0]
            return classification_message(predictions, s.top_k, s.threshold)

        async def infer_file(name: str, image: Source) -> tuple[dict[str, Any], str]:
            start = time.perf_counter()
            predictions = await pipeline.classify(image)
            took = (time.perf_counter() - start) * 1000
            best = predictions[0] if predictions else None
            label = best.label if best else "(nothing above the threshold)"
            score = f"{best.score:.3f}" if best else ""
            return message(predictions), f"{name:<24} {label[:36]:<36} {score:>6}   " \
                                         f"{took:.0f} ms"

        def reply(name: str | None, predictions: list[Prediction]) -> dict[str, Any]:
            return named(message(predictions), name)

        def infer_request(request: Infer) -> asyncio.Future[dict[str, Any]]:
            return pipeline.submit(request.image, functools.partial(reply, request.name))

        def configure(new: Settings) -> None:
            current[0] = new
            for each in (classifier, alone):
                each.top_k, each.threshold = new.top_k, new.threshold

        return _Loaded(infer_file, infer_request,
                       2 * pipeline.runs * settings.max_batch + 2, configure)

    await _serve(ctx, CLASSIFICATION_TOPIC, load)


async def detection(ctx: ComponentContext) -> None:
    """Detect faces in ImageDirectory/ImageName, publish, and write the image with boxes;
    watch mode, Infer requests and configuration updates as for :func:`classification`."""
    output = ctx.work / "output"
    await anyio.Path(output).mkdir(parents=True, exist_ok=True)

    async def load(folder: Path, settings: Settings, stack: AsyncExitStack) -> _Loaded:
        current = [settings]
        manifest = await anyio.to_thread.run_sync(load_manifest, folder)
        detector = await open_face_detector(
            manifest, RunnerOptions(threads=settings.threads, concurrency=settings.runs,
                                    nice=settings.nice))

        async def detect(image: Source | bytes) -> tuple[Any, Any, dict[str, Any]]:
            s = current[0]
            pixels = await anyio.to_thread.run_sync(load_image, image)
            found = top_detections(await detector.detect(pixels), s.top_k, s.threshold)
            return pixels, found, detection_message(found, s.top_k, s.threshold)

        async def infer_file(name: str, image: Source) -> tuple[dict[str, Any], str]:
            pixels, found, message = await detect(image)
            drawn = output / f"{Path(name).stem.replace(' ', '-')}-detections.jpg"
            await anyio.to_thread.run_sync(write_detections, pixels, found, drawn)
            boxes = ", ".join(f"{d.label} {d.score:.2f} [{' '.join(f'{v:.0f}' for v in d.box)}]"
                              for d in found) or "no faces"
            return message, f"{name:<24} {boxes}  -> {drawn}"

        async def infer_request(request: Infer) -> dict[str, Any]:
            return named((await detect(request.image))[2], request.name)

        return _Loaded(infer_file, infer_request, settings.runs + 1,
                       lambda new: current.__setitem__(0, new))

    await _serve(ctx, DETECTION_TOPIC, load)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m actors.ml.components classification|detection --config JSON ...``:
    the same entry points as a plain subprocess (the recipe's Script), printing
    each result message as a JSON line where no in-process bus exists."""
    import argparse
    import sys

    import orjson

    from ..kernel import run

    parser = argparse.ArgumentParser(prog="python3 -m actors.ml.components")
    parser.add_argument("task", choices=["classification", "detection"])
    parser.add_argument("--config", required=True, help="the component's configuration (JSON)")
    parser.add_argument("--name", default="edge.ml.standalone")
    parser.add_argument("--models", type=Path, action="append", default=[],
                        help="a model component's decompressed artifacts folder (repeatable)")
    parser.add_argument("--work", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    try:
        config = orjson.loads(args.config)
    except orjson.JSONDecodeError as exc:
        parser.error(f"--config is not valid JSON: {exc}")

    async def publish(topic: str, payload: Any) -> None:
        sys.stdout.write(orjson.dumps({"topic": topic, "payload": payload}).decode() + "\n")

    deps = {f"model{i}": ComponentContext(f"model{i}", "", {}, folder, folder, folder, "")
            for i, folder in enumerate(args.models)}
    ctx = ComponentContext(args.name, "", config, args.work, args.work, args.work,
                           "edge-actors-local", deps, publish)
    entry = classification if args.task == "classification" else detection
    try:
        run(entry, ctx)
    except (InferenceConfigError, RuntimeUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
