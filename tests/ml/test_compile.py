"""``edge-actors compile``: ONNX models into DLR folders that libdlr 1.6.0 runs.

Tolerance: against ONNX Runtime on the same input, the logits (magnitudes up to
~20) differ by at most 1e-3 absolute, and the top-5 classes are the same; on
random inputs the MTCNN outputs differ by at most 1e-4.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from actors.ml.compile import CompileError, compile_onnx
from actors.ml.models import ModelManifest
from actors.ml.runtimes import RunnerOptions, load_runner
from actors.ml.tasks._image import prepare

pytest_plugins = ["tests.ml._model_fixtures", "tests.ml._compile_fixtures"]

dlr_installed = pytest.mark.skipif(
    importlib.util.find_spec("dlr") is None,
    reason="DLR (pip install dlr==1.6.0, x86_64 Linux) is not installed")
CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ATOL = 1e-3


def _image(path: Path, manifest: ModelManifest) -> np.ndarray:
    return prepare(path, manifest.preprocess)[None]


def _first(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


@dlr_installed
@pytest.mark.parametrize("model", ["mobilenet", "efficientnet"])
def test_dlr_matches_onnx_runtime_on_real_images(model: str, request: pytest.FixtureRequest,
                                                 chelsea: Path, astronaut: Path,
                                                 coffee: Path) -> None:
    source: ModelManifest = request.getfixturevalue(model)
    compiled: ModelManifest = request.getfixturevalue(f"{model}_dlr")
    assert compiled.format == "dlr"
    ort = load_runner(source.path("model"), "onnxruntime", RunnerOptions(threads=1))
    dlr = load_runner(compiled.path("model"), "dlr", RunnerOptions(threads=1))
    assert [o.name for o in dlr.outputs] == ["logits"]
    assert dlr.input.shape == (1, 3, 224, 224)
    for image in (chelsea, astronaut, coffee):
        x = _image(image, source)
        want, got = _first(ort.run_sync(x)), _first(dlr.run_sync(x))
        assert got.shape == want.shape == (1, 1000)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
        assert list(np.argsort(got[0])[-5:]) == list(np.argsort(want[0])[-5:])
    assert int(_first(dlr.run_sync(_image(chelsea, source))).argmax()) in CATS


@dlr_installed
@pytest.mark.anyio
async def test_chelsea_is_a_cat_through_dlr(mobilenet_dlr: ModelManifest, chelsea: Path) -> None:
    from actors.ml.tasks import open_classifier

    classifier = await open_classifier(mobilenet_dlr, "dlr", top_k=5, threshold=0.0)
    assert classifier.runner.runtime == "dlr"
    predictions = await classifier.classify(chelsea)
    assert predictions[0].index in CATS and "cat" in predictions[0].label


@dlr_installed
def test_two_threads_give_the_same_answer(mobilenet: ModelManifest,
                                          mobilenet_dlr: ModelManifest, chelsea: Path) -> None:
    x = _image(chelsea, mobilenet)
    one = _first(load_runner(mobilenet_dlr.path("model"), "dlr",
                             RunnerOptions(threads=1)).run_sync(x))
    two = _first(load_runner(mobilenet_dlr.path("model"), "dlr",
                             RunnerOptions(threads=2)).run_sync(x))
    np.testing.assert_allclose(two, one, atol=1e-5, rtol=0)


@dlr_installed
def test_each_dlr_runner_runs_on_a_pool_of_its_thread_count(mobilenet_dlr: ModelManifest) -> None:
    """TVM (inside libdlr) keeps a pool per calling thread, sized when the thread first
    runs a model and never resized: a 1-thread and a 2-thread runner called from one
    thread each get a pool of their size (the 2-thread one on a thread of its own).
    Counted as the process's threads: a pool of n threads adds n - 1 workers."""
    from concurrent.futures import ThreadPoolExecutor

    x = np.zeros((1, 3, 224, 224), np.float32)
    one = load_runner(mobilenet_dlr.path("model"), "dlr", RunnerOptions(threads=1))
    two = load_runner(mobilenet_dlr.path("model"), "dlr", RunnerOptions(threads=2))

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    def calls() -> list[int]:
        counts = [threads()]
        for runner in (one, two, one, two):
            runner.run_sync(x)
            counts.append(threads())
        return counts

    with ThreadPoolExecutor(1) as caller:  # a thread that has never run a model
        start, after_one, after_two, *later = caller.submit(calls).result()
    assert after_one == start  # 1 thread: the caller alone, no workers
    assert after_two == start + 2  # the runner's own thread and its pool's one worker
    assert later == [after_two, after_two]  # made once, reused
    one.close()
    two.close()


