"""The recipe model: what a loaded, validated Greengrass v2 recipe holds."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded on first use: a runtime with nothing deployed never needs it
    from semantic_version import NpmSpec, Version

from ..kernel import ActorsError

RECIPE_FORMAT = "2020-01-25"
LIFECYCLE_STEPS = ("bootstrap", "install", "startup", "run", "shutdown", "recover", "uninstall")


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
    #: Seconds, or a text with recipe variables (``{configuration:/timeout}``)
    #: that is read as a number when the step runs (see :meth:`seconds`).
    timeout: float | str | None = None
    requires_privilege: bool = False
    setenv: Mapping[str, str] = field(default_factory=dict)
    skipif: tuple[str, str] | None = None  # ("onpath", exe) or ("exists", path)
    skipif_negated: bool = False  # Skipif: "!onpath exe": skip when it is NOT found
    bootstrap_on_rollback: bool = False  # Bootstrap.BootstrapOnRollback

    def seconds(self, interpolate: Callable[[str], str]) -> float | None:
        """The step's timeout in seconds, its recipe variables filled in by
        ``interpolate``; raises :class:`RecipeError` when that is not a positive number."""
        if not isinstance(self.timeout, str):
            return self.timeout
        text = interpolate(self.timeout)
        value = timeout_seconds(text)
        if value is None:
            raise RecipeError(f"Timeout {self.timeout!r} is {text!r} once its variables are "
                              "filled in; expected a positive number of seconds")
        return value


def timeout_seconds(value: Any) -> float | None:
    """A Timeout value as seconds (a number, or a text holding one), or None when it is not
    a positive number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


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
    def scheme(self) -> str:
        """``s3``, ``greengrass``, ``docker`` or ``file`` (lower case)."""
        scheme, colon, _rest = self.uri.partition(":")
        return scheme.lower() if colon else ""

    @property
    def filename(self) -> str:
        """The name under ``{artifacts:path}``: the URI's last path segment (a
        ``docker:`` image is no file: its filename is its whole reference)."""
        if self.scheme == "docker":
            return self.uri
        rest = self.uri.partition(":")[2] if self.scheme else self.uri
        return rest.rstrip("/").rsplit("/", 1)[-1]


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
    #: False when no manifest matches the platform: it cannot be deployed there.
    matched: bool = True
    #: What a user should know but that does not stop the recipe (each names the
    #: file and key): a placeholder Digest, no manifest for this platform...
    warnings: tuple[str, ...] = ()
    error_reset_time: float | None = None  # Lifecycle.ErrorResetTime, seconds

    @property
    def semver(self) -> Version:
        from semantic_version import Version

        return Version(self.version)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"
