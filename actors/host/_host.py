"""ComponentHost: the one owner of running components.

It is the supervisor of the component actors, so a component's actor, its
state, its IPC identity and its place in the restart rules live in one place:

* it starts, stops, restarts, reconfigures and removes components when a
  deployment asks (typed messages, see ``_messages.py``), and answers what it
  runs (:class:`ListComponents`);
* it holds each component's state (the Greengrass states, an enum), reason,
  history and last UpdateState, publishes every change on
  ``$nucleus/components/<name>/state`` and tells the runtime's listeners;
* it hands each component its IPC token and policies, and revokes both when the
  component is removed or its version replaced;
* it applies Greengrass's restart rules. A failed component is restarted by its
  actor's supervision (after its ``recover`` step; ERRORED three times within
  the error reset time makes it BROKEN). A component with a HARD dependency
  follows that dependency's state: it restarts with it (a ``restart_with`` edge
  of the supervisor, one_for_one otherwise), and when the dependency is BROKEN it
  is stopped and waits (INSTALLED) until a deployment starts it again, as the
  nucleus's dependency listener does. SOFT dependents and unrelated components
  are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..artifacts import artifacts_path, decompressed_path
from ..component import (
    INSTANCE_VARIABLE,
    ComponentActor,
    ComponentPaths,
    ErrorTracker,
    Reconfigure,
    State,
)
from ..ipc import ENV_SOCKET, ENV_TOKEN, RESERVED_NAMES
from ..kernel import Actor, ActorsError, Backoff, ChildSpec, Later, Restart, Strategy, Supervisor
from ..layout import Layout
from ..recipe import DependencyType, Recipe
from ._messages import (
    ComponentStartFailed,
    ComponentView,
    Deployed,
    ListComponents,
    ReconfigureComponent,
    RemoveComponent,
    ReportState,
    RestartComponent,
    StartComponent,
    StopComponent,
    UnknownComponent,
)

if TYPE_CHECKING:
    from ..ipc import InMemoryConfiguration, IpcService

log = logging.getLogger("actors.host")

#: Seconds a component's stop (shutdown step, then SIGTERM, SIGKILL) may take.
COMPONENT_SHUTDOWN = 30.0
#: States a HARD dependency must be in for its dependents to run (the nucleus's
#: ``dependencyFinishedStarting``).
READY = (State.RUNNING, State.FINISHED)

StateListener = Callable[[str, str, State, str], None]  # name, version, state, reason
ConfigurationListener = Callable[[str, str, Mapping[str, Any]], None]  # name, version, config
OutputListener = Callable[[str, str], None]  # name, line
Publish = Callable[..., Awaitable[None]]  # (topic, payload, component=name)


@dataclass
class ComponentStatus:
    """The host's record of one component (read it, never write it: the host owns it)."""

    name: str
    version: str
    deployed: Deployed
    state: State = State.NEW
    reason: str = ""
    history: list[State] = field(default_factory=list)
    reported: str = ""  # the last UpdateState
    stopped: bool = False  # by StopComponent


@dataclass(frozen=True)
class _Broken:
    """Internal: a component became BROKEN; stop what depends on it HARD."""

    name: str
    record: ComponentStatus


async def _failed(exc: BaseException) -> Any:
    raise exc


