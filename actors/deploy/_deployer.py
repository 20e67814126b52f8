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

The deployment actor never touches a component itself: it asks the component
host (typed messages: start, remove, reconfigure, restart, stop, list), which
owns the running components. A restarted deployment actor asks the host what
runs and starts only what is missing. No failure of a deployment, whatever
raised it (a recipe, a full disk, a bug), crashes the actor or leaves the
deployment without a final status.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..artifacts import (
    Access,
    ArtifactSpec,
    Permission,
    ProgressCallback,
    S3Settings,
    Unarchive,
    local_folder,
)
from ..config import ConfigError, JsonStore, apply_update, deep_merge
from ..host import (
    ComponentView,
    Deployed,
    ListComponents,
    ReconfigureComponent,
    RemoveComponent,
    RestartComponent,
    StartComponent,
    StopComponent,
)
from ..ipc import Deferral
from ..kernel import Actor, ActorRef, ActorsError, Later
from ..layout import Layout
from ..recipe import (
    Artifact,
    DependencyType,
    Platform,
    Recipe,
    RecipeError,
    get,
    load_recipe_dir,
    parse_recipe,
)
from ._model import (
    ComponentUpdatePolicy,
    DeploymentRecord,
    DeploymentRequest,
    DeploymentStatus,
    DetailedStatus,
    FailureHandling,
    now,
)
from ._packages import PackageStore
from ._resolve import resolve, start_order

if TYPE_CHECKING:
    from ..artifacts import ArtifactStore

log = logging.getLogger("actors.deploy")

HISTORY_LENGTH = 20


def empty_state() -> dict[str, Any]:
    # "deployments": group -> the deployment that set its roots (absent in older files).
    return {"groups": {}, "components": {}, "deployments": {}}


def artifact_spec(artifact: Artifact) -> ArtifactSpec:
    """A recipe's artifact entry as the artifact store takes it."""
    return ArtifactSpec(artifact.uri, artifact.digest, artifact.algorithm,
                        Unarchive(artifact.unarchive),
                        Permission(Access(artifact.permission.read),
                                   Access(artifact.permission.execute)))


@dataclass(frozen=True)
class ConfigurationUpdated:
    """A running component changed its own configuration (UpdateConfiguration):
    kept in the deployed state, so it survives restarts of the component and of
    the runtime, until a deployment's RESET."""

    name: str
    version: str
    configuration: Mapping[str, Any]


@dataclass(frozen=True)
class Deferrals:
    """Replies with the DeferComponentUpdate requests components sent for a deployment."""

    deployment_id: str


def describe(exc: BaseException) -> str:
    """A deployment failure's cause in words: an errno by name and meaning with the
    file it concerns, our own errors as they are, anything else with its type."""
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{where}{os.strerror(exc.errno)} ({name})"
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to be read (RecursionError)"
    if isinstance(exc, ActorsError | ValueError | LookupError):
        return str(exc)
    return f"internal error ({type(exc).__name__}: {exc}); please report it"


async def _failed(exc: BaseException) -> Any:
    raise exc


class ComponentUpdates(Protocol):
    """What a deployment asks running components (the IPC service does it):
    SubscribeToComponentUpdates and SubscribeToValidateConfigurationUpdates."""

    def notify_component_update(self, deployment_id: str, *, post: bool = False
                                ) -> set[str]: ...

    async def validate_configuration(self, component: str, configuration: Mapping[str, Any],
                                     deployment_id: str, timeout: float = 60.0
                                     ) -> tuple[str, str] | None: ...


