"""Human-readable figures: every value is stored in SI base units and scaled only for display.

Results keep seconds, bytes and per-second rates so that the JSON stays
unambiguous; tables and charts pick a prefix here, in one place.
"""

from __future__ import annotations

import math

_TIME_STEPS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_BINARY_STEPS = ((2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "B"))
_DECIMAL_STEPS = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def format_value(value: float, unit: str) -> str:
    """Render ``value`` (in base ``unit``) with a fitting prefix and 3 significant digits.

    Known units: ``s`` (time), ``B`` (size, binary prefixes), ``B/s``
    (bandwidth, decimal prefixes as memory bandwidth is quoted) and any other
    ``.../s`` rate (decimal prefixes). Anything else is printed as is.
    """
    if not math.isfinite(value):
        return f"{value} {unit}"
    factor, label = display_unit(value, unit)
    number = _sig(value / factor)
    return f"{number}{label}" if label.startswith(("k ", "M ", "G ")) else f"{number} {label}"


def display_unit(value: float, unit: str) -> tuple[float, str]:
    """The factor to divide ``value`` by and the unit label to print it with.

    ``display_unit(0.0123, "s") == (1e-3, "ms")``; rates other than bytes/s
    get a bare prefix: ``display_unit(1.2e6, "msg/s") == (1e6, "M msg/s")``.
    """
    magnitude = abs(value) if math.isfinite(value) else 0.0
    if unit == "s":
        steps = _TIME_STEPS
    elif unit == "B":
        steps = _BINARY_STEPS
    elif unit.endswith("/s"):
        factor, prefix = _step(magnitude, _DECIMAL_STEPS)
        if unit == "B/s":
            return factor, f"{prefix}B/s"
        return factor, f"{prefix} {unit}" if prefix else unit
    else:
        return 1.0, unit
    return _step(magnitude, steps)


def format_ratio(ratio: float) -> str:
    """A ratio as ``1.23x`` (3 significant digits)."""
    return f"{_sig(ratio)}x" if math.isfinite(ratio) else f"{ratio}x"


def _step(magnitude: float, steps: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    """The largest step not above ``magnitude`` (the smallest step for tiny values)."""
    return next(((f, p) for f, p in steps if magnitude >= f), steps[-1])


def _sig(value: float) -> str:
    """3 significant digits without scientific notation for everyday magnitudes."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"
