"""A model folder's manifest (``edge-model.json``): what the model is and how to feed it.

Written by the build step next to the model files, read on the device by the
inference side; it needs neither onnx nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from ._errors import ModelFolderError

MANIFEST = "edge-model.json"


@dataclass(frozen=True)
class Preprocess:
    """``(pixel * scale - mean) / std`` per RGB channel, after resizing to ``size`` (H, W).

    ``resize`` is the shorter side the image is scaled to before a centre crop
    of ``size`` (0: resize straight to ``size``, or no resize when ``size`` is empty).
    """

    size: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    resize: int = 0


@dataclass(frozen=True)
class ModelManifest:
    """What a built model folder holds."""

    name: str
    task: str  # "classification" or "face-detection"
    format: str  # "onnx" or "dlr"
    files: dict[str, str]  # role -> file name inside the folder ("model", or "pnet"...)
    preprocess: Preprocess
    output: str  # "logits" or "probabilities" for classifiers
    labels: str | None
    source: str
    folder: Path

    def path(self, role: str = "model") -> Path:
        """The file that plays ``role``; raises ModelFolderError when there is none."""
        try:
            return self.folder / self.files[role]
        except KeyError:
            raise ModelFolderError(
                f"{self.folder / MANIFEST}: no {role!r} file (has {sorted(self.files)})") from None

    def read_labels(self) -> list[str]:
        """The class names, one per line of the labels file, index = class id."""
        if self.labels is None:
            raise ModelFolderError(f"{self.folder / MANIFEST}: the model ships no labels")
        return load_labels(self.folder / self.labels)

    def to_json(self) -> bytes:
        p = self.preprocess
        return orjson.dumps({
            "name": self.name, "task": self.task, "format": self.format, "files": self.files,
            "preprocess": {"size": list(p.size), "mean": list(p.mean), "std": list(p.std),
                           "scale": p.scale, "resize": p.resize},
            "output": self.output, "labels": self.labels, "source": self.source,
        }, option=orjson.OPT_INDENT_2)


def load_labels(path: str | Path) -> list[str]:
    """Labels, one per line; a line ``n01440764 tench, ...`` (a synset id first) keeps the name."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ModelFolderError(f"cannot read the labels file {path}: {e}") from e
    labels = []
    for line in lines:
        head, _, rest = line.partition(" ")
        is_synset = len(head) == 9 and head[0] == "n" and head[1:].isdigit() and rest
        labels.append(rest if is_synset else line)
    return labels


def load_manifest(folder: str | Path) -> ModelManifest:
    """Read ``folder/edge-model.json``; raises ModelFolderError naming the file and the key."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelFolderError(
            f"{folder} is not a model folder: {MANIFEST} is missing (build one with "
            "`python -m actors.ml.models build --out DIR`)") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise ModelFolderError(f"cannot read {path}: {e}") from e
    try:
        p = data["preprocess"]
        return ModelManifest(
            name=str(data["name"]), task=str(data["task"]), format=str(data["format"]),
            files={str(k): str(v) for k, v in data["files"].items()},
            preprocess=Preprocess(tuple(int(v) for v in p["size"]),
                                  (float(p["mean"][0]), float(p["mean"][1]), float(p["mean"][2])),
                                  (float(p["std"][0]), float(p["std"][1]), float(p["std"][2])),
                                  float(p["scale"]), int(p.get("resize", 0))),
            output=str(data.get("output", "logits")), labels=data.get("labels"),
            source=str(data.get("source", "")), folder=folder)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ModelFolderError(f"{path}: missing or malformed key {e}") from e