class ComponentHost(Supervisor):
    """The components' supervisor and the owner of their records (see the module)."""

    def __init__(self, layout: Layout, ipc: IpcService, configuration: InMemoryConfiguration,
                 *, thing_name: str, instance: str,
                 on_state: StateListener, on_output: OutputListener, publish: Publish,
                 on_configured: ConfigurationListener | None = None,
                 error_reset_time: float = 3600.0) -> None:
        # Per-component errors are counted by the BROKEN rule; the supervisor's
        # own intensity only gives up on a storm across all of them.
        super().__init__(strategy=Strategy.ONE_FOR_ONE, max_restarts=100, period=60.0,
                         backoff=Backoff(initial=0.5, maximum=30.0))
        self.layout = layout
        self.ipc = ipc
        self.configuration = configuration
        self.thing_name = thing_name
        self.instance = instance
        self.errors = ErrorTracker(reset_time=error_reset_time)
        self.table: dict[str, ComponentStatus] = {}
        self._on_state = on_state
        self._on_output = on_output
        self._publish = publish
        self._on_configured = on_configured
        self._watching: dict[str, Callable[[], None]] = {}  # name -> unsubscribe

    # -- messages ----------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        # A request that cannot be done fails its asker (a later reply that raises),
        # never the host: the host crashing would stop every component.
        try:
            if isinstance(message, ListComponents):
                return {name: self._view(record) for name, record in self.table.items()}
            if isinstance(message, StartComponent):
                return await self._start(message.deployed)
            if isinstance(message, RemoveComponent):
                return await self._remove_component(message.name)
            if isinstance(message, StopComponent):
                return await self._stop(message.name)
            if isinstance(message, RestartComponent):
                return await self._restart(message.name)
            if isinstance(message, ReconfigureComponent):
                return await self._reconfigure(message.name, message.configuration)
            if isinstance(message, ReportState):
                return self._reported(message.name, message.state)
            if isinstance(message, _Broken):
                return await self._dependency_broken(message)
        except ActorsError as exc:
            return Later(_failed(exc))
        raise TypeError(f"component host: unexpected message {message!r}")

    def _view(self, record: ComponentStatus) -> ComponentView:
        return ComponentView(record.name, record.version, record.state, record.reason,
                             record.deployed, record.name in self._by_id, record.stopped,
                             record.reported)

    def _record(self, name: str) -> ComponentStatus:
        record = self.table.get(name)
        if record is None:
            raise UnknownComponent(f"component {name} is not deployed here "
                                   "(edge-actors component list shows what is)")
        return record

    # -- starting ----------------------------------------------------------

    async def _start(self, deployed: Deployed) -> State:
        recipe = deployed.recipe
        name = recipe.name
        if name in RESERVED_NAMES:
            raise ComponentStartFailed(
                f"component {name} cannot be deployed: {name} is the runtime's own identity "
                f"(reserved names: {', '.join(sorted(RESERVED_NAMES))}); rename the component")
        if name in self._by_id:
            raise ComponentStartFailed(f"component {name} is already running here; "
                                       "remove or restart it instead")
        for dependency in recipe.dependencies.values():
            other = self.table.get(dependency.name)
            if dependency.type is DependencyType.HARD and other is not None \
                    and other.state not in READY:
                raise ComponentStartFailed(
                    f"component {name} {recipe.version} cannot start: its HARD dependency "
                    f"{dependency.name} is {other.state}"
                    + (f" ({other.reason})" if other.reason else ""))
        before = self.table.get(name)
        record = ComponentStatus(name, recipe.version, deployed)
        if before is not None and before.version == recipe.version:
            record.history = before.history  # the same component, started again
        self.table[name] = record
        if before is None or before.version != recipe.version:
            # A new identity for a new version: the old token stops working.
            self.ipc.register_component(name)
        self._grant(name, deployed.configuration)
        self.errors.clear(name)  # a deployment clears BROKEN
        await self._start_child_of(record)
        if record.state in (State.ERRORED, State.BROKEN):
            raise ComponentStartFailed(f"component {name} {recipe.version} is {record.state} "
                                       f"after its start: {record.reason}")
        return record.state

    async def _start_child_of(self, record: ComponentStatus) -> None:
        recipe = record.deployed.recipe
        present = tuple(d for d in recipe.dependencies if d in self._by_id)
        hard = tuple(d for d in present
                     if recipe.dependencies[d].type is DependencyType.HARD)
        spec = ChildSpec(record.name, lambda: self._actor(record), restart=Restart.TRANSIENT,
                         shutdown=COMPONENT_SHUTDOWN, depends_on=present, restart_with=hard)
        child = self._add(spec)
        record.stopped = False
        try:
            await self._start_child(child)
        except Exception as exc:
            self._remove(child, "failed to start")
            self._forget(child)
            if record.state not in (State.ERRORED, State.BROKEN):
                self._set(record, State.ERRORED, str(exc))
            raise ComponentStartFailed(f"component {record.name} {record.version} failed to "
                                       f"start: {record.reason or exc}") from exc

    def _actor(self, record: ComponentStatus) -> Actor:
        """A fresh component actor (the supervisor calls this on every restart)."""
        recipe = record.deployed.recipe
        token = self.ipc.token_of(record.name)
        environment = {INSTANCE_VARIABLE: self.instance, ENV_SOCKET: str(self.layout.ipc_socket)}
        if token is not None:
            environment[ENV_TOKEN] = token
        dependencies = {name: (self._paths(other.deployed.recipe), other.deployed.configuration)
                        for name in recipe.dependencies
                        if (other := self.table.get(name)) is not None}

        async def publish(topic: str, payload: Any) -> None:
            await self._publish(topic, payload, component=record.name)

        return ComponentActor(
            recipe, record.deployed.configuration, self._paths(recipe),
            thing_name=self.thing_name,
            on_state=lambda _name, state, reason: self._changed(record, state, reason),
            on_output=self._on_output, errors=self.errors, environment=environment,
            dependencies=dependencies, publish=publish)

    def _paths(self, recipe: Recipe) -> ComponentPaths:
        packages = self.layout.packages
        return ComponentPaths(
            root=self.layout.root,
            artifacts=artifacts_path(packages, recipe.name, recipe.version),
            work=self.layout.work(recipe.name),
            decompressed=decompressed_path(packages, recipe.name, recipe.version),
            log=self.layout.log(recipe.name))

    def _grant(self, name: str, configuration: Mapping[str, Any]) -> None:
        # What the component may do over IPC, and the configuration it reads there.
        self.ipc.set_access_control(name, configuration)
        self.configuration.set_component(name, configuration)
        if name not in self._watching:
            self._watching[name] = self.configuration.subscribe(name, (), self._updated)

    def _updated(self, name: str, _path: tuple[str, ...]) -> None:
        """A component changed its configuration (UpdateConfiguration): it is the
        component's configuration from now on, through restarts (the deployment
        queue persists it, as Greengrass keeps it in its configuration store)."""
        record = self.table.get(name)
        if record is None:
            return
        current = self.configuration.get_nowait(name, [])
        if current == record.deployed.configuration:
            return  # the host's own grant
        record.deployed = Deployed(record.deployed.recipe, current)
        if self._on_configured is not None:
            self._on_configured(name, record.version, current)

    # -- states ------------------------------------------------------------

    def _changed(self, record: ComponentStatus, state: State, reason: str) -> None:
        if self.table.get(record.name) is not record:
            return  # an actor of a removed or replaced component, still stopping
        self._set(record, state, reason)
        if state is State.BROKEN:
            self.ref.tell_nowait(_Broken(record.name, record))

    def _set(self, record: ComponentStatus, state: State, reason: str) -> None:
        record.state, record.reason = state, reason
        record.history.append(state)
        # As Greengrass reports it; `$` topics only reach subscribers that name them.
        self.ipc.broker.publish_nowait("$nucleus", f"$nucleus/components/{record.name}/state",
                                       {"component": record.name, "version": record.version,
                                        "state": str(state), "reason": reason})
        self._on_state(record.name, record.version, state, reason)

    def _reported(self, name: str, state: str) -> None:
        record = self.table.get(name)
        if record is not None:
            record.reported = state
            log.info("%s reported %s (UpdateState)", name, state)

    async def _dependency_broken(self, message: _Broken) -> None:
        """The nucleus restarts a HARD dependent whose dependency left RUNNING/FINISHED,
        and the restart waits for the dependency: here, it stops and waits."""
        if self.table.get(message.name) is not message.record:
            return
        for child in reversed(self.followers(message.name)):
            await self._terminate(child)
            self._remove(child, "its HARD dependency is BROKEN")
            self._forget(child)
            record = self.table.get(child.spec.id)
            if record is not None:
                self._set(record, State.INSTALLED, f"waiting for its HARD dependency "
                          f"{message.name}, which is BROKEN; a deployment starts it again")

    # -- stopping, restarting, reconfiguring -------------------------------

    async def _stop_child(self, name: str) -> None:
        child = self._find(name)
        if child is None:
            return  # FINISHED or BROKEN: it has already left the supervisor
        await self._terminate(child)
        self._remove(child, "stopped")
        self._forget(child)

    async def _remove_component(self, name: str) -> None:
        record = self.table.get(name)
        await self._stop_child(name)
        if self.table.get(name) is record:
            self.table.pop(name, None)
        self.ipc.unregister_component(name)
        self.ipc.set_access_control(name, None)
        self.errors.clear(name)
        unsubscribe = self._watching.pop(name, None)
        if unsubscribe is not None:
            unsubscribe()

    async def _stop(self, name: str) -> str:
        record = self._record(name)
        await self._stop_child(name)
        record.stopped = True
        return "SUCCEEDED"

    async def _restart(self, name: str) -> str:
        record = self._record(name)
        child = self._find(name)
        if child is None:  # stopped, finished or broken: start it again
            self.errors.clear(name)
            await self._start_child_of(record)
            return "SUCCEEDED"
        affected = self.followers(name, include_self=True)
        for other in reversed(affected):
            await self._terminate(other)
        for other in affected:
            other.cell.restarts += 1
            try:
                await self._start_child(other)
            except Exception as exc:
                self._remove(other, "failed to restart")
                self._forget(other)
                raise ComponentStartFailed(f"component {other.spec.id} failed to start again: "
                                           f"{exc}") from exc
        return "SUCCEEDED"

    async def _reconfigure(self, name: str, configuration: Mapping[str, Any]) -> bool:
        record = self._record(name)
        if name not in self._by_id:
            return False  # not running (FINISHED, BROKEN): it starts with the new one
        ref = self.system.lookup(name)
        if not await ref.ask(Reconfigure(configuration), timeout=30.0):
            return False
        record.deployed = Deployed(record.deployed.recipe, configuration)
        self._grant(name, configuration)
        return True

    async def on_stop(self) -> None:
        await super().on_stop()
        for name in self.table:
            self.ipc.unregister_component(name)
        for unsubscribe in self._watching.values():
            unsubscribe()
        self._watching.clear()
