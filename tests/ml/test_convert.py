"""The native image-to-tensor kernel against its numpy twin, on real photographs.

The kernel computes in fixed point (7-bit vertical and 14-bit horizontal
weights), the twin in float64: they agree within one grey level at worst and
within a few hundredths of a level on average; integer tensors within one step.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from actors.ml import convert
from actors.ml.convert import ConversionError, TensorSpec, TensorSpecError

from .conftest import load

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
native = pytest.mark.skipif(not convert.NATIVE, reason="extension not built (the fallback leg)")


def in_levels(got: np.ndarray, want: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """|got - want| in grey levels of the source image, per element."""
    channel_axis = 1 if spec.layout == "NCHW" else 3
    shape = [1, 1, 1, 1]
    shape[channel_axis] = 3
    per_level = (np.asarray(spec.scale) / np.asarray(spec.std)).reshape(shape)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return np.asarray(diff / per_level)


def assert_close(got: np.ndarray, want: np.ndarray, spec: TensorSpec, mean_levels: float = 0.05
                 ) -> None:
    assert got.shape == want.shape == spec.shape
    assert got.dtype == want.dtype == np.dtype(spec.dtype)
    if spec.dtype == "float32":
        levels = in_levels(got, want, spec)
        assert levels.max() <= 1.0, levels.max()
        assert levels.mean() <= mean_levels, levels.mean()
    else:
        steps = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert steps.max() <= 1
        assert (steps != 0).mean() <= 0.1


@native
@pytest.mark.parametrize("size", [(224, 224), (97, 131), (600, 803)],
                         ids=["224x224", "odd-97x131", "upscale-600x803"])
def test_native_matches_the_reference_on_real_images(photo: np.ndarray,
                                                     size: tuple[int, int]) -> None:
    spec = TensorSpec(*size, **IMAGENET)
    assert_close(convert.to_tensor(photo, spec), convert.to_tensor_reference(photo, spec), spec)


@native
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "int8"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_every_layout_dtype_and_channel_order(layout: str, dtype: str, order: str) -> None:
    image = load("chelsea")
    quant = {"float32": {}, "uint8": {"scale": 1.0, "mean": (0, 0, 0), "std": (1, 1, 1)},
             "int8": {"scale": 1.0, "mean": (128, 120, 110), "std": (1, 1, 1)}}[dtype]
    spec = TensorSpec(**{**IMAGENET, **quant}, height=160, width=211,  # type: ignore[arg-type]
                      layout=layout, dtype=dtype, channel_order=order)
    got = convert.to_tensor(image, spec)
    assert_close(got, convert.to_tensor_reference(image, spec), spec)
    # The channels really are in the asked order: compare with the opposite order.
    flipped = TensorSpec(**{**spec.__dict__, "channel_order": "BGR" if order == "RGB" else "RGB",
                            "mean": spec.mean[::-1], "std": spec.std[::-1]})
    other = convert.to_tensor(image, flipped)
    axis = 1 if layout == "NCHW" else 3
    np.testing.assert_array_equal(got, np.flip(other, axis=axis))


@native
def test_int8_quantisation_follows_scale_and_zero_point() -> None:
    image = load("coffee")
    spec = TensorSpec(96, 96, dtype="int8", quant_scale=1 / 64, zero_point=-10, **IMAGENET)
    got = convert.to_tensor(image, spec)
    assert_close(got, convert.to_tensor_reference(image, spec), spec)
    as_float = convert.to_tensor(image, TensorSpec(96, 96, **IMAGENET))
    expected = np.clip(np.floor(as_float * 64 - 10 + 0.5), -128, 127)
    assert np.abs(got - expected).max() <= 1
    assert got.min() == -128 and got.max() == 127  # ImageNet-normalised values saturate


@native
@pytest.mark.parametrize("name", ["china", "astronaut"])
@pytest.mark.parametrize("size", [(64, 64), (75, 111), (300, 200)],
                         ids=["64x64", "odd-75x111", "mixed-300x200"])
def test_area_resize_matches_the_reference(name: str, size: tuple[int, int]) -> None:
    image = load(name)
    spec = TensorSpec(*size, resize="area", **IMAGENET)
    got = convert.to_tensor(image, spec)
    assert_close(got, convert.to_tensor_reference(image, spec), spec)
    # Averaging, not sampling: a 1-pixel checkerboard shrinks to flat grey.
    board = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    flat = convert.to_tensor(board, TensorSpec(64, 64, resize="area", scale=1.0))
    np.testing.assert_allclose(flat, 127.5, atol=0.5)


@native
def test_grey_and_rgba_images_convert_like_their_rgb_version() -> None:
    rgb = load("astronaut")
    grey = np.asarray(rgb.mean(axis=2).round(), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=2)
    for spec in (TensorSpec(224, 224, **IMAGENET), TensorSpec(99, 57, layout="NHWC")):
        np.testing.assert_array_equal(convert.to_tensor(grey, spec),
                                      convert.to_tensor(np.dstack([grey] * 3), spec))
        np.testing.assert_array_equal(convert.to_tensor(grey[:, :, None], spec),
                                      convert.to_tensor(grey, spec))
        np.testing.assert_array_equal(convert.to_tensor(rgba, spec),
                                      convert.to_tensor(rgb, spec))
        assert_close(convert.to_tensor(grey, spec), convert.to_tensor_reference(grey, spec), spec)
        assert_close(convert.to_tensor(rgba, spec), convert.to_tensor_reference(rgba, spec), spec)


@native
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_letterbox_keeps_the_aspect_ratio_and_pads(layout: str, dtype: str) -> None:
    image = load("china")  # 427x640: a band across a square input
    spec = TensorSpec(320, 320, layout=layout, dtype=dtype, scale=1.0 if dtype == "uint8" else
                      1 / 255, letterbox=True, pad_value=114)
    where = convert.placement(image.shape[:2], spec)
    assert (where.left, where.width) == (0, 320)
    assert where.height == round(427 * 320 / 640) and where.top == (320 - where.height) // 2
    got = convert.to_tensor(image, spec)
    assert_close(got, convert.to_tensor_reference(image, spec), spec)
    hwc = got[0] if layout == "NHWC" else got[0].transpose(1, 2, 0)
    pad = 114 if dtype == "uint8" else np.float32(114 / 255)
    assert (hwc[:where.top] == pad).all() and (hwc[where.top + where.height:] == pad).all()
    assert not (hwc[where.top:where.top + where.height] == pad).all()
    # Mapping back: the tensor's bottom-right corner of the picture is the image's.
    assert where.to_source(where.top + where.height, 320) == pytest.approx((427, 640))


@native
def test_views_and_odd_strides_give_the_same_tensor_as_a_copy() -> None:
    image = load("flower")
    spec = TensorSpec(101, 77, **IMAGENET)
    for view in (image[13:400, 7:531], image[::-1], image[:, ::2], image[::3, 1::3]):
        np.testing.assert_array_equal(convert.to_tensor(view, spec),
                                      convert.to_tensor(np.ascontiguousarray(view), spec))
    read_only = image.copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(convert.to_tensor(read_only, spec),
                                  convert.to_tensor(image, spec))


@native
@pytest.mark.parametrize("src", [(1, 1), (1, 9), (9, 1), (2, 3), (5, 33)])
@pytest.mark.parametrize("dst", [(1, 1), (3, 17), (40, 9)])
def test_tiny_images_and_tensors(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(src) * 31 + sum(dst))
    image = rng.integers(0, 256, size=(*src, 3), dtype=np.uint8)
    for resize in ("bilinear", "area"):
        spec = TensorSpec(*dst, resize=resize)  # type: ignore[arg-type]
        # Random pixels are the worst case for the fixed-point weights: every
        # neighbour differs by ~85 levels on average.
        assert_close(convert.to_tensor(image, spec), convert.to_tensor_reference(image, spec),
                     spec, mean_levels=0.25)


@native
def test_portable_path_agrees_with_the_vector_path() -> None:
    from actors import _native_imgconv  # type: ignore[attr-defined]

    image = load("coffee")
    specs = [TensorSpec(224, 224, **IMAGENET), TensorSpec(123, 301, layout="NHWC", dtype="int8",
                                                           scale=1.0, mean=(128,) * 3),
             TensorSpec(64, 64, resize="area", channel_order="BGR"),
             # A large reduction: the vector path fuses its two passes.
             TensorSpec(50, 71, **IMAGENET), TensorSpec(9, 3, layout="NHWC", dtype="uint8",
                                                        scale=1.0, letterbox=True),
             # Bilinear with the channels swapped, a width that is no multiple of 4.
             TensorSpec(97, 131, channel_order="BGR", **IMAGENET)]
    fast = [convert.to_tensor(image, spec) for spec in specs]
    level = _native_imgconv.set_simd(False)
    try:
        assert level == 0
        portable = [convert.to_tensor(image, spec) for spec in specs]
    finally:
        _native_imgconv.set_simd(True)
    # AVX2 fuses each multiply-add (FMA), one rounding fewer than the portable C; NEON
    # leaves the float arithmetic to the same scalar VFP operations: bit for bit.
    exact = platform.machine() not in ("x86_64", "AMD64", "i686")
    for spec, a, b in zip(specs, fast, portable, strict=True):
        if exact:
            np.testing.assert_array_equal(a, b, err_msg=str(spec))
        else:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=0,
                                       atol=1e-5 if a.dtype == np.float32 else 1)


@pytest.mark.parametrize("twin", ["to_tensor", "to_tensor_reference"])
def test_known_answers_same_size_and_halving(twin: str) -> None:
    # Runs on both legs: the fallback must give the same known answers.
    run = getattr(convert, twin)
    image = load("coffee")[:64, :96]
    same = run(image, TensorSpec(64, 96, **IMAGENET))
    want = (image / 255.0 - IMAGENET["mean"]) / IMAGENET["std"]
    np.testing.assert_allclose(same[0].transpose(1, 2, 0), want, atol=1e-5)
    # Halving with OpenCV's bilinear geometry averages each 2x2 block.
    half = run(image, TensorSpec(32, 48, scale=1.0, layout="NHWC"))
    blocks = image.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(half[0], blocks, atol=0.51)


def test_writes_into_the_given_buffer_and_a_batch_slot() -> None:
    image = load("chelsea")
    spec = TensorSpec(48, 64, **IMAGENET)
    batch = np.full((2, 3, 48, 64), np.nan, dtype=np.float32)
    convert.to_tensor(image, spec, out=batch[1])
    np.testing.assert_array_equal(batch[1], convert.to_tensor(image, spec)[0])
    assert np.isnan(batch[0]).all()
    out = np.empty(spec.shape, np.float32)
    assert convert.to_tensor(image, spec, out=out) is out


def test_bad_images_buffers_and_specs_are_refused_with_the_reason() -> None:
    spec = TensorSpec(8, 8)
    with pytest.raises(ConversionError, match="uint8"):
        convert.to_tensor(np.zeros((4, 4, 3), np.float32), spec)
    with pytest.raises(ConversionError, match=r"shape \(4, 4, 2\)"):
        convert.to_tensor(np.zeros((4, 4, 2), np.uint8), spec)
    with pytest.raises(ConversionError, match="empty"):
        convert.to_tensor(np.zeros((0, 4, 3), np.uint8), spec)
    with pytest.raises(ConversionError, match=r"float32 array of shape \(1, 3, 8, 8\)"):
        convert.to_tensor(np.zeros((4, 4, 3), np.uint8), spec, out=np.zeros((1, 8, 8, 3),
                                                                             np.float32))
    with pytest.raises(ConversionError, match="C-contiguous"):
        convert.to_tensor(np.zeros((4, 4, 3), np.uint8), spec,
                          out=np.zeros((3, 8, 16), np.float32)[:, :, ::2])
    with pytest.raises(TensorSpecError, match="TensorSpec.layout"):
        TensorSpec(8, 8, layout="CHW")  # type: ignore[arg-type]
    with pytest.raises(TensorSpecError, match="TensorSpec.std must be non-zero"):
        TensorSpec(8, 8, std=(1, 0, 1))
    with pytest.raises(TensorSpecError, match="TensorSpec.height"):
        TensorSpec(0, 8)
    with pytest.raises(TensorSpecError, match="one value per channel"):
        TensorSpec(8, 8, mean=(0.5, 0.5))  # type: ignore[arg-type]
    assert isinstance(TensorSpecError("x"), ValueError)


@native
def test_worker_threads_convert_in_parallel_with_the_same_results() -> None:
    image = load("astronaut")
    spec = TensorSpec(224, 224, **IMAGENET)
    want = convert.to_tensor(image, spec)
    results: list[np.ndarray] = []

    def work() -> None:
        results.extend(convert.to_tensor(image, spec) for _ in range(20))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    for got in results:
        np.testing.assert_array_equal(got, want)


@native
@pytest.mark.parametrize("threads", [2, 3, 64])
def test_rows_split_over_threads_give_the_same_tensor(threads: int) -> None:
    image = load("china")
    for spec in (TensorSpec(224, 224, **IMAGENET), TensorSpec(5, 300, letterbox=True,
                                                             dtype="uint8", scale=1.0),
                 TensorSpec(101, 67, resize="area", layout="NHWC")):
        np.testing.assert_array_equal(convert.to_tensor(image, spec, threads=threads),
                                      convert.to_tensor(image, spec))


# The first kernel (no resize), kept for callers that resize elsewhere.

@native
@pytest.mark.parametrize("shape", [(1, 1), (224, 224), (427, 640), (31, 17), (3, 1001)])
def test_normalize_chw_matches_the_numpy_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    got = convert.normalize_chw(image, IMAGENET["mean"], IMAGENET["std"])
    want = convert.normalize_chw_reference(image, IMAGENET["mean"], IMAGENET["std"])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_normalize_chw_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"HxWx3 uint8.*\(4, 4\)"):
        convert.normalize_chw(np.zeros((4, 4), np.uint8), IMAGENET["mean"], IMAGENET["std"])
    with pytest.raises(ValueError, match="std must be non-zero"):
        convert.normalize_chw(np.zeros((4, 4, 3), np.uint8), (0, 0, 0), (1, 0, 1))


def test_without_the_extension_the_fallback_runs_and_says_so() -> None:
    script = textwrap.dedent("""
        import sys, logging
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "actors._native_imgconv":
                    raise ImportError("blocked for the test")
        sys.meta_path.insert(0, Block())
        logging.basicConfig(level=logging.WARNING)
        import numpy as np
        from actors.ml import convert
        image = np.full((20, 30, 3), 255, np.uint8)
        image[:, :, 1] = 0
        spec = convert.TensorSpec(8, 8, layout="NHWC", dtype="uint8", scale=1.0,
                                  channel_order="BGR")
        t = convert.to_tensor(image, spec)
        out = convert.normalize_chw(np.full((2, 2, 3), 255, np.uint8), (0, 0, 0), (1, 1, 1))
        print(convert.NATIVE, t.shape, t[0, 4, 4].tolist(), float(out.max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split(maxsplit=1)[0] == "False"
    assert "(1, 8, 8, 3) [255, 0, 255] 1.0" in done.stdout
    assert "_native_imgconv is not built" in done.stderr
    assert "numpy fallback" in done.stderr
