"""Fixtures for the model, runtime and task tests: models built once per session, the
scikit-image sample images, and DLR model folders compiled by the tests.

Test modules import the fixtures they use from here (tests/ml/conftest.py belongs to the
conversion tests).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actors.ml.models import ModelManifest, ensure_model, tvm_params

# The C that a TVM build exports: packed functions over DLTensor arguments.
GRAPH_C = r"""
#include <math.h>
#include <stdint.h>
typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data; DLDevice device; int32_t ndim; DLDataType dtype;
  int64_t* shape; int64_t* strides; uint64_t byte_offset;
} DLTensor;
typedef union { int64_t v_int64; double v_float64; void* v_handle; const char* v_str; } TVMValue;

static float* f32(DLTensor* t) { return (float*)((char*)t->data + t->byte_offset); }

int dense_bias(TVMValue* args, int* codes, int n, TVMValue* ret, int* ret_code, void* res) {
  if (n != 4) return -1;
  DLTensor *x = args[0].v_handle, *w = args[1].v_handle, *b = args[2].v_handle;
  DLTensor *y = args[3].v_handle;
  int64_t rows = x->shape[0], in = x->shape[1], out = w->shape[0];
  float *xd = f32(x), *wd = f32(w), *bd = f32(b), *yd = f32(y);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < out; j++) {
      float acc = bd[j];
      for (int64_t k = 0; k < in; k++) acc += xd[i * in + k] * wd[j * in + k];
      yd[i * out + j] = acc;
    }
  return 0;
}

int softmax_rows(TVMValue* args, int* codes, int n, TVMValue* ret, int* ret_code, void* res) {
  if (n != 2) return -1;
  DLTensor *x = args[0].v_handle, *y = args[1].v_handle;
  int64_t rows = x->shape[0], cols = x->shape[1];
  float *xd = f32(x), *yd = f32(y);
  for (int64_t i = 0; i < rows; i++) {
    float m = xd[i * cols], s = 0.f;
    for (int64_t j = 1; j < cols; j++) if (xd[i * cols + j] > m) m = xd[i * cols + j];
    for (int64_t j = 0; j < cols; j++) {
      yd[i * cols + j] = expf(xd[i * cols + j] - m);
      s += yd[i * cols + j];
    }
    for (int64_t j = 0; j < cols; j++) yd[i * cols + j] /= s;
  }
  return 0;
}
"""

GRAPH_BATCH, GRAPH_IN, GRAPH_OUT = 2, 4, 3

# A two-split decision tree, compiled by Treelite 0.93 (the runtime libdlr 1.6.0 embeds).
TREELITE_SCRIPT = r"""
import os, sys, treelite
builder = treelite.ModelBuilder(num_feature=2)
tree = treelite.ModelBuilder.Tree()
tree[0].set_numerical_test_node(feature_id=0, opname="<", threshold=0.5, default_left=True,
                                left_child_key=1, right_child_key=2)
tree[1].set_leaf_node(-1.0)
tree[2].set_numerical_test_node(feature_id=1, opname="<", threshold=2.0, default_left=False,
                                left_child_key=3, right_child_key=4)
tree[3].set_leaf_node(0.25)
tree[4].set_leaf_node(3.0)
tree[0].set_root()
builder.append(tree)
builder.commit().export_lib(toolchain="gcc", libpath=os.path.join(sys.argv[1], "model.so"))
"""


def skimage_image(name: str) -> Path:
    """A scikit-image sample image, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (the sample images) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest) -> Path:
    # pytest's cache survives sessions; builds are keyed by the weights' digest.
    return Path(request.config.cache.mkdir("edge-actors-models"))


@pytest.fixture(scope="session")
def mobilenet(model_cache: Path) -> ModelManifest:
    return ensure_model("mobilenet_v2", model_cache)


@pytest.fixture(scope="session")
def efficientnet(model_cache: Path) -> ModelManifest:
    return ensure_model("efficientnet_lite0", model_cache)


@pytest.fixture(scope="session")
def mtcnn(model_cache: Path) -> ModelManifest:
    return ensure_model("mtcnn", model_cache)


@pytest.fixture(scope="session")
def chelsea() -> Path:
    return skimage_image("chelsea.png")


@pytest.fixture(scope="session")
def astronaut() -> Path:
    return skimage_image("astronaut.png")


@pytest.fixture(scope="session")
def coffee() -> Path:
    return skimage_image("coffee.png")


@pytest.fixture(scope="session")
def graph_shape() -> tuple[int, int, int]:
    """(batch, inputs, outputs) of the dense + softmax test network."""
    return GRAPH_BATCH, GRAPH_IN, GRAPH_OUT


@pytest.fixture(scope="session")
def graph_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"w": rng.standard_normal((GRAPH_OUT, GRAPH_IN)).astype(np.float32),
            "b": rng.standard_normal(GRAPH_OUT).astype(np.float32)}


@pytest.fixture(scope="session")
def dlr_graph_folder(tmp_path_factory: pytest.TempPathFactory,
                     graph_weights: dict[str, np.ndarray]) -> Path:
    """A DLR graph-executor folder: dense + softmax as model.so, model.json, model.params."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the test model")
    folder = tmp_path_factory.mktemp("dlr-graph")
    (folder / "model.c").write_text(GRAPH_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(folder / "model.so"),
                    str(folder / "model.c"), "-lm"], check=True)
    (folder / "model.c").unlink()
    tvm_params.save(folder / "model.params", graph_weights)
    shapes = [[GRAPH_BATCH, GRAPH_IN], [GRAPH_OUT, GRAPH_IN], [GRAPH_OUT],
              [GRAPH_BATCH, GRAPH_OUT], [GRAPH_BATCH, GRAPH_OUT]]
    graph = {
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "null", "name": "w", "inputs": []},
            {"op": "null", "name": "b", "inputs": []},
            {"op": "tvm_op", "name": "dense", "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]],
             "attrs": {"func_name": "dense_bias", "flatten_data": "0", "num_inputs": "3",
                       "num_outputs": "1"}},
            {"op": "tvm_op", "name": "softmax", "inputs": [[3, 0, 0]],
             "attrs": {"func_name": "softmax_rows", "flatten_data": "0", "num_inputs": "1",
                       "num_outputs": "1"}},
        ],
        "arg_nodes": [0, 1, 2],
        "node_row_ptr": [0, 1, 2, 3, 4, 5],
        "heads": [[4, 0, 0]],
        "attrs": {"dltype": ["list_str", ["float32"] * 5], "shape": ["list_shape", shapes],
                  "storage_id": ["list_int", [0, 1, 2, 3, 4]]},
    }
    (folder / "model.json").write_text(json.dumps(graph))
    return folder


@pytest.fixture(scope="session")
def treelite_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Treelite-compiled decision tree, built in a subprocess (its libtreelite and
    the copy inside libdlr must not share a process)."""
    if importlib.util.find_spec("treelite") is None or shutil.which("gcc") is None:
        pytest.skip("treelite==0.93 and gcc are needed to compile the Treelite model")
    folder = tmp_path_factory.mktemp("dlr-treelite")
    done = subprocess.run([sys.executable, "-c", TREELITE_SCRIPT, str(folder)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"this treelite cannot compile a model: {done.stderr[-500:]}")
    return folder
