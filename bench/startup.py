"""``startup``: whole-process cost of importing the kernel and of a minimal actor program.

Measured from outside (see :mod:`bench._proc`): wall time, CPU time and peak
RSS of a fresh interpreter. Baselines put the figures in context: an empty
interpreter, and one importing only the kernel's dependencies.
"""

from __future__ import annotations

from ._core import Case, Contender, Metric, Role, compare_each
from ._proc import run_python
from ._registry import Settings, Skip, benchmark

WALL = Metric("wall", "s", "lower", "wall time")
CPU = Metric("cpu", "s", "lower", "CPU time (user + sys)")
RSS = Metric("rss", "B", "lower", "peak RSS")

OURS_SYSTEM = """
from actors.kernel import Actor, ActorSystem, run

class Echo(Actor):
    async def receive(self, message):
        return message

async def main():
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ref.ask(1) == 1

run(main)
"""

PYKKA_SYSTEM = """
import pykka

class Echo(pykka.ThreadingActor):
    def on_receive(self, message):
        return message

ref = Echo.start()
assert ref.ask(1) == 1
ref.stop()
"""


def _child(name: str, role: Role, code: str, label: str) -> Contender:
    def sample() -> dict[str, float]:
        child = run_python(code)
        return {"wall": child.wall, "cpu": child.cpu, "rss": float(child.max_rss)}

    return Contender(name, role, sample, label)


@benchmark(
    "startup",
    "process start-up from outside (wall, CPU, peak RSS): import and a one-actor program "
    "vs python, deps and pykka",
)
def build(settings: Settings) -> list[Case]:
    try:
        import pykka  # noqa: F401
    except ImportError as exc:
        raise Skip("pykka is not installed (pip install 'edge-actors[bench]')") from exc
    deps = "import asyncio, numpy, orjson"
    try:
        import uvloop  # noqa: F401

        deps += ", uvloop"
    except ImportError:
        pass
    imports = Case(
        name="import",
        metrics=(WALL, CPU, RSS),
        contenders=(
            _child("actors.kernel", "ours", "import actors.kernel", "import actors.kernel"),
            _child("pass", "baseline", "pass", "pass (an empty interpreter)"),
            _child("deps", "baseline", deps, deps),
            _child("pykka", "peer", "import pykka", "import pykka"),
        ),
        comparisons=compare_each(
            [("actors.kernel", "pykka"), ("actors.kernel", "pass"), ("actors.kernel", "deps")],
            metrics=("wall", "rss"),
        ),
        samples=settings.pick(15, 3),
        warmup=settings.warmup,
    )
    program = Case(
        name="one actor: start, ask, stop",
        metrics=(WALL, CPU, RSS),
        contenders=(
            _child("ours", "ours", OURS_SYSTEM, "ActorSystem + spawn + ask + exit (uvloop if any)"),
            _child("pykka", "peer", PYKKA_SYSTEM, "ThreadingActor start + ask + stop"),
        ),
        comparisons=compare_each([("ours", "pykka")], metrics=("wall", "rss")),
        samples=settings.pick(15, 3),
        warmup=settings.warmup,
    )
    return [imports, program]
