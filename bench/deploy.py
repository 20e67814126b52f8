"""``deploy``: the runtime's start-up, and local deployments of many components.

- Start-up to ready with no components, measured from outside (wall and peak
  RSS of a child interpreter that starts the Nucleus and exits once it is up):
  goals under 0.3 s and 40 MB (Greengrass's Java nucleus needs at least 96 MB
  of RAM; Nucleus Lite measures 12-16 MB PSS).
- A deployment of N components in a dependency chain and in a tree, each with
  a real ``Startup`` subprocess: time until every one is RUNNING, against a
  plain shell script that runs the same N start-up commands one after another
  (the floor of what any runtime does). Then the time to roll back a
  deployment whose last component fails to install.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from ._core import Case, Contender, Goal, Limit, Metric, compare_each
from ._loops import run_on
from ._proc import run_python
from ._registry import Settings, benchmark
from .restart import quiet_logs

WALL = Metric("wall", "s", "lower", "start-up to ready (wall)")
RSS = Metric("rss", "B", "lower", "peak RSS")
TIME = Metric("time", "s", "lower", "time to all RUNNING")
ROLLBACK = Metric("rollback", "s", "lower", "failed deployment rolled back")
UNDER_300MS = Goal("runtime ready in under 0.3 s", 0.3, at_least=False)
UNDER_40MB = Goal("runtime under 40 MB RSS", 40 * 2**20, at_least=False)

READY = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    from actors.kernel import run
    from actors.nucleus import Nucleus

    async def main():
        with tempfile.TemporaryDirectory() as root:
            async with Nucleus(Path(root)):
                pass

    run(main)
""")

STARTUP = "echo started"


def _recipes(folder: Path, count: int, shape: str, failing: bool = False) -> list[str]:
    """N recipes named c0..c{N-1}: a chain (each on the previous) or a binary tree."""
    names = [f"bench.c{i}" for i in range(count)]
    for i, name in enumerate(names):
        parent = (i - 1 if shape == "chain" else (i - 1) // 2) if i else None
        deps = "" if parent is None else (
            f'ComponentDependencies:\n  {names[parent]}:\n    VersionRequirement: "^1.0.0"\n')
        install = "exit 1" if failing and i == count - 1 else "exit 0"
        (folder / f"{name}.yaml").write_text(
            f'RecipeFormatVersion: "2020-01-25"\nComponentName: {name}\n'
            f'ComponentVersion: "1.0.0"\n{deps}Lifecycle:\n  Install: {install}\n'
            f"  Startup: {STARTUP}\n")
    return names


async def _deploy(count: int, shape: str) -> dict[str, float]:
    from actors.deploy import DeploymentRequest, DetailedStatus
    from actors.nucleus import Nucleus

    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        base = Path(tmp)
        good, bad = base / "good", base / "bad"
        good.mkdir()
        bad.mkdir()
        names = _recipes(good, count, shape)
        _recipes(bad, count + 1, shape, failing=True)
        async with Nucleus(base / "root") as nucleus:
            start = time.perf_counter()
            record = await nucleus.deploy(DeploymentRequest(
                recipe_dir=good, merge={n: "1.0.0" for n in names}))
            took = time.perf_counter() - start
            if record.detailed_status is not DetailedStatus.SUCCESSFUL:
                raise RuntimeError(f"deployment failed: {record.cause}")
            start = time.perf_counter()
            record = await nucleus.deploy(DeploymentRequest(
                recipe_dir=bad, merge={f"bench.c{count}": "1.0.0"}))
            rolled = time.perf_counter() - start
            if record.detailed_status is not DetailedStatus.FAILED_ROLLBACK_COMPLETE:
                raise RuntimeError(f"expected a rollback, got {record.detailed_status}")
    return {"time": took, "rollback": rolled}


def _shell(count: int) -> dict[str, float]:
    script = "; ".join(["true; sh -c 'echo started' >/dev/null"] * count)
    start = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True)
    return {"time": time.perf_counter() - start}


@benchmark(
    "deploy",
    "runtime start-up (wall, RSS from outside) and local deployments of many components "
    "in a chain and a tree vs a shell script running the same start-up commands",
    goals=(UNDER_300MS, UNDER_40MB),
)
def build(settings: Settings) -> list[Case]:
    def ready() -> dict[str, float]:
        child = run_python(READY)
        return {"wall": child.wall, "rss": float(child.max_rss)}

    cases = [Case(
        name="start-up, no components",
        metrics=(WALL, RSS),
        contenders=(Contender("ours", "ours", ready, "Nucleus up, then exit"),),
        limits=(Limit("ours", "wall", UNDER_300MS), Limit("ours", "rss", UNDER_40MB)),
        samples=settings.pick(10, 2),
        warmup=settings.warmup,
    )]
    count = settings.pick(50, 8)
    if shutil.which("sh") is None:
        return cases
    for shape in ("chain", "tree"):
        def ours(shape: str = shape) -> dict[str, float]:
            with quiet_logs():
                return run_on("uvloop", lambda: _deploy(count, shape))

        def ours_time(run: object = ours) -> dict[str, float]:
            return {"time": ours()["time"]}

        def ours_rollback(run: object = ours) -> dict[str, float]:
            return {"rollback": ours()["rollback"]}

        cases.append(Case(
            name=f"{count} components, {shape}",
            metrics=(TIME,),
            contenders=(
                Contender("ours", "ours", ours_time,
                          f"deployment of {count} components ({shape})"),
                Contender("shell", "baseline", lambda: _shell(count),
                          f"sh running the {count} install + start-up commands in a row"),
            ),
            comparisons=compare_each([("ours", "shell")], metrics=("time",)),
            samples=settings.pick(5, 1),
            warmup=settings.pick(1, 0),
            params={"components": count, "shape": shape},
        ))
        cases.append(Case(
            name=f"{count} components, {shape}: rollback of a failing addition",
            metrics=(ROLLBACK,),
            contenders=(Contender("ours", "ours", ours_rollback,
                                  "deploy one more component whose install fails"),),
            samples=settings.pick(3, 1),
            warmup=0,
            params={"components": count, "shape": shape},
        ))
    return cases