# Each instruction-set path, chosen at run time, in a process of its own (the choice is made
# once per loaded library).
ISA_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from actors.ml.runtimes import load_runner, RunnerOptions
    x = np.load(sys.argv[2])
    r = load_runner(sys.argv[1], "dlr", RunnerOptions(threads=1))
    np.save(sys.argv[3], next(iter(r.run_sync(x).values())))
""")


@dlr_installed
@pytest.mark.parametrize("isa", ["portable", "avx2"])
def test_every_instruction_set_path_gives_the_same_answer(
        isa: str, mobilenet: ModelManifest, mobilenet_dlr: ModelManifest, chelsea: Path,
        tmp_path: Path) -> None:
    x = _image(chelsea, mobilenet)
    np.save(tmp_path / "x.npy", x)
    want = _first(load_runner(mobilenet.path("model"), "onnxruntime").run_sync(x))
    env = {**os.environ, "EDGE_ACTORS_DLR_ISA": isa}
    subprocess.run([sys.executable, "-c", ISA_SCRIPT, str(mobilenet_dlr.path("model")),
                    str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], env=env, check=True,
                   capture_output=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=ATOL, rtol=0)


@dlr_installed
@pytest.mark.parametrize(("role", "shape"), [("pnet", (1, 3, 67, 91)), ("rnet", (1, 3, 24, 24)),
                                             ("onet", (1, 3, 48, 48))])
def test_mtcnn_networks_match_onnx_runtime(role: str, shape: tuple[int, ...],
                                           mtcnn: ModelManifest, dlr_cache: Path) -> None:
    folder = dlr_cache / f"mtcnn-{role}-{'x'.join(map(str, shape))}"
    compile_onnx(mtcnn.path(role), folder, input_shapes={"input": shape})
    ort = load_runner(mtcnn.path(role), "onnxruntime")
    dlr = load_runner(folder, "dlr")
    assert [o.name for o in dlr.outputs] == [o.name for o in ort.outputs]
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    want, got = ort.run_sync(x), dlr.run_sync(x)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=0)


def test_the_memory_plan_reuses_buffers(mobilenet_dlr: ModelManifest) -> None:
    graph = json.loads((mobilenet_dlr.path("model") / "model.json").read_text())
    ops = [i for i, n in enumerate(graph["nodes"]) if n["op"] == "tvm_op"]
    storage = graph["attrs"]["storage_id"][1]
    # 54 fused operators (52 convolutions with their BN, ReLU6 and residual adds, pooling,
    # dense) share a handful of buffers.
    assert len(ops) == 54
    assert len({storage[i] for i in ops}) <= 6
    params = {storage[i] for i, n in enumerate(graph["nodes"]) if n["op"] == "null"}
    assert not params & {storage[i] for i in ops}


def _model(tmp_path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
           in_shape: list[int | str], name: str = "m.onnx") -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, in_shape)], [helper.make_tensor_value_info(
            nodes[-1].output[0], TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_an_unsupported_operator_is_named_with_its_node(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    path = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["c"], name="stem"),
                             helper.make_node("Sigmoid", ["c"], ["y"], name="gate_7")],
                  [w], [1, 3, 8, 8])
    with pytest.raises(CompileError, match=r"m\.onnx: Sigmoid node 'gate_7' \(#1\): operator "
                                           r"Sigmoid is not supported"):
        compile_onnx(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_models_get_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00 not protobuf at all")
    with pytest.raises(CompileError, match=r"junk\.onnx: not a readable ONNX model"):
        compile_onnx(junk, tmp_path / "out")
    with pytest.raises(CompileError, match="no such ONNX file"):
        compile_onnx(tmp_path / "missing.onnx", tmp_path / "out")
    # A weight that is computed, not constant; a free spatial size; a grouped convolution.
    relu = _model(tmp_path, [helper.make_node("Relu", ["x"], ["r"]),
                             helper.make_node("Conv", ["x", "r"], ["y"], name="c1")],
                  [], [1, 3, 8, 8], "weights.onnx")
    with pytest.raises(CompileError, match=r"Conv node 'c1' \(#1\): its weight \('r'\) must be "
                                           "a constant"):
        compile_onnx(relu, tmp_path / "out")
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    free = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], group=1)], [w],
                  ["N", 1, "H", "W"], "free.onnx")
    with pytest.raises(CompileError, match=r"free dimension 2 \(H\).*--input-shape x="):
        compile_onnx(free, tmp_path / "out")
    compile_onnx(free, tmp_path / "fixed", input_shapes={"x": (1, 1, 9, 9)})
    w = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    grouped = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], group=2, name="g")],
                     [w], [1, 4, 8, 8], "grouped.onnx")
    with pytest.raises(CompileError, match=r"Conv node 'g' \(#0\): grouped convolution"):
        compile_onnx(grouped, tmp_path / "out")


def test_compiles_are_cached_by_model_and_options(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    path = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])], [w], ["N", 1, 4, 4])
    first = compile_onnx(path, tmp_path / "out")
    assert not first.cached and first.functions == 1
    assert compile_onnx(path, tmp_path / "out").cached
    again = compile_onnx(path, tmp_path / "out", batch=2)
    assert not again.cached
    graph = json.loads((tmp_path / "out" / "model.json").read_text())
    assert graph["attrs"]["shape"][1][0] == [2, 1, 4, 4]


# Without libdlr (armv7l here), the same folders run on edge-actors' graph executor.
EXECUTOR_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from actors.ml.runtimes import load_runner
    x = np.load(sys.argv[2])
    r = load_runner(sys.argv[1], "dlr")
    assert type(r).__name__ == sys.argv[4], type(r).__name__
    np.save(sys.argv[3], next(iter(r.run_sync(x).values())))
""")


