"""The 640x427 -> 1x3x224x224 float32 conversion on armv7l, NEON vs the portable C path vs
the numpy reference, timed in one process under the same emulator (run by
tools/armhf/test.sh). Emulated times mean nothing alone: only the ratios are reported.

Also checks that the NEON and portable outputs are identical (the kernels are fixed point).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from actors import _native_imgconv  # type: ignore[attr-defined]
from actors.ml.convert import TensorSpec, to_tensor, to_tensor_reference

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROUNDS = int(os.environ.get("ARMHF_MEASURE_ROUNDS", "20"))


def frame(height: int = 427, width: int = 640) -> tuple[np.ndarray, str]:
    """A real photograph at 640x427 (scikit-learn's china.jpg, copied in), or a synthetic one."""
    path = Path(os.environ.get("EDGE_ACTORS_TEST_IMAGES", "/work/images")) / "china.jpg"
    if path.is_file():
        with Image.open(path) as image:
            photo = image.convert("RGB")
        name = path.name
    else:
        y, x = np.mgrid[0:height, 0:width]
        photo = Image.fromarray(np.stack([x * 255 // width, y * 255 // height, (x ^ y) & 255],
                                         axis=2).astype(np.uint8))
        name = "a synthetic scene"
    if photo.size != (width, height):
        photo = photo.resize((width, height), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(photo)), name


def timed(run: Callable[[], None]) -> float:
    """The CPU time of one call on this thread: the machine is shared, and CPU time
    leaves out the waits for a core that wall time would count."""
    start = time.thread_time()
    run()
    return time.thread_time() - start


def main() -> int:
    image, name = frame()
    spec = TensorSpec(224, 224, mean=MEAN, std=STD)
    neon_out = np.empty(spec.shape, np.float32)
    portable_out = np.empty_like(neon_out)
    reference_out = np.empty_like(neon_out)
    if _native_imgconv.simd_level() != 1:
        print(f"NEON is not available on this CPU model ({platform.machine()}): nothing to compare")
        return 1

    def neon() -> None:
        to_tensor(image, spec, neon_out)

    def portable() -> None:
        _native_imgconv.set_simd(False)
        try:
            to_tensor(image, spec, portable_out)
        finally:
            _native_imgconv.set_simd(True)

    def reference() -> None:
        to_tensor_reference(image, spec, reference_out)

    for warm in (neon, portable, reference):
        warm()
    identical = np.array_equal(neon_out, portable_out)
    worst = float(np.abs(neon_out - reference_out).max())
    samples: dict[str, list[float]] = {"neon": [], "portable": [], "reference": []}
    for i in range(ROUNDS * 10):  # interleaved call by call, so that drift hits all alike
        samples["neon"].append(timed(neon))
        samples["portable"].append(timed(portable))
        if i % 10 == 0:
            samples["reference"].append(timed(reference))
    median = {k: statistics.median(v) for k, v in samples.items()}
    print(f"640x427 uint8 -> 1x3x224x224 float32 ({name}), {platform.machine()} under "
          f"qemu-arm, Python {sys.version.split()[0]}, numpy {np.__version__}; CPU time, "
          f"medians of {len(samples['neon'])}/{len(samples['portable'])}/"
          f"{len(samples['reference'])} runs")
    print(f"  NEON vs portable C:       {median['portable'] / median['neon']:.2f}x "
          f"(goal >= 1.5x)")
    print(f"  NEON vs numpy reference:  {median['reference'] / median['neon']:.1f}x")
    print(f"  portable C vs numpy:      {median['reference'] / median['portable']:.1f}x")
    print(f"  NEON output identical to the portable path: {identical}; "
          f"largest difference from the numpy reference: {worst:.2e}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
