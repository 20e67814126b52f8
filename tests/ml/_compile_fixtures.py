"""DLR folders compiled once per session by ``edge-actors compile`` (cached across sessions
in pytest's cache, keyed by the model, the kernels and the compiler's sources)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actors.ml.compile import compile_model_folder
from actors.ml.models import ModelManifest

from ._model_fixtures import (  # noqa: F401 - fixtures used through these
    efficientnet,
    mobilenet,
    model_cache,
    mtcnn,
)


@pytest.fixture(scope="session")
def dlr_cache(request: pytest.FixtureRequest) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc compiles the DLR model libraries")
    return Path(request.config.cache.mkdir("edge-actors-dlr"))


@pytest.fixture(scope="session")
def mobilenet_dlr(dlr_cache: Path, mobilenet: ModelManifest) -> ModelManifest:  # noqa: F811
    return compile_model_folder(mobilenet.folder, dlr_cache / "DLR-mobilenet_v2")


@pytest.fixture(scope="session")
def efficientnet_dlr(dlr_cache: Path, efficientnet: ModelManifest  # noqa: F811
                     ) -> ModelManifest:
    return compile_model_folder(efficientnet.folder, dlr_cache / "DLR-efficientnet_lite0")


@pytest.fixture(scope="session")
def mtcnn_dlr(dlr_cache: Path, mtcnn: ModelManifest) -> ModelManifest:  # noqa: F811
    return compile_model_folder(mtcnn.folder, dlr_cache / "DLR-mtcnn")
