"""Model components: build runtime artifacts from pretrained weights, describe model folders.

Reading a model folder (:func:`load_manifest`) needs only numpy and orjson;
building one (:func:`build_model`) also needs the ``onnx`` package (the
``models`` extra). Neither needs PyTorch: ``.pth`` files are read with numpy.
"""

from ._build import MODELS, ModelSpec, build_model, default_cache_dir, ensure_model, pack
from ._errors import ModelFolderError, ModelSourceMissing, WeightsError
from ._manifest import MANIFEST, ModelManifest, Preprocess, load_labels, load_manifest
from ._pth import load_state_dict

__all__ = [
    "MANIFEST",
    "MODELS",
    "ModelFolderError",
    "ModelManifest",
    "ModelSourceMissing",
    "ModelSpec",
    "Preprocess",
    "WeightsError",
    "build_model",
    "default_cache_dir",
    "ensure_model",
    "load_labels",
    "load_manifest",
    "load_state_dict",
    "pack",
]
