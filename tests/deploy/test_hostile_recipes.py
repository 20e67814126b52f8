"""A hostile recipe fails its deployment with a clear cause; the runtime goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe

pytestmark = pytest.mark.anyio


async def test_a_deeply_nested_recipe_fails_its_deployment_only(tmp_path: Path) -> None:
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    (bad / "deep.yaml").write_text(
        'RecipeFormatVersion: "2020-01-25"\nComponentName: x.Deep\nComponentVersion: "1.0.0"\n'
        "ComponentConfiguration:\n  DefaultConfiguration:\n    a: " + "[" * 20_000 +
        "]" * 20_000 + "\n")
    recipe(good, "test.Ok", lifecycle="Startup: echo ok\n")
    async with Nucleus(tmp_path / "root") as nucleus:
        failed = await nucleus.deploy(DeploymentRequest(recipe_dir=bad, merge={"x.Deep": "1.0.0"}))
        assert failed.detailed_status is DetailedStatus.FAILED_NO_STATE_CHANGE
        assert f"{bad / 'deep.yaml'}: the recipe nests mappings and lists deeper than 64" \
            in failed.cause
        ok = await nucleus.deploy(DeploymentRequest(recipe_dir=good, merge={"test.Ok": "1.0.0"}))
        assert ok.detailed_status is DetailedStatus.SUCCESSFUL
        assert nucleus.status["test.Ok"].state is State.RUNNING


# One loop only: 1,200 components take ~15 s to deploy.
@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}),
                                                        id="uvloop")])
async def test_a_long_dependency_chain_deploys(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    length = 1_200
    for i in range(length):
        deps = f"c{i + 1}:\n  VersionRequirement: ^1.0.0\n" if i + 1 < length else ""
        recipe(recipes, f"c{i}", deps=deps)
    async with Nucleus(tmp_path / "root") as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"c0": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        assert len(record.components) == length
