"""``restart``: how fast a crashed actor answers again under a one_for_one supervisor.

Each sample builds a fresh system (on a fresh loop) with a supervisor and one
child, checks the child answers, then times ``tell("crash")`` followed by
``ask("ping")``: the ask is queued behind the crash in the mailbox, which
outlives the instance, so it is answered by the restarted instance. One crash
per system, as the first restart is immediate and later ones back off by design.

No peer: pykka has no supervision, so the figure is absolute, against a goal.
The kernel's crash log records are still built but go to a null handler, so
terminal I/O is not part of the figure.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from ._core import Case, Contender, Goal, Limit, Metric
from ._loops import LoopKind, loop_kinds, run_on
from ._registry import Settings, benchmark

LATENCY = Metric("latency", "s", "lower", "crash -> restarted actor answers")
UNDER_1MS = Goal("restart latency median under 1 ms", 1e-3, at_least=False)


class Crash(Exception):
    """The failure the benchmark asks its actor to raise."""


async def restart_latency() -> float:
    """Seconds from telling a supervised child to crash to its restarted self answering an ask."""
    from actors.kernel import Actor, ActorSystem, ChildSpec, Strategy, Supervisor

    class Crashy(Actor):
        async def receive(self, message: object) -> object:
            if message == "crash":
                raise Crash("crash requested by the benchmark")
            return message

    def supervisor() -> Supervisor:
        return Supervisor(
            [ChildSpec("crashy", Crashy)],
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=1000,
            period=1.0,
        )

    async with ActorSystem() as system:
        await system.spawn(supervisor, name="sup")
        ref = system.lookup("crashy")
        if await ref.ask("ping") != "ping":
            raise RuntimeError("the child did not echo before the crash")
        start = time.perf_counter()
        await ref.tell("crash")
        reply = await ref.ask("ping", timeout=5.0)
        elapsed = time.perf_counter() - start
        if reply != "ping" or ref.statistics().restarts != 1:
            raise RuntimeError(f"expected one restart and an echo, got {ref.statistics()}")
    return elapsed


@contextlib.contextmanager
def quiet_logs(name: str = "actors") -> Iterator[None]:
    """Send logger ``name``'s records to a null handler (not to stderr) for the duration."""
    logger = logging.getLogger(name)
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _contender(kind: LoopKind) -> Contender:
    def sample() -> dict[str, float]:
        with quiet_logs():
            return {"latency": run_on(kind, restart_latency)}

    return Contender(f"ours-{kind}", "ours", sample, f"one_for_one restart on {kind}")


@benchmark(
    "restart",
    "restart latency under a one_for_one supervisor; no peer (pykka has no supervision)",
    goals=(UNDER_1MS,),
)
def build(settings: Settings) -> list[Case]:
    kinds = loop_kinds()
    return [
        Case(
            name="one_for_one, first crash",
            metrics=(LATENCY,),
            contenders=tuple(_contender(kind) for kind in kinds),
            limits=tuple(Limit(f"ours-{kind}", "latency", UNDER_1MS) for kind in kinds),
            samples=settings.pick(40, 5),
            warmup=settings.warmup,
        )
    ]
