"""Decoding JPEG bytes and files, shrunk in the decoder when the model input is small."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.ml.convert import DecodeError, TensorSpec, decode, to_tensor

from .conftest import image_path, load


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def frame() -> bytes:
    """A 1920x1080 camera-like frame: a real photograph enlarged, as JPEG bytes."""
    big = Image.fromarray(load("china")).resize((1920, 1080), Image.Resampling.BICUBIC)
    return jpeg(np.asarray(big))


def test_decodes_bytes_and_files_to_rgb_at_full_size_without_a_target() -> None:
    path = image_path("china")
    from_file = decode(path)
    assert from_file.shape == (427, 640, 3) and from_file.dtype == np.uint8
    np.testing.assert_array_equal(decode(path.read_bytes()), from_file)
    np.testing.assert_array_equal(decode(str(path)), load("china"))


def test_a_large_jpeg_is_shrunk_while_decoding_but_still_covers_the_target(frame: bytes) -> None:
    assert decode(frame).shape == (1080, 1920, 3)
    assert decode(frame, (224, 224)).shape == (270, 480, 3)  # 1/4: 1/8 would be 135 high
    assert decode(frame, (500, 500)).shape == (540, 960, 3)
    assert decode(frame, (1080, 1920)).shape == (1080, 1920, 3)


def test_the_shrunk_decode_gives_nearly_the_same_tensor(frame: bytes) -> None:
    spec = TensorSpec(224, 224, resize="area", scale=1.0)
    full = to_tensor(decode(frame), spec)
    reduced = to_tensor(decode(frame, (224, 224)), spec)
    assert np.abs(full - reduced).mean() < 2.0  # grey levels


def test_png_grey_and_rgba_come_out_as_rgb(tmp_path: Path) -> None:
    png = image_path("coffee")
    assert decode(png, (32, 32)).shape == (400, 600, 3)  # no decode-time scaling for PNG
    grey = tmp_path / "grey.jpg"
    Image.fromarray(load("chelsea")).convert("L").save(grey)
    rgb = decode(grey, (100, 100))
    assert rgb.shape == (150, 226, 3)  # 300x451 at 1/2
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()
    rgba = tmp_path / "rgba.png"
    Image.fromarray(load("astronaut")).convert("RGBA").save(rgba)
    np.testing.assert_array_equal(decode(rgba), load("astronaut"))


def test_undecodable_input_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "frame-0001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DecodeError, match="frame-0001.jpg"):
        decode(bad)
    with pytest.raises(DecodeError, match="<bytes>"):
        decode(b"\xff\xd8\xff garbage")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        decode(tmp_path / "missing.jpg")
    assert isinstance(DecodeError("x"), ValueError)


def test_the_fast_jpeg_path_decodes_exactly_as_pillow(frame: bytes) -> None:
    from actors.ml import _decode

    if _decode._simplejpeg is None:
        pytest.skip("simplejpeg is not installed: Pillow decodes everything")
    for size in [(224, 224), (300, 1000), (1079, 10), (1, 1), None]:
        fast = _decode._decode_simplejpeg(frame, size)
        assert fast is not None
        np.testing.assert_array_equal(fast, _decode._decode_pillow(frame, size, "<bytes>"))
    # What it refuses (here: not a JPEG after all) goes to Pillow, which names the problem.
    assert _decode._decode_simplejpeg(b"\xff\xd8\xff\x00 broken", None) is None
