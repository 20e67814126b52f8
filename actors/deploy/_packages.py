"""The package store under the runtime's root: the recipes and artifacts of every
component version a deployment used, so the runtime can restart (and roll back)
without the folders a local deployment came from."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..recipe import Platform, Recipe, load_recipe


class PackageStore:
    def __init__(self, root: Path, device: Platform) -> None:
        self.recipes = root / "packages" / "recipes"
        self.artifacts = root / "packages" / "artifacts"
        self.device = device

    def recipe_path(self, name: str, version: str, suffix: str = ".yaml") -> Path:
        # JSON recipes keep .json, everything else is YAML (a superset of JSON).
        return self.recipes / f"{name}@{version}{'.json' if suffix == '.json' else '.yaml'}"

    def artifact_path(self, name: str, version: str) -> Path:
        return self.artifacts / name / version

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

    def add(self, recipe: Recipe, artifact_dir: Path | None) -> None:
        """Copy a recipe (and its artifacts from a local artifact folder) into the store.

        Each lands under a temporary name and is renamed into place, so a crash
        leaves no half-copied package.
        """
        target = self.recipe_path(recipe.name, recipe.version, recipe.path.suffix.lower())
        self.recipes.mkdir(parents=True, exist_ok=True)
        if recipe.path.resolve() != target.resolve():
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(recipe.path, tmp)
            tmp.replace(target)
        source = artifact_dir / recipe.name / recipe.version if artifact_dir else None
        dest = self.artifact_path(recipe.name, recipe.version)
        if source is not None and source.is_dir():
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{recipe.version}.", dir=dest.parent))
            shutil.copytree(source, staging, dirs_exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            staging.replace(dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)

    def collect_garbage(self, keep: set[tuple[str, str]]) -> None:
        """Remove stored versions that no deployed component uses."""
        if self.recipes.is_dir():
            for path in self.recipes.glob("*@*.*"):
                name, _, version = path.stem.partition("@")
                if (name, version) not in keep:
                    path.unlink(missing_ok=True)
        if self.artifacts.is_dir():
            for folder in self.artifacts.glob("*/*"):
                if (folder.parent.name, folder.name) not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
