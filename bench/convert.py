"""``convert``: the native HWC uint8 -> CHW float32 normalising kernel vs numpy and the DRAM bound.

Ours is ``actors._native_imgconv.hwc_to_chw_normalize``; the peer is the best
plain-numpy form (two ufunc passes writing straight into the destination). The
bound is ``(bytes read + bytes written) / copy bandwidth``, the bandwidth being
probed in the same run (:mod:`bench.membw`), interleaved with the others. A
224x224 image fits in the caches, so beating the DRAM bound (ratio > 1) is
possible; it says the kernel is no longer limited by its arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ._core import Case, Contender, Metric, compare_each
from ._registry import Settings, Skip, benchmark
from .membw import CopyProbe, MiB

TIME = Metric("time", "s", "lower", "time per image")
HEIGHT, WIDTH = 224, 224
# ImageNet normalisation folded into one multiply-add: (x / 255 - mean) / std.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SCALE = (1.0 / (255.0 * STD)).astype(np.float32)
BIAS = (-MEAN / STD).astype(np.float32)

Convert = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def numpy_convert(src: np.ndarray, dst: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> None:
    """``dst[c, y, x] = src[y, x, c] * scale[c] + bias[c]`` in two passes, no temporaries."""
    np.multiply(src.transpose(2, 0, 1), scale[:, None, None], out=dst)
    np.add(dst, bias[:, None, None], out=dst)


def _timer(
    convert: Convert, src: np.ndarray, dst: np.ndarray, images: int
) -> Callable[[], dict[str, float]]:
    """A sample function: the mean time of ``images`` conversions of ``src`` into ``dst``."""

    def sample() -> dict[str, float]:
        start = time.perf_counter()
        for _ in range(images):
            convert(src, dst, SCALE, BIAS)
        return {"time": (time.perf_counter() - start) / images}

    return sample


@benchmark(
    "convert",
    "native HWC->CHW normalise (224x224x3) vs numpy and the DRAM bound; "
    "skipped without the extension",
)
def build(settings: Settings) -> list[Case]:
    try:
        from actors._native_imgconv import hwc_to_chw_normalize
    except ImportError as exc:
        raise Skip(f"the native extension is not built: {exc}") from exc
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    ours_dst = np.empty((3, HEIGHT, WIDTH), dtype=np.float32)
    numpy_dst = np.empty_like(ours_dst)
    hwc_to_chw_normalize(src, ours_dst, SCALE, BIAS)
    numpy_convert(src, numpy_dst, SCALE, BIAS)
    if not np.allclose(ours_dst, numpy_dst, rtol=1e-5, atol=1e-5):
        raise RuntimeError("the native kernel and numpy disagree: the comparison would be void")

    moved = src.nbytes + ours_dst.nbytes
    probe = CopyProbe(settings.pick(256 * MiB, 64 * MiB))
    images = settings.pick(500, 50)
    return [
        Case(
            name=f"{HEIGHT}x{WIDTH}x3",
            metrics=(TIME,),
            contenders=(
                Contender(
                    "ours",
                    "ours",
                    _timer(hwc_to_chw_normalize, src, ours_dst, images),
                    "actors._native_imgconv.hwc_to_chw_normalize",
                ),
                Contender(
                    "numpy",
                    "peer",
                    _timer(numpy_convert, src, numpy_dst, images),
                    "np.multiply + np.add with out=",
                ),
                Contender(
                    "dram-bound",
                    "bound",
                    lambda: {"time": moved / probe.measure()},
                    f"{moved} B / copy bandwidth of {probe.nbytes // MiB} MiB",
                ),
            ),
            comparisons=compare_each([("ours", "numpy"), ("ours", "dram-bound")]),
            samples=settings.samples,
            warmup=settings.warmup,
            params={"images_per_sample": images, "bytes_moved": moved},
        )
    ]
