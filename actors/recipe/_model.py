"""The recipe model: what a loaded, validated Greengrass v2 recipe holds."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded on first use: a runtime with nothing deployed never needs it
    from semantic_version import NpmSpec, Version

from ..kernel import ActorsError

RECIPE_FORMAT = "2020-01-25"
LIFECYCLE_STEPS = ("bootstrap", "install", "startup", "run", "shutdown", "recover")


class RecipeError(ActorsError, ValueError):
    """A recipe is malformed: the message names the file, the key path and what is expected."""


class DependencyType(enum.StrEnum):
    HARD = "HARD"  # the dependent restarts when the dependency does
    SOFT = "SOFT"  # only the start order


@dataclass(frozen=True)
class Dependency:
    name: str
    requirement: str  # the npm-style range as written
    type: DependencyType = DependencyType.HARD

    @property
    def spec(self) -> NpmSpec:
        from semantic_version import NpmSpec

        return NpmSpec(self.requirement)


@dataclass(frozen=True)
class Step:
    """One lifecycle step: a shell script (or, for in-process components, a
    ``python:module:attr`` entry point), its timeout and conditions."""

    script: str
    timeout: float | None = None
    requires_privilege: bool = False
    setenv: Mapping[str, str] = field(default_factory=dict)
    skipif: tuple[str, str] | None = None  # ("onpath", exe) or ("exists", path)


@dataclass(frozen=True)
class Permission:
    read: str = "OWNER"  # NONE | OWNER | ALL
    execute: str = "NONE"


@dataclass(frozen=True)
class Artifact:
    uri: str
    digest: str | None = None  # base64 of the digest, as Greengrass writes it
    algorithm: str = "SHA-256"
    unarchive: str = "NONE"  # NONE | ZIP
    permission: Permission = field(default_factory=Permission)

    @property
    def filename(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Recipe:
    """A recipe resolved for one platform: the first matching manifest's lifecycle
    and artifacts."""

    path: Path
    name: str
    version: str
    description: str
    publisher: str
    component_type: str
    default_configuration: Mapping[str, Any]
    dependencies: Mapping[str, Dependency]
    lifecycle: Mapping[str, Step]
    setenv: Mapping[str, str]
    artifacts: tuple[Artifact, ...]
    platform: str  # the label of the platform it was resolved for
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def semver(self) -> Version:
        from semantic_version import Version

        return Version(self.version)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"
