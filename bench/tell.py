"""``tell``: one-way message throughput of the kernel vs a bare bounded ``asyncio.Queue``.

Both sides run the same pattern: a producer awaits ``send`` N times into a
mailbox/queue of 1000 slots (so backpressure is exercised), a consumer counts
messages and resolves a future after the N-th; the time is from the first send
to that future. The queue is the floor a Python actor mailbox cannot beat: what
is left is the kernel's per-message cost (dispatch, statistics, supervision).
"""

from __future__ import annotations

import asyncio
import time

from ._core import Case, Contender, Goal, Metric, compare_each
from ._loops import LoopKind, loop_kinds, run_on
from ._registry import Settings, benchmark

MAILBOX = 1000
THROUGHPUT = Metric("throughput", "msg/s", "higher", "messages per second")
WITHIN_2X = Goal("tell within 2x of a bounded asyncio.Queue (ratio >= 0.5)", 0.5)


async def kernel_tell(n: int) -> float:
    """Seconds for N ``await ref.tell(i)`` to a counting actor, until it has handled all N."""
    from actors.kernel import Actor, ActorSystem

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    class Counter(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        async def receive(self, message: object) -> None:
            self.count += 1
            if self.count == n:
                done.set_result(None)

    async with ActorSystem() as system:
        ref = await system.spawn(Counter, name="counter", mailbox_size=MAILBOX)
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await done
        elapsed = time.perf_counter() - start
        await ref.stop()
    return elapsed


async def queue_handoff(n: int) -> float:
    """Seconds for N ``await queue.put(i)`` to a consumer task that counts them (the floor)."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=MAILBOX)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    async def consumer() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == n:
                done.set_result(None)
                return

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)  # let the consumer reach its first get(), as a spawned actor would
    start = time.perf_counter()
    for i in range(n):
        await queue.put(i)
    await done
    elapsed = time.perf_counter() - start
    await task
    return elapsed


def _contender(name: str, ours: bool, kind: LoopKind, n: int) -> Contender:
    measure = kernel_tell if ours else queue_handoff

    def sample() -> dict[str, float]:
        return {"throughput": n / run_on(kind, lambda: measure(n))}

    label = ("ref.tell -> actor" if ours else "asyncio.Queue put -> get") + f" on {kind}"
    return Contender(name, "ours" if ours else "peer", sample, label)


@benchmark(
    "tell",
    "one-way tell throughput vs a bounded asyncio.Queue hand-off, on uvloop and asyncio",
    goals=(WITHIN_2X,),
)
def build(settings: Settings) -> list[Case]:
    n = settings.pick(100_000, 10_000)
    contenders: list[Contender] = []
    pairs: list[tuple[str, str]] = []
    for kind in loop_kinds():
        contenders += [
            _contender(f"ours-{kind}", True, kind, n),
            _contender(f"queue-{kind}", False, kind, n),
        ]
        pairs.append((f"ours-{kind}", f"queue-{kind}"))
    return [
        Case(
            name=f"{n} messages, mailbox {MAILBOX}",
            metrics=(THROUGHPUT,),
            contenders=tuple(contenders),
            comparisons=compare_each(pairs, goal=WITHIN_2X),
            samples=settings.samples,
            warmup=settings.warmup,
            params={"messages": n, "mailbox_size": MAILBOX},
        )
    ]
