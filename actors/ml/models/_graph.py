"""A small ONNX graph writer: the few operators our image networks need, weights as initializers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class Graph:
    """Collects nodes and initializers; names are made unique by a counter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str = "w") -> str:
        name = self._fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def input(self, name: str, shape: Sequence[int | str]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def output(self, value: str, name: str, shape: Sequence[int | str]) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray | None, stride: int = 1,
             pad: int = 0, group: int = 1) -> str:
        k_h, k_w = weight.shape[2:]
        inputs = [x, self.const(weight.astype(np.float32), "conv_w")]
        if bias is not None:
            inputs.append(self.const(bias.astype(np.float32), "conv_b"))
        return self.op("Conv", inputs, kernel_shape=[k_h, k_w], strides=[stride, stride],
                       pads=[pad, pad, pad, pad], group=group)

    def relu6(self, x: str) -> str:
        lo = self.const(np.array(0.0, np.float32), "zero")
        hi = self.const(np.array(6.0, np.float32), "six")
        return self.op("Clip", [x, lo, hi])

    def prelu(self, x: str, slope: np.ndarray, spatial: bool) -> str:
        shape = (-1, 1, 1) if spatial else (-1,)
        return self.op("PRelu", [x, self.const(slope.reshape(shape).astype(np.float32), "slope")])

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return self.op("Gemm", [x, self.const(weight.astype(np.float32), "fc_w"),
                                self.const(bias.astype(np.float32), "fc_b")], transB=1)

    def model(self, **metadata: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edge-actors")
        model.ir_version = 8  # readable by every onnxruntime since 1.10
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        return model


def fold_batch_norm(weight: np.ndarray, state: dict[str, np.ndarray], prefix: str,
                    eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Fold the BatchNorm ``prefix`` (inference statistics) into the conv weight before it."""
    gamma, beta = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    mean, var = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    scale = (gamma / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
    folded = weight * scale.reshape(-1, 1, 1, 1)
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)
