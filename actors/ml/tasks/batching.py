"""Many images through one classifier: decoding overlapped with model runs, micro-batches.

A :class:`Pipeline` sits in front of a :class:`Classifier`. ``runs`` worker
threads of its own (``edge-actors-pipeline-N``) take images from one list of
pending requests: each decodes and prepares its image, then runs it through the
model, and takes the next; a new request wakes the worker that went idle most
recently, so requests that come one at a time all go to one warm thread. So on
2 cores two images are in flight at once, one decoding while
the other runs or both running (the GIL is released in the decoder, the
native conversion and the runtime), and each core keeps one thread: no thread
hand-off between decoding and the model, no event-loop turn between two
images, and the tensor is still in the core's cache when the model reads it.
With ``max_batch`` above 1 a worker also takes what is pending when it is
free, up to ``max_batch`` images, and runs them as one batch.

A request that finds nothing else under way is prepared and run by a worker on
``alone``, a second classifier over the same model whose runs use every core,
since then nothing else needs them (one thread hand-off each way, as for every
request: about 0.1-0.2 ms less per request here than through anyio's thread pool).

Measured with MobileNetV2 on ONNX Runtime, 2 cores, 1080p JPEGs, eight
requests in flight: both workers were busy 98% of the time, and images/s came
within 5% of two cores doing nothing but decodes and one-thread runs. The
design before (two decode threads and two run threads, joined by the event
loop) had three or four threads busy on two cores 64% of the time, each decode
took 12% more CPU, and it classified 15-20% fewer images per second.

Use it as an async context manager (the workers live as long as it does)::

    async with Pipeline(classifier, PipelineOptions(max_batch=4)) as pipeline:
        predictions = await pipeline.classify(jpeg_bytes)

The workers report back through the running asyncio event loop
(``call_soon_threadsafe``), the loop every part of this runtime runs on.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from ...errors import ActorsError
from .._priority import lower_this_thread
from .classification import Classifier, Prediction

Image = str | Path | bytes | np.ndarray


class PipelineClosed(ActorsError, RuntimeError):
    """classify() was called on a pipeline that is not running (outside ``async with``)."""


@dataclass(frozen=True)
class PipelineOptions:
    """How a :class:`Pipeline` uses the machine.

    ``runs``: worker threads, so images prepared and model runs at once; at most the
    runner's ``concurrency`` (DLR: 1).
    ``max_batch``: images one run takes at most (1: no batching).
    ``nice``: how far below the event loop's priority the workers run (0: the same;
    see :mod:`actors.ml._priority`).
    """

    runs: int = 1
    max_batch: int = 1
    nice: int = 0

    def __post_init__(self) -> None:
        for name in ("runs", "max_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PipelineOptions.{name} must be a positive int, got {value!r}")
        if not isinstance(self.nice, int) or isinstance(self.nice, bool) or self.nice < 0:
            raise ValueError(f"PipelineOptions.nice must be an int >= 0, got {self.nice!r}")


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
    """One image waiting for its predictions (the future belongs to the event loop)."""

    __slots__ = ("alone", "future", "image", "then")

    def __init__(self, image: Image, future: asyncio.Future[Any], alone: bool = False,
                 then: Callable[[list[Prediction]], Any] | None = None) -> None:
        self.image = image
        self.future = future
        self.alone = alone  # run on the all-cores classifier, in no batch
        self.then = then  # what the future gets instead of the predictions


#: A request, and its predictions or its error.
_Outcome = tuple["_Request", list[Prediction] | None, BaseException | None]


class _Worker:
    """A worker thread and its doorbell: a lock held while the worker has nothing to do,
    released to wake it (once per time it went idle)."""

    __slots__ = ("bell", "thread")

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.bell = threading.Lock()
        self.bell.acquire()
        self.thread = threading.Thread(target=pipeline._work, args=(self,), name=name,
                                       daemon=True)


class Pipeline:
    """Decode, prepare, batch and run images through ``classifier``; see the module docs."""

    def __init__(self, classifier: Classifier, options: PipelineOptions | None = None, *,
                 alone: Classifier | None = None) -> None:
        self.classifier = classifier
        #: Runs a request that finds nothing else under way (default: ``classifier``):
        #: the same model with more threads per run, since no other run shares the cores.
        self.alone = alone or classifier
        self.options = options or PipelineOptions()
        self.runs = min(self.options.runs, max(1, classifier.runner.options.concurrency))
        # Requests not taken yet, and the idle workers (the one idle most recently last):
        # both under _lock, which the event loop and the workers hold for a few lines.
        self._pending: deque[_Request] = deque()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._stopping = False  # set by __aexit__: workers end once nothing is pending
        self._workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abandon = False  # set when the body failed: queued images are not run
        self._images = self._runs = self._largest = self._failures = 0
        self._active = 0  # requests submitted whose future is not done yet

    async def __aenter__(self) -> Pipeline:
        self._loop = asyncio.get_running_loop()
        self._abandon = self._stopping = False
        self._workers = [_Worker(self, f"edge-actors-pipeline-{i}") for i in range(self.runs)]
        for worker in self._workers:
            worker.thread.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        workers, self._workers = self._workers, []
        # The body failed: stop at once (the images queued fail with PipelineClosed) and
        # let its exception through as it is. Otherwise what is queued still runs.
        self._abandon = exc is not None
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.bell.release()
        with anyio.CancelScope(shield=True):
            for worker in workers:
                await anyio.to_thread.run_sync(worker.thread.join)
        self._loop = None

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(self._images, self._runs, self._largest, self._failures)

    async def classify(self, image: Image) -> list[Prediction]:
        """The image's top-k predictions. Raises what :meth:`Classifier.prepare` raises
        (ImageError naming the file) or the run's InferenceError."""
        predictions: list[Prediction] = await self.submit(image)
        return predictions

    def submit(self, image: Image, then: Callable[[list[Prediction]], Any] | None = None
               ) -> asyncio.Future[Any]:
        """Queue ``image`` now (on the event loop, without awaiting) and return the future
        of its predictions, or of ``then(predictions)`` (called on the event loop; what it
        raises goes to the future). Cancelling the future before a worker takes the image
        drops it. :meth:`classify` is ``await submit(image)``; an actor can return the
        future as its ``Later`` reply, with no task in between."""
        loop = self._loop
        if loop is None or not self._workers:
            raise PipelineClosed("the pipeline is not running: use it inside `async with`")
        # Alone only when no other request is anywhere in the pipeline (queued, preparing
        # or running): a run on every core beside other runs and decodes would fight them.
        alone = self._active == 0 and self.alone is not self.classifier
        self._active += 1
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(self._finished)
        with self._lock:
            self._pending.append(_Request(image, future, alone, then))
            # The worker idle most recently: one at a time, requests keep going to
            # the same thread (its stack, its allocator arena and the buffers it
            # reuses stay warm), which measured 3% more images/s here than
            # alternating between two.
            worker = self._idle.pop() if self._idle else None
        if worker is not None:
            worker.bell.release()
        return future

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._active -= 1

    def _ran(self, images: int) -> None:
        self._runs += 1
        self._images += images
        self._largest = max(self._largest, images)

    # ------------------------------------------------------------ worker threads

    def _work(self, me: _Worker) -> None:
        """One worker: take an image (and, for a batch, what else is pending), prepare,
        run, hand the answers to the event loop; wait when nothing is pending; end once
        the pipeline stops and nothing is left."""
        lower_this_thread(self.options.nice)
        answers: tuple[list[_Outcome], int] | None = None
        while True:
            with self._lock:
                batch = self._take()
                stop = not batch and self._stopping
                if not batch and not stop:
                    self._idle.append(me)
            # The last batch is answered only now, once this worker is idle (or has
            # its next batch): a request sent in reply to an answer then comes back
            # to this warm thread, however late the thread is scheduled.
            if answers is not None:
                self._report(*answers)
                answers = None
            if batch:
                answers = self._run_batch(batch)
            elif stop:
                return
            else:
                me.bell.acquire()

    def _take(self) -> list[_Request]:
        """The next batch (under _lock): the oldest request, and for a batch the requests
        after it, up to max_batch. A request that came alone runs on its own."""
        pending = self._pending
        if not pending:
            return []
        batch = [pending.popleft()]
        if not batch[0].alone:
            while pending and len(batch) < self.options.max_batch and not pending[0].alone:
                batch.append(pending.popleft())
        return batch

    def _run_batch(self, batch: list[_Request]) -> tuple[list[_Outcome], int]:
        """Prepare and run a batch; its outcomes and how many images ran."""
        outcomes: list[_Outcome] = []
        if self._abandon:
            closed = PipelineClosed("the pipeline stopped before this image ran")
            return [(request, None, closed) for request in batch], 0
        classifier = self.alone if batch[0].alone else self.classifier
        tensors: list[np.ndarray] = []
        ready: list[_Request] = []
        for request in batch:
            if request.future.cancelled():  # its asker is gone
                continue
            try:
                tensors.append(classifier.prepare(request.image))
                ready.append(request)
            except Exception as exc:
                outcomes.append((request, None, exc))
        if ready:
            try:
                stacked = tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
                results = classifier.classify_batch(stacked)
                outcomes += [(r, predictions, None)
                             for r, predictions in zip(ready, results, strict=True)]
            except Exception as exc:
                outcomes += [(r, None, exc) for r in ready]
        return outcomes, len(ready)

    def _report(self, outcomes: list[_Outcome], ran: int) -> None:
        loop = self._loop
        if loop is not None and outcomes:
            try:
                loop.call_soon_threadsafe(self._settle, outcomes, ran)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _settle(self, outcomes: list[tuple[_Request, list[Prediction] | None,
                                           BaseException | None]], ran: int) -> None:
        """On the event loop: count the run, answer each request still waiting."""
        if ran:
            self._ran(ran)
        for request, predictions, error in outcomes:
            if error is not None and not isinstance(error, PipelineClosed):
                self._failures += 1
            if request.future.done():
                continue
            if error is not None:
                request.future.set_exception(error)
                continue
            assert predictions is not None
            if request.then is None:
                request.future.set_result(predictions)
                continue
            try:
                request.future.set_result(request.then(predictions))
            except Exception as exc:  # the caller's own code: its error is the answer
                request.future.set_exception(exc)
