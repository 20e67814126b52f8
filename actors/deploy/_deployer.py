"""The deployment actor: a queue of deployments applied one at a time.

Applying one: plan (resolve versions across groups, compute configurations;
a failure here changes nothing), record the previous state durably, copy the
packages into the store, stop what changes (reverse dependency order), start
what is new (dependency order), then write the new state. On failure, with
ROLLBACK, the previous versions and configurations are started again.

Crash safety: ``state.json`` (what is deployed) and ``deployments/current.json``
(the deployment in progress and the state before it) are written atomically.
If the runtime dies mid-deployment, the next start finds ``current.json`` and
rolls back to the state it holds, so nothing is ever left half-applied.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..artifacts import (
    Access,
    ArtifactError,
    ArtifactSpec,
    Permission,
    ProgressCallback,
    S3Settings,
    Unarchive,
    local_folder,
)
from ..component import Reconfigure
from ..config import ConfigError, JsonStore, apply_update, deep_merge
from ..kernel import Actor, ActorRef, ActorsError, ChildSpec, Restart, start_child
from ..recipe import Artifact, DependencyType, Platform, Recipe, RecipeError, load_recipe_dir
from ._model import (
    DeploymentRecord,
    DeploymentRequest,
    DeploymentStatus,
    DetailedStatus,
    FailureHandling,
    now,
)
from ._packages import PACKAGES, PackageStore
from ._resolve import resolve, start_order

if TYPE_CHECKING:
    from ..artifacts import ArtifactStore

log = logging.getLogger("actors.deploy")

HISTORY_LENGTH = 20


@dataclass(frozen=True)
class Deployed:
    """One running component: its recipe and effective configuration."""

    recipe: Recipe
    configuration: Mapping[str, Any]

    def same_as(self, other: Deployed) -> bool:
        return (self.recipe.name, self.recipe.version, self.configuration) == \
            (other.recipe.name, other.recipe.version, other.configuration)


# (recipe, effective configuration, its direct dependencies that are deployed) -> actor
ComponentFactory = Callable[[Recipe, Mapping[str, Any], Mapping[str, "Deployed"]], Actor]


def empty_state() -> dict[str, Any]:
    return {"groups": {}, "components": {}}


def artifact_spec(artifact: Artifact) -> ArtifactSpec:
    """A recipe's artifact entry as the artifact store takes it."""
    return ArtifactSpec(artifact.uri, artifact.digest, artifact.algorithm,
                        Unarchive(artifact.unarchive),
                        Permission(Access(artifact.permission.read),
                                   Access(artifact.permission.execute)))


@dataclass(frozen=True)
class RestartComponent:
    """Stop a deployed component (and its HARD dependents) and start them again."""

    name: str


@dataclass(frozen=True)
class StopComponent:
    """Stop a deployed component until it is restarted or deployed again."""

    name: str


class DeploymentFailed(ActorsError, RuntimeError):
    """A deployment failed; the record says how and what was rolled back."""


