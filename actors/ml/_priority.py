"""Inference threads below the event loop's priority.

An inference component's threads (the pipeline workers, the thread pool a
runtime starts for its runs) are busy most of the time; the event loop
thread runs for tens of microseconds per request (the ``Infer`` hand-offs,
IPC, supervision) and must get a core at once when woken. At equal priority it
sometimes did not: ONNX Runtime's pool threads spin between runs, and here
the woken loop thread then waited up to a whole scheduler slice, about 3 ms,
behind one of them (on 1 request in 30, one at a time). With the inference
threads at nice +5 the loop thread preempts them and those waits were gone.

On Linux the nice value belongs to a thread, and a thread starts with its
creator's: a runtime loaded by :func:`call_lowered` starts its own threads
lowered too. Elsewhere (where nice is per process) nothing is changed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How much the ML components lower their inference threads (``InferenceNice``).
DEFAULT_NICE = 5


def lower_this_thread(by: int) -> None:
    """Add ``by`` to the calling thread's nice value (Linux; 0 or elsewhere: nothing)."""
    if by <= 0 or sys.platform != "linux":
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, min(19, current + by))


def call_lowered(by: int, function: Callable[[], T], name: str = "edge-actors-load") -> T:
    """``function()`` in a new thread lowered by ``by``, so that the threads it starts
    (a runtime's thread pool) are lowered too; its value, or its exception. The
    calling thread keeps its priority."""
    if by <= 0 or sys.platform != "linux":
        return function()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        lower_this_thread(by)
        try:
            outcome.append(function())
        except BaseException as exc:  # handed to the caller as it is
            failure.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
