"""A small TVM graph executor over ctypes: runs DLR model folders without libdlr.

It reads ``model.json`` (the graph executor's JSON), ``model.params`` (TVM's
NDArray list) and loads ``model.so``, allocates one buffer per ``storage_id``,
and calls each node's packed function with ``DLTensor*`` arguments, as TVM's
graph executor does. It runs the folders ``edge-actors compile`` makes (float32,
CPU, ``__nop`` views); it is not every TVM build.
"""

from __future__ import annotations

import ctypes
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..models import tvm_params
from ._base import Runner, RunnerOptions, TensorInfo
from ._errors import ModelLoadError

_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
           "int8": np.int8, "float64": np.float64}
_CODES = {"i": 0, "u": 1, "f": 2}


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.c_void_p), ("byte_offset", ctypes.c_uint64)]


class TVMValue(ctypes.Union):
    _fields_ = [("v_int64", ctypes.c_int64), ("v_float64", ctypes.c_double),
                ("v_handle", ctypes.c_void_p), ("v_str", ctypes.c_char_p)]


PackedFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(TVMValue), ctypes.POINTER(ctypes.c_int),
                              ctypes.c_int, ctypes.POINTER(TVMValue), ctypes.POINTER(ctypes.c_int),
                              ctypes.c_void_p)


class ParallelGroupEnv(ctypes.Structure):
    _fields_ = [("sync_handle", ctypes.c_void_p), ("num_task", ctypes.c_int32)]


ParallelLambda = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ParallelGroupEnv),
                                  ctypes.c_void_p)
ParallelLaunch = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


class ThreadPool:
    """TVM's parallel-launch callback over Python threads: each task is a call into the
    library (ctypes releases the GIL for it), the calling thread running task 0."""

    def __init__(self, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="edge-actors-dlr")
        self.callback = ParallelLaunch(self._launch)

    def _launch(self, flambda: int, cdata: int, num_task: int) -> int:
        tasks = self.threads if num_task <= 0 else min(num_task, self.threads)
        env = ParallelGroupEnv(None, tasks)
        func = ParallelLambda(flambda)
        futures = [self._pool.submit(func, i, ctypes.byref(env), cdata) for i in range(1, tasks)]
        failed = func(0, ctypes.byref(env), cdata) != 0
        for future in futures:
            failed |= future.result() != 0
        return -1 if failed else 0

    def attach(self, lib: ctypes.CDLL) -> None:
        """Point the library's ``__TVMBackendParallelLaunch`` at this pool."""
        slot = ctypes.c_void_p.in_dll(lib, "__TVMBackendParallelLaunch")
        slot.value = ctypes.cast(self.callback, ctypes.c_void_p).value

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class GraphError(ModelLoadError):
    """The graph, params or library of a folder cannot be run."""


# The files of a folder, by suffix, as libdlr finds them (ours model.*, Neo's compiled*,
# TVM's deploy_*); these .json files are not graphs.
_NOT_GRAPHS = ("model-shapes.json", "hyperparams.json", "version.json")


def folder_files(folder: Path) -> tuple[Path, Path, Path, Path | None]:
    """(library, graph, params, meta or None) of a DLR graph-executor folder."""
    def one(suffix: str, required: bool = True) -> Path | None:
        found = sorted(p for p in folder.iterdir() if p.name.endswith(suffix)
                       and p.name not in _NOT_GRAPHS and p.name != "libdlr.so")
        if len(found) > 1:
            raise GraphError(f"{found[1]}: found multiple *{suffix} files in {folder}")
        if not found and required:
            raise GraphError(f"{folder}: no *{suffix} file (a DLR graph-executor folder has "
                             "a .so, a .json graph and a .params file)")
        return found[0] if found else None

    lib, graph, params = one(".so"), one(".json"), one(".params")
    assert lib is not None and graph is not None and params is not None
    return lib, graph, params, one(".meta", required=False)


