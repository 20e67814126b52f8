"""The DLR runner (the ``variant.DLR`` component's runtime): Neo-AI DLR 1.6.0's ``libdlr.so``.

It loads a DLR model folder: a TVM graph-executor build (``model.so``,
``model.json``, ``model.params``) or a Treelite build (a single ``.so``).

DLR reports model loads and runs to its vendor unless
``dlr/counter/ccm_config.json`` says ``{"enable_phone_home": false}``, and it
reads that file when ``dlr`` is imported; turning it off after the import
still attempted a connection. So :func:`disable_telemetry` writes the file
into the installed package, found without importing it, before the first
import, and every path here goes through it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Runner, RunnerOptions, TensorInfo
from ._errors import ModelLoadError, RuntimeUnavailable

log = logging.getLogger("actors.ml.runtimes")

SUPPORTED_MACHINES = ("x86_64",)
_CONFIG = {"enable_phone_home": False}
_lock = threading.Lock()
# libdlr runs operators on TVM's thread pool, and TVM keeps one pool per calling thread,
# sized from TVM_NUM_THREADS when that thread first runs a model; it is never resized
# (DLR's SetDLRNumThreads only sets the variable, for whichever thread starts next).
# The size each thread's pool was given:
_pools = threading.local()
_TVM_THREADS = os.environ.get("TVM_NUM_THREADS")  # the user's own setting, if any


def telemetry_config_path() -> Path:
    """Where DLR reads its telemetry switch; raises RuntimeUnavailable when DLR is absent."""
    spec = importlib.util.find_spec("dlr")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        import platform

        raise RuntimeUnavailable(
            f"DLR is not installed for {platform.machine()} {sys.platform}: install the "
            "variant.DLR component (pip install dlr==1.6.0 on x86_64 Linux; later wheels "
            "carry no libdlr.so) or use the ONNX Runtime runtime (variant.ONNXRuntime)")
    return Path(locations[0]) / "counter" / "ccm_config.json"


def dlr_available() -> bool:
    """Whether the dlr package and a libdlr.so where it looks are installed (nothing is
    imported: the package's import reports telemetry unless turned off first)."""
    try:
        package = telemetry_config_path().parent.parent
    except RuntimeUnavailable:
        return False
    places = [Path(sys.prefix) / "dlr", Path(sys.prefix) / "local" / "dlr",
              Path(sys.exec_prefix) / "local" / "dlr", Path.home() / ".local" / "dlr",
              package.parent.parent / "lib", package / "lib", package]
    return any((place / "libdlr.so").is_file() for place in places)


def disable_telemetry() -> Path:
    """Write DLR's telemetry switch (off) into the installed package; return its path.

    Must run before ``import dlr``. Raises RuntimeUnavailable when the package
    directory is not writable, naming the file to create by hand.
    """
    path = telemetry_config_path()
    try:
        if path.is_file() and json.loads(path.read_text()).get("enable_phone_home") is False:
            return path
    except (OSError, ValueError):
        pass  # unreadable or malformed: rewrite it below
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(_CONFIG))
        tmp.replace(path)
    except OSError as e:
        raise RuntimeUnavailable(
            f"cannot turn DLR telemetry off: writing {path} failed ({e}); create it with the "
            f"content {json.dumps(_CONFIG)} before using the DLR runtime") from e
    return path


def import_dlr() -> Any:
    """Import ``dlr`` with its telemetry off; raises RuntimeUnavailable when it cannot load."""
    with _lock:
        if "dlr" not in sys.modules:
            disable_telemetry()
        elif not _telemetry_off():
            raise RuntimeUnavailable(
                "dlr was imported before its telemetry was turned off; import "
                "actors.ml.runtimes.dlr (or call disable_telemetry()) before dlr")
        try:
            import dlr  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except Exception as e:  # the package raises bare errors when libdlr.so is missing
            raise RuntimeUnavailable(f"DLR cannot be imported: {e}") from e
        return dlr


def _telemetry_off() -> bool:
    try:
        data = json.loads(telemetry_config_path().read_text())
    except (OSError, ValueError):
        return False
    return data.get("enable_phone_home") is False