class DeploymentActor(Actor):
    """Receives :class:`DeploymentRequest` messages; replies with a :class:`DeploymentRecord`."""

    def __init__(self, root: Path, device: Platform, components: ActorRef,
                 factory: ComponentFactory, on_deployed: Callable[[set[str]], None],
                 state_of: Callable[[str], str], s3: S3Settings | None = None,
                 progress: ProgressCallback | None = None,
                 on_reconfigured: Callable[[str, Mapping[str, Any]], None] | None = None
                 ) -> None:
        self.root = root
        self.on_reconfigured = on_reconfigured
        self.progress = progress
        self._s3 = s3
        self._artifacts: ArtifactStore | None = None
        self.state_of = state_of
        self.device = device
        self.components = components
        self.factory = factory
        self.on_deployed = on_deployed
        self.packages = PackageStore(root, device)
        self.state_store = JsonStore(root / "state.json")
        self.current = JsonStore(root / "deployments" / "current.json")
        self.history_store = JsonStore(root / "deployments" / "history.json")
        self.running: dict[str, Deployed] = {}
        self.stopped: dict[str, Deployed] = {}  # by StopComponent, until restarted

    # -- start-up ----------------------------------------------------------

    async def on_stop(self) -> None:
        if self._artifacts is not None:
            await self._artifacts.aclose()

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store, made when a deployment first needs it."""
        if self._artifacts is None:
            from ..artifacts import ArtifactStore

            self._artifacts = ArtifactStore(self.root / PACKAGES, self._s3)
        return self._artifacts

    async def on_start(self) -> None:
        interrupted = await anyio.to_thread.run_sync(self.current.load)
        if interrupted is not None:
            await self._recover(interrupted)
        state = await anyio.to_thread.run_sync(self.state_store.load, empty_state())
        wanted = await anyio.to_thread.run_sync(self._deployed_from, state)
        await self._switch({}, wanted)

    async def _recover(self, interrupted: Mapping[str, Any]) -> None:
        """Roll back a deployment the previous runtime did not finish."""
        request = interrupted.get("request", {})
        log.warning("deployment %s was interrupted by a runtime stop; rolling back",
                    request.get("deploymentId"))
        await anyio.to_thread.run_sync(self.state_store.save, interrupted["previous"])
        record = DeploymentRecord(
            request.get("deploymentId", "?"), request.get("groupName", "?"),
            DeploymentStatus.FAILED, DetailedStatus.FAILED_ROLLBACK_COMPLETE,
            "the runtime stopped during the deployment; the previous state was restored",
            interrupted.get("created", 0.0), now(),
            {n: c["version"] for n, c in interrupted["previous"]["components"].items()})
        await anyio.to_thread.run_sync(self._append_history, record)
        await anyio.to_thread.run_sync(self.current.remove)

    def _deployed_from(self, state: Mapping[str, Any]) -> dict[str, Deployed]:
        stored = self.packages.load()
        out = {}
        for name, entry in state["components"].items():
            recipe = next((r for r in stored.get(name, []) if r.version == entry["version"]),
                          None)
            if recipe is None:
                raise RecipeError(f"{self.root / 'state.json'}: component {name} "
                                  f"{entry['version']} is deployed but its recipe is missing "
                                  f"from {self.packages.recipes}; deploy it again")
            out[name] = Deployed(recipe, entry["configuration"])
        return out

    # -- deployments -------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        # Component restarts and stops go through this mailbox too, so they never
        # interleave with a deployment's changes.
        if isinstance(message, DeploymentRequest):
            return await self._deploy(message)
        if isinstance(message, RestartComponent | StopComponent):
            return await self._restart_or_stop(message)
        raise TypeError(f"deployments: expected a DeploymentRequest, got {message!r}")

    async def _restart_or_stop(self, message: RestartComponent | StopComponent) -> str:
        deployed = self.running.get(message.name) or self.stopped.get(message.name)
        if deployed is None:
            raise DeploymentFailed(f"component {message.name} is not deployed")
        if isinstance(message, StopComponent):
            await self._stop(message.name)
            self.stopped[message.name] = deployed
            return "SUCCEEDED"
        if message.name in self.stopped:
            del self.stopped[message.name]
            await self._start(deployed)
            return "SUCCEEDED"
        current = dict(self.running)
        await self._switch(current, current, force={message.name})
        return "SUCCEEDED"

    @staticmethod
    def history_at(root: Path) -> list[DeploymentRecord]:
        """The recorded deployments under a runtime root, oldest first (works offline)."""
        store = JsonStore(root / "deployments" / "history.json")
        return [DeploymentRecord.from_json(r) for r in store.load([])]

    def _append_history(self, record: DeploymentRecord) -> None:
        records = [r for r in self.history_store.load([])
                   if r["deploymentId"] != record.deployment_id]
        records.append(record.to_json())
        self.history_store.save(records[-HISTORY_LENGTH:])

    async def _deploy(self, request: DeploymentRequest) -> DeploymentRecord:
        created = now()
        log.info("deployment %s: IN_PROGRESS", request.deployment_id)
        previous_state = await anyio.to_thread.run_sync(self.state_store.load, empty_state())
        try:
            plan = await anyio.to_thread.run_sync(self._plan, request, previous_state)
        except (RecipeError, ConfigError, ArtifactError) as exc:
            return await self._finish(request, created, DetailedStatus.FAILED_NO_STATE_CHANGE,
                                      str(exc), previous_state)
        new_state, new_recipes = plan
        await anyio.to_thread.run_sync(self.current.save, {
            "request": request.to_json(), "previous": previous_state, "created": created})
        try:
            for recipe in new_recipes:
                await anyio.to_thread.run_sync(self.packages.add, recipe)
            stored = await anyio.to_thread.run_sync(self._deployed_from, new_state)
            # Every artifact is in place (and checked) before anything is stopped: those
            # of versions new to the device, and of recipes this request brings.
            installed = {(n, c["version"]) for n, c in previous_state["components"].items()}
            brought = {(r.name, r.version) for r in new_recipes}
            for deployed in stored.values():
                recipe = deployed.recipe
                # An --artifactDir folder for it is copied again, as the Greengrass CLI does.
                if (recipe.name, recipe.version) in installed - brought and local_folder(
                        request.artifact_dir, recipe.name, recipe.version) is None:
                    continue
                await self.artifacts.fetch(recipe.name, recipe.version,
                                           [artifact_spec(a) for a in recipe.artifacts],
                                           progress=self.progress,
                                           artifact_dir=request.artifact_dir)
            await self._switch(self.running, stored)
        except Exception as exc:
            cause = str(exc) if not exc.__cause__ else f"{exc.__cause__}"
            log.error("deployment %s failed: %s", request.deployment_id, cause)
            if request.failure_handling is FailureHandling.DO_NOTHING:
                return await self._finish(request, created,
                                          DetailedStatus.FAILED_ROLLBACK_NOT_REQUESTED, cause,
                                          new_state)
            try:
                old = await anyio.to_thread.run_sync(self._deployed_from, previous_state)
                await self._switch(self.running, old)
            except Exception as rollback_exc:
                return await self._finish(request, created,
                                          DetailedStatus.FAILED_UNABLE_TO_ROLLBACK,
                                          f"{cause}; rollback failed too: {rollback_exc}",
                                          previous_state)
            return await self._finish(request, created, DetailedStatus.FAILED_ROLLBACK_COMPLETE,
                                      cause, previous_state)
        return await self._finish(request, created, DetailedStatus.SUCCESSFUL, "", new_state)

    async def _finish(self, request: DeploymentRequest, created: float,
                      detailed: DetailedStatus, cause: str, state: Mapping[str, Any]
                      ) -> DeploymentRecord:
        status = DeploymentStatus.SUCCEEDED if detailed is DetailedStatus.SUCCESSFUL \
            else DeploymentStatus.FAILED
        record = DeploymentRecord(request.deployment_id, request.group, status, detailed, cause,
                                  created, now(),
                                  {n: c["version"] for n, c in state["components"].items()})
        # Order matters for crash safety: the state, then the history, then the marker.
        await anyio.to_thread.run_sync(self.state_store.save, state)
        await anyio.to_thread.run_sync(self._append_history, record)
        await anyio.to_thread.run_sync(self.current.remove)
        if detailed is DetailedStatus.SUCCESSFUL:
            keep = {(n, c["version"]) for n, c in state["components"].items()}
            await anyio.to_thread.run_sync(self.packages.collect_garbage, keep)
            await self.artifacts.gc(keep)
        log.info("deployment %s: %s %s %s", request.deployment_id, status, detailed, cause)
        return record

    def _plan(self, request: DeploymentRequest, previous: Mapping[str, Any]
              ) -> tuple[dict[str, Any], list[Recipe]]:
        """The new state and the recipes to copy into the store. Changes nothing."""
        available = self.packages.load()
        new_recipes: list[Recipe] = []
        if request.recipe_dir is not None:
            for name, recipes in load_recipe_dir(request.recipe_dir, self.device).items():
                have = {r.version for r in available.get(name, [])}
                for recipe in recipes:
                    new_recipes.append(recipe)
                    if recipe.version not in have:
                        available.setdefault(name, []).append(recipe)
                    else:  # the folder's copy replaces the stored one
                        available[name] = [r for r in available[name]
                                           if r.version != recipe.version] + [recipe]
        groups = copy.deepcopy(previous["groups"])
        roots = groups.setdefault(request.group, {})
        for name in request.remove:
            if name not in roots:
                raise RecipeError(f"deployment {request.deployment_id}: cannot remove {name}: "
                                  f"it is not a root component of group {request.group}")
            del roots[name]
        roots.update(request.merge)
        if not roots:
            del groups[request.group]
        chosen = resolve(groups, available)
        unknown = set(request.configuration_update) - set(chosen)
        if unknown:
            raise ConfigError(f"deployment {request.deployment_id}: configuration update for "
                              f"{', '.join(sorted(unknown))}, which the deployment does not "
                              "include")
        components = {}
        for name, recipe in chosen.items():
            before = previous["components"].get(name)
            base = recipe.default_configuration
            if before is not None:
                # Keep the device's values across versions; new defaults fill the gaps.
                base = deep_merge(recipe.default_configuration, before["configuration"])
            config = apply_update(name, base, recipe.default_configuration,
                                  request.configuration_update.get(name))
            components[name] = {"version": recipe.version, "configuration": config}
        used = {(n, r.version) for n, r in chosen.items()}
        return ({"groups": groups, "components": components},
                [r for r in new_recipes if (r.name, r.version) in used])

    # -- switching the running set ----------------------------------------

    async def _switch(self, old: Mapping[str, Deployed], new: Mapping[str, Deployed],
                      force: set[str] | None = None) -> None:
        """Stop what differs (and its HARD dependents), then start what is missing.
        ``force`` names components to restart even if unchanged. A component whose
        configuration alone changed takes it in place when it can (in-process ones)."""
        for name in [n for n in old if n in new and n not in (force or set())
                     and not new[n].same_as(old[n])
                     and new[n].recipe.version == old[n].recipe.version]:
            if await self._reconfigure(name, new[name]):
                old = {**old, name: new[name]}
        changed = {n for n in old if n not in new or not new[n].same_as(old[n])}
        changed |= (force or set()) & set(old)
        # A component restarts with its HARD dependencies.
        grew = True
        while grew:
            grew = False
            for name, deployed in new.items():
                if name in old and name not in changed and any(
                        d.type is DependencyType.HARD and d.name in changed
                        for d in deployed.recipe.dependencies.values()):
                    changed.add(name)
                    grew = True
        old_order = start_order({n: d.recipe for n, d in old.items()})
        for name in reversed(old_order):
            if name in changed:
                await self._stop(name)
        self.on_deployed(set(new))
        for name in start_order({n: d.recipe for n, d in new.items()}):
            if name in self.running or (name in self.stopped and name not in changed):
                continue
            self.stopped.pop(name, None)
            await self._start(new[name])

    async def _reconfigure(self, name: str, deployed: Deployed) -> bool:
        try:
            ref = self.system.lookup(name)
        except LookupError:
            return False  # not running (FINISHED, BROKEN): it starts again with the new one
        if not await ref.ask(Reconfigure(deployed.configuration), timeout=30.0):
            return False
        self.running[name] = deployed
        if self.on_reconfigured is not None:
            self.on_reconfigured(name, deployed.configuration)
        return True

    async def _stop(self, name: str) -> None:
        self.running.pop(name, None)
        try:
            ref = self.system.lookup(name)
        except LookupError:
            return  # FINISHED or BROKEN components have already left the supervisor
        await ref.stop()

    async def _start(self, deployed: Deployed) -> None:
        recipe = deployed.recipe
        present = {d: self.running[d] for d in recipe.dependencies if d in self.running}
        spec = ChildSpec(recipe.name,
                         lambda: self.factory(recipe, deployed.configuration, present),
                         restart=Restart.TRANSIENT, shutdown=30.0, depends_on=tuple(present))
        self.running[recipe.name] = deployed
        try:
            await start_child(self.components, spec)
        except Exception:
            self.running.pop(recipe.name, None)
            raise
        state = self.state_of(recipe.name)
        if state in ("BROKEN", "ERRORED"):
            raise DeploymentFailed(f"component {recipe.name} {recipe.version} is {state} "
                                   "after its start")