@dlr_installed
@pytest.mark.parametrize("model", ["mobilenet", "efficientnet"])
def test_the_graph_executor_gives_libdlr_s_outputs_bit_for_bit(
        model: str, request: pytest.FixtureRequest, chelsea: Path, tmp_path: Path) -> None:
    source: ModelManifest = request.getfixturevalue(model)
    compiled: ModelManifest = request.getfixturevalue(f"{model}_dlr")
    np.save(tmp_path / "x.npy", _image(chelsea, source))
    outputs = {}
    for backend, runner in (("libdlr", "DlrRunner"), ("executor", "GraphExecutorRunner")):
        env = {**os.environ, "EDGE_ACTORS_DLR": backend}
        subprocess.run([sys.executable, "-c", EXECUTOR_SCRIPT, str(compiled.path("model")),
                        str(tmp_path / "x.npy"), str(tmp_path / f"{backend}.npy"), runner],
                       env=env, check=True, capture_output=True, timeout=120)
        outputs[backend] = np.load(tmp_path / f"{backend}.npy")
    np.testing.assert_array_equal(outputs["executor"], outputs["libdlr"])
    assert int(outputs["executor"].argmax()) in CATS


def test_the_graph_executor_runs_mtcnn_and_names_outputs(mtcnn: ModelManifest,
                                                          dlr_cache: Path) -> None:
    from actors.ml.runtimes._graph_exec import GraphExecutorRunner

    folder = dlr_cache / "mtcnn-onet-1x3x48x48"
    compile_onnx(mtcnn.path("onet"), folder, input_shapes={"input": (1, 3, 48, 48)})
    runner = GraphExecutorRunner(folder)
    assert [o.name for o in runner.outputs] == ["regression", "landmarks", "prob"]
    x = np.random.default_rng(4).standard_normal((1, 3, 48, 48)).astype(np.float32)
    want = load_runner(mtcnn.path("onet"), "onnxruntime").run_sync(x)
    got = runner.run_sync(x)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=0)