class DeferralBoard:
    """The DeferComponentUpdate answers components sent, by deployment; the
    deployment that notified them waits here for them."""

    def __init__(self) -> None:
        self._by_deployment: dict[str, list[Deferral]] = {}
        self._changed = anyio.Event()

    def add(self, deferral: Deferral) -> None:
        self._by_deployment.setdefault(deferral.deployment_id, []).append(deferral)
        if len(self._by_deployment) > HISTORY_LENGTH:  # the oldest deployment's go
            del self._by_deployment[next(iter(self._by_deployment))]
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, deployment_id: str) -> list[Deferral]:
        return list(self._by_deployment.get(deployment_id, []))

    async def wait(self, deployment_id: str, components: set[str], since: int,
                   timeout: float) -> list[Deferral]:
        """The answers after the first ``since`` of ``deployment_id``, once every one
        of ``components`` answered or ``timeout`` seconds passed."""
        with anyio.move_on_after(timeout):
            while {d.component for d in self.of(deployment_id)[since:]} < components:
                await self._changed.wait()
        return self.of(deployment_id)[since:]


class Cancellations:
    """CancelLocalDeployment requests, by deployment id, as the nucleus takes them.

    A queued deployment that was cancelled is not applied (CANCELED). The one in
    progress is stopped while it has changed nothing yet (planning, copying
    recipes, fetching artifacts, waiting for components to defer or to validate
    their configuration): CANCELED, nothing changed. Once it stops and starts
    components it is past cancelling and finishes as it would have.
    """

    def __init__(self) -> None:
        self._asked: set[str] = set()
        self._scopes: dict[str, anyio.CancelScope] = {}
        #: the deployment being applied, if any (the others pending are QUEUED)
        self.current: str | None = None

    def cancel(self, deployment_id: str) -> None:
        self._asked.add(deployment_id)
        scope = self._scopes.get(deployment_id)
        if scope is not None:
            scope.cancel()

    def asked(self, deployment_id: str) -> bool:
        return deployment_id in self._asked

    @contextlib.contextmanager
    def cancellable(self, deployment_id: str) -> Iterator[anyio.CancelScope]:
        """A scope that a cancel of ``deployment_id`` cancels (at once if it came first)."""
        with anyio.CancelScope() as scope:
            if deployment_id in self._asked:
                scope.cancel()
            self._scopes[deployment_id] = scope
            try:
                yield scope
            finally:
                del self._scopes[deployment_id]

    def forget(self, deployment_id: str) -> None:
        self._asked.discard(deployment_id)
        if self.current == deployment_id:
            self.current = None


class ConfigurationRejected(ActorsError, ValueError):
    """A running component said the deployment's configuration for it is invalid."""


class DeploymentFailed(ActorsError, RuntimeError):
    """A deployment failed; the record says how and what was rolled back."""


