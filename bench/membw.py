"""``membw``: the machine's memory copy bandwidth, the physical floor for data-moving kernels.

A buffer much larger than the last-level cache is copied with
:func:`numpy.copyto`; bandwidth counts the bytes read plus the bytes written
(STREAM "copy" convention), so ``(bytes read + bytes written) / bandwidth`` is
the least time any kernel moving that much data through DRAM can take. The
conversion benchmarks reuse :func:`copy_bandwidth` for that bound.
"""

from __future__ import annotations

import time

import numpy as np

from ._core import Case, Contender, Metric
from ._registry import Settings, benchmark

MiB = 1 << 20

BANDWIDTH = Metric("bandwidth", "B/s", "higher", "copy bandwidth (read + write)")


class CopyProbe:
    """Two page-faulted buffers of ``nbytes``; each :meth:`measure` times one full copy."""

    def __init__(self, nbytes: int) -> None:
        if nbytes < 1:
            raise ValueError(f"nbytes must be positive, got {nbytes}")
        self.nbytes = nbytes
        self._src = np.ones(nbytes, dtype=np.uint8)
        self._dst = np.zeros(nbytes, dtype=np.uint8)
        np.copyto(self._dst, self._src)  # fault every destination page in before timing

    def measure(self) -> float:
        """Copy once; return the bandwidth in bytes/s (read + write)."""
        start = time.perf_counter()
        np.copyto(self._dst, self._src)
        elapsed = time.perf_counter() - start
        return 2 * self.nbytes / elapsed


def copy_bandwidth(nbytes: int = 256 * MiB, repeat: int = 5) -> float:
    """Best copy bandwidth in bytes/s (read + write) over ``repeat`` copies of ``nbytes``.

    The best, not the median: it estimates what the memory system can do,
    the floor other kernels are measured against.
    """
    probe = CopyProbe(nbytes)
    return max(probe.measure() for _ in range(max(1, repeat)))


@benchmark(
    "membw",
    "memory copy bandwidth (numpy.copyto of 256 MiB): the physical floor; no peer",
)
def build(settings: Settings) -> list[Case]:
    nbytes = settings.pick(256 * MiB, 64 * MiB)
    probe = CopyProbe(nbytes)
    return [
        Case(
            name=f"copy {nbytes // MiB} MiB",
            metrics=(BANDWIDTH,),
            contenders=(
                Contender("numpy.copyto", "probe", lambda: {"bandwidth": probe.measure()}),
            ),
            samples=settings.pick(20, 3),
            warmup=settings.warmup,
            params={"nbytes": nbytes},
        )
    ]
