"""The component host: one owner for running components and Greengrass's restart
rules between them, tested with real lifecycle subprocesses."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.deploy import Deferrals, DeploymentRequest, DeploymentStatus, DetailedStatus
from actors.host import (
    ComponentStartFailed,
    ComponentView,
    ListComponents,
    ReconfigureComponent,
    RemoveComponent,
    ReportState,
    RestartComponent,
    StartComponent,
    StopComponent,
    UnknownComponent,
)
from actors.ipc import UnauthorizedError
from actors.nucleus import COMPONENTS, DEPLOYMENTS, Nucleus

pytestmark = pytest.mark.anyio

# A run step whose process is the one that writes its pid (exec keeps it).
STAY = 'echo $$ > pid; exec sleep 600'


def recipe(folder: Path, name: str, run: str, deps: str = "", extra: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = textwrap.dedent(f"""\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: {name}
        ComponentVersion: "1.0.0"
        """)
    if deps:
        body += "ComponentDependencies:\n" + textwrap.indent(textwrap.dedent(deps), "  ")
    body += extra
    body += f"Lifecycle:\n  Run: {run!r}\n"
    (folder / f"{name}-1.0.0.yaml").write_text(body)


def pid(root: Path, name: str) -> int:
    return int((root / "work" / name / "pid").read_text())


def alive(process: int) -> bool:
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    return "State:\tZ" not in Path(f"/proc/{process}/status").read_text()


async def running_pid(root: Path, name: str) -> int:
    """The pid of the component's current run process, once it has written it."""
    with anyio.fail_after(20):
        while True:
            try:
                found = pid(root, name)
                if alive(found):
                    return found
            except (FileNotFoundError, ValueError):
                pass
            await anyio.sleep(0.02)


async def deploy(nucleus: Nucleus, recipes: Path, *names: str) -> None:
    record = await nucleus.deploy(DeploymentRequest(
        recipe_dir=recipes, merge=dict.fromkeys(names, "1.0.0")))
    assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause


def host(nucleus: Nucleus):  # type: ignore[no-untyped-def]
    return nucleus.system.lookup(COMPONENTS)


