"""``edge-actors compile`` and ``edge-actors model info|run``: the model tools of the CLI.

Only argparse at import time; each verb imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

TARGETS = ("armv7l", "x86_64")  # as actors.ml.compile.TARGETS (kept light for the parser)
# ELF e_machine values of the platforms a model library may be built for.
_MACHINES = {3: "x86", 62: "x86_64", 40: "armv7l (arm)", 183: "aarch64", 243: "riscv64"}
# (library, graph, params) names per layout, as libdlr finds them by suffix.
_LAYOUTS = {"model.so": "edge-actors compile", "compiled.so": "SageMaker Neo",
            "deploy_lib.so": "TVM (deploy_*)"}


def add_commands(sub: Any) -> None:
    """Add the ``compile`` and ``model`` verbs to the CLI's subparsers."""
    host = os.uname().machine
    p = sub.add_parser(
        "compile", help="compile a model into a DLR model folder (TVM graph-executor format)",
        description="Compile MODEL (a model name of `python -m actors.ml.models`, a built "
        "model folder, or an .onnx file) into a DLR model folder that libdlr (and the "
        "fallback graph executor) runs: model.so (C kernels built with gcc; on x86_64 the "
        "instruction set is chosen at run time), model.json, model.params, model.meta. "
        "A model name or folder also gets its manifest and labels, the networks in "
        "subfolders; --zip packs it as a Greengrass model-component artifact.")
    p.add_argument("model", help="mobilenet_v2 | efficientnet_lite0 | FOLDER | FILE.onnx")
    p.add_argument("--out", type=Path, default=Path("build/dlr"),
                   help="where to write (a folder per model inside it for names and "
                   "folders; the DLR folder itself for an .onnx file) (default: build/dlr)")
    p.add_argument("--target", choices=TARGETS, default=host if host in TARGETS else "x86_64",
                   help="the platform of the library (default: this machine's)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="a static shape for an input with free dimensions (repeatable)")
    p.add_argument("--batch", type=int, default=1,
                   help="the batch size of a free first dimension (default: 1)")
    p.add_argument("--zip", action="store_true", help="also pack the folder as a ZIP")
    p.add_argument("--force", action="store_true", help="compile even if up to date")

    model = sub.add_parser("model", help="inspect and run a model file or folder")
    msub = model.add_subparsers(dest="verb", required=True)
    info = msub.add_parser(
        "info", help="inputs, outputs, shapes, dtypes, runtime and library platform",
        description="Describe a model without running it: a DLR folder (ours, SageMaker "
        "Neo's compiled.* or TVM's deploy_* layout), an .onnx file, or a model folder with "
        "its manifest.")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON")
    run = msub.add_parser(
        "run", help="run a model on .npy inputs",
        description="Load the model with its runtime (DLR for a folder, loaded in a test "
        "process first; ONNX Runtime for an .onnx file) and run it once.")
    run.add_argument("path", type=Path)
    run.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                     required=True, help="an input tensor (repeatable)")
    run.add_argument("--output", type=Path, metavar="OUT.npz",
                     help="write the outputs by name to this .npz file")
    run.add_argument("--threads", type=int, default=0,
                     help="threads for the run (default: the runtime's)")


def _shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            raise SystemExit(f"edge-actors: --input-shape {item!r}: expected NAME=N,C,H,W") \
                from None
    return shapes


def _task_suffix(manifest_task: str) -> str:
    return {"classification": "ImageClassification",
            "face-detection": "FaceDetection"}.get(manifest_task, manifest_task)