def test_the_armv7l_library_builds_with_neon(mobilenet: ModelManifest, dlr_cache: Path) -> None:
    import shutil as _shutil

    if _shutil.which("arm-linux-gnueabihf-gcc") is None:
        pytest.skip("Debian's gcc-arm-linux-gnueabihf is not installed (make test installs it)")
    from actors.ml.model_cli import dlr_info

    folder = dlr_cache / "DLR-mobilenet_v2-armv7l"
    compile_onnx(mobilenet.path("model"), folder, target="armv7l")
    info = dlr_info(folder)
    assert info["platform"] == "armv7l (arm)"
    assert info["compiler"]["target"] == "armv7l"
    # NEON quad-register multiply-adds, not scalar VFP: the vector kernels survived.
    disassembly = subprocess.run(["arm-linux-gnueabihf-objdump", "-d", str(folder / "model.so")],
                                 capture_output=True, text=True, check=True).stdout
    assert disassembly.count("vmla.f32\tq") + disassembly.count("vfma.f32\tq") > 50


@dlr_installed
@pytest.mark.anyio
async def test_the_detector_finds_the_astronaut_s_face_through_dlr(
        mtcnn: ModelManifest, mtcnn_dlr: ModelManifest, astronaut: Path, coffee: Path) -> None:
    from actors.ml.tasks import open_face_detector

    dlr = await open_face_detector(mtcnn_dlr)
    assert dlr.pnet.runtime == "dlr"
    faces = await dlr.detect(astronaut)
    assert len(faces) == 1
    want = (await (await open_face_detector(mtcnn)).detect(astronaut))[0]
    assert faces[0].score > 0.99
    np.testing.assert_allclose(faces[0].box, want.box, atol=2.0)
    assert await dlr.detect(coffee) == []


@dlr_installed
def test_variants_pad_and_crop_pnet_and_chunk_onet_batches(mtcnn: ModelManifest,
                                                           mtcnn_dlr: ModelManifest) -> None:
    from actors.ml.runtimes import InferenceError

    rng = np.random.default_rng(9)
    pnet = load_runner(mtcnn_dlr.path("pnet"), "dlr")
    ort_pnet = load_runner(mtcnn.path("pnet"), "onnxruntime")
    for h, w in ((12, 12), (64, 64), (67, 90), (41, 130)):  # exact, and padded up to a size
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        want, got = ort_pnet.run_sync(x), pnet.run_sync(x)
        for name, value in want.items():
            assert got[name].shape == value.shape
            # Padding changes only what ceil-mode pooling saw past the last row or column.
            np.testing.assert_allclose(got[name][..., :-1, :-1], value[..., :-1, :-1],
                                       atol=1e-4, rtol=0)
    with pytest.raises(InferenceError, match="larger than every compiled size"):
        pnet.run_sync(np.zeros((1, 3, 1300, 20), np.float32))
    onet = load_runner(mtcnn_dlr.path("onet"), "dlr")
    x = rng.standard_normal((21, 3, 48, 48)).astype(np.float32)  # one chunk of 16, one of 5
    want = load_runner(mtcnn.path("onet"), "onnxruntime").run_sync(x)
    got = onet.run_sync(x)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=0)
    assert all(v.shape[0] == 0 for v in onet.run_sync(x[:0]).values())


@dlr_installed
@pytest.mark.parametrize("backend", ["libdlr", "executor"])
def test_runs_from_several_threads_at_once_take_turns(
        backend: str, mobilenet: ModelManifest, mobilenet_dlr: ModelManifest, chelsea: Path,
        coffee: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("EDGE_ACTORS_DLR", backend)
    runner = load_runner(mobilenet_dlr.path("model"), "dlr", RunnerOptions(threads=1))
    images = [_image(chelsea, mobilenet), _image(coffee, mobilenet)] * 6
    want = [_first(runner.run_sync(x)) for x in images[:2]]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: _first(runner.run_sync(x)), images))
    for i, value in enumerate(got):
        np.testing.assert_array_equal(value, want[i % 2])


SELFTEST = Path(__file__).parent / "data" / "kernels_selftest.c"


