"""From an ONNX graph to the compiler's operator list: shapes, folding, fusion.

Every operator becomes an :class:`Op` with static shapes (the graph executor has
no dynamic shapes); BatchNormalization is folded into the convolution before
it, a residual Add and an activation (ReLU, Clip, PReLU) after a convolution or
dense layer become that layer's epilogue, and reshapes (Flatten, Reshape,
Identity, Squeeze) fold into the operator that produced their input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CompileError

SUPPORTED = ("Conv", "BatchNormalization", "Relu", "Clip", "PRelu", "Add", "GlobalAveragePool",
             "MaxPool", "Gemm", "MatMul", "Softmax", "Flatten", "Reshape", "Identity", "Squeeze",
             "Transpose", "Dropout")


@dataclass
class Op:
    """One operator of the executed graph; ``params`` are its constant arrays."""

    kind: str  # conv, dense, gap, maxpool, softmax, eltwise, transpose, bn
    where: str  # the ONNX node it came from, for error messages
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Program:
    """The operators in execution order, with every tensor's static shape."""

    name: str
    inputs: list[str]
    outputs: list[str]
    output_names: list[str]
    shapes: dict[str, tuple[int, ...]]
    ops: list[Op]


def _where(node: Any, index: int) -> str:
    return f"{node.op_type} node {node.name or '(unnamed)'!r} (#{index})"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_program(path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 batch: int = 1) -> Program:
    """Read ``path`` (an ONNX file) into a Program; raises CompileError naming the node."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise CompileError(f"{path}: not a readable ONNX model ({e})") from e
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    inputs = []
    overrides = dict(input_shapes or {})
    for value in graph.input:
        if value.name in consts:
            continue
        elem = value.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            raise CompileError(f"{path}: input {value.name!r} is not float32 "
                               f"(ONNX type {elem}); only float32 models compile")
        if value.name in overrides:
            shape = tuple(int(d) for d in overrides.pop(value.name))
        else:
            dims = value.type.tensor_type.shape.dim
            shape_list = []
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape_list.append(int(d.dim_value))
                elif i == 0:
                    shape_list.append(batch)
                else:
                    raise CompileError(
                        f"{path}: input {value.name!r} has a free dimension {i} "
                        f"({d.dim_param or '?'}); the graph executor needs static shapes: "
                        f"give one with --input-shape {value.name}=N,C,H,W")
            shape = tuple(shape_list)
        shapes[value.name] = shape
        inputs.append(value.name)
    if overrides:
        raise CompileError(f"{path}: --input-shape names no input of the model: "
                           f"{sorted(overrides)} (inputs: {inputs})")
    ops: list[Op] = []
    for index, node in enumerate(graph.node):
        ops.append(_convert(node, index, opset, consts, shapes, path))
    outputs = [o.name for o in graph.output]
    for name in outputs:
        if name not in shapes:
            raise CompileError(f"{path}: output {name!r} is not computed by any node")
    program = Program(graph.name or path.stem, inputs, list(outputs), list(outputs), shapes,
                      [op for op in ops if op.kind != "skip"])
    _optimise(program)
    return program


def _const(consts: Mapping[str, np.ndarray], name: str, where: str, what: str) -> np.ndarray:
    if name not in consts:
        raise CompileError(f"{where}: its {what} ({name!r}) must be a constant initializer")
    return consts[name].astype(np.float32)


def _data(shapes: Mapping[str, tuple[int, ...]], name: str, where: str) -> tuple[int, ...]:
    if name not in shapes:
        raise CompileError(f"{where}: input {name!r} is neither a graph input nor computed "
                           "by an earlier node (is the graph sorted?)")
    return shapes[name]


def _convert(node: Any, index: int, opset: int, consts: dict[str, np.ndarray],
             shapes: dict[str, tuple[int, ...]], path: Path) -> Op:
    where = f"{path.name}: {_where(node, index)}"
    kind = node.op_type
    if node.domain not in ("", "ai.onnx") or kind not in SUPPORTED:
        raise CompileError(f"{where}: operator {node.domain + '.' if node.domain else ''}"
                           f"{kind} is not supported by edge-actors compile "
                           f"(supported: {', '.join(SUPPORTED)})")
    a = _attrs(node)
    ins = [i for i in node.input]
    out = node.output[0]

    def done(op: Op, shape: Sequence[int]) -> Op:
        shapes[out] = tuple(int(d) for d in shape)
        return op

    if kind in ("Identity", "Dropout", "Flatten", "Reshape", "Squeeze"):
        x = _data(shapes, ins[0], where)
        if kind == "Flatten":
            axis = int(a.get("axis", 1))
            axis = axis + len(x) if axis < 0 else axis
            shape: tuple[int, ...] = (math.prod(x[:axis]), math.prod(x[axis:]))
        elif kind == "Reshape":
            target = [int(v) for v in _const(consts, ins[1], where, "shape").astype(np.int64)] \
                if ins[1] in consts else None
            if target is None:
                raise CompileError(f"{where}: the target shape must be a constant")
            target = [x[i] if v == 0 else v for i, v in enumerate(target)]
            if -1 in target:
                known = math.prod(v for v in target if v != -1)
                target[target.index(-1)] = math.prod(x) // max(known, 1)
            shape = tuple(target)
        elif kind == "Squeeze":
            axes = a.get("axes")
            if axes is None and len(ins) > 1:
                axes = [int(v) for v in consts[ins[1]].astype(np.int64)]
            axes = [v + len(x) if v < 0 else v for v in (axes or [i for i, d in enumerate(x)
                                                               if d == 1])]
            shape = tuple(d for i, d in enumerate(x) if i not in axes)
        else:
            shape = x
        if math.prod(shape) != math.prod(x):
            raise CompileError(f"{where}: cannot reshape {x} to {shape}")
        return done(Op("reshape", where, [ins[0]], out), shape)
    if kind == "Conv":
        x = _data(shapes, ins[0], where)
        w = _const(consts, ins[1], where, "weight")
        b = _const(consts, ins[2], where, "bias") if len(ins) > 2 and ins[2] else None
        if len(x) != 4 or w.ndim != 4:
            raise CompileError(f"{where}: only 2-D convolutions (NCHW) are supported, got "
                               f"input {x} and weight {w.shape}")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise CompileError(f"{where}: dilated convolutions are not supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise CompileError(f"{where}: auto_pad {a['auto_pad']!r} is not supported; "
                               "export with explicit pads")
        group = int(a.get("group", 1))
        kh, kw = w.shape[2], w.shape[3]
        sh, sw = (int(v) for v in a.get("strides", [1, 1]))
        pt, pl, pb, pr = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
        n, c, h, wd = x
        if w.shape[1] * group != c:
            raise CompileError(f"{where}: weight {w.shape} with group {group} does not fit "
                               f"an input of {c} channels")
        m = w.shape[0]
        if group != 1 and not (group == c == m and w.shape[1] == 1):
            raise CompileError(f"{where}: grouped convolution (group {group}) is supported "
                               "only as depthwise (group = input = output channels)")
        ho, wo = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
        params = {"w": w, "b": b if b is not None else np.zeros(m, np.float32)}
        attrs = {"kernel": (kh, kw), "stride": (sh, sw), "pads": (pt, pl, pb, pr),
                 "depthwise": group != 1, "act": "none"}
        return done(Op("conv", where, [ins[0]], out, attrs, params), (n, m, ho, wo))
    if kind == "BatchNormalization":
        x = _data(shapes, ins[0], where)
        scale, bias, mean, var = (_const(consts, n, where, what) for n, what in
                                  zip(ins[1:5], ("scale", "bias", "mean", "var"), strict=True))
        eps = float(a.get("epsilon", 1e-5))
        mul = scale / np.sqrt(var.astype(np.float64) + eps)
        params = {"mul": mul.astype(np.float32), "add": (bias - mean * mul).astype(np.float32)}
        return done(Op("bn", where, [ins[0]], out, {}, params), x)
    if kind in ("Relu", "Clip", "PRelu"):
        x = _data(shapes, ins[0], where)
        act: dict[str, Any] = {"act": "clip", "lo": 0.0, "hi": math.inf}
        params = {}
        if kind == "Clip":
            if opset < 11:
                act["lo"], act["hi"] = float(a.get("min", -math.inf)), float(
                    a.get("max", math.inf))
            else:
                lo, hi = -math.inf, math.inf
                if len(ins) > 1 and ins[1]:
                    lo = float(_const(consts, ins[1], where, "min").reshape(-1)[0])
                if len(ins) > 2 and ins[2]:
                    hi = float(_const(consts, ins[2], where, "max").reshape(-1)[0])
                act["lo"], act["hi"] = lo, hi
        elif kind == "PRelu":
            slope = _const(consts, ins[1], where, "slope")
            channels = x[1] if len(x) > 1 else 1
            if slope.size == 1:
                slope = np.full(channels, float(slope.reshape(-1)[0]), np.float32)
            elif slope.size != channels or (slope.ndim > 1 and len(x) - 1 < slope.ndim):
                raise CompileError(f"{where}: only per-channel PRelu slopes are supported "
                                   f"(slope {slope.shape}, input {x})")
            act = {"act": "prelu"}
            params = {"slope": slope.reshape(-1)}
        return done(Op("eltwise", where, [ins[0]], out, act, params), x)
    if kind == "Add":
        x = _data(shapes, ins[0], where)
        if ins[1] in consts or ins[0] in consts:
            raise CompileError(f"{where}: Add with a constant is not supported (only the "
                               "sum of two computed tensors of one shape)")
        y = _data(shapes, ins[1], where)
        if x != y:
            raise CompileError(f"{where}: Add of shapes {x} and {y}: broadcasting is not "
                               "supported")
        return done(Op("eltwise", where, [ins[0], ins[1]], out, {"act": "none"}), x)
    if kind == "GlobalAveragePool":
        x = _data(shapes, ins[0], where)
        return done(Op("gap", where, [ins[0]], out), (x[0], x[1]) + (1,) * (len(x) - 2))
    if kind == "MaxPool":
        x = _data(shapes, ins[0], where)
        if len(x) != 4:
            raise CompileError(f"{where}: only 2-D max pooling is supported")
        kh, kw = (int(v) for v in a["kernel_shape"])
        sh, sw = (int(v) for v in a.get("strides", [1, 1]))
        pt, pl, pb, pr = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
        if any(d != 1 for d in a.get("dilations", [1, 1])) or a.get("storage_order", 0):
            raise CompileError(f"{where}: dilations and storage_order are not supported")
        rnd = math.ceil if a.get("ceil_mode", 0) else math.floor
        ho = int(rnd((x[2] + pt + pb - kh) / sh)) + 1
        wo = int(rnd((x[3] + pl + pr - kw) / sw)) + 1
        # ONNX (like PyTorch) drops a last window that would start in the padding.
        if a.get("ceil_mode", 0):
            ho -= int((ho - 1) * sh >= x[2] + pt)
            wo -= int((wo - 1) * sw >= x[3] + pl)
        return done(Op("maxpool", where, [ins[0]], out,
                       {"kernel": (kh, kw), "stride": (sh, sw), "pads": (pt, pl, pb, pr),
                        "ceil": bool(a.get("ceil_mode", 0))}),
                    (x[0], x[1], ho, wo))
    if kind in ("Gemm", "MatMul"):
        x = _data(shapes, ins[0], where)
        w = _const(consts, ins[1], where, "weight")
        if len(x) != 2 or w.ndim != 2:
            raise CompileError(f"{where}: only a 2-D input times a constant matrix is "
                               f"supported, got {x} and {w.shape}")
        if kind == "Gemm":
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(
                    a.get("beta", 1.0)) != 1.0:
                raise CompileError(f"{where}: transA, alpha and beta must keep their defaults")
            w = w if a.get("transB", 0) else w.T
        else:
            w = w.T
        m = w.shape[0]
        if w.shape[1] != x[1]:
            raise CompileError(f"{where}: weight {w.shape} does not fit the input {x}")
        b = _const(consts, ins[2], where, "bias") if kind == "Gemm" and len(ins) > 2 and ins[2] \
            else np.zeros(m, np.float32)
        if b.size == 1:
            b = np.full(m, float(b.reshape(-1)[0]), np.float32)
        if b.size != m:
            raise CompileError(f"{where}: bias {b.shape} does not fit {m} outputs")
        return done(Op("dense", where, [ins[0]], out, {"act": "none"},
                       {"w": np.ascontiguousarray(w), "b": b.reshape(-1)}), (x[0], m))
    if kind == "Softmax":
        x = _data(shapes, ins[0], where)
        axis = int(a.get("axis", -1 if opset >= 13 else 1))
        axis = axis + len(x) if axis < 0 else axis
        if opset < 13 and axis != len(x) - 1:
            raise CompileError(f"{where}: Softmax before opset 13 over axis {axis} of a "
                               f"{len(x)}-D input is not supported")
        return done(Op("softmax", where, [ins[0]], out, {"axis": axis}), x)
    if kind == "Transpose":
        x = _data(shapes, ins[0], where)
        perm = [int(v) for v in a.get("perm", list(reversed(range(len(x)))))]
        if len(x) > 6:
            raise CompileError(f"{where}: Transpose of more than 6 axes is not supported")
        return done(Op("transpose", where, [ins[0]], out, {"perm": perm, "in_shape": x}),
                    [x[p] for p in perm])
    raise CompileError(f"{where}: operator {kind} is not supported")  # pragma: no cover


def _optimise(p: Program) -> None:
    """Fold BN, fuse epilogues, fold reshapes; edits ``p.ops`` in place."""
    changed = True
    while changed:
        changed = _fold_one(p)


def _consumers(p: Program, name: str) -> list[Op]:
    return [op for op in p.ops if name in op.inputs]


def _only_consumer(p: Program, name: str) -> Op | None:
    users = _consumers(p, name)
    if len(users) != 1 or name in p.outputs or name in p.inputs:
        return None
    return users[0]


def _replace(p: Program, first: Op, second: Op, merged: Op) -> None:
    """Drop ``first``, put ``merged`` where ``second`` was (all its inputs exist by then)."""
    p.ops[p.ops.index(second)] = merged
    p.ops.remove(first)


def _fold_one(p: Program) -> bool:
    for op in p.ops:
        user = _only_consumer(p, op.output)
        if user is None:
            continue
        if user.kind == "reshape" and op.kind != "reshape":
            # The producer writes the same bytes under the reshaped name and shape.
            op.output = user.output
            p.ops.remove(user)
            return True
        if op.kind == "conv" and user.kind == "bn" and op.attrs["act"] == "none" \
                and "residual" not in op.attrs:
            mul, add = user.params["mul"], user.params["add"]
            op.params["w"] = (op.params["w"] * mul.reshape(-1, 1, 1, 1)).astype(np.float32)
            op.params["b"] = (op.params["b"] * mul + add).astype(np.float32)
            op.output = user.output
            p.ops.remove(user)
            return True
        if op.kind == "conv" and user.kind == "eltwise" and len(user.inputs) == 2 \
                and user.attrs["act"] == "none" and op.attrs["act"] == "none" \
                and not op.attrs["depthwise"] and "residual" not in op.attrs:
            other = user.inputs[1] if user.inputs[0] == op.output else user.inputs[0]
            if other == op.output:
                continue
            op.attrs["residual"] = True
            op.inputs = [*op.inputs, other]
            op.output = user.output
            _replace(p, op, user, op)
            return True
        if op.kind in ("conv", "dense", "eltwise") and user.kind == "eltwise" \
                and len(user.inputs) == 1 and op.attrs["act"] == "none":
            op.attrs.update(user.attrs)
            op.params.update(user.params)
            op.output = user.output
            _replace(p, op, user, op)
            return True
    return False


def spatial_chain(p: Program, output: str) -> list[tuple[int, int, int, int, int, int, int, int,
                                                           bool]]:
    """The convolutions and poolings from the first input to ``output`` (through first
    inputs): (kh, kw, sh, sw, pt, pl, pb, pr, ceil) each, to compute the output's spatial
    size for any input size (:func:`spatial_size`)."""
    producer = {op.output: op for op in p.ops}
    chain = []
    name = output
    while name in producer:
        op = producer[name]
        if op.kind in ("conv", "maxpool"):
            kh, kw = op.attrs["kernel"]
            sh, sw = op.attrs["stride"]
            chain.append((kh, kw, sh, sw, *op.attrs["pads"], bool(op.attrs.get("ceil"))))
        name = op.inputs[0]
    return chain[::-1]


def spatial_size(chain: list[Any], h: int, w: int) -> tuple[int, int]:
    """The output (H, W) of ``chain`` for an input of (h, w), as ONNX computes it."""
    for kh, kw, sh, sw, pt, pl, pb, pr, ceil in chain:
        rnd = math.ceil if ceil else math.floor
        ho = int(rnd((h + pt + pb - kh) / sh)) + 1
        wo = int(rnd((w + pl + pr - kw) / sw)) + 1
        if ceil:
            ho -= int((ho - 1) * sh >= h + pt)
            wo -= int((wo - 1) * sw >= w + pl)
        h, w = ho, wo
    return h, w