async def test_a_crash_loop_leaves_an_unrelated_component_alone(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Publisher", "sleep 0.2; exit 1")
    recipe(recipes, "test.Subscriber", STAY)
    async with Nucleus(root) as nucleus:
        await deploy(nucleus, recipes, "test.Publisher", "test.Subscriber")
        before = await running_pid(root, "test.Subscriber")
        await nucleus.wait_states(["test.Publisher"], [State.BROKEN], timeout=30)
        assert nucleus.status["test.Publisher"].history.count(State.ERRORED) == 3
        # Same process all along: never stopped, never restarted.
        assert pid(root, "test.Subscriber") == before and alive(before)
        assert nucleus.status["test.Subscriber"].history == [
            State.NEW, State.INSTALLED, State.RUNNING]


HARD_AND_SOFT = """\
    test.Dependency:
      VersionRequirement: ">=1.0.0"
      DependencyType: {kind}
"""


async def test_a_hard_dependent_restarts_with_its_dependency_a_soft_one_does_not(
        tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    # Crashes once, a moment after it started; stays up after its restart.
    recipe(recipes, "test.Dependency",
           "if [ -e crashed ]; then " + STAY + "; else echo $$ > pid; sleep 1; "
           "touch crashed; exit 2; fi")
    recipe(recipes, "test.Hard", STAY, deps=HARD_AND_SOFT.format(kind="HARD"))
    recipe(recipes, "test.Soft", STAY, deps=HARD_AND_SOFT.format(kind="SOFT"))
    async with Nucleus(root) as nucleus:
        await deploy(nucleus, recipes, "test.Hard", "test.Soft")
        hard, soft = await running_pid(root, "test.Hard"), await running_pid(root, "test.Soft")
        with anyio.fail_after(30):
            while nucleus.status["test.Dependency"].history.count(State.RUNNING) < 2 \
                    or nucleus.status["test.Hard"].history.count(State.RUNNING) < 2:
                await anyio.sleep(0.02)
        new_hard = await running_pid(root, "test.Hard")
        assert new_hard != hard and not alive(hard)
        assert nucleus.status["test.Hard"].history.count(State.RUNNING) == 2
        assert pid(root, "test.Soft") == soft and alive(soft)
        assert nucleus.status["test.Soft"].history == [State.NEW, State.INSTALLED,
                                                       State.RUNNING]


async def test_a_broken_dependency_stops_its_hard_dependents_only(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Dependency",
           "if [ -e started ]; then exit 1; else touch started; " + STAY + "; fi")
    recipe(recipes, "test.Hard", STAY, deps=HARD_AND_SOFT.format(kind="HARD"))
    recipe(recipes, "test.Soft", STAY, deps=HARD_AND_SOFT.format(kind="SOFT"))
    async with Nucleus(root) as nucleus:
        await deploy(nucleus, recipes, "test.Hard", "test.Soft")
        hard, soft = await running_pid(root, "test.Hard"), await running_pid(root, "test.Soft")
        os.kill(pid(root, "test.Dependency"), 9)  # it fails from now on
        await nucleus.wait_states(["test.Dependency"], [State.BROKEN], timeout=30)
        await nucleus.wait_states(["test.Hard"], [State.INSTALLED], timeout=30)
        status = nucleus.status["test.Hard"]
        assert "waiting for its HARD dependency test.Dependency, which is BROKEN" \
            in status.reason
        assert not alive(hard) and alive(soft)
        views: dict[str, ComponentView] = await host(nucleus).ask(ListComponents())
        assert not views["test.Hard"].live and not views["test.Hard"].present
        assert views["test.Soft"].live
        # A deployment starts them again (and clears BROKEN).
        (root / "work" / "test.Dependency" / "started").unlink()
        await deploy(nucleus, recipes, "test.Hard", "test.Soft")
        await nucleus.wait_states(["test.Dependency", "test.Hard"], [State.RUNNING], timeout=20)
        assert pid(root, "test.Soft") == soft


async def test_each_host_message(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Base", STAY)
    recipe(recipes, "test.App", STAY, deps=HARD_AND_SOFT.replace(
        "test.Dependency", "test.Base").format(kind="HARD"))
    async with Nucleus(root) as nucleus:
        components = host(nucleus)
        await deploy(nucleus, recipes, "test.App")
        base, app = await running_pid(root, "test.Base"), await running_pid(root, "test.App")

        views: dict[str, ComponentView] = await components.ask(ListComponents())
        assert {n: (v.state, v.live) for n, v in views.items()} == {
            "test.Base": (State.RUNNING, True), "test.App": (State.RUNNING, True)}

        # RestartComponent: the component and its HARD dependent, new processes.
        assert await components.ask(RestartComponent("test.Base"), timeout=30) == "SUCCEEDED"
        new_base, new_app = (await running_pid(root, "test.Base"),
                             await running_pid(root, "test.App"))
        assert new_base != base and new_app != app and not alive(base) and not alive(app)

        # StopComponent: nothing left; RestartComponent brings it back.
        assert await components.ask(StopComponent("test.App"), timeout=30) == "SUCCEEDED"
        assert not alive(new_app)
        views = await components.ask(ListComponents())
        assert views["test.App"].stopped and not views["test.App"].live
        assert await components.ask(RestartComponent("test.App"), timeout=30) == "SUCCEEDED"
        assert await running_pid(root, "test.App") != new_app

        # ReconfigureComponent: a subprocess component needs a restart to take it.
        assert await components.ask(
            ReconfigureComponent("test.App", {"x": 1}), timeout=30) is False

        # ReportState: what UpdateState said shows on the record, through the IPC path.
        nucleus.ipc.update_state("test.App", "ERRORED")
        with anyio.fail_after(5):
            while nucleus.status["test.App"].reported != "ERRORED":
                await anyio.sleep(0.01)
        await components.ask(ReportState("test.App", "RUNNING"))
        assert nucleus.status["test.App"].reported == "RUNNING"

        # StartComponent of a running one, of a reserved name: refused, host unharmed.
        deployed = nucleus.status["test.App"].deployed
        with pytest.raises(ComponentStartFailed, match="already running"):
            await components.ask(StartComponent(deployed), timeout=30)
        with pytest.raises(UnknownComponent, match="test.Nope is not deployed"):
            await components.ask(StopComponent("test.Nope"))
        assert components.alive

        # RemoveComponent: process gone, record gone, token revoked.
        token = nucleus.ipc.token_of("test.App")
        assert token is not None
        app_pid = pid(root, "test.App")
        await components.ask(RemoveComponent("test.App"), timeout=30)
        assert not alive(app_pid) and "test.App" not in nucleus.status
        with pytest.raises(UnauthorizedError):
            nucleus.ipc.authenticate(token)


async def test_a_component_may_not_take_the_cli_identity(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "aws.greengrass.Cli", STAY)
    async with Nucleus(root) as nucleus:
        cli_token = (root / "cli.token").read_text()
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"aws.greengrass.Cli": "1.0.0"}))
        assert record.status is DeploymentStatus.FAILED
        assert "the runtime's own identity" in record.cause
        assert nucleus.ipc.authenticate(cli_token) == "aws.greengrass.Cli"


async def test_a_deferral_reaches_the_deployment_queue(tmp_path: Path) -> None:
    async with Nucleus(tmp_path / "root") as nucleus:
        nucleus.ipc.defer_component_update("test.App", "deployment-1", "busy", 1500)
        deployments = nucleus.system.lookup(DEPLOYMENTS)
        with anyio.fail_after(5):
            while not (found := await deployments.ask(Deferrals("deployment-1"))):
                await anyio.sleep(0.01)
        assert [(d.component, d.message, d.recheck_after_ms) for d in found] == [
            ("test.App", "busy", 1500)]


