"""Local deployments end to end: rollback, DO_NOTHING, removal, persistence, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus, FailureHandling
from actors.nucleus import Nucleus, RootInUse

from ..component.test_lifecycle import recipe

pytestmark = pytest.mark.anyio


def service(folder: Path, version: str, *, install: str = "echo installing") -> None:
    recipe(folder, "test.Svc", version, config="Greeting: hello\n", lifecycle=f"""\
        Install: {install}
        Startup: echo "{version} {{configuration:/Greeting}}" >> runs.txt
    """)


def runs(root: Path) -> list[str]:
    path = root / "work" / "test.Svc" / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


def state(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / "state.json").read_text())
    return data


async def test_a_failed_deployment_rolls_back_version_and_configuration(tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    service(recipes, "2.0.0", install="echo cannot install; exit 1")
    async with Nucleus(root) as nucleus:
        first = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                       merge={"test.Svc": "1.0.0"}))
        assert first.detailed_status is DetailedStatus.SUCCESSFUL
        failed = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Svc": "2.0.0"},
            configuration_update={"test.Svc": {"merge": {"Greeting": "new"}}}))
        assert failed.detailed_status is DetailedStatus.FAILED_ROLLBACK_COMPLETE
        assert "test.Svc: install step exited with code 1" in failed.cause
        assert nucleus.status["test.Svc"].version == "1.0.0"
        assert nucleus.status["test.Svc"].state is State.RUNNING
    # 1.0.0 ran, was stopped for 2.0.0, and ran again with its old configuration.
    assert runs(root) == ["1.0.0 hello", "1.0.0 hello"]
    assert state(root)["components"] == {
        "test.Svc": {"version": "1.0.0", "configuration": {"Greeting": "hello"}}}
    history = [(r.status, r.detailed_status) for r in nucleus.history()]
    assert history == [("SUCCEEDED", "SUCCESSFUL"), ("FAILED", "FAILED_ROLLBACK_COMPLETE")]


async def test_do_nothing_keeps_the_failed_state(tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    service(recipes, "2.0.0", install="exit 1")
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "1.0.0"}))
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Svc": "2.0.0"},
            failure_handling=FailureHandling.DO_NOTHING))
    assert record.detailed_status is DetailedStatus.FAILED_ROLLBACK_NOT_REQUESTED
    assert state(root)["components"]["test.Svc"]["version"] == "2.0.0"  # type: ignore[index]


async def test_each_group_keeps_the_deployment_in_place(tmp_path: Path) -> None:
    """state.json records which deployment set each group's roots: kept by a rollback,
    taken by a DO_NOTHING failure, gone with the group's last root."""
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    service(recipes, "2.0.0", install="exit 1")
    async with Nucleus(root) as nucleus:
        assert nucleus.groups() == {}
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "1.0.0"},
                                               group="g", deployment_id="first"))
        assert nucleus.groups() == {"g": ("first", {"test.Svc": "1.0.0"})}
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "2.0.0"},
                                               group="g", deployment_id="rolled-back"))
        assert nucleus.groups() == {"g": ("first", {"test.Svc": "1.0.0"})}
        await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Svc": "2.0.0"}, group="g",
            deployment_id="kept", failure_handling=FailureHandling.DO_NOTHING))
        assert nucleus.groups() == {"g": ("kept", {"test.Svc": "2.0.0"})}
        await nucleus.deploy(DeploymentRequest(remove=["test.Svc"], group="g",
                                               deployment_id="emptied"))
        assert nucleus.groups() == {}
    assert state(root)["deployments"] == {}


async def test_a_plan_failure_changes_nothing(tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "1.0.0"}))
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Svc": "9.0.0"}))
    assert record.detailed_status is DetailedStatus.FAILED_NO_STATE_CHANGE
    assert "no version of test.Svc satisfies every requirement: group LOCAL_DEPLOYMENT " \
        "requires =9.0.0 (available: 1.0.0)" in record.cause
    assert runs(root) == ["1.0.0 hello"]


async def test_configuration_updates_and_removal(tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "1.0.0"}))
        await nucleus.deploy(DeploymentRequest(configuration_update={
            "test.Svc": {"merge": {"Greeting": "bonjour"}}}))
        await nucleus.deploy(DeploymentRequest(configuration_update={
            "test.Svc": {"reset": ["/Greeting"]}}))
        # Removing what is not a root component does nothing, as on Greengrass.
        nothing = await nucleus.deploy(DeploymentRequest(remove=["test.Other"]))
        assert nothing.detailed_status is DetailedStatus.SUCCESSFUL
        assert nucleus.status["test.Svc"].state is State.RUNNING
        removed = await nucleus.deploy(DeploymentRequest(remove=["test.Svc"]))
        assert removed.detailed_status is DetailedStatus.SUCCESSFUL
        assert "test.Svc" not in nucleus.status
    assert runs(root) == ["1.0.0 hello", "1.0.0 bonjour", "1.0.0 hello"]
    assert state(root) == {"groups": {}, "components": {}, "deployments": {}}
    assert not list((root / "packages" / "recipes").iterdir())  # garbage-collected