class DeploymentActor(Actor):
    """Receives :class:`DeploymentRequest` messages; replies with a :class:`DeploymentRecord`.

    Also takes the CLI's :class:`RestartComponent` / :class:`StopComponent` (so they
    never interleave with a deployment's changes) and passes them to the host, and
    keeps the DeferComponentUpdate requests (:class:`~actors.ipc.Deferral`) that
    components send, by deployment (:class:`Deferrals`)."""

    def __init__(self, layout: Layout, device: Platform, host: ActorRef,
                 s3: S3Settings | None = None, progress: ProgressCallback | None = None,
                 pending: set[str] | None = None, updates: ComponentUpdates | None = None,
                 deferrals: DeferralBoard | None = None,
                 cancellations: Cancellations | None = None) -> None:
        self.layout = layout
        self.progress = progress
        self._s3 = s3
        self._artifacts: ArtifactStore | None = None
        self.device = device
        self.host = host
        self.packages = PackageStore(layout, device)
        self.state_store = JsonStore(layout.state)
        self.current = JsonStore(layout.current_deployment)
        self.history_store = JsonStore(layout.history)
        self.updates = updates
        self.deferrals = deferrals or DeferralBoard()
        # Ids queued or in progress (the embedder adds them): one leaves when it ends.
        self.pending = pending if pending is not None else set()
        self.cancellations = cancellations or Cancellations()

    # -- start-up ----------------------------------------------------------

    async def on_stop(self) -> None:
        if self._artifacts is not None:
            await self._artifacts.aclose()

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store, made when a deployment first needs it."""
        if self._artifacts is None:
            from ..artifacts import ArtifactStore

            self._artifacts = ArtifactStore(self.layout.packages, self._s3)
        return self._artifacts

    async def on_start(self) -> None:
        # Whatever goes wrong here is logged, never raised: a deployment actor that
        # cannot start would take the runtime down with it.
        try:
            interrupted = await anyio.to_thread.run_sync(self.current.load)
            if interrupted is not None:
                await self._recover(interrupted)
            state = await anyio.to_thread.run_sync(self.state_store.load, empty_state())
            wanted = await anyio.to_thread.run_sync(self._deployed_from, state, False)
            # What the host already runs stays as it is (a restarted deployment actor
            # adopts it); only what is missing starts.
            await self._switch(wanted, keep_going=True)
        except Exception as exc:
            log.error("the deployed components could not all be started: %s", describe(exc))

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

    def _deployed_from(self, state: Mapping[str, Any], strict: bool = True
                       ) -> dict[str, Deployed]:
        """The components of a state, with their stored recipes. A missing recipe
        raises (``strict``) or is logged and left out."""
        stored = self.packages.load()
        out = {}
        for name, entry in state["components"].items():
            recipe = next((r for r in stored.get(name, []) if r.version == entry["version"]),
                          None)
            if recipe is None:
                problem = RecipeError(
                    f"{self.layout.state}: component {name} {entry['version']} is deployed "
                    f"but its recipe is missing from {self.packages.recipes}; deploy it again")
                if strict:
                    raise problem
                log.error("%s", problem)
                continue
            out[name] = Deployed(recipe, entry["configuration"])
        return out

    # -- messages ----------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        # Component restarts and stops go through this mailbox too, so they never
        # interleave with a deployment's changes.
        if isinstance(message, DeploymentRequest):
            return await self._deploy(message)
        if isinstance(message, RestartComponent | StopComponent):
            try:
                return await self.host.ask(message, timeout=None)
            except ActorsError as exc:  # to the asker, not a crash of this actor
                return Later(_failed(exc))
        if isinstance(message, ConfigurationUpdated):
            return await self._configuration_updated(message)
        if isinstance(message, Deferrals):
            return self.deferrals.of(message.deployment_id)
        raise TypeError(f"deployments: expected a DeploymentRequest, got {message!r}")

    async def _configuration_updated(self, message: ConfigurationUpdated) -> None:
        try:
            state = await anyio.to_thread.run_sync(self.state_store.load, empty_state())
            entry = state["components"].get(message.name)
            if entry is None or entry["version"] != message.version \
                    or entry["configuration"] == message.configuration:
                return  # removed or replaced since, or already recorded
            entry["configuration"] = copy.deepcopy(dict(message.configuration))
            await anyio.to_thread.run_sync(self.state_store.save, state)
        except Exception as exc:
            log.error("%s: its configuration update could not be saved: %s", message.name,
                      describe(exc))

    @staticmethod
    def groups_at(root: Path) -> dict[str, tuple[str | None, dict[str, str]]]:
        """Each group's deployment in place and its root components (name -> version),
        from the deployed state under a runtime root (works offline). The deployment is
        None for a group deployed before the state recorded it."""
        state = JsonStore(Layout(root).state).load(empty_state())
        deployments = state.get("deployments") or {}
        return {group: (deployments.get(group), dict(roots))
                for group, roots in state["groups"].items()}

    @staticmethod
    def history_at(root: Path) -> list[DeploymentRecord]:
        """The recorded deployments under a runtime root, oldest first (works offline)."""
        store = JsonStore(Layout(root).history)
        return [DeploymentRecord.from_json(r) for r in store.load([])]

    def _append_history(self, record: DeploymentRecord) -> None:
        records = [r for r in self.history_store.load([])
                   if r["deploymentId"] != record.deployment_id]
        records.append(record.to_json())
        self.history_store.save(records[-HISTORY_LENGTH:])

    # -- a deployment ------------------------------------------------------

    async def _apply(self, request: DeploymentRequest) -> DeploymentRecord:
        created = now()
        log.info("deployment %s: IN_PROGRESS", request.deployment_id)
        try:
            previous_state = await anyio.to_thread.run_sync(self.state_store.load,
                                                            empty_state())
            plan = await anyio.to_thread.run_sync(self._plan, request, previous_state)
        except Exception as exc:  # a bad recipe or configuration, an unreadable state
            return await self._finish(request, created, DetailedStatus.FAILED_NO_STATE_CHANGE,
                                      describe(exc), None)
        new_state, new_recipes = plan
        try:
            # Written before anything changes: a crash from here on is rolled back
            # at the next start.
            await anyio.to_thread.run_sync(self.current.save, {
                "request": request.to_json(), "previous": previous_state, "created": created})
        except Exception as exc:
            return await self._finish(request, created, DetailedStatus.FAILED_NO_STATE_CHANGE,
                                      f"could not record the deployment: {describe(exc)}",
                                      previous_state)
        try:
            # Cancellable (CancelLocalDeployment) until components are stopped and started.
            with self.cancellations.cancellable(request.deployment_id) as scope:
                stored = await self._prepare(request, previous_state, new_state, new_recipes)
            if scope.cancelled_caught or scope.cancel_called:
                return await self._canceled(request, created)
            await self._switch(stored)
        except ConfigurationRejected as exc:
            return await self._finish(request, created, DetailedStatus.FAILED_NO_STATE_CHANGE,
                                      str(exc), previous_state)
        except Exception as exc:
            cause = describe(exc)
            log.error("deployment %s failed: %s", request.deployment_id, cause)
            if request.failure_handling is FailureHandling.DO_NOTHING:
                return await self._finish(request, created,
                                          DetailedStatus.FAILED_ROLLBACK_NOT_REQUESTED, cause,
                                          new_state)
            try:
                old = await anyio.to_thread.run_sync(self._deployed_from, previous_state)
                await self._switch(old)
            except Exception as rollback_exc:
                return await self._finish(request, created,
                                          DetailedStatus.FAILED_UNABLE_TO_ROLLBACK,
                                          f"{cause}; rollback failed too: "
                                          f"{describe(rollback_exc)}", previous_state)
            return await self._finish(request, created, DetailedStatus.FAILED_ROLLBACK_COMPLETE,
                                      cause, previous_state)
        if self.updates is not None and \
                request.component_update_policy is ComponentUpdatePolicy.NOTIFY_COMPONENTS:
            self.updates.notify_component_update(request.deployment_id, post=True)
        return await self._finish(request, created, DetailedStatus.SUCCESSFUL, "", new_state)

    async def _prepare(self, request: DeploymentRequest, previous_state: Mapping[str, Any],
                       new_state: Mapping[str, Any], new_recipes: list[Recipe]
                       ) -> dict[str, Deployed]:
        """What comes before anything is stopped: the recipes stored, every artifact
        in place (and checked), the running components told and asked. Returns
        the components to run."""
        for recipe in new_recipes:
            await anyio.to_thread.run_sync(self.packages.add, recipe)
        stored = await anyio.to_thread.run_sync(self._deployed_from, new_state)
        # The artifacts of versions new to the device, and of recipes this request brings.
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
        # The running components may defer the update and must accept their new
        # configuration, as Greengrass asks them.
        await self._notify(request)
        await self._validate(request, stored)
        return stored

    async def _canceled(self, request: DeploymentRequest, created: float
                        ) -> DeploymentRecord:
        log.info("deployment %s: CANCELED before it changed anything", request.deployment_id)
        return await self._finish(request, created, None,
                                  "canceled (CancelLocalDeployment) before it changed anything",
                                  None, status=DeploymentStatus.CANCELED)

    async def _notify(self, request: DeploymentRequest) -> None:
        """SubscribeToComponentUpdates: tell the running components, wait (up to the
        policy's timeout) for their DeferComponentUpdate answers; while one defers,
        wait what it asked and tell them again, as the nucleus does."""
        if self.updates is None or \
                request.component_update_policy is ComponentUpdatePolicy.SKIP_NOTIFY_COMPONENTS:
            return
        while True:
            since = len(self.deferrals.of(request.deployment_id))
            told = self.updates.notify_component_update(request.deployment_id)
            if not told:
                return
            answers = await self.deferrals.wait(request.deployment_id, told, since,
                                                request.component_update_timeout)
            deferring = [d for d in answers if d.recheck_after_ms > 0]
            if not deferring:
                return
            longest = max(deferring, key=lambda d: d.recheck_after_ms)
            log.info("deployment %s: %s defers the update by %d ms (%s)",
                     request.deployment_id, longest.component, longest.recheck_after_ms,
                     longest.message)
            await anyio.sleep(longest.recheck_after_ms / 1000)

    async def _validate(self, request: DeploymentRequest, wanted: Mapping[str, Deployed]
                        ) -> None:
        """SubscribeToValidateConfigurationUpdates: each running component whose
        configuration changes (same version) is asked; one that says REJECTED fails
        the deployment with its message, before anything changed."""
        if self.updates is None:
            return
        views = await self._components()
        for name, deployed in wanted.items():
            view = views.get(name)
            if view is None or view.version != deployed.recipe.version or \
                    view.deployed.configuration == deployed.configuration:
                continue
            try:
                report = await self.updates.validate_configuration(
                    name, deployed.configuration, request.deployment_id,
                    timeout=request.configuration_validation_timeout)
            except TimeoutError:
                raise ConfigurationRejected(
                    f"component {name} did not report on its new configuration within "
                    f"{request.configuration_validation_timeout:g} s "
                    "(SendConfigurationValidityReport)") from None
            if report is not None and report[0] == "REJECTED":
                raise ConfigurationRejected(
                    f"component {name} rejected its new configuration: {report[1]}")

    async def _finish(self, request: DeploymentRequest, created: float,
                      detailed: DetailedStatus | None, cause: str,
                      state: Mapping[str, Any] | None,
                      status: DeploymentStatus | None = None) -> DeploymentRecord:
        """Record the outcome (``state`` None: nothing changed, nothing to write)."""
        if status is None:
            status = DeploymentStatus.SUCCEEDED if detailed is DetailedStatus.SUCCESSFUL \
                else DeploymentStatus.FAILED
        versions = {} if state is None else \
            {n: c["version"] for n, c in state["components"].items()}
        record = DeploymentRecord(request.deployment_id, request.group, status, detailed, cause,
                                  created, now(), versions)
        try:
            # Order matters for crash safety: the state, then the history, then the marker.
            if state is not None:
                await anyio.to_thread.run_sync(self.state_store.save, state)
            await anyio.to_thread.run_sync(self._append_history, record)
            await anyio.to_thread.run_sync(self.current.remove)
        except Exception as exc:
            # The components run as the record says, but it is not on disk: if the
            # marker is still there, the next start rolls this deployment back.
            log.error("deployment %s: %s %s, but its record could not be written: %s",
                      request.deployment_id, status, detailed, describe(exc))
            return DeploymentRecord(
                request.deployment_id, request.group, status, detailed,
                f"{cause + '; ' if cause else ''}the record could not be written: "
                f"{describe(exc)}", created, now(), record.components)
        if detailed is DetailedStatus.SUCCESSFUL and state is not None:
            keep = {(n, c["version"]) for n, c in state["components"].items()}
            try:
                await anyio.to_thread.run_sync(self.packages.collect_garbage, keep)
                await self.artifacts.gc(keep)
            except Exception as exc:
                log.warning("deployment %s: unused packages not removed: %s",
                            request.deployment_id, describe(exc))
        log.info("deployment %s: %s %s %s", request.deployment_id, status, detailed, cause)
        return record

    async def _deploy(self, request: DeploymentRequest) -> DeploymentRecord:
        try:
            if self.cancellations.asked(request.deployment_id):  # cancelled while queued
                return await self._canceled(request, now())
            self.cancellations.current = request.deployment_id
            return await self._apply(request)
        finally:
            self.pending.discard(request.deployment_id)
            self.cancellations.forget(request.deployment_id)

    def _plan(self, request: DeploymentRequest, previous: Mapping[str, Any]
              ) -> tuple[dict[str, Any], list[Recipe]]:
        """The new state and the recipes to copy into the store. Changes nothing."""
        available = self.packages.load()
        new_recipes: list[Recipe] = []
        brought: list[Recipe] = []
        if request.recipe_dir is not None:
            brought += [r for recipes in load_recipe_dir(request.recipe_dir,
                                                         self.device).values()
                        for r in recipes]
        for data in request.recipes:
            # Parsed where the store keeps it (PackageStore.add writes it there).
            where = self.packages.recipe_path(str(get(data, "ComponentName")),
                                              str(get(data, "ComponentVersion")), ".json")
            recipe = parse_recipe(data, where, self.device)
            for warning in recipe.warnings:
                log.warning("%s", warning)
            brought.append(recipe)
        for recipe in brought:
            new_recipes.append(recipe)
            have = {r.version for r in available.get(recipe.name, [])}
            if recipe.version not in have:
                available.setdefault(recipe.name, []).append(recipe)
            else:  # the request's copy replaces the stored one
                available[recipe.name] = [r for r in available[recipe.name]
                                          if r.version != recipe.version] + [recipe]
        groups = copy.deepcopy(previous["groups"])
        roots = groups.setdefault(request.group, {})
        for name in request.remove:
            if name not in roots:  # the nucleus drops it from a set: nothing to do
                log.warning("deployment %s: %s is not a root component of group %s; "
                            "nothing to remove", request.deployment_id, name, request.group)
            roots.pop(name, None)
        roots.update(request.merge)
        # Which deployment made each group's roots what they are: saved with them, so it
        # is restored with them on a rollback, and survives a crash as they do.
        deployments = dict(previous.get("deployments") or {})
        deployments[request.group] = request.deployment_id
        if not roots:
            del groups[request.group]
            del deployments[request.group]
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
        return ({"groups": groups, "components": components, "deployments": deployments},
                [r for r in new_recipes if (r.name, r.version) in used])

    # -- switching the running set ----------------------------------------

    async def _components(self) -> dict[str, ComponentView]:
        views: dict[str, ComponentView] = await self.host.ask(ListComponents(), timeout=None)
        return views

    async def _switch(self, new: Mapping[str, Deployed], *, keep_going: bool = False) -> None:
        """Make the host run ``new``: remove what differs (and its HARD dependents),
        then start what is missing, in dependency order. A component whose
        configuration alone changed takes it in place when it can (in-process ones).
        ``keep_going``: a component that fails to start does not stop the others
        (logged); otherwise the first failure raises."""
        views = await self._components()
        old = {n: v.deployed for n, v in views.items()}
        for name in [n for n in old if n in new and not new[n].same_as(old[n])
                     and new[n].recipe.version == old[n].recipe.version]:
            if await self.host.ask(ReconfigureComponent(name, new[name].configuration),
                                   timeout=60.0):
                old[name] = new[name]
        changed = {n for n in old if n not in new or not new[n].same_as(old[n])}
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
        for name in reversed(start_order({n: d.recipe for n, d in old.items()})):
            if name in changed:
                await self.host.ask(RemoveComponent(name), timeout=None)
        views = await self._components()
        for name in start_order({n: d.recipe for n, d in new.items()}):
            view = views.get(name)
            if view is not None and (view.present or view.stopped):
                continue  # running, done, or stopped on request: left as it is
            try:
                await self.host.ask(StartComponent(new[name]), timeout=None)
            except ActorsError as exc:
                if not keep_going:
                    raise
                log.error("%s", exc)
