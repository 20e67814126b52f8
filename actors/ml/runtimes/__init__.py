"""Inference runtimes behind one runner interface: ONNX Runtime and DLR.

``load_runner(path, "onnxruntime" | "dlr", options)`` loads a model (blocking,
so call it through :func:`open_runner` from async code); ``await runner.run(x)``
runs it in a worker thread.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import anyio.to_thread

from .._priority import call_lowered
from ._base import Runner, RunnerOptions, RunnerStatistics, TensorInfo
from ._errors import InferenceError, ModelLoadError, RuntimeUnavailable

RUNTIMES = ("onnxruntime", "dlr")
_log = logging.getLogger("actors.ml.runtimes")


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
        from ._variants import VariantRunner, is_variant_folder

        if probe and Path(path).is_dir():
            from ._probe import probe as probe_model

            probe_model(path, runtime)  # a variants folder: every variant, in one child
        if is_variant_folder(path):
            return VariantRunner(path, options)
        return _dlr(path, options)
    raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")


def _dlr(path: str | Path, options: RunnerOptions | None) -> Runner:
    """libdlr when it is installed, else (or with ``EDGE_ACTORS_DLR=executor``) the graph
    executor of :mod:`._graph_exec` for graph-executor folders."""
    from .dlr import DlrRunner, dlr_available

    choice = os.environ.get("EDGE_ACTORS_DLR", "")
    if choice != "executor" and (choice == "libdlr" or dlr_available()):
        return DlrRunner(path, options)
    from ._graph_exec import GraphExecutorRunner

    if choice != "executor":
        _log.info("libdlr is not installed here: %s runs on edge-actors' graph executor", path)
    return GraphExecutorRunner(path, options)


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
