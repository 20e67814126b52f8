"""Many images through one classifier: decoding overlapped with model runs, micro-batches.

A :class:`Pipeline` sits in front of a :class:`Classifier`. Each
``await pipeline.classify(image)`` decodes and prepares its image in a worker
thread (``prepare_threads`` at a time), then queues the tensor for the model.
A feeder task hands queued tensors to the model, ``runs`` runs at a time, each
in its own worker thread: when a run frees up it takes everything queued, up to
``max_batch``, as one batch. So under load the requests that arrived while the
model was busy share the next run, and on 2 cores one image decodes while
another runs through the model (the GIL is released in both: the native
conversion and the runtime). A request that finds nothing else in flight is
prepared and run in one worker thread, at once: one thread hand-off, as close
to a bare loop as an async call gets; it may run on a second classifier over
the same model whose runs use every core (``alone``), since then nothing else
needs them. (Measured with MobileNetV2 on ONNX Runtime, 2 cores, 1080p JPEGs:
two single-threaded runs beside two decoding threads classify about 1.5x as
many images per second as one loop with a two-thread session; one request at a
time, the two-thread session is about 1.4x faster than a single-threaded one.)

Use it as an async context manager (the feeder lives in its task group)::

    async with Pipeline(classifier, PipelineOptions(max_batch=4)) as pipeline:
        predictions = await pipeline.classify(jpeg_bytes)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ...errors import ActorsError
from .classification import Classifier, Prediction


class PipelineClosed(ActorsError, RuntimeError):
    """classify() was called on a pipeline that is not running (outside ``async with``)."""


@dataclass(frozen=True)
class PipelineOptions:
    """How a :class:`Pipeline` uses the machine.

    ``prepare_threads``: images decoded and prepared at once.
    ``runs``: model runs at once, at most the runner's ``concurrency`` (DLR: 1).
    ``max_batch``: tensors one run takes at most (1: no batching).
    ``max_queue``: prepared tensors waiting for the model before ``classify`` waits.
    """

    prepare_threads: int = 2
    runs: int = 1
    max_batch: int = 1
    max_queue: int = 64

    def __post_init__(self) -> None:
        for name in ("prepare_threads", "runs", "max_batch", "max_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PipelineOptions.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class PipelineStatistics:
    """Images classified, model runs made, the largest batch, and failures."""

    images: int
    runs: int
    largest_batch: int
    failures: int

    @property
    def mean_batch(self) -> float:
        return self.images / self.runs if self.runs else 0.0


class _Request:
    """One prepared tensor waiting for its predictions."""

    __slots__ = ("done", "error", "predictions", "tensor")

    def __init__(self, tensor: np.ndarray) -> None:
        self.tensor = tensor
        self.done = anyio.Event()
        self.predictions: list[Prediction] = []
        self.error: BaseException | None = None


class Pipeline:
    """Decode, prepare, batch and run images through ``classifier``; see the module docs."""

    def __init__(self, classifier: Classifier, options: PipelineOptions | None = None, *,
                 alone: Classifier | None = None) -> None:
        self.classifier = classifier
        #: Runs a request that finds nothing else in flight (default: ``classifier``):
        #: the same model with more threads per run, since no other run shares the cores.
        self.alone = alone or classifier
        self.options = options or PipelineOptions()
        self._prepare = anyio.CapacityLimiter(self.options.prepare_threads)
        self.runs = min(self.options.runs, max(1, classifier.runner.options.concurrency))
        self._run_slots = anyio.Semaphore(self.runs)
        self._send: MemoryObjectSendStream[_Request] | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._images = self._runs = self._largest = self._failures = 0
        self._active = 0  # classify() calls under way

    async def __aenter__(self) -> Pipeline:
        send, receive = anyio.create_memory_object_stream[_Request](self.options.max_queue)
        self._send = send
        self._group = await anyio.create_task_group().__aenter__()
        self._group.start_soon(self._feed, receive)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._group is not None and self._send is not None
        self._send.close()  # queued images still run; then the feeder ends
        self._send = None
        group, self._group = self._group, None
        if exc is not None:
            # The body failed: stop at once, and let its exception through as it
            # is (not wrapped in the task group's exception group).
            group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(self._images, self._runs, self._largest, self._failures)

    async def classify(self, image: str | Path | bytes | np.ndarray) -> list[Prediction]:
        """The image's top-k predictions. Raises what :meth:`Classifier.prepare` raises
        (ImageError naming the file) or the run's InferenceError."""
        send = self._send
        if send is None:
            raise PipelineClosed("the pipeline is not running: use it inside `async with`")
        # Alone only when no other request is anywhere in the pipeline (preparing, queued
        # or running): a two-thread run beside other runs and decodes would fight them for
        # the cores.
        alone = self._active == 0
        self._active += 1
        try:
            if alone:
                try:
                    self._run_slots.acquire_nowait()
                except anyio.WouldBlock:
                    pass
                else:
                    return await self._alone(image)
            tensor = await anyio.to_thread.run_sync(self.classifier.prepare, image,
                                                    limiter=self._prepare)
            request = _Request(tensor)
            try:
                await send.send(request)
            except anyio.ClosedResourceError:
                raise PipelineClosed("the pipeline stopped before this image ran") from None
            await request.done.wait()
        finally:
            self._active -= 1
        if request.error is not None:
            raise request.error
        return request.predictions

    async def _alone(self, image: str | Path | bytes | np.ndarray) -> list[Prediction]:
        """Nothing else in flight: prepare and run in one worker thread (one hand-off
        instead of two), holding a run slot, so a lone request costs what a bare loop does."""
        try:
            results = await anyio.to_thread.run_sync(self._prepare_and_run, image,
                                                     abandon_on_cancel=False)
        except Exception:
            self._failures += 1
            raise
        finally:
            self._run_slots.release()
        self._ran(1)
        return results[0]

    def _ran(self, images: int) -> None:
        self._runs += 1
        self._images += images
        self._largest = max(self._largest, images)

    def _prepare_and_run(self, image: str | Path | bytes | np.ndarray) -> list[list[Prediction]]:
        return self.alone.classify_batch(self.alone.prepare(image)[None])

    async def _feed(self, receive: MemoryObjectReceiveStream[_Request]) -> None:
        try:
            await self._feed_runs(receive)
        finally:
            # Cancelled: whoever still waits is told, not left hanging.
            while True:
                try:
                    request = receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                request.error = PipelineClosed("the pipeline stopped before this image ran")
                request.done.set()
            receive.close()

    async def _feed_runs(self, receive: MemoryObjectReceiveStream[_Request]) -> None:
        async with anyio.create_task_group() as runs:
            while True:
                # Wait for a free run first: what queues meanwhile becomes its batch.
                await self._run_slots.acquire()
                try:
                    batch = [await receive.receive()]
                except anyio.EndOfStream:
                    self._run_slots.release()
                    return
                while len(batch) < self.options.max_batch:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                runs.start_soon(self._run, batch)

    async def _run(self, batch: list[_Request]) -> None:
        try:
            tensors = (batch[0].tensor[None] if len(batch) == 1
                       else np.stack([r.tensor for r in batch]))
            results: Any = await anyio.to_thread.run_sync(self.classifier.classify_batch, tensors,
                                                           abandon_on_cancel=False)
        except Exception as exc:
            self._failures += len(batch)
            for request in batch:
                request.error = exc
                request.done.set()
            return
        finally:
            self._run_slots.release()
        self._ran(len(batch))
        for request, predictions in zip(batch, results, strict=True):
            request.predictions = predictions
            request.done.set()
