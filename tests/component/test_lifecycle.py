"""Components run real lifecycle subprocesses under supervision."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.nucleus import DeploymentError, Nucleus
from actors.recipe import RecipeError, load_recipe

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


async def test_the_hello_world_recipe_runs_to_finished(tmp_path: Path) -> None:
    lines: list[str] = []
    async with Nucleus(tmp_path / "root") as nucleus:
        nucleus.on_output(lambda name, line: lines.append(line))
        await nucleus.deploy(REPO / "recipes", REPO / "recipes" / "artifacts",
                             {"com.example.HelloWorld": "1.0.0"},
                             {"com.example.HelloWorld": {"Message": "tests"}})
        await nucleus.wait_states(["com.example.HelloWorld"], [State.FINISHED], timeout=30)
        status = nucleus.status["com.example.HelloWorld"]
    assert status.history == [State.NEW, State.INSTALLED, State.RUNNING, State.FINISHED]
    assert any(line.startswith("Hello, tests!") for line in lines)
    log = tmp_path / "root" / "work" / "com.example.HelloWorld" / "greetings.log"
    assert log.read_text().startswith("Hello, tests!")


async def test_dependencies_start_first_and_a_failing_run_is_restarted(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    write(recipes, "base.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.Base
        ComponentVersion: "1.0.0"
        Lifecycle:
          Startup: echo base started
          Shutdown: echo base shutdown
    """)
    # Fails on its first run (no marker file yet), succeeds on the second.
    write(recipes, "app.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.App
        ComponentVersion: "2.1.0"
        ComponentDependencies:
          test.Base:
            VersionRequirement: ">=1.0.0"
        Manifests:
          - Platform: {os: linux}
            Lifecycle:
              Run: "if [ -e marker ]; then echo second run; else touch marker; exit 3; fi"
              Recover: echo recovering
    """)
    events: list[tuple[str, State]] = []
    async with Nucleus(tmp_path / "root") as nucleus:
        nucleus.on_state(lambda name, state, reason: events.append((name, state)))
        await nucleus.deploy(recipes, tmp_path / "artifacts", {"test.App": "2.1.0"})
        await nucleus.wait_states(["test.App"], [State.FINISHED], timeout=30)
    app = [s for n, s in events if n == "test.App"]
    assert events[:3] == [("test.Base", State.NEW), ("test.Base", State.INSTALLED),
                          ("test.Base", State.STARTING)]
    assert app[:4] == [State.NEW, State.INSTALLED, State.RUNNING, State.ERRORED]
    assert app[-1] == State.FINISHED and app.count(State.RUNNING) == 2
    # At shutdown the base component's shutdown step ran: STOPPING then FINISHED.
    base = [s for n, s in events if n == "test.Base"]
    assert base[-2:] == [State.STOPPING, State.FINISHED]


async def test_a_failing_install_step_names_the_component_and_code(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    write(recipes, "bad.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.BadInstall
        ComponentVersion: "1.0.0"
        Lifecycle:
          Install: exit 7
          Run: echo never
    """)
    reasons: list[str] = []
    async with Nucleus(tmp_path / "root") as nucleus:
        nucleus.on_state(lambda name, state, reason: reasons.append(reason))
        with pytest.raises(Exception, match="test.BadInstall: install step exited with code 7"):
            await nucleus.deploy(recipes, tmp_path, {"test.BadInstall": "1.0.0"})
    assert "component test.BadInstall: install step exited with code 7" in reasons


async def test_a_step_timeout_kills_the_process(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    write(recipes, "slow.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.Slow
        ComponentVersion: "1.0.0"
        Lifecycle:
          Install:
            Script: sleep 30
            Timeout: 0.3
    """)
    async with Nucleus(tmp_path / "root") as nucleus:
        with anyio.fail_after(10), pytest.raises(Exception, match="install step timed out"):
            await nucleus.deploy(recipes, tmp_path, {"test.Slow": "1.0.0"})


def test_malformed_recipes_get_one_clear_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "x.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.X
        ComponentVersion: "1.x"
    """)
    with pytest.raises(RecipeError, match=r"x.yaml: ComponentVersion: '1.x' is not a semantic"):
        load_recipe(bad)
    bad = write(tmp_path, "y.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.Y
        ComponentVersion: "1.0.0"
        Lifecycle:
          Instal: echo typo
    """)
    with pytest.raises(RecipeError,
                       match=r"y.yaml: Lifecycle.Instal: unknown key; did you mean Install\?"):
        load_recipe(bad)
    bad = write(tmp_path, "z.json", '{"RecipeFormatVersion": "2020-01-25", ')
    with pytest.raises(RecipeError, match=r"z.json: not valid JSON"):
        load_recipe(bad)


def test_a_missing_dependency_names_who_needs_it(tmp_path: Path) -> None:
    from actors.nucleus import load_recipes, plan

    write(tmp_path, "a.yaml", """\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: test.A
        ComponentVersion: "1.0.0"
        ComponentDependencies:
          test.Missing: {VersionRequirement: "^1.0.0"}
    """)
    with pytest.raises(DeploymentError, match="test.A 1.0.0 needs component test.Missing"):
        plan(load_recipes(tmp_path), {"test.A": "1.0.0"})