@pytest.mark.parametrize("target", ["x86_64", "armv7l"])
def test_the_kernels_match_naive_c_on_every_path(target: str, tmp_path: Path) -> None:
    """Every kernel against naive C: on this machine through each instruction-set path,
    and the armv7l (NEON) build under qemu-arm when it is installed."""
    import shutil as _shutil

    from actors.ml.compile import TARGETS
    from actors.ml.compile._compiler import (
        HOST,
        KERNELS,
        ToolchainMissing,
        find_compiler,
        kernel_object,
    )

    if target != "armv7l" and target != HOST:
        pytest.skip(f"{target} is not this machine")
    spec = TARGETS[target]
    try:
        cc = find_compiler(spec)
    except ToolchainMissing as e:
        pytest.skip(str(e))
    runner: list[str] = []
    if target != HOST:
        qemu = _shutil.which("qemu-arm-static") or _shutil.which("qemu-arm")
        if qemu is None:
            pytest.skip("qemu-user (qemu-arm-static) is not installed to run the armv7l build")
        runner = [qemu]
    exe = tmp_path / f"selftest-{target}"
    subprocess.run([cc, "-O2", "-static", *spec.flags, f"-I{KERNELS}", "-o", str(exe),
                    str(SELFTEST), str(kernel_object(spec, cc)), "-lm"], check=True,
                   capture_output=True)
    for isa in (["avx512", "avx2", "portable"] if target == "x86_64" else ["neon"]):
        done = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "EDGE_ACTORS_DLR_ISA": isa})
        assert done.returncode == 0 and done.stdout.strip() == "ok", (isa, done.stdout)


def test_the_graph_executor_splits_operators_over_threads_with_the_same_result(
        mobilenet: ModelManifest, mobilenet_dlr: ModelManifest, chelsea: Path) -> None:
    from actors.ml.runtimes._graph_exec import GraphExecutorRunner

    x = _image(chelsea, mobilenet)
    one = GraphExecutorRunner(mobilenet_dlr.path("model"))
    two = GraphExecutorRunner(mobilenet_dlr.path("model"), RunnerOptions(threads=2))
    assert (one.options.threads, two.options.threads) == (1, 2)
    calls: list[int] = []
    assert two._pool is not None
    launch = two._pool._launch

    def counting(flambda: int, cdata: int, num_task: int) -> int:
        calls.append(num_task)
        return launch(flambda, cdata, num_task)

    two._pool._launch = counting  # type: ignore[method-assign]
    from actors.ml.runtimes._graph_exec import ParallelLaunch

    two._pool.callback = ParallelLaunch(counting)
    two._pool.attach(two._module.lib)
    np.testing.assert_array_equal(_first(two.run_sync(x)), _first(one.run_sync(x)))
    assert len(calls) > 20  # the convolutions went through the pool
    two.close()


def test_staging_for_a_raspberry_pi_makes_its_armv7l_model_components(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """`python -m actors.ml.stage --platform ...`, as `make arm-test` stages the models a
    Raspberry Pi deploys: the armv7l ZIPs its recipes select, ARM libraries inside."""
    import shutil as _shutil
    import zipfile

    from actors.ml.stage import main, stage
    from actors.recipe import other_platform

    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path), "--platform", "architecture"])
    assert exited.value.code == 2
    if _shutil.which("arm-linux-gnueabihf-gcc") is None:
        pytest.skip("Debian's gcc-arm-linux-gnueabihf is not installed (make test installs it)")
    cache = Path(request.config.cache.mkdir("edge-actors-models"))
    pi = other_platform("architecture=arm,architecture.detail=arm71")
    made = stage(Path(__file__).resolve().parents[2] / "recipes", tmp_path / "out", cache, pi)
    dlr = {path.name for path in made if path.name.startswith("DLR-")}
    assert dlr == {"DLR-mobilenet_v2-armv7l-cpu-ImageClassification.zip",
                   "DLR-efficientnet_lite0-armv7l-cpu-ImageClassification.zip",
                   "DLR-mtcnn-armv7l-cpu-FaceDetection.zip"}
    zipped = next(path for path in made if path.name.startswith("DLR-mobilenet_v2"))
    with zipfile.ZipFile(zipped) as archive:
        library = next(name for name in archive.namelist() if name.endswith("model.so"))
        header = archive.read(library)[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 40  # EM_ARM
