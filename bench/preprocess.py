"""``preprocess``: camera frames and JPEG files to a normalised 1x3x224x224 float32 tensor.

Ours is :func:`actors.ml.convert.to_tensor` (the fused Cython/C kernel:
bilinear resize, ImageNet normalisation and NCHW layout in one pass, written
into a preallocated buffer) and, from JPEG bytes, :func:`actors.ml.convert.decode`
with decode-time scaling before it. The peers are what an edge application
would otherwise write:

- ``pil+numpy``: Pillow's bilinear resize, then numpy normalisation;
- ``cv2.resize+numpy``: OpenCV's INTER_LINEAR resize, then numpy;
- ``blobFromImageWithParams``: OpenCV's DNN preprocessing with a per-channel
  scale, the strongest peer (one C++ call);
- from JPEG: the Greengrass DLR image-classification sample's path (full-size
  ``cv2.imdecode``, the decoder behind its ``cv2.imread``, then ``cv2.resize`` and
  numpy), and the best peer pipeline (``cv2.IMREAD_REDUCED_COLOR_4`` decode,
  then ``blobFromImageWithParams``).

The bound is ``(source bytes the resize reads + tensor bytes written) / copy
bandwidth``, the bandwidth probed in the same run, interleaved with the rest.
OpenCV runs with its default thread count; ours is single-threaded.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._core import Case, Comparison, Contender, Goal, Metric
from ._registry import Settings, Skip, benchmark
from .membw import CopyProbe, MiB

TIME = Metric("time", "s", "lower", "time per image")
HEIGHT = WIDTH = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MUL = (1.0 / (255.0 * STD)).astype(np.float32)
ADD = (-MEAN / STD).astype(np.float32)

GOAL_BLOB_VGA = Goal(">= 2.5x blobFromImageWithParams from 640x427", 2.5)
GOAL_BLOB_1080 = Goal(">= 1.8x blobFromImageWithParams from 1920x1080", 1.8)
GOAL_BOUND = Goal("within 1.5x of the DRAM bound", 1 / 1.5)
GOAL_SAMPLE = Goal(">= 1.5x the Greengrass sample from JPEG", 1.5)
GOAL_BEST_JPEG = Goal("on par with reduced decode + blobFromImageWithParams", 1.0)

Sample = Callable[[], dict[str, float]]


def _timer(step: Callable[[], object], images: int) -> Sample:
    def sample() -> dict[str, float]:
        start = time.perf_counter()
        for _ in range(images):
            step()
        return {"time": (time.perf_counter() - start) / images}

    return sample


def _normalise_into(resized: np.ndarray, out: np.ndarray) -> None:
    """HxWx3 uint8 -> out[0] (3xHxW float32) in two ufunc passes, no temporaries."""
    np.multiply(resized.transpose(2, 0, 1), MUL[:, None, None], out=out[0])
    np.add(out[0], ADD[:, None, None], out=out[0])


def _frame(height: int, width: int) -> np.ndarray:
    """A real photograph (scikit-learn's china.jpg) at the frame size, or a synthetic scene."""
    from PIL import Image

    try:
        from sklearn.datasets import load_sample_image

        photo = Image.fromarray(load_sample_image("china.jpg"))
    except ImportError:
        y, x = np.mgrid[0:427, 0:640]
        scene = np.stack([(x * 255 // 640), (y * 255 // 427), ((x ^ y) & 255)], axis=2)
        photo = Image.fromarray(scene.astype(np.uint8))
    if photo.size != (width, height):
        photo = photo.resize((width, height), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(photo))


def _rows_read(height: int) -> int:
    """Source rows a bilinear resize to HEIGHT reads."""
    from actors.ml._reference import bilinear_taps

    i0, i1, _ = bilinear_taps(height, HEIGHT)
    return len(set(i0.tolist()) | set(i1.tolist()))


def _conversion_case(
    settings: Settings, cv2: Any, probe: CopyProbe, height: int, width: int, goal: Goal
) -> Case:
    from PIL import Image

    from actors import _native_imgconv
    from actors.ml.convert import TensorSpec, to_tensor

    frame = _frame(height, width)
    spec = TensorSpec(HEIGHT, WIDTH, mean=tuple(MEAN.tolist()), std=tuple(STD.tolist()))
    ours_out = np.empty(spec.shape, np.float32)
    pil_out = np.empty_like(ours_out)
    cv_out = np.empty_like(ours_out)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*MUL.tolist(), 0.0)
    params.mean = (*(MEAN * 255).tolist(), 0.0)
    params.size = (WIDTH, HEIGHT)
    params.swapRB = False
    params.ddepth = cv2.CV_32F

    def ours() -> None:
        to_tensor(frame, spec, ours_out)

    def ours_portable() -> None:
        _native_imgconv.set_simd(False)
        try:
            to_tensor(frame, spec, ours_out)
        finally:
            _native_imgconv.set_simd(True)

    def pil() -> None:
        resized = Image.fromarray(frame).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
        _normalise_into(np.asarray(resized), pil_out)

    def cv_resize() -> None:
        _normalise_into(cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR), cv_out)

    def blob() -> np.ndarray:
        result: np.ndarray = cv2.dnn.blobFromImageWithParams(frame, params)
        return result

    ours()
    cv_resize()
    difference = float(np.abs(ours_out - blob()).mean() * 255 * STD.mean())
    if difference > 1.0:
        raise RuntimeError(
            f"ours and blobFromImageWithParams differ by {difference:.2f} grey "
            "levels on average: the comparison would be void"
        )
    moved = _rows_read(height) * width * 3 + ours_out.nbytes
    images = settings.pick(200, 20) if height * width < 10**6 else settings.pick(100, 10)
    return Case(
        name=f"{width}x{height} uint8 -> 1x3x{HEIGHT}x{WIDTH} float32",
        metrics=(TIME,),
        contenders=(
            Contender("ours", "ours", _timer(ours, images), "actors.ml.convert.to_tensor"),
            Contender(
                "ours-portable",
                "baseline",
                _timer(ours_portable, images),
                "to_tensor on the portable C path (no AVX2), as on armv7l",
            ),
            Contender(
                "pil+numpy",
                "peer",
                _timer(pil, images),
                "PIL Image.resize(BILINEAR) + numpy normalise",
            ),
            Contender(
                "cv2.resize+numpy",
                "peer",
                _timer(cv_resize, images),
                "cv2.resize(INTER_LINEAR) + numpy normalise",
            ),
            Contender(
                "blobFromImageWithParams",
                "peer",
                _timer(blob, images),
                "cv2.dnn.blobFromImageWithParams, per-channel scalefactor",
            ),
            Contender(
                "dram-bound",
                "bound",
                lambda: {"time": moved / probe.measure()},
                f"{moved} B / copy bandwidth of {probe.nbytes // MiB} MiB",
            ),
        ),
        comparisons=(
            Comparison("ours", "pil+numpy"),
            Comparison("ours", "cv2.resize+numpy"),
            Comparison("ours", "blobFromImageWithParams", goal=goal),
            Comparison("ours", "dram-bound", goal=GOAL_BOUND),
        ),
        samples=settings.samples,
        warmup=settings.warmup,
        params={
            "images_per_sample": images,
            "bytes_moved": moved,
            "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(),
            "simd": _native_imgconv.simd_level(),
            "blob_vs_ours_grey_levels": round(difference, 4),
        },
    )


def _jpeg_case(settings: Settings, cv2: Any) -> Case:
    from PIL import Image

    from actors.ml.convert import TensorSpec, decode, to_tensor

    buffer = io.BytesIO()
    Image.fromarray(_frame(1080, 1920)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    encoded = np.frombuffer(data, dtype=np.uint8)
    spec = TensorSpec(HEIGHT, WIDTH, mean=tuple(MEAN.tolist()), std=tuple(STD.tolist()))
    ours_out = np.empty(spec.shape, np.float32)
    sample_out = np.empty_like(ours_out)
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*MUL.tolist(), 0.0)
    params.mean = (*(MEAN * 255).tolist(), 0.0)
    params.size = (WIDTH, HEIGHT)
    params.swapRB = True  # OpenCV decodes to BGR
    params.ddepth = cv2.CV_32F

    def ours() -> None:
        to_tensor(decode(data, (HEIGHT, WIDTH)), spec, ours_out)

    def greengrass_sample() -> None:
        bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        resized = cv2.resize(bgr, (WIDTH, HEIGHT))
        _normalise_into(resized[:, :, ::-1], sample_out)

    def reduced_blob() -> np.ndarray:
        bgr = cv2.imdecode(encoded, cv2.IMREAD_REDUCED_COLOR_4)
        result: np.ndarray = cv2.dnn.blobFromImageWithParams(bgr, params)
        return result

    ours()
    greengrass_sample()
    difference = float(np.abs(ours_out - reduced_blob()).mean() * 255 * STD.mean())
    if difference > 3.0:
        raise RuntimeError(
            f"ours and the reduced-decode peer differ by {difference:.2f} grey "
            "levels on average: the comparison would be void"
        )
    images = settings.pick(40, 5)
    return Case(
        name=f"JPEG 1920x1080 ({len(data) // 1024} KiB) -> 1x3x{HEIGHT}x{WIDTH} float32",
        metrics=(TIME,),
        contenders=(
            Contender(
                "ours",
                "ours",
                _timer(ours, images),
                "convert.decode (Pillow draft 1/4) + to_tensor",
            ),
            Contender(
                "greengrass-sample",
                "peer",
                _timer(greengrass_sample, images),
                "cv2.imdecode full size + cv2.resize + numpy (the Greengrass sample)",
            ),
            Contender(
                "reduced-decode+blob",
                "peer",
                _timer(reduced_blob, images),
                "cv2.imdecode(IMREAD_REDUCED_COLOR_4) + blobFromImageWithParams",
            ),
        ),
        comparisons=(
            Comparison("ours", "greengrass-sample", goal=GOAL_SAMPLE),
            Comparison("ours", "reduced-decode+blob", goal=GOAL_BEST_JPEG),
        ),
        samples=settings.samples,
        warmup=settings.warmup,
        params={
            "images_per_sample": images,
            "jpeg_bytes": len(data),
            "quality": 90,
            "opencv_threads": cv2.getNumThreads(),
            "peer_vs_ours_grey_levels": round(difference, 4),
        },
    )


@benchmark(
    "preprocess",
    "uint8 frames (640x427, 1920x1080) and 1080p JPEG -> normalised 1x3x224x224 float32: "
    "the fused kernel vs PIL, cv2.resize, cv2.dnn.blobFromImageWithParams and the DRAM bound",
    goals=(GOAL_BLOB_VGA, GOAL_BLOB_1080, GOAL_BOUND, GOAL_SAMPLE, GOAL_BEST_JPEG),
)
def build(settings: Settings) -> list[Case]:
    try:
        import cv2
    except ImportError as exc:
        raise Skip(f"OpenCV (opencv-python-headless) is not installed: {exc}") from exc
    if not hasattr(cv2.dnn, "blobFromImageWithParams"):
        raise Skip(f"OpenCV {cv2.__version__} has no dnn.blobFromImageWithParams (needs >= 4.8)")
    try:
        from actors import _native_imgconv  # noqa: F401
    except ImportError as exc:
        raise Skip(f"the native extension is not built: {exc}") from exc
    probe = CopyProbe(settings.pick(256 * MiB, 64 * MiB))
    return [
        _conversion_case(settings, cv2, probe, 427, 640, GOAL_BLOB_VGA),
        _conversion_case(settings, cv2, probe, 1080, 1920, GOAL_BLOB_1080),
        _jpeg_case(settings, cv2),
    ]
