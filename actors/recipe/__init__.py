"""Greengrass v2 component recipes: loading and validation.

This is the part the running pieces need today (name, version, configuration,
dependencies, the lifecycle of the manifest for this platform); the full recipe
model (platform matching rules, artifacts, selections, variables of every kind)
grows here. Keys match case-insensitively, as in the Greengrass nucleus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..kernel import ActorsError

RECIPE_FORMAT = "2020-01-25"
LIFECYCLE_STEPS = ("install", "startup", "run", "shutdown", "recover")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


class RecipeError(ActorsError, ValueError):
    """A recipe is malformed: the message names the file, the key path and what is expected."""


@dataclass(frozen=True)
class Step:
    """One lifecycle step: a shell script, its timeout and whether it runs as root."""

    script: str
    timeout: float | None = None
    requires_privilege: bool = False
    setenv: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    version: str
    description: str
    publisher: str
    component_type: str
    default_configuration: Mapping[str, Any]
    dependencies: Mapping[str, str]  # name -> VersionRequirement
    lifecycle: Mapping[str, Step]
    setenv: Mapping[str, str]


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive key lookup, as the Java nucleus does."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def _expect(path: Path, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise RecipeError(f"{path}: {where}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _step(path: Path, where: str, raw: Any) -> Step:
    if isinstance(raw, str):
        return Step(raw)
    _expect(path, where, raw, dict, "a script string or a mapping with Script")
    script = _get(raw, "Script")
    _expect(path, f"{where}.Script", script, str, "a shell script string")
    timeout = _get(raw, "Timeout")
    if timeout is not None:
        _expect(path, f"{where}.Timeout", timeout, (int, float), "a number of seconds")
    setenv = _get(raw, "Setenv") or {}
    _expect(path, f"{where}.Setenv", setenv, dict, "a mapping of environment variables")
    return Step(script, float(timeout) if timeout is not None else None,
                bool(_get(raw, "RequiresPrivilege")), {str(k): str(v) for k, v in setenv.items()})


def _lifecycle(path: Path, where: str, raw: Any) -> tuple[dict[str, Step], dict[str, str]]:
    _expect(path, where, raw, dict, "a mapping of lifecycle steps")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    for key, value in raw.items():
        name = str(key).lower()
        if name == "setenv":
            _expect(path, f"{where}.{key}", value, dict, "a mapping of environment variables")
            setenv = {str(k): str(v) for k, v in value.items()}
        elif name in LIFECYCLE_STEPS:
            steps[name] = _step(path, f"{where}.{key}", value)
        else:
            raise RecipeError(
                f"{path}: {where}.{key}: unknown lifecycle step; expected one of "
                f"Setenv, Install, Startup, Run, Shutdown, Recover"
            )
    if "startup" in steps and "run" in steps:
        raise RecipeError(f"{path}: {where}: give Startup or Run, not both")
    return steps, setenv


def _manifest_matches(platform: Mapping[str, Any] | None) -> bool:
    if not platform:
        return True
    os_name = _get(platform, "os")
    return os_name in (None, "*", "linux", "all")


def load_recipe(path: str | Path) -> Recipe:
    """Load a JSON or YAML recipe file; raises :class:`RecipeError` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc.strerror}") from None
    try:
        data = orjson.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: "
                          f"{exc}") from None
    _expect(path, "recipe", data, dict, "a mapping at the top level")
    fmt = str(_get(data, "RecipeFormatVersion") or "")
    if fmt != RECIPE_FORMAT:
        raise RecipeError(f"{path}: RecipeFormatVersion: expected '{RECIPE_FORMAT}', got {fmt!r}")
    name = _expect(path, "ComponentName", _get(data, "ComponentName"), str, "a component name")
    version = str(_get(data, "ComponentVersion") or "")
    if not _SEMVER.match(version):
        raise RecipeError(f"{path}: ComponentVersion: {version!r} is not a semantic version "
                          "(major.minor.patch)")
    config = _get(data, "ComponentConfiguration") or {}
    _expect(path, "ComponentConfiguration", config, dict, "a mapping")
    default = _get(config, "DefaultConfiguration") or {}
    _expect(path, "ComponentConfiguration.DefaultConfiguration", default, dict, "a mapping")
    deps_raw = _get(data, "ComponentDependencies") or {}
    _expect(path, "ComponentDependencies", deps_raw, dict, "a mapping of component names")
    dependencies = {}
    for dep, spec in deps_raw.items():
        where = f"ComponentDependencies.{dep}"
        _expect(path, where, spec, dict, "a mapping with VersionRequirement")
        dependencies[str(dep)] = str(_get(spec, "VersionRequirement") or "*")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    manifests = _get(data, "Manifests") or []
    _expect(path, "Manifests", manifests, list, "a list of manifests")
    for i, manifest in enumerate(manifests):
        _expect(path, f"Manifests[{i}]", manifest, dict, "a mapping")
        if _manifest_matches(_get(manifest, "Platform")):
            lifecycle = _get(manifest, "Lifecycle")
            if lifecycle is not None:
                steps, setenv = _lifecycle(path, f"Manifests[{i}].Lifecycle", lifecycle)
            break
    else:
        if manifests:
            raise RecipeError(f"{path}: Manifests: no manifest matches this platform (linux)")
    if not steps and _get(data, "Lifecycle") is not None:
        steps, setenv = _lifecycle(path, "Lifecycle", _get(data, "Lifecycle"))
    return Recipe(
        path=path,
        name=name,
        version=version,
        description=str(_get(data, "ComponentDescription") or ""),
        publisher=str(_get(data, "ComponentPublisher") or ""),
        component_type=str(_get(data, "ComponentType") or "aws.greengrass.generic"),
        default_configuration=default,
        dependencies=dependencies,
        lifecycle=steps,
        setenv=setenv,
    )
