"""Compile an ONNX model into a DLR model folder (model.so, model.json, model.params)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..models import MANIFEST, ModelManifest, load_manifest, tvm_params
from ._codegen import emit, graph_json
from ._errors import CompileError, ToolchainMissing
from ._ir import load_program

KERNELS = Path(__file__).parent / "kernels"
COMPILER_VERSION = "1"
_KEY_FILE = ".compile-key"


@dataclass(frozen=True)
class Target:
    """A platform the library is built for: its Greengrass name and the gcc that builds it."""

    name: str  # x86_64, armv7l
    cc: str
    flags: tuple[str, ...]
    apt: str  # the Debian package of the compiler


TARGETS = {
    "x86_64": Target("x86_64", "gcc", ("-march=x86-64", "-mtune=generic"), "gcc"),
    # NEON flushes denormals to zero, so gcc uses it for float vectors only when allowed
    # to (-funsafe-math-optimizations); without it every vector op becomes scalar VFP.
    "armv7l": Target("armv7l", "arm-linux-gnueabihf-gcc",
                     ("-march=armv7-a", "-mfpu=neon", "-mfloat-abi=hard",
                      "-funsafe-math-optimizations"),
                     "gcc-arm-linux-gnueabihf"),
}
HOST = os.uname().machine


@dataclass(frozen=True)
class Compiled:
    """A compiled model folder and what it took."""

    folder: Path
    functions: int
    params: int
    seconds: float
    cached: bool


_CFLAGS = ("-O3", "-fPIC", "-fvisibility=hidden", "-fno-math-errno", "-Wno-psabi", "-std=gnu11")


def kernel_cache_dir() -> Path:
    """``$EDGE_ACTORS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/edge-actors/kernels``."""
    env = os.environ.get("EDGE_ACTORS_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-actors" / "kernels"


def kernel_object(target: Target, cc: str) -> Path:
    """The kernels compiled for ``target`` (every instruction-set path: the slow part of a
    build), cached by the digest of their sources and flags; built aside and renamed."""
    digest = hashlib.sha256(repr((target, _CFLAGS)).encode())
    for src in kernel_sources():
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    folder = kernel_cache_dir()
    path = folder / f"ea_kernels-{target.name}-{digest.hexdigest()[:20]}.o"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    done = subprocess.run([cc, *_CFLAGS, "-c", *target.flags, f"-I{KERNELS}", "-o", str(part),
                           str(KERNELS / "ea_kernels.c")], capture_output=True, text=True)
    if done.returncode != 0:
        part.unlink(missing_ok=True)
        raise CompileError(f"{target.cc} failed to build the kernels for {target.name}:\n"
                           f"{done.stderr[-4000:]}")
    part.replace(path)
    return path


def kernel_sources() -> list[Path]:
    return sorted(p for p in KERNELS.iterdir() if p.suffix in (".c", ".h"))


def _key(onnx_path: Path, target: Target, input_shapes: Mapping[str, Sequence[int]] | None,
         batch: int) -> str:
    digest = hashlib.sha256(COMPILER_VERSION.encode())
    digest.update(onnx_path.read_bytes())
    for src in [*kernel_sources(), *sorted(Path(__file__).parent.glob("_*.py"))]:
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    digest.update(repr((target, sorted((input_shapes or {}).items()), batch)).encode())
    return digest.hexdigest()


def find_compiler(target: Target) -> str:
    path = shutil.which(target.cc)
    if path is None:
        raise ToolchainMissing(
            f"{target.cc} is not installed: it builds the {target.name} model library "
            f"(apt-get install {target.apt})")
    return path


def compile_onnx(onnx_path: str | Path, out: str | Path, *, target: str = HOST,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, batch: int = 1,
                 force: bool = False, keep_source: bool = False) -> Compiled:
    """Compile ``onnx_path`` into the DLR folder ``out`` for ``target`` (x86_64, armv7l).

    Skips the work when ``out`` holds a build of the same model, kernels and options.
    The folder appears whole or not at all. Raises CompileError (naming the operator and
    node) for what cannot be compiled, ToolchainMissing when the target's gcc is absent.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    tgt = TARGETS[target]
    if not onnx_path.is_file():
        raise CompileError(f"{onnx_path}: no such ONNX file")
    key = _key(onnx_path, tgt, input_shapes, batch)
    key_file = out / _KEY_FILE
    if not force and key_file.is_file() and key_file.read_text() == key:
        return Compiled(out, 0, 0, 0.0, True)
    started = time.perf_counter()
    cc = find_compiler(tgt)
    program = load_program(onnx_path, input_shapes, batch)
    emitted = emit(program)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        source = work / "model.c"
        source.write_text(emitted.source)
        command = [cc, *_CFLAGS, "-shared", *tgt.flags, f"-I{KERNELS}", "-o",
                   str(work / "model.so"), str(source), str(kernel_object(tgt, cc)), "-lm"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"{onnx_path}: {tgt.cc} failed to build the model library:\n"
                               f"{done.stderr[-4000:]}")
        if not keep_source:
            source.unlink()
        (work / "model.json").write_text(graph_json(emitted.graph))
        # DLR reads output names (and Neo's input descriptions) from a .meta file.
        meta = {"Model": {
            "Inputs": [{"name": n, "shape": list(program.shapes[n]), "dtype": "float32"}
                       for n in program.inputs],
            "Outputs": [{"name": n, "shape": list(program.shapes[n]), "dtype": "float32"}
                        for n in program.output_names]},
            "Compiler": {"name": "edge-actors compile", "version": COMPILER_VERSION,
                         "target": tgt.name, "source": onnx_path.name}}
        (work / "model.meta").write_text(json.dumps(meta, indent=1))
        tvm_params.save(work / "model.params", emitted.params)
        (work / _KEY_FILE).write_text(key)
        work.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Compiled(out, len(emitted.functions), len(emitted.params),
                    time.perf_counter() - started, False)


