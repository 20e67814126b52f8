"""What a model wants as input (:class:`TensorSpec`) and where an image lands in it.

The spec is plain data, hashable, checked once when built: the conversion
kernels then only read it. Its words are the ones model cards use: NCHW/NHWC,
float32/uint8/int8, mean/std per channel, RGB/BGR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ActorsError

Layout = Literal["NCHW", "NHWC"]
DType = Literal["float32", "uint8", "int8"]
ChannelOrder = Literal["RGB", "BGR"]
ResizeMethod = Literal["bilinear", "area"]

LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC")
DTYPES: tuple[DType, ...] = ("float32", "uint8", "int8")
ORDERS: tuple[ChannelOrder, ...] = ("RGB", "BGR")
METHODS: tuple[ResizeMethod, ...] = ("bilinear", "area")


class TensorSpecError(ActorsError, ValueError):
    """A TensorSpec field has a value no model input can have."""


class ConversionError(ActorsError, ValueError):
    """An image or output buffer does not fit the conversion asked for."""


def _three(name: str, value: tuple[float, ...]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise TensorSpecError(f"TensorSpec.{name} needs one value per channel (3), got {value!r}")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class TensorSpec:
    """The input tensor of a model: size, layout, dtype and how pixels are normalised.

    Each channel ``c`` of the tensor (in ``channel_order``) holds
    ``(pixel * scale - mean[c]) / std[c]``; for ``uint8``/``int8`` that value is
    then quantised: ``round(value / quant_scale + zero_point)``, clamped to the
    dtype's range. ``scale=1, mean=0, std=1`` with ``uint8`` gives raw pixels.
    ``resize="area"`` averages the source pixels each output pixel covers (better
    for large reductions); ``"bilinear"`` samples like OpenCV's INTER_LINEAR.
    With ``letterbox`` the image keeps its aspect ratio, centred, and the
    border is ``pad_value`` (a pixel value, normalised like pixels).
    """

    height: int
    width: int
    layout: Layout = "NCHW"
    dtype: DType = "float32"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    channel_order: ChannelOrder = "RGB"
    resize: ResizeMethod = "bilinear"
    letterbox: bool = False
    pad_value: float = 114.0
    quant_scale: float = 1.0
    zero_point: int = 0

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TensorSpecError(f"TensorSpec.{name} must be a positive int, got {value!r}")
        for name, allowed in (("layout", LAYOUTS), ("dtype", DTYPES),
                              ("channel_order", ORDERS), ("resize", METHODS)):
            if getattr(self, name) not in allowed:
                raise TensorSpecError(f"TensorSpec.{name} must be one of {allowed}, "
                                      f"got {getattr(self, name)!r}")
        object.__setattr__(self, "mean", _three("mean", self.mean))
        std = _three("std", self.std)
        if any(s == 0 for s in std):
            raise TensorSpecError(f"TensorSpec.std must be non-zero per channel, got {std}")
        object.__setattr__(self, "std", std)
        if self.quant_scale == 0:
            raise TensorSpecError("TensorSpec.quant_scale must be non-zero")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The tensor's shape with a batch of one: (1, 3, H, W) or (1, H, W, 3)."""
        if self.layout == "NCHW":
            return (1, 3, self.height, self.width)
        return (1, self.height, self.width, 3)

    def affine(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per channel ``(mul, add)`` such that the stored number is ``pixel * mul + add``.

        Quantisation is folded in for integer dtypes (before rounding).
        """
        mul = [self.scale / s for s in self.std]
        add = [-m / s for m, s in zip(self.mean, self.std, strict=True)]
        if self.dtype != "float32":
            mul = [m / self.quant_scale for m in mul]
            add = [a / self.quant_scale + self.zero_point for a in add]
        return (mul[0], mul[1], mul[2]), (add[0], add[1], add[2])


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a source image of ``source_size`` (h, w) lands in the tensor.

    Tensor pixel ``(y, x)`` inside the box ``top, left, height, width`` shows
    source point ``((y - top + 0.5) / scale_y - 0.5, (x - left + 0.5) / scale_x - 0.5)``:
    detectors use it to map boxes back to the source image.
    """

    top: int
    left: int
    height: int
    width: int
    scale_y: float
    scale_x: float

    def to_source(self, y: float, x: float) -> tuple[float, float]:
        """A point in tensor pixel coordinates (edges, not centres) -> source coordinates."""
        return (y - self.top) / self.scale_y, (x - self.left) / self.scale_x


def placement(source_size: tuple[int, int], spec: TensorSpec) -> Placement:
    """Where an image of ``source_size`` (height, width) goes in ``spec``'s tensor."""
    h, w = source_size
    if h < 1 or w < 1:
        raise ConversionError(f"the image is empty: {h}x{w}")
    if not spec.letterbox:
        return Placement(0, 0, spec.height, spec.width, spec.height / h, spec.width / w)
    r = min(spec.height / h, spec.width / w)
    nh = min(spec.height, max(1, round(h * r)))
    nw = min(spec.width, max(1, round(w * r)))
    top, left = (spec.height - nh) // 2, (spec.width - nw) // 2
    return Placement(top, left, nh, nw, nh / h, nw / w)
