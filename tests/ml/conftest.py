"""Real photographs for the conversion tests: the ones scikit-learn and scikit-image ship."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (package, folder inside it, file): JPEGs from scikit-learn, PNGs from scikit-image.
SOURCES = {
    "china": ("sklearn", "datasets/images", "china.jpg"),
    "flower": ("sklearn", "datasets/images", "flower.jpg"),
    "chelsea": ("skimage", "data", "chelsea.png"),
    "astronaut": ("skimage", "data", "astronaut.png"),
    "coffee": ("skimage", "data", "coffee.png"),
}


def image_path(name: str) -> Path:
    """The file of a shipped test image; skips the test when its package is not installed.

    ``EDGE_ACTORS_TEST_IMAGES`` names a folder holding copies of the same files, for
    platforms where those packages do not install (``make arm-test`` sets it).
    """
    package, folder, file = SOURCES[name]
    copies = os.environ.get("EDGE_ACTORS_TEST_IMAGES")
    if copies and (Path(copies) / file).is_file():
        return Path(copies) / file
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed: it ships the test image {file}")
    path = Path(spec.origin).parent / folder / file
    if not path.is_file():
        pytest.skip(f"{path} is missing from the installed {package}")
    return path


_CACHE: dict[str, np.ndarray] = {}


def load(name: str) -> np.ndarray:
    """The image as an HxWx3 uint8 RGB array (read once per session)."""
    if name not in _CACHE:
        with Image.open(image_path(name)) as image:
            _CACHE[name] = np.asarray(image.convert("RGB"))
    return _CACHE[name]


@pytest.fixture(params=sorted(SOURCES))
def photo(request: pytest.FixtureRequest) -> np.ndarray:
    """Each real test image in turn."""
    return load(request.param)
