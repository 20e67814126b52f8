"""torchvision's ImageNet MobileNetV2 as an ONNX graph, BatchNorm folded into the convs."""

from __future__ import annotations

import numpy as np
import onnx

from ._errors import WeightsError
from ._graph import Graph, fold_batch_norm

# torchvision's inverted-residual settings: expansion t, channels c, repeats n, stride s.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _conv_bn(g: Graph, x: str, state: dict[str, np.ndarray], conv: str, bn: str, stride: int,
             relu: bool) -> str:
    weight = state[f"{conv}.weight"]
    w, b = fold_batch_norm(weight, state, bn)
    k = weight.shape[2]
    group = weight.shape[0] if weight.shape[1] == 1 and k > 1 else 1
    y = g.conv(x, w, b, stride=stride, pad=(k - 1) // 2, group=group)
    return g.relu6(y) if relu else y


def build(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Input ``input`` (N, 3, 224, 224) float32, normalised RGB; output ``logits`` (N, 1000).

    Raises WeightsError when the state dict is not torchvision's MobileNetV2.
    """
    try:
        return _build(state)
    except KeyError as e:
        raise WeightsError(f"not a torchvision MobileNetV2 state dict: missing {e}") from e


def _build(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = Graph("mobilenet_v2")
    x = g.input("input", ["N", 3, INPUT_SIZE, INPUT_SIZE])
    x = _conv_bn(g, x, state, "features.0.0", "features.0.1", 2, relu=True)
    index, channels = 1, 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{index}.conv"
            y = x
            if t != 1:
                y = _conv_bn(g, y, state, f"{p}.0.0", f"{p}.0.1", 1, relu=True)
                y = _conv_bn(g, y, state, f"{p}.1.0", f"{p}.1.1", stride, relu=True)
                y = _conv_bn(g, y, state, f"{p}.2", f"{p}.3", 1, relu=False)
            else:
                y = _conv_bn(g, y, state, f"{p}.0.0", f"{p}.0.1", stride, relu=True)
                y = _conv_bn(g, y, state, f"{p}.1", f"{p}.2", 1, relu=False)
            x = g.op("Add", [x, y]) if stride == 1 and channels == c else y
            index, channels = index + 1, c
    x = _conv_bn(g, x, state, f"features.{index}.0", f"features.{index}.1", 1, relu=True)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    x = g.dense(x, state["classifier.1.weight"], state["classifier.1.bias"])
    g.output(x, "logits", ["N", 1000])
    return g.model(source="torchvision mobilenet_v2 ImageNet (mobilenet_v2-b0353104.pth)")
