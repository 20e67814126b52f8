"""The MTCNN face detector (PNet, RNet, ONet) from facenet-pytorch's weights, as ONNX graphs.

The layers mirror facenet-pytorch's modules: 3x3 convs with PReLU, ceil-mode
max pools, and for RNet/ONet a flatten in (N, W, H, C) order (their
``permute(0, 3, 2, 1)``) before the dense layers. Outputs keep facenet's order
and meaning: box regression, then (ONet) landmarks, then face probability.
"""

from __future__ import annotations

import numpy as np
import onnx

from ._errors import WeightsError
from ._graph import Graph

MEAN = 127.5
SCALE = 0.0078125


def _conv_prelu(g: Graph, x: str, s: dict[str, np.ndarray], conv: str, prelu: str) -> str:
    y = g.conv(x, s[f"{conv}.weight"], s[f"{conv}.bias"])
    return g.prelu(y, s[f"{prelu}.weight"], spatial=True)


def _pool(g: Graph, x: str, k: int, stride: int) -> str:
    return g.op("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride], ceil_mode=1)


def _head(g: Graph, x: str, s: dict[str, np.ndarray], dense: str) -> tuple[str, str]:
    logits = g.dense(x, s[f"{dense}.weight"], s[f"{dense}.bias"])
    return logits, g.op("Softmax", [logits], axis=1)


def build_pnet(s: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Fully convolutional: ``input`` (N, 3, H, W) -> ``regression`` (N, 4, h, w) and
    ``prob`` (N, 2, h, w)."""
    g = Graph("mtcnn_pnet")
    x = g.input("input", ["N", 3, "H", "W"])
    x = _conv_prelu(g, x, s, "conv1", "prelu1")
    x = _pool(g, x, 2, 2)
    x = _conv_prelu(g, x, s, "conv2", "prelu2")
    x = _conv_prelu(g, x, s, "conv3", "prelu3")
    prob = g.op("Softmax", [g.conv(x, s["conv4_1.weight"], s["conv4_1.bias"])], axis=1)
    reg = g.conv(x, s["conv4_2.weight"], s["conv4_2.bias"])
    g.output(reg, "regression", ["N", 4, "h", "w"])
    g.output(prob, "prob", ["N", 2, "h", "w"])
    return g.model(source="facenet-pytorch 2.6.0 data/pnet.pt")


def _flatten_whc(g: Graph, x: str) -> str:
    return g.op("Flatten", [g.op("Transpose", [x], perm=[0, 3, 2, 1])], axis=1)


def build_rnet(s: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``input`` (N, 3, 24, 24) -> ``regression`` (N, 4), ``prob`` (N, 2)."""
    g = Graph("mtcnn_rnet")
    x = g.input("input", ["N", 3, 24, 24])
    x = _pool(g, _conv_prelu(g, x, s, "conv1", "prelu1"), 3, 2)
    x = _pool(g, _conv_prelu(g, x, s, "conv2", "prelu2"), 3, 2)
    x = _flatten_whc(g, _conv_prelu(g, x, s, "conv3", "prelu3"))
    x = g.prelu(g.dense(x, s["dense4.weight"], s["dense4.bias"]), s["prelu4.weight"], False)
    _, prob = _head(g, x, s, "dense5_1")
    reg = g.dense(x, s["dense5_2.weight"], s["dense5_2.bias"])
    g.output(reg, "regression", ["N", 4])
    g.output(prob, "prob", ["N", 2])
    return g.model(source="facenet-pytorch 2.6.0 data/rnet.pt")


def build_onet(s: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``input`` (N, 3, 48, 48) -> ``regression`` (N, 4), ``landmarks`` (N, 10), ``prob`` (N, 2)."""
    g = Graph("mtcnn_onet")
    x = g.input("input", ["N", 3, 48, 48])
    x = _pool(g, _conv_prelu(g, x, s, "conv1", "prelu1"), 3, 2)
    x = _pool(g, _conv_prelu(g, x, s, "conv2", "prelu2"), 3, 2)
    x = _pool(g, _conv_prelu(g, x, s, "conv3", "prelu3"), 2, 2)
    x = _flatten_whc(g, _conv_prelu(g, x, s, "conv4", "prelu4"))
    x = g.prelu(g.dense(x, s["dense5.weight"], s["dense5.bias"]), s["prelu5.weight"], False)
    _, prob = _head(g, x, s, "dense6_1")
    reg = g.dense(x, s["dense6_2.weight"], s["dense6_2.bias"])
    marks = g.dense(x, s["dense6_3.weight"], s["dense6_3.bias"])
    g.output(reg, "regression", ["N", 4])
    g.output(marks, "landmarks", ["N", 10])
    g.output(prob, "prob", ["N", 2])
    return g.model(source="facenet-pytorch 2.6.0 data/onet.pt")


def build(states: dict[str, dict[str, np.ndarray]]) -> dict[str, onnx.ModelProto]:
    """``{"pnet": ..., "rnet": ..., "onet": ...}`` state dicts -> ONNX graphs of the same names."""
    try:
        return {"pnet": build_pnet(states["pnet"]), "rnet": build_rnet(states["rnet"]),
                "onet": build_onet(states["onet"])}
    except KeyError as e:
        raise WeightsError(f"not facenet-pytorch MTCNN weights: missing {e}") from e
