"""``ask``: request/reply round trips of the kernel vs the bare asyncio idiom and vs pykka.

The asyncio idiom: put ``(message, future)`` into a bounded ``asyncio.Queue``,
a server task sets the future's result, the caller awaits it. It is what an
ask has to do at the least. pykka's ``ActorRef.ask`` is the thread-based peer:
one caller blocking on each reply from the main thread.

Cases: 1 caller (pure latency, one ask in flight) and 64 concurrent callers
(the mailbox is contended, replies overlap), each on uvloop and plain asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._core import Case, Comparison, Contender, Goal, Metric, compare_each
from ._loops import LoopKind, loop_kinds, run_on
from ._registry import Settings, Skip, benchmark

MAILBOX = 1000
THROUGHPUT = Metric("throughput", "ask/s", "higher", "round trips per second")
WITHIN_2X = Goal("ask within 2x of a Future round trip through a bounded asyncio.Queue", 0.5)
TEN_X_PYKKA = Goal("ask at least 10x pykka's ask throughput", 10.0)

Call = Callable[[int], Awaitable[Any]]


async def _callers(call: Call, callers: int, per_caller: int) -> float:
    """Seconds for ``callers`` concurrent tasks to make ``per_caller`` sequential calls each."""

    async def caller() -> None:
        for i in range(per_caller):
            await call(i)

    start = time.perf_counter()
    if callers == 1:
        await caller()
    else:
        async with asyncio.TaskGroup() as group:
            for _ in range(callers):
                group.create_task(caller())
    return time.perf_counter() - start


async def kernel_ask(callers: int, per_caller: int) -> float:
    """Seconds for the round trips through ``ref.ask`` to an echoing actor."""
    from actors.kernel import Actor, ActorSystem

    class Echo(Actor):
        async def receive(self, message: object) -> object:
            return message

    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo", mailbox_size=MAILBOX)
        elapsed = await _callers(ref.ask, callers, per_caller)
        await ref.stop()
    return elapsed


async def future_round_trip(callers: int, per_caller: int) -> float:
    """Seconds for the round trips through a queue of ``(message, future)`` and a server task."""
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize=MAILBOX)
    loop = asyncio.get_running_loop()

    async def server() -> None:
        while True:
            message, future = await queue.get()
            if not future.done():
                future.set_result(message)

    async def call(message: int) -> int:
        future: asyncio.Future[int] = loop.create_future()
        await queue.put((message, future))
        return await future

    task = asyncio.create_task(server())
    await asyncio.sleep(0)
    try:
        return await _callers(call, callers, per_caller)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def pykka_ask(n: int, in_flight: int = 1) -> float:
    """Seconds for N ``ref.ask`` round trips to a pykka ThreadingActor: blocking one at
    a time, or ``in_flight`` at once through pykka's futures (``block=False``)."""
    import pykka

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Echo.start()
    try:
        start = time.perf_counter()
        if in_flight == 1:
            for i in range(n):
                ref.ask(i)
        else:
            for _ in range(n // in_flight):
                pykka.get_all([ref.ask(i, block=False) for i in range(in_flight)])
        return time.perf_counter() - start
    finally:
        ref.stop()


def _async_contender(ours: bool, kind: LoopKind, callers: int, per_caller: int) -> Contender:
    measure = kernel_ask if ours else future_round_trip
    total = callers * per_caller

    def sample() -> dict[str, float]:
        return {"throughput": total / run_on(kind, lambda: measure(callers, per_caller))}

    name = f"{'ours' if ours else 'future'}-{kind}"
    label = ("ref.ask" if ours else "Queue((msg, Future)) + await") + f" on {kind}"
    return Contender(name, "ours" if ours else "peer", sample, label)


def _pykka_contender(n: int, in_flight: int = 1) -> Contender:
    how = "blocking, 1 thread" if in_flight == 1 else f"{in_flight} futures in flight"
    done = n - n % in_flight
    return Contender(
        "pykka",
        "peer",
        lambda: {"throughput": done / pykka_ask(n, in_flight)},
        f"pykka ThreadingActor ref.ask ({how})",
    )


@benchmark(
    "ask",
    "ask round trip vs a Future through an asyncio.Queue (1 and 64 callers) and vs pykka's ask",
    goals=(WITHIN_2X, TEN_X_PYKKA),
)
def build(settings: Settings) -> list[Case]:
    try:
        import pykka  # noqa: F401
    except ImportError as exc:
        raise Skip("pykka is not installed (pip install 'edge-actors[bench]')") from exc
    kinds = loop_kinds()
    cases: list[Case] = []
    for callers, per_caller in ((1, settings.pick(20_000, 2_000)), (64, settings.pick(500, 50))):
        contenders: list[Contender] = []
        comparisons: list[Comparison] = []
        for kind in kinds:
            contenders += [
                _async_contender(True, kind, callers, per_caller),
                _async_contender(False, kind, callers, per_caller),
            ]
            comparisons += compare_each([(f"ours-{kind}", f"future-{kind}")], goal=WITHIN_2X)
        params: dict[str, int] = {"callers": callers, "asks_per_caller": per_caller}
        # pykka at the same concurrency: blocking asks for 1 caller, its futures for 64.
        pykka_n = settings.pick(3_000, 300) if callers == 1 else settings.pick(6_400, 640)
        contenders.append(_pykka_contender(pykka_n, callers))
        comparisons += compare_each(
            [(f"ours-{kind}", "pykka") for kind in kinds], goal=TEN_X_PYKKA
        )
        params["pykka_asks"] = pykka_n
        cases.append(
            Case(
                name=f"{callers} caller{'s' if callers > 1 else ''}",
                metrics=(THROUGHPUT,),
                contenders=tuple(contenders),
                comparisons=tuple(comparisons),
                samples=settings.samples,
                warmup=settings.warmup,
                params=params,
            )
        )
    return cases
