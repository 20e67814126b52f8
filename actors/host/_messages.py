"""What the component host accepts, and what it answers: typed messages only.

Deployments (and, through the deployment queue, the CLI's restart and stop)
ask the host; nobody else changes a running component.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..component import State
from ..kernel import ActorsError
from ..recipe import Recipe


@dataclass(frozen=True)
class Deployed:
    """One component as a deployment wants it: its recipe and effective configuration."""

    recipe: Recipe
    configuration: Mapping[str, Any]

    def same_as(self, other: Deployed) -> bool:
        return (self.recipe.name, self.recipe.version, self.configuration) == \
            (other.recipe.name, other.recipe.version, other.configuration)


@dataclass(frozen=True)
class StartComponent:
    """Start a component (its dependencies must be running): replies with its
    :class:`State` once started (RUNNING or FINISHED), or fails with
    :class:`ComponentStartFailed`. A start clears the component's error count."""

    deployed: Deployed


@dataclass(frozen=True)
class RemoveComponent:
    """Stop a component and forget it: its IPC token and policies are revoked."""

    name: str


@dataclass(frozen=True)
class StopComponent:
    """Stop a deployed component until it is restarted or deployed again (StopComponent)."""

    name: str


@dataclass(frozen=True)
class RestartComponent:
    """Stop a deployed component and its HARD dependents, then start them again
    (RestartComponent); a stopped, finished or broken one is started."""

    name: str


@dataclass(frozen=True)
class ReconfigureComponent:
    """A new configuration for a running component of the same version: replies True
    when it took it in place (in-process components), False when it needs a restart."""

    name: str
    configuration: Mapping[str, Any]


@dataclass(frozen=True)
class ReportState:
    """What a component reported with UpdateState (RUNNING or ERRORED)."""

    name: str
    state: str


@dataclass(frozen=True)
class ListComponents:
    """Replies with ``{name: ComponentView}`` for every component the host knows."""


@dataclass(frozen=True)
class ComponentView:
    """A component as the host sees it at one moment.

    ``live``: the host supervises it (running, starting or being restarted).
    ``stopped``: stopped by StopComponent. ``reported``: its last UpdateState.
    """

    name: str
    version: str
    state: State
    reason: str
    deployed: Deployed
    live: bool
    stopped: bool
    reported: str

    @property
    def present(self) -> bool:
        """Nothing to start: supervised, or done (FINISHED, stopped) rather than failed."""
        return self.live or self.state is State.FINISHED


class ComponentStartFailed(ActorsError, RuntimeError):
    """A component did not start: names it, its version and its state or error."""


class UnknownComponent(ActorsError, LookupError):
    """The host has no such component: names it and says where to look."""
