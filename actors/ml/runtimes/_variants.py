"""One model compiled for several input shapes, behind one runner.

The graph executor (and so DLR) has static shapes; a folder written by
``compile_variants`` holds one DLR folder per input shape and ``variants.txt``
saying how to choose. ``spatial`` (a fully convolutional net such as MTCNN's
PNet): the input is padded with zeros (bottom, right) up to the smallest
compiled size that holds it, and each output is cropped to the size ONNX gives
for the real input (computed from the convolutions and poolings on its path).
``batch`` (RNet, ONet): the batch runs in chunks of the compiled batch size,
the last one padded with zeros.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Runner, RunnerOptions, TensorInfo
from ._errors import InferenceError, ModelLoadError

VARIANTS = "variants.txt"


def is_variant_folder(path: str | Path) -> bool:
    return (Path(path) / VARIANTS).is_file()


class VariantRunner(Runner):
    """Runs whichever compiled variant fits the input (loaded on first use)."""

    runtime = "dlr"

    def __init__(self, folder: str | Path, options: RunnerOptions | None = None) -> None:
        """(``load_runner`` probes the folder first: every variant in one child.)"""
        from . import load_runner

        self.path = Path(folder)
        try:
            spec = json.loads((self.path / VARIANTS).read_text())
            self._mode = str(spec["mode"])
            self._input = str(spec["input"])
            self._shapes = [tuple(int(d) for d in s) for s in spec["variants"]]
            self._chains: dict[str, list[Any]] = dict(spec.get("chains", {}))
            names = [str(n) for n in spec["outputs"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{self.path / VARIANTS}: not a variants description ({e})") \
                from e
        if self._mode not in ("spatial", "batch") or not self._shapes:
            raise ModelLoadError(f"{self.path / VARIANTS}: mode {self._mode!r} with "
                                 f"{len(self._shapes)} variants")
        self._options = options or RunnerOptions()
        self._load = load_runner
        self._runners: dict[tuple[int, ...], Runner] = {}
        self._loading = threading.Lock()
        first = self._runner(self._shapes[0])
        free = (None, first.input.shape[1], None, None) if self._mode == "spatial" else \
            (None, *first.input.shape[1:])
        super().__init__((TensorInfo(self._input, free, first.input.dtype),),
                         tuple(TensorInfo(n, (None,) * len(o.shape), o.dtype)
                               for n, o in zip(names, first.outputs, strict=True)),
                         RunnerOptions(threads=self._options.threads, concurrency=1,
                                       nice=self._options.nice))

    def _runner(self, shape: tuple[int, ...]) -> Runner:
        with self._loading:  # detector stages may ask from several threads at once
            runner = self._runners.get(shape)
            if runner is None:
                folder = self.path / "x".join(map(str, shape))
                runner = self._load(folder, "dlr", self._options, probe=False)
                self._runners[shape] = runner
            return runner

    def variant_folders(self) -> list[Path]:
        return [self.path / "x".join(map(str, s)) for s in self._shapes]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed[self._input]
        return self._spatial(x) if self._mode == "spatial" else self._batched(x)

    def _spatial(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from ..compile._ir import spatial_size

        n, c, h, w = x.shape
        fits = [s for s in self._shapes if s[0] == n and s[1] == c and s[2] >= h and s[3] >= w]
        if not fits:
            biggest = max(self._shapes, key=lambda s: s[2] * s[3])
            raise InferenceError(f"{self.path}: an input of {h}x{w} is larger than every "
                                 f"compiled size (up to {biggest[2]}x{biggest[3]})")
        shape = min(fits, key=lambda s: s[2] * s[3])
        padded = np.zeros(shape, np.float32)
        padded[:, :, :h, :w] = x
        out = self._runner(shape).run_sync({self._input: padded})
        result = {}
        for info, value in zip(self.outputs, out.values(), strict=True):
            if value.ndim == 4 and info.name in self._chains:
                oh, ow = spatial_size(self._chains[info.name], h, w)
                value = np.ascontiguousarray(value[:, :, :oh, :ow])
            result[info.name] = value
        return result

    def _batched(self, x: np.ndarray) -> dict[str, np.ndarray]:
        shape = self._shapes[0]
        size = shape[0]
        if x.shape[1:] != shape[1:]:
            dims = ", ".join(map(str, shape[1:]))
            raise InferenceError(f"{self.path}: input must be (N, {dims}), got {x.shape}")
        runner = self._runner(shape)
        parts: dict[str, list[np.ndarray]] = {o.name: [] for o in self.outputs}
        for start in range(0, x.shape[0], size):
            chunk = x[start:start + size]
            count = chunk.shape[0]
            if count < size:
                chunk = np.concatenate([chunk, np.zeros((size - count, *shape[1:]), np.float32)])
            out = runner.run_sync({self._input: np.ascontiguousarray(chunk)})
            for info, value in zip(self.outputs, out.values(), strict=True):
                parts[info.name].append(value[:count])
        return {name: (np.concatenate(values) if values else
                       np.zeros((0, *(d or 0 for d in runner.outputs[i].shape[1:])),
                                np.float32))
                for i, (name, values) in enumerate(parts.items())}

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
