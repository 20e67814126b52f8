"""Nucleus: wires the rooms into one supervision tree; the embedding API.

    Nucleus (ActorSystem root, one_for_one)
    ├── ipc          BrokerActor: local pub/sub, the component socket <root>/ipc.socket
    ├── components   Supervisor, rest_for_one, children in dependency order
    └── deployments  DeploymentActor: the queue, apply, rollback, history

Usable from any asyncio program::

    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=..., artifact_dir=..., merge={"com.example.HelloWorld": "1.0.0"}))
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import anyio

from . import _operations
from .artifacts import Progress, artifacts_path, decompressed_path
from .component import (
    DEFAULT_POSIX_USER,
    INSTANCE_VARIABLE,
    ComponentActor,
    ComponentNotServing,
    ComponentPaths,
    Containment,
    ErrorTracker,
    RunWith,
    RunWithError,
    State,
    kill_orphans,
)
from .component._users import create_default_user, default_posix_user
from .deploy import (
    PACKAGES,
    Deployed,
    DeploymentActor,
    DeploymentRecord,
    DeploymentRequest,
    RestartComponent,
    StopComponent,
)
from .ipc import (
    ENV_SOCKET,
    ENV_TOKEN,
    SOCKET_NAME,
    BrokerActor,
    InMemoryConfiguration,
    IpcService,
)
from .kernel import Actor, ActorRef, ActorsError, ActorSystem, Backoff, Strategy, Supervisor
from .recipe import Platform, Recipe, detect_platform

if TYPE_CHECKING:
    from .ipc import MqttSettings

log = logging.getLogger("actors.nucleus")

IPC = "ipc"
COMPONENTS = "components"
DEPLOYMENTS = "deployments"


class _Sweeper(Actor):
    """Sweeps for orphans again after start: a runtime killed between fork and
    exec leaves a child that only shows its environment once it has exec'ed."""

    def __init__(self, sweep: Callable[[], None]) -> None:
        self._sweep = sweep

    async def on_start(self) -> None:
        self.task_group.start_soon(self._later)

    async def _later(self) -> None:
        for delay in (0.2, 1.0, 5.0):
            await anyio.sleep(delay)
            await anyio.to_thread.run_sync(self._sweep)

    async def receive(self, message: Any) -> None:
        raise TypeError(f"orphan sweeper takes no messages (got {message!r})")


class RootInUse(ActorsError, RuntimeError):
    """Another runtime holds the root folder's lock."""


def _lock_root(root: Path) -> _RootLock:
    """Hold ``<root>/.lock`` for the runtime's life: two runtimes on one root would
    corrupt each other's state and kill each other's components as orphans.

    A POSIX record lock, not flock(): it belongs to this process alone, so a child
    caught between fork and exec when the runtime is killed does not keep it. Such
    locks do not exclude the same process (and closing any descriptor of the file
    drops them), so runtimes within this process are excluded by a set first."""
    in_use = RootInUse(f"{root}: another edge-actors runtime is using this root folder; "
                       "stop it or give another --root")
    if root in _LOCKED:
        raise in_use
    handle = (root / ".lock").open("ab")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        handle.close()
        raise in_use from None
    _LOCKED.add(root)
    return _RootLock(root, handle)


_LOCKED: set[Path] = set()


class _RootLock:
    def __init__(self, root: Path, handle: IO[bytes]) -> None:
        self.root = root
        self.handle = handle

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()
            _LOCKED.discard(self.root)


@dataclass
class ComponentStatus:
    name: str
    version: str
    state: State = State.NEW
    reason: str = ""
    history: list[State] = field(default_factory=list)


