"""EfficientNet-Lite0 (the ``efficientnet-lite-pytorch`` architecture) as an ONNX graph.

The Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem
and head unscaled. Convolutions use TensorFlow's SAME padding computed for the
fixed 224x224 input (``Conv2dStaticSamePadding``), which is asymmetric for
stride 2: one extra row and column at the bottom and right. BatchNorm
(eps 1e-3) is folded into each convolution.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ._errors import WeightsError
from ._graph import Graph, fold_batch_norm

# Block stages of efficientnet-lite0: repeats, kernel, stride, expansion, in, out.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EPS = 1e-3


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one axis of a fixed input size."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_bn(g: Graph, x: str, s: dict[str, np.ndarray], conv: str, bn: str, stride: int,
             size: int, relu: bool) -> str:
    weight = s[f"{conv}.weight"]
    w, b = fold_batch_norm(weight, s, bn, eps=EPS)
    k = weight.shape[2]
    before, after = same_padding(size, k, stride)
    group = weight.shape[0] if weight.shape[1] == 1 and k > 1 else 1
    y = g.op("Conv", [x, g.const(w, "conv_w"), g.const(b, "conv_b")], kernel_shape=[k, k],
             strides=[stride, stride], pads=[before, before, after, after], group=group)
    return g.relu6(y) if relu else y


def build(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Input ``input`` (N, 3, 224, 224) float32, normalised RGB; output ``logits`` (N, 1000).

    Raises WeightsError when the state dict is not EfficientNet-Lite0's.
    """
    try:
        return _build(state)
    except KeyError as e:
        raise WeightsError(f"not an efficientnet-lite0 state dict: missing {e}") from e


def _build(s: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = Graph("efficientnet_lite0")
    x = g.input("input", ["N", 3, INPUT_SIZE, INPUT_SIZE])
    size = INPUT_SIZE
    x = _conv_bn(g, x, s, "_conv_stem", "_bn0", 2, size, relu=True)
    size = math.ceil(size / 2)
    index = 0
    for repeats, k, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            st, inp = (stride, c_in) if r == 0 else (1, c_out)
            p = f"_blocks.{index}"
            y = x
            if expand != 1:
                y = _conv_bn(g, y, s, f"{p}._expand_conv", f"{p}._bn0", 1, size, relu=True)
            if s[f"{p}._depthwise_conv.weight"].shape[2] != k:
                raise WeightsError(f"{p}: expected a {k}x{k} depthwise kernel")
            y = _conv_bn(g, y, s, f"{p}._depthwise_conv", f"{p}._bn1", st, size, relu=True)
            size = math.ceil(size / st)
            y = _conv_bn(g, y, s, f"{p}._project_conv", f"{p}._bn2", 1, size, relu=False)
            x = g.op("Add", [x, y]) if st == 1 and inp == c_out else y
            index += 1
    x = _conv_bn(g, x, s, "_conv_head", "_bn1", 1, size, relu=True)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    x = g.dense(x, s["_fc.weight"], s["_fc.bias"])
    g.output(x, "logits", ["N", 1000])
    return g.model(source="efficientnet-lite0 ImageNet (efficientnet-lite0-57934424.pth)")
