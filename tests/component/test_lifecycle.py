"""Components run real lifecycle subprocesses under supervision."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus
from actors.recipe import RecipeError, load_recipe

from ._serving import PLAIN_CALLS

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def recipe(folder: Path, name: str, version: str = "1.0.0", lifecycle: str = "",
           deps: str = "", config: str = "") -> Path:
    body = f"""\
RecipeFormatVersion: "2020-01-25"
ComponentName: {name}
ComponentVersion: "{version}"
"""
    if config:
        body += "ComponentConfiguration:\n  DefaultConfiguration:\n" + textwrap.indent(
            textwrap.dedent(config), "    ")
    if deps:
        body += "ComponentDependencies:\n" + textwrap.indent(textwrap.dedent(deps), "  ")
    body += "Lifecycle:\n" + textwrap.indent(textwrap.dedent(lifecycle), "  ")
    return write(folder, f"{name}-{version}.yaml", body)


async def test_the_hello_world_recipe_runs_to_finished(tmp_path: Path) -> None:
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=REPO / "recipes", artifact_dir=REPO / "recipes" / "artifacts",
            merge={"com.example.HelloWorld": "1.0.0"},
            configuration_update={"com.example.HelloWorld": {"merge": {"Message": "tests"}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["com.example.HelloWorld"], [State.FINISHED], timeout=30)
        status = nucleus.status["com.example.HelloWorld"]
    assert status.history == [State.NEW, State.INSTALLED, State.RUNNING, State.FINISHED]
    assert any(line.startswith("Hello, tests!") for line in lines)
    work = tmp_path / "root" / "work" / "com.example.HelloWorld"
    assert (work / "greetings.log").read_text().startswith("Hello, tests!")
    log = (tmp_path / "root" / "logs" / "com.example.HelloWorld.log").read_text()
    assert '"message":"Hello, tests!' in log and '"thread":"install"' in log


async def test_dependencies_start_first_and_a_failing_run_is_restarted(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Base", lifecycle="""\
        Startup: echo base started
        Shutdown: echo base shutdown
    """)
    # Fails on its first run (no marker file yet), succeeds on the second.
    recipe(recipes, "test.App", "2.1.0", deps="""\
        test.Base:
          VersionRequirement: ">=1.0.0"
    """, lifecycle="""\
        Run: "if [ -e marker ]; then echo second run; else touch marker; exit 3; fi"
        Recover: echo recovering
    """)
    events: list[tuple[str, State]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_state(lambda name, state, reason: events.append((name, state)))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.App": "2.1.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.App"], [State.FINISHED], timeout=30)
    app = [s for n, s in events if n == "test.App"]
    assert events[:3] == [("test.Base", State.NEW), ("test.Base", State.INSTALLED),
                          ("test.Base", State.STARTING)]
    assert app[:4] == [State.NEW, State.INSTALLED, State.RUNNING, State.ERRORED]
    assert app[-1] == State.FINISHED and app.count(State.RUNNING) == 2
    # At shutdown the base component's shutdown step ran: STOPPING then FINISHED.
    base = [s for n, s in events if n == "test.Base"]
    assert base[-2:] == [State.STOPPING, State.FINISHED]


async def test_three_errors_make_a_component_broken(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Crashy", lifecycle="""\
        Run: echo failing; exit 1
    """)
    nucleus = Nucleus(tmp_path / "root")
    async with nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Crashy": "1.0.0"}))
        await nucleus.wait_states(["test.Crashy"], [State.BROKEN], timeout=30)
        status = nucleus.status["test.Crashy"]
        assert status.history.count(State.ERRORED) == 3
        assert "3 errors within 3600 s" in status.reason


async def test_skipif_skips_the_install_step(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Skip", lifecycle="""\
        Install:
          Script: echo installing; touch installed
          Skipif: exists installed
        Run: echo ran
    """)
    lines: list[str] = []
    for _ in range(2):
        nucleus = Nucleus(tmp_path / "root")
        nucleus.on_output(lambda name, line: lines.append(line))
        async with nucleus:
            await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                   merge={"test.Skip": "1.0.0"}))
            await nucleus.wait_states(["test.Skip"], [State.FINISHED], timeout=30)
    # The first start installed; every later start (the restart, then the
    # second runtime) skipped it.
    assert lines.count("installing") == 1
    assert lines.count("ran") >= 2


async def test_a_failing_install_step_names_the_component_and_code(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.BadInstall", lifecycle="""\
        Install: exit 7
        Run: echo never
    """)
    async with Nucleus(tmp_path / "root") as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.BadInstall": "1.0.0"}))
    assert record.detailed_status is DetailedStatus.FAILED_ROLLBACK_COMPLETE
    assert "component test.BadInstall: install step exited with code 7" in record.cause


async def test_a_step_timeout_kills_the_process(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Slow", lifecycle="""\
        Install:
          Script: sleep 30
          Timeout: 0.3
    """)
    async with Nucleus(tmp_path / "root") as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Slow": "1.0.0"}))
    assert "install step timed out after 0.3 s" in record.cause


async def test_requires_privilege_is_refused_clearly_when_not_root(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Root", lifecycle="""\
        Run:
          Script: id -u
          RequiresPrivilege: true
    """)
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Root": "1.0.0"}))
        if os.geteuid() == 0:
            await nucleus.wait_states(["test.Root"], [State.FINISHED], timeout=30)
    if os.geteuid() == 0:
        assert lines == ["0"]
    else:
        assert "RequiresPrivilege: true, but the runtime is not running as root" in record.cause


def test_malformed_recipes_get_one_clear_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "x.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.X
        ComponentVersion: "1.x"
    """)
    with pytest.raises(RecipeError, match=r"x.yaml: ComponentVersion: '1.x' is not a semantic"):
        load_recipe(bad)
    bad = write(tmp_path, "z.json", '{"RecipeFormatVersion": "2020-01-25", ')
    with pytest.raises(RecipeError, match=r"z.json: not valid JSON"):
        load_recipe(bad)


