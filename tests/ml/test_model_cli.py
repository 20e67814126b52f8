"""``edge-actors compile`` and ``edge-actors model info|run`` through the CLI's main()."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from actors.cli import main
from actors.ml.models import ModelManifest, pack

pytest_plugins = ["tests.ml._model_fixtures", "tests.ml._compile_fixtures"]
dlr_installed = pytest.mark.skipif(
    importlib.util.find_spec("dlr") is None,
    reason="DLR (pip install dlr==1.6.0, x86_64 Linux) is not installed")


@pytest.fixture
def small_onnx(tmp_path: Path) -> Path:
    """A 3x3 convolution with ReLU and a free batch and spatial size."""
    w = np.random.default_rng(1).standard_normal((4, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "small.onnx"
    onnx.save(model, str(path))
    return path


@dlr_installed
def test_compile_info_and_run_an_onnx_file(small_onnx: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small-dlr"
    assert main(["compile", str(small_onnx), "--out", str(out)]) == 1
    assert "free dimension 2 (H)" in capsys.readouterr().err
    assert main(["compile", str(small_onnx), "--out", str(out),
                 "--input-shape", "x=2,2,5,7"]) == 0
    assert "1 functions" in capsys.readouterr().out
    assert main(["model", "info", str(out), "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["runtime"] == "dlr" and info["platform"] == "x86_64"
    assert info["inputs"] == [{"name": "x", "shape": [2, 2, 5, 7], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "y", "shape": [2, 4, 5, 7], "dtype": "float32"}]
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    results = {}
    for path in (out, small_onnx):
        npz = tmp_path / f"{path.stem}.npz"
        assert main(["model", "run", str(path), "--input", f"x={tmp_path / 'x.npy'}",
                     "--output", str(npz)]) == 0
        assert "y: float32 2x4x5x7" in capsys.readouterr().out
        results[path] = np.load(npz)["y"]
    np.testing.assert_allclose(results[out], results[small_onnx], atol=1e-5)
    assert main(["model", "info", str(small_onnx)]) == 0
    assert "runtime: onnxruntime" in capsys.readouterr().out


@dlr_installed
def test_info_reads_neo_folders_and_model_folders(mobilenet_dlr: ModelManifest, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    neo = tmp_path / "neo"
    neo.mkdir()
    for ours, theirs in (("model.so", "compiled.so"), ("model.json", "compiled_model.json"),
                         ("model.params", "compiled.params")):
        shutil.copyfile(mobilenet_dlr.path("model") / ours, neo / theirs)
    assert main(["model", "info", str(neo)]) == 0
    text = capsys.readouterr().out
    assert "layout: SageMaker Neo" in text and "output0" in text and "1x1000" in text
    assert main(["model", "info", str(mobilenet_dlr.folder), "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["role"] == "model" and info["task"] == "classification"
    assert info["compiler"]["target"] == "x86_64"
    assert main(["model", "info", str(tmp_path / "nothing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_unsupported_operators_fail_the_command_naming_the_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"], name="gate")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "sig.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert main(["compile", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "Sigmoid node 'gate' (#0): operator Sigmoid is not supported" in \
        capsys.readouterr().err


def test_a_compiled_folder_packs_with_its_subfolders(mobilenet_dlr: ModelManifest,
                                                     tmp_path: Path) -> None:
    zip_path = pack(mobilenet_dlr.folder, tmp_path / "DLR.zip")
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {"edge-model.json", "labels.txt", "model/model.so", "model/model.json",
            "model/model.params", "model/model.meta"} <= names
    assert not any(Path(n).name.startswith(".") for n in names)


def test_info_describes_a_model_compiled_for_several_shapes(
        mtcnn_dlr: ModelManifest, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", str(mtcnn_dlr.folder), "--json"]) == 0
    items = {i["role"]: i for i in json.loads(capsys.readouterr().out)}
    assert sorted(items) == ["onet", "pnet", "rnet"]
    assert items["pnet"]["variants"]["mode"] == "spatial"
    assert len(items["pnet"]["variants"]["shapes"]) == 15
    assert items["onet"]["variants"] == {"mode": "batch", "shapes": [[16, 3, 48, 48]]}
    assert [o["name"] for o in items["onet"]["outputs"]] == ["regression", "landmarks", "prob"]