def compile_command(args: argparse.Namespace) -> int:
    from .compile import CompileError, ToolchainMissing, compile_model_folder, compile_onnx
    from .models import MODELS, ModelFolderError, ModelSourceMissing, build_model, pack

    try:
        source = Path(args.model)
        if source.suffix == ".onnx" or source.is_file():
            done = compile_onnx(source, args.out, target=args.target,
                                input_shapes=_shapes(args.input_shape), batch=args.batch,
                                force=args.force)
            state = "up to date" if done.cached else (
                f"{done.functions} functions, {done.params} params, {done.seconds:.1f} s")
            print(f"{done.folder}: {state}")
            return 0
        if args.model in MODELS:
            source = build_model(args.model)
        from .models import load_manifest

        manifest = load_manifest(source)
        name = f"DLR-{manifest.name}-{args.target}-cpu-{_task_suffix(manifest.task)}"
        compiled = compile_model_folder(source, args.out / name, target=args.target,
                                        batch=args.batch, force=args.force)
        print(f"{compiled.folder}: {', '.join(sorted(compiled.files))} for {args.target}")
        if args.zip:
            print(pack(compiled.folder))
        return 0
    except (CompileError, ToolchainMissing, ModelFolderError, ModelSourceMissing) as e:
        print(f"edge-actors compile: {e}", file=sys.stderr)
        return 1


def _elf_machine(path: Path) -> str:
    try:
        head = path.read_bytes()[:20]
    except OSError as e:
        return f"unreadable ({e})"
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return "not an ELF library"
    (machine,) = struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)
    return _MACHINES.get(machine, f"ELF machine {machine}")


def _one(folder: Path, suffix: str) -> Path | None:
    found = [p for p in folder.iterdir() if p.name.endswith(suffix) and p.name not in (
        "model-shapes.json", "hyperparams.json", "version.json")]
    return found[0] if len(found) == 1 else None


def dlr_info(folder: Path) -> dict[str, Any]:
    """Describe a DLR graph-executor folder from its files, without loading its library."""
    lib, graph_path, params = _one(folder, ".so"), _one(folder, ".json"), _one(folder, ".params")
    if lib is None or graph_path is None or params is None:
        raise ValueError(f"{folder}: a DLR folder has one .so, one .json and one .params file")
    graph = json.loads(graph_path.read_text())
    meta_path = _one(folder, ".meta")
    meta = json.loads(meta_path.read_text()) if meta_path else {}
    from .models import tvm_params

    weights = set(tvm_params.loads(params.read_bytes()))
    attrs = graph["attrs"]
    shapes, dtypes = attrs["shape"][1], attrs["dltype"][1]
    row = graph["node_row_ptr"]
    nodes = graph["nodes"]
    inputs = [{"name": nodes[n]["name"], "shape": shapes[row[n]], "dtype": dtypes[row[n]]}
              for n in graph["arg_nodes"] if nodes[n]["name"] not in weights]
    names = [o.get("name") for o in meta.get("Model", {}).get("Outputs", [])]
    outputs = []
    for i, (nid, index, *_) in enumerate(graph["heads"]):
        eid = row[nid] + index
        outputs.append({"name": names[i] if i < len(names) else f"output{i}",
                        "shape": shapes[eid], "dtype": dtypes[eid]})
    return {"path": str(folder), "runtime": "dlr", "layout": _LAYOUTS.get(lib.name, "other"),
            "library": lib.name, "platform": _elf_machine(lib), "inputs": inputs,
            "outputs": outputs, "operators": sum(n["op"] == "tvm_op" for n in nodes),
            "weights": len(weights), "compiler": meta.get("Compiler")}


def onnx_info(path: Path) -> dict[str, Any]:
    from .runtimes import load_runner

    runner = load_runner(path, "onnxruntime")

    def describe(infos: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "shape": [d if d is not None else "?" for d in t.shape],
                 "dtype": str(t.dtype)} for t in infos]

    return {"path": str(path), "runtime": "onnxruntime", "platform": "any",
            "inputs": describe(runner.inputs), "outputs": describe(runner.outputs)}


def variants_info(folder: Path) -> dict[str, Any]:
    """Describe a model compiled for several input shapes (``variants.txt``)."""
    spec = json.loads((folder / "variants.txt").read_text())
    first = folder / "x".join(map(str, spec["variants"][0]))
    item = dlr_info(first)
    item["path"] = str(folder)
    item["variants"] = {"mode": spec["mode"], "shapes": spec["variants"]}
    return item


