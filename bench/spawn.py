"""``spawn``: cost of many idle actors: spawn time, stop time and memory per actor.

Each sample runs two child interpreters (see :mod:`bench._proc`): one that
spawns N actors and one that spawns none; the memory per actor is the
difference of their peak RSS (``ru_maxrss``, read from outside) divided by N.
Spawn and stop times are taken inside the child around just those phases and
printed on its stdout.

pykka's ThreadingActor costs one OS thread per actor, so it spawns fewer (the
figures are per actor either way).
"""

from __future__ import annotations

from ._core import Case, Contender, Metric, Role, compare_each
from ._proc import run_python
from ._registry import Settings, Skip, benchmark

SPAWN = Metric("spawn", "s", "lower", "spawn time per actor")
STOP = Metric("stop", "s", "lower", "stop time per actor")
RSS = Metric("rss", "B", "lower", "peak RSS per actor")

OURS = """
import sys, time
from actors.kernel import Actor, ActorSystem, run

class Idle(Actor):
    async def receive(self, message):
        return None

N = int(sys.argv[1])

async def main():
    system = ActorSystem()
    async with system:
        start = time.perf_counter()
        for _ in range(N):
            await system.spawn(Idle)
        spawned = time.perf_counter()
    stopped = time.perf_counter()
    print(spawned - start, stopped - spawned)

run(main)
"""

PYKKA = """
import sys, time
import pykka

class Idle(pykka.ThreadingActor):
    def on_receive(self, message):
        return None

N = int(sys.argv[1])
start = time.perf_counter()
refs = [Idle.start() for _ in range(N)]
spawned = time.perf_counter()
pykka.ActorRegistry.stop_all()
stopped = time.perf_counter()
print(spawned - start, stopped - spawned)
"""


def _contender(name: str, role: Role, code: str, n: int, label: str) -> Contender:
    def sample() -> dict[str, float]:
        empty = run_python(code, "0")
        full = run_python(code, str(n))
        spawn, stop = (float(x) for x in full.stdout.split())
        return {
            "spawn": spawn / n,
            "stop": stop / n,
            "rss": (full.max_rss - empty.max_rss) / n,
        }

    return Contender(name, role, sample, label)


@benchmark(
    "spawn",
    "spawn and stop many idle actors: time and peak RSS per actor vs pykka ThreadingActors",
)
def build(settings: Settings) -> list[Case]:
    try:
        import pykka  # noqa: F401
    except ImportError as exc:
        raise Skip("pykka is not installed (pip install 'edge-actors[bench]')") from exc
    ours_n = settings.pick(10_000, 200)
    pykka_n = settings.pick(1_000, 200)
    return [
        Case(
            name=f"{ours_n} actors (pykka {pykka_n})",
            metrics=(SPAWN, STOP, RSS),
            contenders=(
                _contender("ours", "ours", OURS, ours_n, f"{ours_n} x system.spawn(Idle)"),
                _contender("pykka", "peer", PYKKA, pykka_n, f"{pykka_n} x ThreadingActor.start()"),
            ),
            comparisons=compare_each([("ours", "pykka")]),
            # Each child pair imports what the next one needs: its n=0 run is the warm-up.
            samples=settings.pick(8, 2),
            warmup=0,
            budget=settings.pick(60.0, None),
            params={"ours_actors": ours_n, "pykka_actors": pykka_n},
        )
    ]
