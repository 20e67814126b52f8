"""The native conversion kernel against its numpy twin."""

from __future__ import annotations

import numpy as np
import pytest

from actors.ml import convert

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.mark.skipif(not convert.NATIVE, reason="extension not built (the fallback leg)")
@pytest.mark.parametrize("shape", [(1, 1), (224, 224), (427, 640), (31, 17), (3, 1001)])
def test_native_matches_the_numpy_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    got = convert.normalize_chw(image, MEAN, STD)
    want = convert.normalize_chw_reference(image, MEAN, STD)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # And both match the formula on a pixel.
    y, x = shape[0] // 2, shape[1] // 2
    for c in range(3):
        assert got[c, y, x] == pytest.approx((image[y, x, c] / 255.0 - MEAN[c]) / STD[c],
                                             rel=1e-5, abs=1e-5)


def test_writes_into_the_given_buffer_and_handles_views() -> None:
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)[:, ::2]  # not contiguous
    out = np.zeros((3, 6, 4), dtype=np.float32)
    result = convert.normalize_chw(image, (0, 0, 0), (1, 1, 1), scale=1.0, out=out)
    assert result is out
    np.testing.assert_array_equal(out, image.transpose(2, 0, 1).astype(np.float32))


def test_bad_input_is_refused_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"HxWx3 uint8.*\(4, 4\)"):
        convert.normalize_chw(np.zeros((4, 4), np.uint8), MEAN, STD)
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4\)"):
        convert.normalize_chw(np.zeros((4, 4, 3), np.uint8), MEAN, STD,
                              out=np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="std must be non-zero"):
        convert.normalize_chw(np.zeros((4, 4, 3), np.uint8), MEAN, (1, 0, 1))


def test_without_the_extension_the_fallback_runs_and_says_so() -> None:
    import subprocess
    import sys
    import textwrap

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
        out = convert.normalize_chw(np.full((2, 2, 3), 255, np.uint8), (0, 0, 0), (1, 1, 1))
        print(convert.NATIVE, float(out.max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "1.0"]
    assert "_native_imgconv is not built" in done.stderr
    assert "numpy fallback" in done.stderr
