"""The inference components' entry points, run in process by the runtime.

Configuration keys are Greengrass's (``aws.greengrass.DLRImageClassification``
and ``aws.greengrass.DLRObjectDetection``): ``ImageDirectory``, ``ImageName``,
``InferenceInterval``, ``PublishResultsOnTopic``, ``ModelResourceKey``,
``UseCamera``, ``Accelerator``. Beyond them: ``ImageName: "*"`` takes every
image in the folder, ``InferenceInterval: 0`` runs once and finishes, and
``Runtime``, ``TopK``, ``ScoreThreshold`` choose the runner and the results.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from ..component._context import ComponentContext
from ..kernel import ActorsError
from .models import load_manifest
from .runtimes import RunnerOptions
from .tasks import (
    THRESHOLD,
    TOP_K,
    classification_message,
    detection_message,
    load_image,
    open_classifier,
    open_face_detector,
    top_detections,
    write_detections,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class InferenceConfigError(ActorsError, ValueError):
    """An inference component's configuration is unusable: names the key and what to do."""


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


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


def _images(ctx: ComponentContext) -> list[Path]:
    if _flag(ctx.configuration.get("UseCamera", "false")):
        raise InferenceConfigError(
            f"{ctx.name}: UseCamera is true, but this device has no camera source; set "
            "UseCamera to false and give ImageDirectory/ImageName")
    directory = Path(str(ctx.configuration.get("ImageDirectory") or ""))
    name = str(ctx.configuration.get("ImageName") or "*")
    if not directory.is_dir():
        raise InferenceConfigError(f"{ctx.name}: ImageDirectory {str(directory)!r} is not a "
                                   "folder; point it at the images to classify")
    if name == "*":
        images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        images = [directory / name]
    missing = [str(p) for p in images if not p.is_file()]
    if missing or not images:
        what = ", ".join(missing) or str(directory)
        raise InferenceConfigError(f"{ctx.name}: no image to read: {what} (check "
                                   "ImageDirectory and ImageName)")
    return images


def _settings(ctx: ComponentContext, default_topic: str) -> tuple[str, float, int, float]:
    config = ctx.configuration
    try:
        interval = float(config.get("InferenceInterval", 3600))
        top_k = int(config.get("TopK", TOP_K))
        threshold = float(config.get("ScoreThreshold", THRESHOLD))
    except (TypeError, ValueError) as exc:
        raise InferenceConfigError(f"{ctx.name}: InferenceInterval, TopK and ScoreThreshold "
                                   f"must be numbers: {exc}") from None
    accelerator = str(config.get("Accelerator", "cpu")).lower()
    if accelerator not in ("cpu", "auto"):
        raise InferenceConfigError(f"{ctx.name}: Accelerator {accelerator!r} is not available "
                                   "here; use cpu")
    return str(config.get("PublishResultsOnTopic") or default_topic), interval, top_k, threshold


def _model_key(ctx: ComponentContext) -> tuple[str, str, int, float]:
    """What the loaded model depends on: a change means loading it again."""
    _, _, top_k, threshold = _settings(ctx, "")
    return (str(_model_folder(ctx)), str(ctx.configuration.get("Runtime") or "onnxruntime"),
            top_k, threshold)


async def classification(ctx: ComponentContext) -> None:
    """Classify ImageDirectory/ImageName every InferenceInterval seconds and publish.

    A configuration update (a deployment's MERGE/RESET) takes effect at once, without
    a restart: the images are classified again with the new settings, and the model
    is loaded again only when ModelResourceKey, Runtime, TopK or ScoreThreshold changed.
    """
    loaded: tuple[str, str, int, float] | None = None
    while True:
        topic, interval, top_k, threshold = _settings(ctx, "ml/dlr/image-classification")
        if _model_key(ctx) != loaded:
            loaded = _model_key(ctx)
            runtime = loaded[1]
            manifest = await anyio.to_thread.run_sync(load_manifest, Path(loaded[0]))
            classifier = await open_classifier(manifest, runtime, RunnerOptions(threads=1),
                                               top_k=top_k, threshold=threshold)
            ctx.output(f"{'image':<24} {'top-1 label':<36} {'score':>6}   "
                       f"({runtime}, {manifest.name})")
        for image in await anyio.to_thread.run_sync(_images, ctx):
            start = time.perf_counter()
            predictions = await classifier.classify(image)
            took = (time.perf_counter() - start) * 1000
            await ctx.publish(topic, classification_message(predictions, top_k, threshold))
            best = predictions[0] if predictions else None
            label = best.label if best else "(nothing above the threshold)"
            score = f"{best.score:.3f}" if best else ""
            ctx.output(f"{image.name:<24} {label[:36]:<36} {score:>6}   {took:.0f} ms")
        if interval <= 0:
            return
        await ctx.wait_configuration_change(interval)


async def detection(ctx: ComponentContext) -> None:
    """Detect faces in ImageDirectory/ImageName, publish, and write the image with boxes.
    Configuration updates take effect at once, as for :func:`classification`."""
    output = ctx.work / "output"
    await anyio.Path(output).mkdir(parents=True, exist_ok=True)
    loaded: str | None = None
    while True:
        topic, interval, top_k, threshold = _settings(ctx, "ml/dlr/object-detection")
        if str(_model_folder(ctx)) != loaded:
            loaded = str(_model_folder(ctx))
            manifest = await anyio.to_thread.run_sync(load_manifest, Path(loaded))
            detector = await open_face_detector(manifest, RunnerOptions(threads=1))
        for image in await anyio.to_thread.run_sync(_images, ctx):
            pixels = await anyio.to_thread.run_sync(load_image, image)
            found = top_detections(await detector.detect(pixels), top_k, threshold)
            await ctx.publish(topic, detection_message(found, top_k, threshold))
            drawn = output / f"{image.stem}-detections.jpg"
            await anyio.to_thread.run_sync(write_detections, pixels, found, drawn)
            boxes = ", ".join(f"{d.label} {d.score:.2f} [{' '.join(f'{v:.0f}' for v in d.box)}]"
                              for d in found) or "no faces"
            ctx.output(f"{image.name:<24} {boxes}  -> {drawn}")
        if interval <= 0:
            return
        await ctx.wait_configuration_change(interval)


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
    except InferenceConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
