"""Hypothesis drives the deployment path with recipes of any structure and size:
every deployment ends with a final record, and the runtime stays up."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.deploy import DeploymentRequest, DeploymentStatus, DetailedStatus
from actors.nucleus import Nucleus

NAMES = st.sampled_from(["fz.A", "fz.B", "fz.C", "aws.greengrass.Cli", "", "fz.A\n", 7])
VERSIONS = st.sampled_from(["1.0.0", "2.0.0", "1.0", "x", "", None, 1, "1.0.0\n"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20)
STEPS = st.sampled_from(["true", "exit 3", "echo hi", "sleep 0.05", "{configuration:/x}"])


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    recipe: dict[str, Any] = {"RecipeFormatVersion": draw(st.sampled_from(
        ["2020-01-25", "2019", None]))}
    recipe["ComponentName"] = draw(NAMES)
    recipe["ComponentVersion"] = draw(VERSIONS)
    if draw(st.booleans()):
        recipe["ComponentDependencies"] = draw(st.dictionaries(NAMES.filter(
            lambda n: isinstance(n, str)), st.fixed_dictionaries({}, optional={
                "VersionRequirement": st.sampled_from([">=1.0.0", "^2", "nonsense", 3]),
                "DependencyType": st.sampled_from(["HARD", "SOFT", "MEDIUM"])}), max_size=3))
    if draw(st.booleans()):
        recipe["ComponentConfiguration"] = {"DefaultConfiguration": draw(JSON)}
    lifecycle = draw(st.one_of(
        st.fixed_dictionaries({}, optional={"Install": STEPS, "Run": STEPS, "Startup": STEPS}),
        JSON))
    recipe["Manifests"] = draw(st.sampled_from([
        [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle}],
        [{"Platform": {"os": "windows"}, "Lifecycle": lifecycle}],
        [{"Lifecycle": lifecycle}], "not a list"]))
    for key in draw(st.lists(st.text(max_size=5), max_size=2)):
        recipe[key] = draw(JSON)
    return recipe


counter = itertools.count()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})], indirect=True)
async def test_no_recipe_takes_the_runtime_down(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outcomes: list[DetailedStatus] = []

    async with Nucleus(root) as nucleus:

        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(recipes(), min_size=1, max_size=3), st.data())
        def deploy_them(drawn: list[dict[str, Any]], data: st.DataObject) -> None:
            folder = tmp_path / f"recipes-{next(counter)}"
            folder.mkdir()
            for i, recipe in enumerate(drawn):
                (folder / f"r{i}.json").write_bytes(orjson.dumps(recipe, default=str))
            merge = {str(r["ComponentName"]): str(r["ComponentVersion"]) for r in drawn}
            record = anyio.from_thread.run(nucleus.deploy, DeploymentRequest(
                recipe_dir=folder, merge=merge))
            assert record.status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED)
            assert "Traceback" not in record.cause
            assert not record.cause.startswith("internal error"), record.cause
            outcomes.append(record.detailed_status)

        await anyio.to_thread.run_sync(deploy_them)
        assert DetailedStatus.FAILED_NO_STATE_CHANGE in outcomes
        # Still up, and still deploying.
        good = tmp_path / "good"
        good.mkdir()
        (good / "ok.yaml").write_text(
            'RecipeFormatVersion: "2020-01-25"\nComponentName: fz.Ok\n'
            'ComponentVersion: "1.0.0"\nManifests:\n  - Lifecycle:\n      Run: "true"\n')
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=good,
                                                        merge={"fz.Ok": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
