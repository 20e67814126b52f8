"""The recipe half of the package store under the runtime's root: the recipe of
every component version a deployment used, so the runtime can restart (and roll
back) without the folders a local deployment came from. Artifacts live beside
them in the :class:`~actors.artifacts.ArtifactStore` (``packages/artifacts``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from ..layout import Layout
from ..recipe import Platform, Recipe, load_recipe


class PackageStore:
    def __init__(self, layout: Layout, device: Platform) -> None:
        self.recipes = layout.recipes
        self.device = device

    def recipe_path(self, name: str, version: str, suffix: str = ".yaml") -> Path:
        # JSON recipes keep .json, everything else is YAML (a superset of JSON).
        return self.recipes / f"{name}@{version}{'.json' if suffix == '.json' else '.yaml'}"

    def load(self) -> dict[str, list[Recipe]]:
        """Every stored recipe, by component name."""
        found: dict[str, list[Recipe]] = {}
        if self.recipes.is_dir():
            for path in sorted(self.recipes.glob("*@*.*")):
                if path.name.startswith("."):
                    continue  # a copy interrupted by a crash
                recipe = load_recipe(path, self.device)
                found.setdefault(recipe.name, []).append(recipe)
        return found

    def add(self, recipe: Recipe) -> None:
        """Copy a recipe into the store, under a temporary name renamed into place,
        so a crash leaves no half-copied recipe."""
        target = self.recipe_path(recipe.name, recipe.version, recipe.path.suffix.lower())
        self.recipes.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        if recipe.path == target:  # brought as a document (parsed where it is to be kept)
            tmp.write_bytes(orjson.dumps(recipe.raw))
            tmp.replace(target)
        elif recipe.path.resolve() != target.resolve():
            shutil.copyfile(recipe.path, tmp)
            tmp.replace(target)

    def collect_garbage(self, keep: set[tuple[str, str]]) -> None:
        """Remove stored recipes that no deployed component uses."""
        if self.recipes.is_dir():
            for path in self.recipes.glob("*@*.*"):
                name, _, version = path.stem.partition("@")
                if (name, version) not in keep:
                    path.unlink(missing_ok=True)
