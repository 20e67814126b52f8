"""Greengrass v2 component recipes: the model, loading with validation, platforms.

Keys match case-insensitively, as in the Greengrass nucleus. Pure: no I/O but
reading recipe files.
"""

from ._load import get, load_recipe, load_recipe_dir, parse_recipe
from ._model import (
    LIFECYCLE_STEPS,
    RECIPE_FORMAT,
    Artifact,
    Dependency,
    DependencyType,
    Permission,
    Recipe,
    RecipeError,
    Step,
)
from ._platform import Platform, detect_platform, other_platform, platform_matches
from ._semver import npm_range

__all__ = [
    "LIFECYCLE_STEPS",
    "RECIPE_FORMAT",
    "Artifact",
    "Dependency",
    "DependencyType",
    "Permission",
    "Platform",
    "Recipe",
    "RecipeError",
    "Step",
    "detect_platform",
    "get",
    "load_recipe",
    "load_recipe_dir",
    "npm_range",
    "other_platform",
    "parse_recipe",
    "platform_matches",
]
