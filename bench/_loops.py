"""Event loops for the in-process benchmarks: each sample runs in a fresh loop of a chosen kind.

A fresh loop per sample keeps contenders from sharing state (ready queues,
cached futures, leftover tasks), and lets ours and the peer run on the same
kind of loop within one process. Both kinds are made by the same
:class:`asyncio.Runner`, so neither side pays for a different start-up path.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

LoopKind = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop can be imported (there is no uvloop wheel on some edge platforms)."""
    return importlib.util.find_spec("uvloop") is not None


def loop_kinds() -> tuple[LoopKind, ...]:
    """The loop kinds to measure on this machine: uvloop (when available) and plain asyncio."""
    return ("uvloop", "asyncio") if uvloop_available() else ("asyncio",)


def run_on(kind: LoopKind, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion in a new event loop of ``kind``, then close the loop."""
    factory: Callable[[], asyncio.AbstractEventLoop]
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_as_coroutine(main))


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()