def compile_model_folder(source: str | Path, out: str | Path, *, target: str = HOST,
                         batch: int = 1, force: bool = False) -> ModelManifest:
    """Compile a built ONNX model folder (``edge-model.json`` + ONNX files) into a DLR one.

    Each model file becomes a DLR folder of the same role name beside the manifest
    (``model/`` for a classifier): libdlr refuses a folder with a second ``*.json``, so
    the manifest cannot share the DLR files' folder. Labels are copied. Returns the new
    folder's manifest (format ``dlr``).
    """
    src = load_manifest(source)
    if src.format != "onnx":
        raise CompileError(f"{src.folder}: a {src.format!r} model folder; compile takes the "
                           "ONNX folders `python -m actors.ml.models build` makes")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for role in src.files:
        if src.task == "face-detection":
            # MTCNN: PNet for every pyramid size, RNet and ONet for a batch of crops.
            size = {"rnet": 24, "onet": 48}.get(role)
            shapes = [(1, 3, s, s) for s in PNET_SIZES] if size is None else \
                [(CROP_BATCH, 3, size, size)]
            compile_variants(src.path(role), out / role, shapes,
                             "spatial" if size is None else "batch", target=target, force=force)
        else:
            compile_onnx(src.path(role), out / role, target=target, batch=batch, force=force)
        files[role] = role
    if src.labels:
        shutil.copyfile(src.folder / src.labels, out / src.labels)
    manifest = replace(src, format="dlr", files=files, folder=out,
                       source=f"{src.source}; compiled by edge-actors compile for {target}")
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_bytes(manifest.to_json())
    tmp.replace(out / MANIFEST)
    # The folder's build key (what models.pack() checks): rewritten only when a network
    # was recompiled, so an unchanged folder is not packed again.
    key = hashlib.sha256(b"".join(p.read_bytes() for role in sorted(files)
                                  for p in sorted((out / role).rglob(_KEY_FILE)))).hexdigest()
    build_key = out / ".build-key"
    if not build_key.is_file() or build_key.read_text() != key:
        build_key.write_text(key)
    return manifest


def dlr_folder_name(model: str, target: str) -> str:
    """Greengrass's DLR model-store naming: ``DLR-<model>-<platform>-cpu-<Task>``."""
    from ..models import MODELS

    task = MODELS[model].folder.rsplit("-", 1)[-1]  # ImageClassification, FaceDetection
    return f"DLR-{model}-{target}-cpu-{task}"


def build_dlr_model(model: str, target: str = HOST, cache_dir: str | Path | None = None
                    ) -> ModelManifest:
    """Build model ``model`` from its weights (cached), then compile it for ``target`` into
    ``<cache>/<dlr_folder_name>`` (cached by source digest); returns its manifest."""
    from ..models import build_model, default_cache_dir

    source = build_model(model, cache_dir)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return compile_model_folder(source, root / dlr_folder_name(model, target), target=target)


VARIANTS = "variants.txt"  # not *.json: libdlr takes every *.json beside a model for a graph
# PNet's input sizes (squares; a pyramid level is padded up to the next) and the batch of
# RNet and ONet: the graph executor has static shapes.
PNET_SIZES = (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1280)
CROP_BATCH = 16


def compile_variants(onnx_path: str | Path, out: str | Path, shapes: Sequence[Sequence[int]],
                     mode: str, *, target: str = HOST, force: bool = False) -> Path:
    """Compile ``onnx_path`` once per input shape into ``out/<N>x<C>x<H>x<W>/``, and write
    ``out/variants.txt`` (JSON) saying how a runner picks one: ``spatial`` (pad the image
    up to the next size, crop the outputs to what ONNX gives: fully convolutional nets) or
    ``batch`` (run a batch in chunks of the compiled batch size)."""
    import onnx

    from ._ir import spatial_chain

    onnx_path, out = Path(onnx_path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        name = str(next(i.name for i in onnx.load(str(onnx_path)).graph.input))
    except Exception as e:
        raise CompileError(f"{onnx_path}: not a readable ONNX model with an input ({e})") from e
    for shape in shapes:
        compile_onnx(onnx_path, out / "x".join(map(str, shape)), target=target,
                     input_shapes={name: shape}, force=force)
    first = load_program(onnx_path, {name: shapes[0]})
    description = {"input": name, "mode": mode, "variants": [list(s) for s in shapes],
                   "outputs": first.output_names,
                   "chains": {o: spatial_chain(first, o) for o in first.output_names}}
    tmp = out / (VARIANTS + ".tmp")
    tmp.write_text(json.dumps(description))
    tmp.replace(out / VARIANTS)
    return out