def model_info(path: Path) -> list[dict[str, Any]]:
    """Descriptions of the model(s) at ``path``: a DLR folder, an .onnx file, a model folder."""
    if path.is_file():
        return [onnx_info(path)]
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    from .models import MANIFEST, load_manifest

    if (path / "variants.txt").is_file():
        return [variants_info(path)]

    if (path / MANIFEST).is_file():
        manifest = load_manifest(path)
        out = []
        for role in sorted(manifest.files):
            target = manifest.path(role)
            if (target / "variants.txt").is_file():
                item = variants_info(target)
            else:
                item = dlr_info(target) if target.is_dir() else onnx_info(target)
            out.append({"role": role, "model": manifest.name, "task": manifest.task, **item})
        return out
    return [dlr_info(path)]


def _print_info(items: list[dict[str, Any]]) -> None:
    for item in items:
        title = f"{item['path']}" + (f" ({item['role']})" if "role" in item else "")
        print(title)
        print(f"  runtime: {item['runtime']}    platform: {item['platform']}"
              + (f"    layout: {item['layout']}" if "layout" in item else ""))
        for kind in ("inputs", "outputs"):
            for t in item[kind]:
                shape = "x".join(str(d) for d in t["shape"])
                print(f"  {kind[:-1]:<7}{t['name']:<16}{t['dtype']:<9}{shape}")
        if item.get("variants"):
            v = item["variants"]
            print(f"  compiled for {len(v['shapes'])} input shapes ({v['mode']}): "
                  + ", ".join("x".join(map(str, shape)) for shape in v["shapes"]))
        if item.get("compiler"):
            c = item["compiler"]
            print(f"  compiled by {c.get('name')} {c.get('version')} for {c.get('target')} "
                  f"from {c.get('source')} ({item['operators']} operators)")


def model_command(args: argparse.Namespace) -> int:
    from .runtimes import InferenceError, ModelLoadError, RuntimeUnavailable

    try:
        if args.verb == "info":
            items = model_info(args.path)
            if args.json:
                print(json.dumps(items, indent=1))
            else:
                _print_info(items)
            return 0
        return _run(args)
    except (ValueError, OSError, ModelLoadError, RuntimeUnavailable, InferenceError) as e:
        print(f"edge-actors model {args.verb}: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from .runtimes import RunnerOptions, load_runner

    path: Path = args.path
    runtime = "dlr" if path.is_dir() else "onnxruntime"
    if path.is_dir():
        from .models import MANIFEST, load_manifest

        if (path / MANIFEST).is_file():
            manifest = load_manifest(path)
            path = manifest.path("model" if "model" in manifest.files else
                                 sorted(manifest.files)[0])
            runtime = "dlr" if path.is_dir() else "onnxruntime"
    feed = {}
    for item in args.input:
        name, _, file = item.partition("=")
        if not file:
            raise ValueError(f"--input {item!r}: expected NAME=FILE.npy")
        feed[name] = np.load(file, allow_pickle=False)
    runner = load_runner(path, runtime, RunnerOptions(threads=max(0, args.threads)))
    outputs = runner.run_sync(feed)
    for name, value in outputs.items():
        flat = value.reshape(-1)
        head = ", ".join(f"{v:.5g}" for v in flat[:6]) + (", ..." if flat.size > 6 else "")
        print(f"{name}: {value.dtype} {'x'.join(map(str, value.shape))} "
              f"argmax {int(flat.argmax()) if flat.size else '-'} [{head}]")
    if args.output:
        tmp = args.output.with_name(args.output.name + ".part.npz")
        np.savez(tmp, **outputs)  # type: ignore[arg-type]
        os.replace(tmp, args.output)
        print(f"wrote {args.output}")
    return 0