async def test_a_restarted_deployment_queue_adopts_what_runs(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Svc", STAY)
    recipe(recipes, "test.Other", STAY)
    async with Nucleus(root) as nucleus:
        await deploy(nucleus, recipes, "test.Svc")
        before = await running_pid(root, "test.Svc")
        deployments = nucleus.system.lookup(DEPLOYMENTS)
        with pytest.raises(TypeError):  # a message it does not take crashes it
            await deployments.ask("not a deployment")
        # Its mailbox outlives the instance: this waits for the restarted one.
        assert await deployments.ask(Deferrals("none"), timeout=10) == []
        assert any(e.kind == "child_restarting" and e.child == DEPLOYMENTS
                   for e in nucleus.system.events)
        # Restarted: what ran was adopted, not started twice, and deployments go on.
        await deploy(nucleus, recipes, "test.Other")
        assert pid(root, "test.Svc") == before and alive(before)
        assert nucleus.status["test.Svc"].history == [State.NEW, State.INSTALLED, State.RUNNING]


async def test_a_deployment_that_cannot_record_itself_fails_cleanly(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Svc", STAY)
    async with Nucleus(root) as nucleus:
        # The deployment marker's folder is a file: every write of it fails.
        (root / "deployments").mkdir(exist_ok=True)
        (root / "deployments").rmdir()
        (root / "deployments").write_text("in the way")
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Svc": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.FAILED_NO_STATE_CHANGE
        assert "Not a directory (ENOTDIR)" in record.cause, record.cause
        assert "test.Svc" not in nucleus.status
        (root / "deployments").unlink()
        await deploy(nucleus, recipes, "test.Svc")


async def test_a_recipe_nested_too_deeply_fails_the_deployment_not_the_runtime(
        tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Svc", STAY)
    (recipes / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Svc": "1.0.0"}))
        assert record.status is DeploymentStatus.FAILED
        assert "deep.yaml" in record.cause or "nested too deeply" in record.cause
        (recipes / "deep.yaml").unlink()
        await deploy(nucleus, recipes, "test.Svc")


async def test_a_component_s_own_configuration_update_survives_restarts(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Svc", "echo \"greeting={configuration:/Greeting}\"; " + STAY,
           extra="ComponentConfiguration:\n  DefaultConfiguration:\n    Greeting: hello\n")
    lines: list[str] = []
    nucleus = Nucleus(root)
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        await deploy(nucleus, recipes, "test.Svc")
        await running_pid(root, "test.Svc")
        # What the component itself does over IPC (UpdateConfiguration).
        await nucleus.ipc.update_configuration("test.Svc", [], {"Greeting": "bonjour"})
        with anyio.fail_after(10):
            while '"bonjour"' not in (root / "state.json").read_text():
                await anyio.sleep(0.02)
        os.kill(pid(root, "test.Svc"), 9)  # the component crashes and is restarted
        with anyio.fail_after(20):
            while "greeting=bonjour" not in lines:
                await anyio.sleep(0.02)
    lines.clear()
    nucleus = Nucleus(root)
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:  # and the runtime restarts
        await nucleus.wait_states(["test.Svc"], [State.RUNNING], timeout=20)
        with anyio.fail_after(20):
            while "greeting=bonjour" not in lines:
                await anyio.sleep(0.02)
        assert nucleus.configuration.get_nowait("test.Svc", ["Greeting"]) == "bonjour"


async def test_list_components_pages_large_replies(tmp_path: Path) -> None:
    from actors.ipc import CLI_IDENTITY, CallContext

    recipes, root = tmp_path / "recipes", tmp_path / "root"
    for name in ("test.A", "test.B", "test.C"):
        recipe(recipes, name, "true")
    big = "x" * (3 << 20)  # 3 MiB of configuration each: 9 MiB in all
    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge=dict.fromkeys(("test.A", "test.B", "test.C"), "1.0.0"),
            configuration_update={n: {"merge": {"blob": big}}
                                  for n in ("test.A", "test.B", "test.C")}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        cli = CallContext(CLI_IDENTITY)

        async def pages(request: dict[str, object]) -> list[list[str]]:
            found, token = [], None
            while True:
                answer = await nucleus.ipc.call(cli, "ListComponents",
                                                {**request, **({"nextToken": token} if token
                                                               else {})})
                found.append([c["componentName"] for c in answer["components"]])
                token = answer.get("nextToken")
                if not token:
                    return found

        # Under the reply budget (8 MiB): two pages, nothing lost or repeated.
        assert await pages({}) == [["test.A", "test.B"], ["test.C"]]
        assert await pages({"maxResults": 1}) == [["test.A"], ["test.B"], ["test.C"]]