class Nucleus:
    """The runtime as an asyncio service: deployed components come back on start."""

    def __init__(self, root: Path, *, thing_name: str = "edge-actors-local",
                 platform_override: Mapping[str, str] | None = None,
                 handle_signals: bool = False, error_reset_time: float = 3600.0,
                 mqtt: MqttSettings | None = None, containment: str = "auto",
                 run_with: RunWith | None = None) -> None:
        self.root = Path(root).absolute()
        self.thing_name = thing_name
        self.device: Platform = detect_platform(platform_override)
        self.system = ActorSystem("nucleus", handle_signals=handle_signals)
        self.status: dict[str, ComponentStatus] = {}
        self.errors = ErrorTracker(reset_time=error_reset_time)
        self._changed = anyio.Event()
        self._listeners: list[Callable[[str, State, str], None]] = []
        self._output_listeners: list[Callable[[str, str], None]] = []
        self._message_listeners: list[Callable[[str, Any], None]] = []
        self._progress_listeners: list[Callable[[Progress], None]] = []
        self._deployments: ActorRef | None = None
        self.pending: set[str] = set()  # deployment ids queued or in progress
        # The IPC operations: pub/sub with each component's accessControl, the
        # configuration components read, UpdateState.
        self.configuration = InMemoryConfiguration()
        self.ipc = IpcService(configuration=self.configuration, thing_name=thing_name)
        # PublishToIoTCore/SubscribeToIoTCore go to this broker (AWS IoT Core or any
        # MQTT broker); its client id is the thing name, its QoS 1 spool under the root.
        self.mqtt = None if mqtt is None else dataclasses.replace(
            mqtt, thing_name=thing_name,
            spool_dir=mqtt.spool_dir or self.root / "mqtt-spool")
        # Tags this runtime's processes, telling them from an earlier one's orphans.
        self.instance = uuid.uuid4().hex
        # Each component's processes in a cgroup of its own (or the process-group
        # fallback); ``run_with`` is the runtime-wide RunWith default.
        # ``run_with`` is the runtime-wide RunWith default (Greengrass's
        # runWithDefault): as root, components run as ggc_user:ggc_group unless it
        # names another posixUser (or $EDGE_ACTORS_COMPONENT_USER does).
        default = run_with or RunWith()
        if default.posix_user is None:
            default = RunWith(default_posix_user(), default.memory_kb, default.cpus)
        self.processes = Containment(self.root, self.instance, mode=containment,  # type: ignore[arg-type]
                                     default=default)

    async def __aenter__(self) -> Nucleus:
        await anyio.Path(self.root).mkdir(parents=True, exist_ok=True)
        self._lock = _lock_root(self.root)
        self._sweep()
        await anyio.to_thread.run_sync(self._component_user)
        try:
            await self.system.__aenter__()
        except BaseException:
            self._lock.close()
            raise
        try:
            await self.system.spawn(self._broker, name=IPC, shutdown=10.0)
            _operations.register(self)
            _operations.write_cli_token(self)
            components = await self.system.spawn(
                # Per-component errors are counted by the BROKEN rule; this
                # supervisor only gives up on a storm across all of them.
                lambda: Supervisor(strategy=Strategy.REST_FOR_ONE, max_restarts=100,
                                   period=60.0, backoff=Backoff(initial=0.5, maximum=30.0)),
                name=COMPONENTS, kind="supervisor", shutdown=None)
            self._deployments = await self.system.spawn(
                lambda: DeploymentActor(self.root, self.device, components, self._component,
                                        self._deployed, self._state_of,
                                        progress=self._progress,
                                        on_reconfigured=self._reconfigured),
                name=DEPLOYMENTS, shutdown=60.0)
            await self.system.spawn(lambda: _Sweeper(self._sweep), name="orphan-sweeper",
                                    shutdown="brutal")
        except BaseException as exc:
            try:
                await self.system.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                try:
                    with anyio.CancelScope(shield=True):
                        await self.processes.close()  # what a failed start left
                finally:
                    self._lock.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        try:
            return await self.system.__aexit__(exc_type, exc, tb)
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await self.processes.close()
            finally:
                self._lock.close()

    def _broker(self) -> BrokerActor:
        """A fresh broker actor (and bridge, when MQTT is configured) for each start."""
        bridge = None
        if self.mqtt is not None:
            from .ipc import MqttBridge  # aiomqtt and the spool load only when used

            bridge = MqttBridge(self.mqtt)
        # Frames up to 16 MiB: an Infer request carries a whole image.
        return BrokerActor(self.ipc, root=self.root, bridge=bridge, max_frame=16 << 20)

    def _component_user(self) -> None:
        """The default component user exists (Greengrass's installer creates
        ggc_user:ggc_group), and the runtime's own files are not theirs to read."""
        spec = self.processes.default.posix_user
        if spec == DEFAULT_POSIX_USER:
            try:
                create_default_user(spec)
            except RunWithError as exc:
                log.error("%s", exc)  # each component's start then says so too
        self.processes.protect()

    def _sweep(self) -> None:
        killed = kill_orphans(self.root, self.instance)
        if killed:
            log.warning("killed %d component process(es) left by a previous runtime on %s",
                        killed, self.root)

    # -- deployments -------------------------------------------------------

    async def deploy(self, request: DeploymentRequest) -> DeploymentRecord:
        """Queue a deployment and wait for its outcome (deployments apply one at a time)."""
        assert self._deployments is not None, "use the Nucleus inside `async with`"
        self.processes.set_run_with(request.run_with)
        self.pending.add(request.deployment_id)
        try:
            record: DeploymentRecord = await self._deployments.ask(request, timeout=None)
        finally:
            self.pending.discard(request.deployment_id)
        return record

    async def submit(self, request: DeploymentRequest) -> None:
        """Queue a deployment without waiting for it (its outcome lands in :meth:`history`;
        until then its id is in :attr:`pending`)."""
        assert self._deployments is not None, "use the Nucleus inside `async with`"
        self.processes.set_run_with(request.run_with)
        self.pending.add(request.deployment_id)
        await self._deployments.tell(request)

    async def control(self, message: RestartComponent | StopComponent) -> str:
        """Restart or stop a deployed component, in turn with the deployments."""
        assert self._deployments is not None, "use the Nucleus inside `async with`"
        result: str = await self._deployments.ask(message, timeout=None)
        if isinstance(message, StopComponent) and result == "SUCCEEDED" \
                and not await self.processes.stop_component(message.name):
            return "FAILED"  # something of it is still running
        return result

    async def ask(self, component: str, message: Any, timeout: float | None = 60.0) -> Any:
        """Send ``message`` to a running component and wait for its reply: what its
        entry point serves (``ctx.serve``), for example an ``Infer`` request of an
        inference component. Raises ComponentNotServing for a component that is not
        deployed or serves no requests, the handler's own error when it fails, and
        AskTimeout after ``timeout`` seconds."""
        try:
            if component not in self.status:  # never the runtime's own actors
                raise LookupError(component)
            ref = self.system.lookup(component)
        except LookupError:
            raise ComponentNotServing(f"component {component} is not running here; deploy it "
                                      "first (edge-actors component list shows what is)"
                                      ) from None
        return await ref.ask(message, timeout=timeout)

    def history(self) -> list[DeploymentRecord]:
        return DeploymentActor.history_at(self.root)

    # -- components --------------------------------------------------------

    def _paths(self, recipe: Recipe) -> ComponentPaths:
        store = self.root / PACKAGES
        return ComponentPaths(root=self.root,
                              artifacts=artifacts_path(store, recipe.name, recipe.version),
                              work=self.root / "work" / recipe.name,
                              decompressed=decompressed_path(store, recipe.name, recipe.version))

    def _component(self, recipe: Recipe, configuration: Mapping[str, Any],
                   dependencies: Mapping[str, Deployed]) -> Actor:
        status = self.status.get(recipe.name)
        if status is None or status.version != recipe.version:
            self.status[recipe.name] = ComponentStatus(recipe.name, recipe.version)
        self._reconfigured(recipe.name, configuration)
        environment = {
            INSTANCE_VARIABLE: self.instance,
            ENV_TOKEN: self.ipc.register_component(recipe.name),
            ENV_SOCKET: str(self.root / SOCKET_NAME),
        }
        return ComponentActor(
            recipe, configuration, self._paths(recipe), thing_name=self.thing_name,
            on_state=self._state, on_output=self._output, errors=self.errors,
            environment=environment,
            dependencies={name: (self._paths(d.recipe), d.configuration)
                          for name, d in dependencies.items()},
            publish=functools.partial(self.publish, component=recipe.name))

    def _reconfigured(self, name: str, configuration: Mapping[str, Any]) -> None:
        # What the component may do over IPC, and the configuration it reads there.
        self.ipc.set_access_control(name, configuration)
        self.configuration.set_component(name, configuration)

    def on_message(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(topic, payload)`` for every message published through
        :meth:`publish` (what in-process components publish)."""
        self._message_listeners.append(listener)

    async def publish(self, topic: str, payload: Any, component: str | None = None) -> None:
        """Publish on the local bus; as ``component``, its accessControl must allow it
        (PublishToTopic), else :class:`~actors.ipc.UnauthorizedError`."""
        if component is None:
            await self.ipc.broker.publish("$nucleus", topic, payload)
        else:
            await self.ipc.publish_to_topic(component, topic, payload)
        for listener in self._message_listeners:
            listener(topic, payload)

    def _deployed(self, names: set[str]) -> None:
        for name in list(self.status):
            if name not in names:
                del self.status[name]
        for name in names:
            self.errors.clear(name)  # a new deployment clears BROKEN

    def _state_of(self, name: str) -> str:
        status = self.status.get(name)
        return str(status.state) if status else ""

    def on_progress(self, listener: Callable[[Progress], None]) -> None:
        """Call ``listener(report)`` as artifacts download (bytes, total, rate)."""
        self._progress_listeners.append(listener)

    def _progress(self, report: Progress) -> None:
        self.ipc.broker.publish_nowait("$nucleus", "$nucleus/artifacts/progress", {
            "component": report.component, "uri": report.uri, "done": report.done,
            "total": report.total, "rate": report.rate, "finished": report.finished})
        for listener in self._progress_listeners:
            listener(report)

    def on_state(self, listener: Callable[[str, State, str], None]) -> None:
        """Call ``listener(component, state, reason)`` on every state change."""
        self._listeners.append(listener)

    def on_output(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(component, line)`` for every line a lifecycle step prints."""
        self._output_listeners.append(listener)

    def _state(self, name: str, state: State, reason: str) -> None:
        status = self.status.get(name)
        if status is None:
            return
        status.state, status.reason = state, reason
        status.history.append(state)
        # As Greengrass reports it; `$` topics only reach subscribers that name them.
        self.ipc.broker.publish_nowait("$nucleus", f"$nucleus/components/{name}/state",
                                       {"component": name, "version": status.version,
                                        "state": str(state), "reason": reason})
        for listener in self._listeners:
            listener(name, state, reason)
        self._changed.set()
        self._changed = anyio.Event()

    def _output(self, name: str, line: str) -> None:
        for listener in self._output_listeners:
            listener(name, line)

    async def wait_states(self, names: Iterable[str], states: Iterable[State],
                          timeout: float | None = None) -> None:
        """Wait until every named component is in one of ``states``."""
        names, wanted = list(names), set(states)
        with anyio.fail_after(timeout):
            while any(n not in self.status or self.status[n].state not in wanted
                      for n in names):
                await self._changed.wait()
