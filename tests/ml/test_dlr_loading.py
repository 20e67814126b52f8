"""Loading DLR model folders safely: a broken library never takes the runtime down, and
Neo's and older TVM's file layouts load like ours."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from actors.ml.models import ModelManifest
from actors.ml.runtimes import ModelLoadError, RunnerOptions, load_runner
from actors.ml.tasks._image import prepare

pytest_plugins = ["tests.ml._model_fixtures", "tests.ml._compile_fixtures"]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dlr") is None,
    reason="DLR (pip install dlr==1.6.0, x86_64 Linux) is not installed")

MISSING_SYMBOL = r"""
extern int edge_actors_missing_symbol(int);
int ea_fused_conv_0(void* a, int* c, int n, void* r, int* rc, void* res) {
  return edge_actors_missing_symbol(n);
}
"""
CRASH = r"""
int dense_bias(void* a, int* c, int n, void* r, int* rc, void* res) {
  *(volatile int*)0 = n;
  return 0;
}
int softmax_rows(void* a, int* c, int n, void* r, int* rc, void* res) { return 0; }
"""
LAYOUTS = {
    "neo": {"model.so": "compiled.so", "model.json": "compiled_model.json",
            "model.params": "compiled.params", "model.meta": "compiled.meta"},
    "tvm": {"model.so": "deploy_lib.so", "model.json": "deploy_graph.json",
            "model.params": "deploy_param.params"},
}


def _broken(tmp_path: Path, source: str, model: Path) -> Path:
    """A folder with the graph and params of a real model and a bad library."""
    folder = tmp_path / "broken"
    shutil.copytree(model, folder)
    (tmp_path / "lib.c").write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "model.so"),
                    str(tmp_path / "lib.c")], check=True)
    return folder


def test_an_undefined_symbol_is_a_load_error_naming_the_library(
        tmp_path: Path, mobilenet_dlr: ModelManifest) -> None:
    folder = _broken(tmp_path, MISSING_SYMBOL, mobilenet_dlr.path("model"))
    with pytest.raises(ModelLoadError, match=r"broken/model\.so: dlr cannot load this model: .*"
                                             r"undefined symbol: edge_actors_missing_symbol"):
        load_runner(folder, "dlr")
    # This process is still here, and loads a good model afterwards.
    assert load_runner(mobilenet_dlr.path("model"), "dlr").runtime == "dlr"


def test_a_library_that_crashes_is_a_load_error(tmp_path: Path, dlr_graph_folder: Path) -> None:
    folder = _broken(tmp_path, CRASH, dlr_graph_folder)
    with pytest.raises(ModelLoadError, match=r"broken: the model crashed a test process "
                                             r"\(SIGSEGV\)"):
        load_runner(folder, "dlr")


def test_a_folder_with_two_graphs_names_the_extra_file(tmp_path: Path,
                                                        mobilenet_dlr: ModelManifest) -> None:
    folder = tmp_path / "two"
    shutil.copytree(mobilenet_dlr.path("model"), folder)
    (folder / "notes.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"two/(model|notes)\.json: dlr cannot load this "
                                             r"model: .*Found multiple \*\.json files"):
        load_runner(folder, "dlr")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_neo_and_old_tvm_layouts_load(layout: str, tmp_path: Path, mobilenet: ModelManifest,
                                      mobilenet_dlr: ModelManifest, chelsea: Path) -> None:
    folder = tmp_path / layout
    folder.mkdir()
    for ours, theirs in LAYOUTS[layout].items():
        shutil.copyfile(mobilenet_dlr.path("model") / ours, folder / theirs)
    if layout == "neo":
        (folder / "manifest").write_text('{"files": []}')
    x = prepare(chelsea, mobilenet.preprocess)[None]
    want = next(iter(load_runner(mobilenet_dlr.path("model"), "dlr").run_sync(x).values()))
    runner = load_runner(folder, "dlr", RunnerOptions(threads=1))
    np.testing.assert_array_equal(next(iter(runner.run_sync(x).values())), want)
