"""The runner interface every inference runtime speaks.

A runner loads one model, says what it takes and gives (names, shapes with
``None`` for free dimensions, dtypes, read from the model itself) and runs it.
``run_sync`` blocks; ``run`` does the same in a worker thread through
:func:`anyio.to_thread.run_sync` so the event loop keeps going while the model
runs. A capacity limiter bounds how many runs overlap: one for runtimes whose
model objects are not thread-safe, more where they are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from ._errors import InferenceError


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the model declares it."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]

    def check(self, value: np.ndarray) -> None:
        """Raise InferenceError when ``value`` cannot feed this input."""
        if value.dtype != self.dtype:
            raise InferenceError(f"input {self.name!r} must be {self.dtype}, got {value.dtype}")
        if self.shape and (len(value.shape) != len(self.shape) or any(
                want is not None and want != got for want, got in zip(self.shape, value.shape,
                                                                      strict=True))):
            raise InferenceError(f"input {self.name!r} must have shape {self.shape} "
                                 f"(None: any size), got {value.shape}")


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner uses the machine.

    ``threads``: threads one model run may use (0: the runtime's default).
    ``concurrency``: how many runs may overlap in worker threads.
    ``nice``: how far below the loading thread's priority the threads the runtime
    starts while loading (its thread pool) run; see :mod:`actors.ml._priority`.
    """

    threads: int = 0
    concurrency: int = 1
    nice: int = 0


@dataclass(frozen=True)
class RunnerStatistics:
    """Counters a runner keeps; read with :meth:`Runner.statistics`."""

    runtime: str
    runs: int
    failures: int


class Runner(ABC):
    """A loaded model. Subclasses implement :meth:`_run`; callers use :meth:`run`."""

    runtime: str = ""

    def __init__(self, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...],
                 options: RunnerOptions) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.options = options
        self._limiter = anyio.CapacityLimiter(max(1, options.concurrency))
        self._runs = 0
        self._failures = 0

    @property
    def input(self) -> TensorInfo:
        """The first (for image models the only) input."""
        return self.inputs[0]

    def run_sync(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the model now, blocking; a bare array feeds the first input.

        Returns the outputs by name. Raises InferenceError for unknown input
        names, a wrong dtype or shape, or a failed run.
        """
        feed = {self.inputs[0].name: inputs} if isinstance(inputs, np.ndarray) else dict(inputs)
        known = {info.name: info for info in self.inputs}
        for name, value in feed.items():
            info = known.get(name)
            if info is None:
                raise InferenceError(f"unknown input {name!r}; the model takes {sorted(known)}")
            info.check(value)
        missing = set(known) - set(feed)
        if missing:
            raise InferenceError(f"missing inputs {sorted(missing)}")
        try:
            result = self._run(feed)
        except InferenceError:
            self._failures += 1
            raise
        except Exception as e:
            self._failures += 1
            raise InferenceError(f"{self.runtime} run failed: {e}") from e
        self._runs += 1
        return result

    async def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`run_sync` in a worker thread; the event loop is never blocked."""
        return await anyio.to_thread.run_sync(self.run_sync, inputs, limiter=self._limiter)

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics(self.runtime, self._runs, self._failures)

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with checked inputs; return outputs by name."""

    def close(self) -> None:  # noqa: B027 - optional hook: most runtimes free on GC
        """Release the model's native resources."""