def _attr(attrs: dict[str, Any], key: str, kind: str) -> list[Any]:
    try:
        tag, values = attrs[key]
    except (KeyError, TypeError, ValueError):
        raise GraphError(f"graph attrs lack {key!r}") from None
    if tag != kind:
        raise GraphError(f"graph attr {key!r} is {tag}, expected {kind}")
    return list(values)


class GraphModule:
    """One loaded graph: set inputs, run, read outputs (the graph executor's interface)."""

    def __init__(self, graph_path: Path, lib_path: Path, params_path: Path | None) -> None:
        try:
            graph = json.loads(graph_path.read_text())
        except (OSError, ValueError) as e:
            raise GraphError(f"{graph_path}: not a readable graph ({e})") from e
        try:
            self.lib = ctypes.CDLL(str(lib_path), mode=ctypes.RTLD_LOCAL)
        except OSError as e:
            raise GraphError(f"{lib_path}: cannot be loaded: {e}") from e
        nodes = graph["nodes"]
        attrs = graph["attrs"]
        shapes = _attr(attrs, "shape", "list_shape")
        dltypes = _attr(attrs, "dltype", "list_str")
        storage = _attr(attrs, "storage_id", "list_int")
        row = graph["node_row_ptr"]
        n_entries = row[-1]
        if not (len(shapes) == len(dltypes) == len(storage) == n_entries):
            raise GraphError("graph attrs shape/dltype/storage_id differ in length from the "
                             "node entries")
        # One byte buffer per storage id, as large as its largest entry.
        sizes: dict[int, int] = {}
        for eid in range(n_entries):
            dt = np.dtype(_DTYPES[dltypes[eid]])
            sizes[storage[eid]] = max(sizes.get(storage[eid], 0),
                                      math.prod(shapes[eid]) * dt.itemsize)
        self._pool = {sid: np.zeros(-(-size // 64) * 64 + 64, np.uint8)
                      for sid, size in sizes.items()}
        self.entries: list[np.ndarray] = []
        self._tensors: list[DLTensor] = []
        self._keep: list[Any] = []
        for eid in range(n_entries):
            dt = np.dtype(_DTYPES[dltypes[eid]])
            buf = self._pool[storage[eid]]
            count = math.prod(shapes[eid])
            view = buf[:count * dt.itemsize].view(dt).reshape(shapes[eid])
            self.entries.append(view)
            shape = (ctypes.c_int64 * max(len(shapes[eid]), 1))(*shapes[eid])
            self._keep.append(shape)
            self._tensors.append(DLTensor(
                view.ctypes.data, DLDevice(1, 0), len(shapes[eid]),
                DLDataType(_CODES[dt.kind], dt.itemsize * 8, 1), shape, None, 0))
        self.input_names: list[str] = []
        self._input_eid: dict[str, int] = {}
        self._ops: list[tuple[str, Any, Any, Any, int]] = []
        for nid, node in enumerate(nodes):
            if node["op"] == "null":
                self._input_eid[node["name"]] = row[nid]
                continue
            node_attrs = node.get("attrs", {})
            fname = node_attrs.get("func_name")
            eids = [row[i] + index for i, index, *_ in node["inputs"]]
            eids += [row[nid] + k for k in range(int(node_attrs.get("num_outputs", 1)))]
            if fname == "__nop":
                continue
            if fname == "__copy":
                self._ops.append(("__copy", None, eids[0], eids[1], 0))
                continue
            try:
                func = PackedFunc((fname, self.lib))
            except AttributeError:
                raise GraphError(f"{lib_path}: no function {fname!r} (node "
                                 f"{node.get('name', nid)!r})") from None
            args = (TVMValue * len(eids))()
            for k, eid in enumerate(eids):
                args[k].v_handle = ctypes.addressof(self._tensors[eid])
            codes = (ctypes.c_int * len(eids))(*([7] * len(eids)))  # kTVMDLTensorHandle
            self._ops.append((node.get("name", fname), func, args, codes, len(eids)))
        params = tvm_params.loads(params_path.read_bytes()) if params_path else {}
        for name, value in params.items():
            if name not in self._input_eid:
                continue  # TVM ignores params the graph does not name
            target = self.entries[self._input_eid[name]]
            if target.shape != value.shape:
                raise GraphError(f"param {name!r} has shape {value.shape}, the graph says "
                                 f"{target.shape}")
            target[...] = value
        self.input_names = [nodes[n]["name"] for n in graph["arg_nodes"]
                            if nodes[n]["name"] not in params]
        self._outputs = [row[n] + i for n, i, *_ in graph["heads"]]
        self._ret = TVMValue()
        self._ret_code = ctypes.c_int()

    def input(self, name: str) -> np.ndarray:
        return self.entries[self._input_eid[name]]

    def set_input(self, name: str, value: np.ndarray) -> None:
        target = self.input(name)
        if target.shape != value.shape:
            raise GraphError(f"input {name!r} must have shape {target.shape}, got {value.shape}")
        target[...] = value

    @property
    def output_count(self) -> int:
        return len(self._outputs)

    def output(self, index: int) -> np.ndarray:
        out: np.ndarray = self.entries[self._outputs[index]]
        return out

    def run(self, timings: list[float] | None = None) -> None:
        """Run every node in order; with ``timings``, append each packed function's seconds."""
        for name, func, args, codes, n in self._ops:
            if func is None:
                self.entries[codes][...] = self.entries[args]  # __copy: args/codes are eids
                continue
            started = time.perf_counter() if timings is not None else 0.0
            if func(args, codes, n, ctypes.byref(self._ret), ctypes.byref(self._ret_code),
                    None) != 0:
                raise GraphError(f"node {name!r} failed")
            if timings is not None:
                timings.append(time.perf_counter() - started)

    @property
    def op_names(self) -> list[str]:
        return [op[0] for op in self._ops]


class GraphExecutorRunner(Runner):
    """The DLR runtime without libdlr: this executor runs the folder's graph.

    Used where DLR has no build (armv7l here) or when ``EDGE_ACTORS_DLR=executor``.
    With ``options.threads`` > 1 (default 1), operators split their work over that
    many threads through the library's parallel-launch hook (as libdlr's pool does);
    one run at a time. Outputs are the same as libdlr's, bit for bit: the
    same kernels run on the same buffers, each output element by one task.
    """

    runtime = "dlr"
    backend = "edge-actors graph executor"

    def __init__(self, folder: str | Path, options: RunnerOptions | None = None) -> None:
        given = options or RunnerOptions()
        # One thread unless asked: each parallel operator costs a Python hand-off (tens of
        # microseconds), which pays only on idle cores and large layers.
        threads = max(1, given.threads)
        options = RunnerOptions(threads=threads, concurrency=1, nice=given.nice)
        self.path = Path(folder)
        if not self.path.is_dir():
            raise ModelLoadError(f"{self.path}: a DLR model is a folder (.so/.json/.params)")
        lib, graph, params, meta_path = folder_files(self.path)
        self._module = GraphModule(graph, lib, params)
        self._pool: ThreadPool | None = None
        if threads > 1:
            self._pool = ThreadPool(threads)
            try:
                self._pool.attach(self._module.lib)
            except ValueError:  # a library without the hook runs on one thread
                self._pool.close()
                self._pool = None
        meta: dict[str, Any] = {}
        if meta_path is not None:
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                meta = {}
        names = [o.get("name") for o in meta.get("Model", {}).get("Outputs", [])]
        inputs = tuple(TensorInfo(n, tuple(self._module.input(n).shape),
                                  self._module.input(n).dtype)
                       for n in self._module.input_names)
        outputs = tuple(TensorInfo(names[i] if i < len(names) and names[i] else f"output{i}",
                                   tuple(self._module.output(i).shape),
                                   self._module.output(i).dtype)
                        for i in range(self._module.output_count))
        super().__init__(inputs, outputs, options)
        self._serial = threading.Lock()

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._serial:  # one set of buffers: concurrent callers take turns
            for name, value in feed.items():
                self._module.set_input(name, value)
            self._module.run()
            return {info.name: self._module.output(i).copy()
                    for i, info in enumerate(self.outputs)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._module = None  # type: ignore[assignment]
