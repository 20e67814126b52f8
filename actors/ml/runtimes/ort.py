"""The ONNX Runtime runner (the ``variant.ONNXRuntime`` component's runtime)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Runner, RunnerOptions, TensorInfo
from ._errors import ModelLoadError, RuntimeUnavailable

_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


#: The Linux machines PyPI has onnxruntime wheels for (none for armv7l).
WHEEL_MACHINES = ("x86_64", "aarch64")


def how_to_install(machine: str | None = None) -> str:
    """What to do when ONNX Runtime cannot be imported on ``machine`` (default: this one)."""
    machine = machine or platform.machine()
    if machine in WHEEL_MACHINES:
        return ("install it into the Python that runs edge-actors (pip install "
                "'edge-actors[onnxruntime]'), or deploy variant.ONNXRuntime with UseInstaller "
                "\"true\"; or use the DLR runtime (Runtime: dlr, variant.DLR)")
    return (f"PyPI has no onnxruntime wheel for {machine}: build ONNX Runtime for this board "
            "from source and install its wheel into the Python that runs edge-actors, or run "
            "this component on an x86_64 or aarch64 device")


def _info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorInfo(arg.name, shape, np.dtype(_DTYPES.get(arg.type, np.float32)))


class OnnxRunner(Runner):
    """One ``onnxruntime.InferenceSession`` on the CPU.

    Sessions are thread-safe, so ``options.concurrency`` runs may overlap;
    ``options.threads`` sets the intra-op thread pool (0: one per core).
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, options: RunnerOptions | None = None) -> None:
        options = options or RunnerOptions()
        try:
            import onnxruntime as ort  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as e:
            raise RuntimeUnavailable(
                f"ONNX Runtime (onnxruntime) is not installed: {how_to_install()}") from e
        self.path = Path(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=so,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"ONNX Runtime cannot load {self.path}: {e}") from e
        super().__init__(tuple(_info(a) for a in self._session.get_inputs()),
                         tuple(_info(a) for a in self._session.get_outputs()), options)
        self._names = [o.name for o in self.outputs]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._names, feed)
        return dict(zip(self._names, values, strict=True))
