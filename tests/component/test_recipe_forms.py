"""Recipe forms read when a step runs: a Timeout from configuration, a negated Skipif."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from .test_lifecycle import recipe

pytestmark = pytest.mark.anyio


async def test_a_timeout_from_configuration_is_read_when_the_step_runs(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Timed", config="startupTimeoutSeconds: 0.3\n", lifecycle="""\
        Startup:
          Script: sleep 30
          Timeout: "{configuration:/startupTimeoutSeconds}"
    """)
    async with Nucleus(tmp_path / "root") as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Timed": "1.0.0"}))
        assert "startup step timed out after 0.3 s" in record.cause
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Timed": "1.0.0"}, configuration_update={
                "test.Timed": {"merge": {"startupTimeoutSeconds": "soon"}}}))
    assert record.detailed_status is DetailedStatus.FAILED_ROLLBACK_COMPLETE
    assert "component test.Timed: startup step: Timeout '{configuration:/startupTimeoutSeconds}' " \
        "is 'soon' once its variables are filled in; expected a positive number of seconds " \
        "(Lifecycle.Startup.Timeout in " in record.cause


async def test_a_negated_skipif_skips_unless_found(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Skip", lifecycle="""\
        Install:
          Skipif: "!exists wanted.flag"
          Script: touch installed
        Startup:
          Skipif: "!onpath sh"
          Script: touch started
    """)
    async with Nucleus(tmp_path / "root") as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Skip": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
    work = tmp_path / "root" / "work" / "test.Skip"
    assert not (work / "installed").exists()  # no wanted.flag: skipped
    assert (work / "started").exists()  # sh is on PATH: run
