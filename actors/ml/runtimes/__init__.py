"""Inference runtimes behind one runner interface: ONNX Runtime and DLR.

``load_runner(path, "onnxruntime" | "dlr", options)`` loads a model (blocking,
so call it through :func:`open_runner` from async code); ``await runner.run(x)``
runs it in a worker thread.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anyio.to_thread

from .._priority import call_lowered
from ._base import Runner, RunnerOptions, RunnerStatistics, TensorInfo
from ._errors import InferenceError, ModelLoadError, RuntimeUnavailable

RUNTIMES = ("onnxruntime", "dlr")


def load_runner(path: str | Path, runtime: str = "onnxruntime",
                options: RunnerOptions | None = None, *, probe: bool = True) -> Runner:
    """Load ``path`` (an .onnx file, or a DLR model folder) with ``runtime``; blocks.

    Raises RuntimeUnavailable when the runtime is not installed, ModelLoadError
    when it cannot load the model, ValueError for an unknown runtime name.
    With ``options.nice``, loads in a thread of its own lowered by that much.
    A DLR folder (native code) is first loaded and run once in a child process
    (:mod:`._probe`) unless ``probe`` is false, so a broken library fails with
    ModelLoadError instead of ending this process.
    """
    if options is not None and options.nice > 0:
        return call_lowered(options.nice, functools.partial(_load, path, runtime, options,
                                                            probe))
    return _load(path, runtime, options, probe)


def _load(path: str | Path, runtime: str, options: RunnerOptions | None,
          probe: bool = True) -> Runner:
    if runtime == "onnxruntime":
        from .ort import OnnxRunner

        return OnnxRunner(path, options)
    if runtime == "dlr":
        from .dlr import DlrRunner

        if probe and Path(path).is_dir():
            from ._probe import probe as probe_model

            probe_model(path, runtime)
        return DlrRunner(path, options)
    raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")


async def open_runner(path: str | Path, runtime: str = "onnxruntime",
                      options: RunnerOptions | None = None) -> Runner:
    """:func:`load_runner` in a worker thread (loading reads and compiles the model)."""
    return await anyio.to_thread.run_sync(load_runner, path, runtime, options)


__all__ = [
    "RUNTIMES",
    "InferenceError",
    "ModelLoadError",
    "Runner",
    "RunnerOptions",
    "RunnerStatistics",
    "RuntimeUnavailable",
    "TensorInfo",
    "load_runner",
    "open_runner",
]
