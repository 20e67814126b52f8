"""The runner interface on ONNX Runtime and on DLR (libdlr 1.6.0) with real model files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from actors.ml.models import ModelManifest
from actors.ml.runtimes import (
    InferenceError,
    ModelLoadError,
    Runner,
    RunnerOptions,
    load_runner,
    open_runner,
)

pytest_plugins = ["tests.ml._model_fixtures"]
pytestmark = pytest.mark.anyio

ORT = __import__("importlib.util").util.find_spec("onnxruntime") is not None
# PyPI has no onnxruntime wheel for armv7l: there these tests cannot apply.
ort_installed = pytest.mark.skipif(
    not ORT, reason="ONNX Runtime is not installed (pip install 'edge-actors[onnxruntime]'; "
                    "no wheel for armv7l)")

dlr_installed = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("dlr") is None,
    reason="DLR (pip install dlr==1.6.0, x86_64 Linux) is not installed")


def _reference(x: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    z = x.astype(np.float64) @ weights["w"].T + weights["b"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def onnx_twin(tmp_path_factory: pytest.TempPathFactory, graph_shape: tuple[int, int, int],
              graph_weights: dict[str, np.ndarray]) -> Path:
    """The DLR graph folder's network (dense + softmax) as an ONNX file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _, n_in, n_out = graph_shape

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["data", "w", "b"], ["z"], transB=1),
         helper.make_node("Softmax", ["z"], ["prob"], axis=1)],
        "dense_softmax",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", n_out])],
        [numpy_helper.from_array(graph_weights["w"], "w"),
         numpy_helper.from_array(graph_weights["b"], "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "dense_softmax.onnx"
    onnx.save(model, str(path))
    return path


@dlr_installed
@pytest.mark.parametrize("runtime", ["onnxruntime", "dlr"])
async def test_same_model_same_answers_on_both_runtimes(
        runtime: str, onnx_twin: Path, dlr_graph_folder: Path,
        graph_shape: tuple[int, int, int], graph_weights: dict[str, np.ndarray]) -> None:
    batch, n_in, _ = graph_shape
    path = onnx_twin if runtime == "onnxruntime" else dlr_graph_folder
    runner = await open_runner(path, runtime, RunnerOptions(threads=1))
    assert runner.runtime == runtime
    assert [i.name for i in runner.inputs] == ["data"]
    assert runner.input.dtype == np.float32
    assert runner.input.shape[1:] == (n_in,)
    x = np.random.default_rng(5).standard_normal((batch, n_in)).astype(np.float32)
    out = await runner.run({"data": x})
    (prob,) = out.values()
    np.testing.assert_allclose(prob, _reference(x, graph_weights), rtol=1e-5, atol=1e-6)
    assert np.allclose(prob.sum(axis=1), 1.0)
    np.testing.assert_allclose(next(iter((await runner.run(x)).values())), prob)
    assert runner.statistics().runs == 2
    with pytest.raises(InferenceError, match="float32"):
        await runner.run({"data": x.astype(np.float64)})
    with pytest.raises(InferenceError, match="unknown input 'nope'"):
        await runner.run({"nope": x})
    assert runner.statistics().failures == 0  # refused before running
    runner.close()


@dlr_installed
async def test_dlr_runs_a_treelite_model(treelite_folder: Path) -> None:
    runner = await open_runner(treelite_folder, "dlr")
    assert runner.input.shape == (None, 2)
    x = np.array([[0.1, 5.0], [0.9, 1.0], [0.9, 3.0]], dtype=np.float32)
    (out,) = (await runner.run(x)).values()
    np.testing.assert_array_equal(out.reshape(-1), [-1.0, 0.25, 3.0])


@dlr_installed
def test_dlr_loads_with_telemetry_off_and_attempts_no_connection(
        dlr_graph_folder: Path, graph_shape: tuple[int, int, int]) -> None:
    # A fresh interpreter with an audit hook that records every name lookup and
    # connect; the telemetry switch is removed first so the runner must write it.
    script = textwrap.dedent(f"""
        import importlib.util, json, pathlib, sys
        events = []
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                events.append([event, repr(args)[:200]])
        sys.addaudithook(hook)
        spec = importlib.util.find_spec("dlr")
        config = pathlib.Path(spec.submodule_search_locations[0]) / "counter" / "ccm_config.json"
        config.unlink(missing_ok=True)
        import numpy as np
        from actors.ml.runtimes import load_runner
        runner = load_runner({str(dlr_graph_folder)!r}, "dlr")
        for _ in range(5):
            runner.run_sync(np.ones({graph_shape[:2]!r}, np.float32))
        import time; time.sleep(0.5)  # DLR's reporter runs in a thread
        seen = list(events)
        import socket
        try:
            socket.getaddrinfo("localhost", 9)
        except OSError:
            pass
        print(json.dumps({{"seen": seen, "hook_works": len(events) > len(seen),
                           "config": json.loads(config.read_text())}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["hook_works"]
    assert report["seen"] == []
    assert report["config"] == {"enable_phone_home": False}
    assert "CALL HOME FEATURE ENABLED" not in done.stdout + done.stderr


@dlr_installed
def test_dlr_load_errors_name_the_folder(tmp_path: Path, onnx_twin: Path) -> None:
    with pytest.raises(ModelLoadError, match="a DLR model is a folder"):
        load_runner(onnx_twin, "dlr")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_runner(tmp_path, "dlr")


@ort_installed
def test_onnx_load_errors_and_unknown_runtimes(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        load_runner(tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        load_runner(tmp_path / "bad.onnx", "tflite")


@ort_installed
async def test_model_runs_leave_the_event_loop_free(mobilenet: ModelManifest) -> None:
    runner: Runner = await open_runner(mobilenet.path(), "onnxruntime",
                                       RunnerOptions(threads=1, concurrency=2))
    assert runner.input.shape == (None, 3, 224, 224)
    assert [o.name for o in runner.outputs] == ["logits"]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ticks = 0
    results: list[dict[str, np.ndarray]] = []

    async def run() -> None:
        results.append(await runner.run(x))

    async def tick(done: anyio.Event) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    done = anyio.Event()
    async with anyio.create_task_group() as outer:
        outer.start_soon(tick, done)
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(run)
        done.set()
    assert len(results) == 4
    assert ticks > 4  # the loop kept turning while the model ran in threads
    for r in results[1:]:
        np.testing.assert_allclose(r["logits"], results[0]["logits"], rtol=1e-5, atol=1e-5)
    assert runner.statistics().runs == 4


def test_the_onnx_runtime_advice_fits_the_machine() -> None:
    from actors.ml.runtimes.ort import how_to_install

    assert "pip install 'edge-actors[onnxruntime]'" in how_to_install("x86_64")
    assert "pip install 'edge-actors[onnxruntime]'" in how_to_install("aarch64")
    # No wheel to pip install on a Raspberry Pi: the advice says so instead.
    arm = how_to_install("armv7l")
    assert arm.startswith("PyPI has no onnxruntime wheel for armv7l: build ONNX Runtime")
    assert "pip install" not in arm


@pytest.mark.skipif(ORT, reason="ONNX Runtime is installed here")
def test_without_onnx_runtime_loading_says_what_to_do(tmp_path: Path) -> None:
    # Where onnxruntime is absent (armv7l, under make arm-test) the runner says so, with
    # the advice for this machine, rather than an ImportError from deep inside.
    from actors.ml.runtimes import RuntimeUnavailable
    from actors.ml.runtimes.ort import how_to_install

    (tmp_path / "model.onnx").write_bytes(b"not read")
    with pytest.raises(RuntimeUnavailable) as info:
        load_runner(tmp_path / "model.onnx")
    assert str(info.value) == f"ONNX Runtime (onnxruntime) is not installed: {how_to_install()}"