async def test_bootstrap_runs_once_per_version_install_at_every_start(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    for version in ("1.0.0", "1.1.0"):
        recipe(recipes, "test.Boot", version, lifecycle=f"""\
            Bootstrap: echo bootstrap {version}
            Install: echo install {version}
            Startup: echo startup {version}
        """)
    lines: list[str] = []
    for version in ("1.0.0", "1.0.0", "1.1.0"):
        nucleus = Nucleus(tmp_path / "root")
        nucleus.on_output(lambda name, line: lines.append(line))
        async with nucleus:
            await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                   merge={"test.Boot": version}))
    assert [line for line in lines if line.startswith("bootstrap")] == \
        ["bootstrap 1.0.0", "bootstrap 1.1.0"]
    assert lines.count("install 1.0.0") == 3  # at every start: one per runtime here


@pytest.mark.parametrize("handler", ["async", "plain"])
async def test_requests_reach_the_handler_and_a_failing_one_only_fails_its_asker(
        tmp_path: Path, handler: str) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Serving", config=f"Handler: {handler}\n", lifecycle="""\
        Run:
          Script: "false"
          Setenv:
            EDGE_ACTORS_IN_PROCESS: tests.component._serving:serving
    """)
    PLAIN_CALLS.clear()
    nucleus = Nucleus(tmp_path / "root")
    async with nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                               merge={"test.Serving": "1.0.0"}))
        await nucleus.wait_states(["test.Serving"], [State.RUNNING], timeout=30)
        for message in ("one", "two"):
            if handler == "async":
                assert await nucleus.ask("test.Serving", message) == ("echo", message)
            else:
                with pytest.raises(ValueError, match=f"cannot take '{message}'"):
                    await nucleus.ask("test.Serving", message)
        assert nucleus.status["test.Serving"].state is State.RUNNING
        stats = nucleus.system.lookup("test.Serving").statistics()
        assert (stats.failed, stats.restarts) == (0, 0)  # the component itself never failed
    assert PLAIN_CALLS == ([] if handler == "async" else ["one", "two"])  # once per request