def _input_shape(impl: Any, index: int) -> tuple[int | None, ...]:
    # DLR's Python API has no input-shape getter; libdlr's C API has one.
    lib, handle = getattr(impl, "_lib", None), getattr(impl, "handle", None)
    if lib is None or handle is None:
        return ()
    size, dim = ctypes.c_longlong(), ctypes.c_int()
    if lib.GetDLRInputSizeDim(ctypes.byref(handle), ctypes.c_int(index), ctypes.byref(size),
                              ctypes.byref(dim)) != 0:
        return ()
    shape = np.zeros(dim.value, dtype=np.int64)
    if lib.GetDLRInputShape(ctypes.byref(handle), ctypes.c_int(index),
                            shape.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong))) != 0:
        return ()
    return tuple(int(d) if d >= 0 else None for d in shape)


def _quiet(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.CRITICAL


class DlrRunner(Runner):
    """One ``dlr.DLRModel`` on the CPU.

    A DLR model object keeps its inputs and outputs in place, so runs of one
    runner never overlap (``options.concurrency`` is ignored; load a second
    runner to run two at once). ``options.threads`` sizes libdlr's thread pool (TVM's,
    one per calling thread: a thread whose pool has another size hands the run to a
    thread of the runner's own).
    """

    runtime = "dlr"

    def __init__(self, folder: str | Path, options: RunnerOptions | None = None) -> None:
        options = RunnerOptions(threads=(options or RunnerOptions()).threads, concurrency=1)
        self.path = Path(folder)
        if not self.path.is_dir():
            raise ModelLoadError(f"{self.path}: a DLR model is a folder (.so/.json/.params)")
        dlr = import_dlr()
        # DLR's logger announces every load at INFO and logs errors it then raises; its
        # level is reset on each load, so a filter (which stays) keeps it quiet.
        quiet = logging.getLogger("dlr.neologger_logger")
        if _quiet not in quiet.filters:
            quiet.addFilter(_quiet)
        try:
            self._model = dlr.DLRModel(str(self.path), "cpu", 0, use_default_dlr=True)
        except Exception as e:
            raise ModelLoadError(f"DLR cannot load the model folder {self.path}: {e}") from e
        impl = self._model._impl
        names = list(self._model.get_input_names())
        dtypes = list(self._model.get_input_dtypes())
        inputs = tuple(TensorInfo(n, _input_shape(impl, i), np.dtype(d))
                       for i, (n, d) in enumerate(zip(names, dtypes, strict=True)))
        out_names = list(self._model.get_output_names() or [])
        out_dtypes = list(self._model.get_output_dtypes())
        if not out_names:
            out_names = [f"output{i}" for i in range(len(out_dtypes))]
        shapes = list(getattr(impl, "output_shapes", None) or [()] * len(out_names))
        outputs = tuple(TensorInfo(n, tuple(int(v) if v >= 0 else None for v in shape), np.dtype(d))
                        for n, d, shape in zip(out_names, out_dtypes, shapes, strict=True))
        super().__init__(inputs, outputs, options)
        self.backend = str(getattr(impl, "backend", ""))
        self._serial = threading.Lock()
        self._threads = options.threads  # 0: TVM's default (TVM_NUM_THREADS, else the cores)
        self._own: ThreadPoolExecutor | None = None  # see _run

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = getattr(_pools, "size", None)
        if size is None:
            # This thread's first run makes its pool: sized for this runner, with no other
            # thread changing the variable in between.
            with _lock:
                if self._threads > 0:
                    os.environ["TVM_NUM_THREADS"] = str(self._threads)
                elif _TVM_THREADS is None:
                    os.environ.pop("TVM_NUM_THREADS", None)
                else:
                    os.environ["TVM_NUM_THREADS"] = _TVM_THREADS
                _pools.size = self._threads
                return self._run_here(feed)
        if size != self._threads:
            # The calling thread's pool has another size (it ran a runner with another
            # thread count first): run on a thread of this runner's, with a pool its size.
            if self._own is None:
                with _lock:
                    if self._own is None:
                        self._own = ThreadPoolExecutor(1, thread_name_prefix="dlr-runner")
            return self._own.submit(self._run, feed).result()
        return self._run_here(feed)

    def _run_here(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The model keeps its inputs and outputs in place: callers that run_sync from
        # several threads at once (the face detector's stages) take turns.
        with self._serial:
            if self.backend == "treelite":
                values = self._model.run(next(iter(feed.values())))
            else:
                values = self._model.run(feed)
        return {info.name: np.asarray(v) for info, v in zip(self.outputs, values, strict=True)}

    def close(self) -> None:
        if self._own is not None:
            self._own.shutdown(wait=True)
            self._own = None
        self._model = None
