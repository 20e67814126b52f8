"""Version resolution across groups, and configuration MERGE/RESET."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.config import ConfigError, apply_update
from actors.deploy import ResolutionError, resolve, start_order
from actors.recipe import Platform, Recipe, parse_recipe

DEVICE = Platform("linux", "amd64")


def make(name: str, version: str, **deps: str) -> Recipe:
    data: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25", "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": {d.replace("_", "."): {"VersionRequirement": r}
                                  for d, r in deps.items()},
    }
    return parse_recipe(data, Path(f"{name}-{version}.yaml"), DEVICE)


def catalog(*recipes: Recipe) -> dict[str, list[Recipe]]:
    out: dict[str, list[Recipe]] = {}
    for r in recipes:
        out.setdefault(r.name, []).append(r)
    return out


def versions(chosen: dict[str, Recipe]) -> dict[str, str]:
    return {n: r.version for n, r in chosen.items()}


def test_the_highest_version_satisfying_every_range_wins() -> None:
    available = catalog(
        make("app", "1.0.0", lib=">=1.1.0 <2.0.0"),
        make("lib", "1.0.0"), make("lib", "1.4.2"), make("lib", "2.0.0"))
    assert versions(resolve({"g": {"app": "1.0.0"}}, available)) == \
        {"app": "1.0.0", "lib": "1.4.2"}


def test_ranges_intersect_across_groups_and_dependents() -> None:
    available = catalog(
        make("app", "1.0.0", lib="^1.0.0"), make("tool", "1.0.0", lib="<1.3.0"),
        make("lib", "1.2.0"), make("lib", "1.5.0"))
    chosen = resolve({"A": {"app": "1.0.0"}, "B": {"tool": "1.0.0"}}, available)
    assert versions(chosen)["lib"] == "1.2.0"


def test_backtracks_when_a_later_dependency_conflicts() -> None:
    available = catalog(
        make("app", "1.0.0", lib="*", util="1.0.0"),
        make("lib", "2.0.0", util="2.0.0"), make("lib", "1.0.0", util="1.0.0"),
        make("util", "1.0.0"), make("util", "2.0.0"))
    assert versions(resolve({"g": {"app": "1.0.0"}}, available)) == \
        {"app": "1.0.0", "lib": "1.0.0", "util": "1.0.0"}


def test_a_conflict_names_both_requirers() -> None:
    available = catalog(make("lib", "1.0.0"), make("lib", "1.0.1"))
    with pytest.raises(ResolutionError) as info:
        resolve({"A": {"lib": "1.0.0"}, "B": {"lib": "1.0.1"}}, available)
    assert str(info.value) == ("no version of lib satisfies every requirement: group A "
                               "requires =1.0.0, group B requires =1.0.1 "
                               "(available: 1.0.0, 1.0.1)")


def test_a_missing_dependency_names_who_needs_it() -> None:
    with pytest.raises(ResolutionError, match=r"app 1.0.0 requires \^2.0.0 \(available: none\)"):
        resolve({"g": {"app": "1.0.0"}}, catalog(make("app", "1.0.0", gone="^2.0.0")))


def test_cycles_are_refused() -> None:
    available = catalog(make("a", "1.0.0", b="*"), make("b", "1.0.0", c="*"),
                        make("c", "1.0.0", a="*"))
    with pytest.raises(ResolutionError, match="dependency cycle: a -> b -> c -> a"):
        resolve({"g": {"a": "1.0.0"}}, available)


def test_start_order_puts_dependencies_first() -> None:
    available = catalog(make("app", "1.0.0", model="*", runtime="*"),
                        make("model", "1.0.0", runtime="*"), make("runtime", "1.0.0"))
    assert start_order(resolve({"g": {"app": "1.0.0"}}, available)) == \
        ["runtime", "model", "app"]


DEFAULTS = {"Interval": 60, "Topic": "ml/dlr/image-classification",
            "Nested": {"a": 1, "b": [1, 2]}}


def test_reset_then_merge_in_that_order() -> None:
    current = {"Interval": 5, "Topic": "custom", "Nested": {"a": 9, "b": [3]}, "Extra": True}
    updated = apply_update("c", current, DEFAULTS, {
        "reset": ["/Topic", "/Nested/a", "/Extra"], "merge": {"Nested": {"c": 3}, "Interval": 10},
    })
    assert updated == {"Interval": 10, "Topic": "ml/dlr/image-classification",
                       "Nested": {"a": 1, "b": [3], "c": 3}}
    assert apply_update("c", current, DEFAULTS, {"reset": [""]}) == DEFAULTS
    # Lists are replaced, not merged.
    assert apply_update("c", DEFAULTS, DEFAULTS, {"merge": {"Nested": {"b": [7]}}})[
        "Nested"]["b"] == [7]


def test_bad_updates_name_the_component() -> None:
    with pytest.raises(ConfigError, match=r"c: configurationUpdate.reset: 'Topic' is not a JSON"):
        apply_update("c", {}, DEFAULTS, {"reset": ["Topic"]})
    with pytest.raises(ConfigError, match="c: configurationUpdate has unknown keys"):
        apply_update("c", {}, DEFAULTS, {"MERG": {}})


def test_a_recipe_for_another_platform_is_never_chosen() -> None:
    arm_only = parse_recipe({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": "lib", "ComponentVersion": "2.0.0",
        "Manifests": [{"Platform": {"os": "linux", "architecture": "aarch64"},
                       "Lifecycle": {"Run": "echo arm"}}]}, Path("lib-2.0.0.yaml"), DEVICE)
    assert not arm_only.matched
    available = catalog(make("app", "1.0.0", lib="*"), make("lib", "1.0.0"), arm_only)
    assert versions(resolve({"g": {"app": "1.0.0"}}, available))["lib"] == "1.0.0"
    with pytest.raises(ResolutionError, match=r"app 1.0.0 requires >=2.0.0 \(available: 1.0.0, "
                       r"2.0.0 \(no manifest for linux/amd64\)\)"):
        resolve({"g": {"app": "1.0.0"}}, catalog(make("app", "1.0.0", lib=">=2.0.0"),
                                                 make("lib", "1.0.0"), arm_only))