async def test_deployed_components_come_back_without_the_recipe_folder(tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    service(recipes, "1.0.0")
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Svc": "1.0.0"}))
    for path in recipes.iterdir():
        path.unlink()
    async with Nucleus(root) as nucleus:
        assert nucleus.status["test.Svc"].state is State.RUNNING
    assert runs(root) == ["1.0.0 hello", "1.0.0 hello"]


async def test_two_runtimes_cannot_share_a_root(tmp_path: Path) -> None:
    async with Nucleus(tmp_path / "root"):
        with pytest.raises(RootInUse, match="another edge-actors runtime is using this root"):
            async with Nucleus(tmp_path / "root"):
                pass


DEPLOYER = textwrap.dedent("""
    import sys, anyio
    from pathlib import Path
    from actors.deploy import DeploymentRequest
    from actors.nucleus import Nucleus, RootInUse

    async def main(root, recipes):
        async with Nucleus(Path(root)) as nucleus:
            print("ready", flush=True)
            i = 0
            while True:
                i += 1
                await nucleus.deploy(DeploymentRequest(
                    recipe_dir=Path(recipes), merge={"test.Long": "1.0.0" if i % 2 else "2.0.0"},
                    configuration_update={"test.Long": {"merge": {"n": i % 2}}}))

    anyio.run(main, *sys.argv[1:])
""")


def long_running(folder: Path, marker: str) -> None:
    for version in ("1.0.0", "2.0.0"):
        recipe(folder, "test.Long", version, config="n: 0\n", lifecycle=f"""\
            Install: echo installing {version}
            Run: exec sleep {marker}
        """)


def leftover(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})], indirect=True)
async def test_kill_9_at_random_points_never_leaves_a_half_applied_deployment(
        tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    marker = f"{random.randint(10**6, 10**7)}.5"
    long_running(recipes, marker)
    rng = random.Random(11)
    valid = {("1.0.0", 1), ("2.0.0", 0)}
    interrupted = 0
    for _cycle in range(30):
        # A plain Popen: the test drives a process it kills, nothing async about it.
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-c", DEPLOYER, str(root), str(recipes)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready")
        await anyio.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        interrupted += (root / "deployments" / "current.json").exists()
        async with Nucleus(root) as nucleus:
            # Whatever was half-done was rolled back: the state is one a deployment
            # produced, and exactly what it names runs.
            assert not (root / "deployments" / "current.json").exists()
            components = json.loads((root / "state.json").read_text())["components"] \
                if (root / "state.json").exists() else {}
            if components:
                entry = components["test.Long"]
                assert (entry["version"], entry["configuration"]["n"]) in valid
                assert nucleus.status["test.Long"].version == entry["version"]
                assert nucleus.status["test.Long"].state is State.RUNNING
                # The orphans are killed (a late one by the sweeps after start); ours runs.
                with anyio.fail_after(8):
                    while len(leftover(marker)) != 1:
                        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            while leftover(marker):
                await anyio.sleep(0.05)
    assert interrupted >= 3  # the kills did land inside deployments


async def test_a_hard_dependency_change_restarts_its_dependents_a_soft_one_does_not(
        tmp_path: Path) -> None:
    root, recipes = tmp_path / "root", tmp_path / "recipes"
    recipe(recipes, "test.Base", config="Level: 1\n", lifecycle="""\
        Startup: echo "base {configuration:/Level}" >> ../events.txt
    """)
    for name, kind in (("test.Hard", "HARD"), ("test.Soft", "SOFT")):
        recipe(recipes, name, deps=f"""\
            test.Base:
              VersionRequirement: "^1.0.0"
              DependencyType: {kind}
        """, lifecycle=f"""\
            Startup: echo "{name} started" >> ../events.txt
        """)
    events = root / "work" / "events.txt"
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                               merge={"test.Hard": "1.0.0", "test.Soft": "1.0.0"}))
        assert events.read_text().splitlines() == ["base 1", "test.Hard started",
                                                   "test.Soft started"]
        record = await nucleus.deploy(DeploymentRequest(configuration_update={
            "test.Base": {"merge": {"Level": 2}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
    assert events.read_text().splitlines()[3:] == ["base 2", "test.Hard started"]
