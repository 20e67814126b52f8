"""Nucleus: wires the rooms into one supervision tree; the embedding API.

    Nucleus (ActorSystem root, one_for_one)
    ├── ipc            BrokerActor: local pub/sub, the component socket <root>/ipc.socket
    ├── runtime        Supervisor, rest_for_one: a host that restarts restarts the queue
    │   ├── components ComponentHost: the component actors, their states and identities,
    │   │              Greengrass's restart rules (HARD dependents follow, nothing else)
    │   └── deployments DeploymentActor: the queue, apply, rollback, history
    └── orphan-sweeper

The nucleus builds the tree and forwards; the rooms own their data (see
docs/ARCHITECTURE.md). Usable from any asyncio program::

    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=..., artifact_dir=..., merge={"com.example.HelloWorld": "1.0.0"}))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .artifacts import Progress, S3Settings
from .component import ComponentNotServing, OrphanSweeper, RunWith, State, sweep
from .component._processes import prepare_component_user, runtime_containment
from .deploy import (
    Cancellations,
    ConfigurationUpdated,
    DeferralBoard,
    DeploymentActor,
    DeploymentRecord,
    DeploymentRequest,
)
from .deploy._operations import register_operations as deployment_operations
from .events import Listeners
from .host import ComponentHost, ComponentStatus, ReportState, RestartComponent, StopComponent
from .host._operations import register_operations as component_operations
from .ipc import BrokerActor, InMemoryConfiguration, IpcService, write_cli_token
from .kernel import ActorRef, ActorsError, ActorSystem, ChildSpec, Strategy, Supervisor
from .layout import Layout, RootInUse, lock_root
from .ml._operations import register_operations as inference_operations
from .recipe import Platform, detect_platform

if TYPE_CHECKING:
    from .ipc import MqttSettings

__all__ = ["Nucleus", "RootInUse", "StartInterrupted"]

log = logging.getLogger("actors.nucleus")

IPC = "ipc"
RUNTIME = "runtime"
COMPONENTS = "components"
DEPLOYMENTS = "deployments"


class StartInterrupted(ActorsError, RuntimeError):
    """A stop (a signal) came while the runtime was starting: it stopped cleanly."""


class Nucleus(Listeners):
    """The runtime as an asyncio service: deployed components come back on start."""

    def __init__(self, root: Path, *, thing_name: str = "edge-actors-local",
                 platform_override: Mapping[str, str] | None = None,
                 handle_signals: bool = False, error_reset_time: float = 3600.0,
                 mqtt: MqttSettings | None = None, containment: str = "auto",
                 run_with: RunWith | None = None, s3: S3Settings | None = None) -> None:
        """``s3``: how artifacts on S3 are fetched (default: the usual AWS chain)."""
        self.root = Path(root).absolute()
        self.s3 = s3
        self.layout = Layout(self.root)
        self.thing_name = thing_name
        self.device: Platform = detect_platform(platform_override)
        self.system = ActorSystem("nucleus", handle_signals=handle_signals)
        self.error_reset_time = error_reset_time
        self._host: ComponentHost | None = None
        super().__init__()  # the listeners of the embedding API
        self._deployments: ActorRef | None = None
        self._components: ActorRef | None = None
        self.pending: set[str] = set()  # deployment ids queued or in progress
        self.cancellations = Cancellations()  # CancelLocalDeployment requests
        self.deferrals = DeferralBoard()  # DeferComponentUpdate answers, by deployment
        # The IPC operations: pub/sub with each component's accessControl, the
        # configuration components read, UpdateState.
        self.configuration = InMemoryConfiguration()
        self.ipc = IpcService(configuration=self.configuration, thing_name=thing_name)
        # PublishToIoTCore/SubscribeToIoTCore go to this broker (AWS IoT Core or any
        # MQTT broker); its client id is the thing name, its QoS 1 spool under the root.
        self.mqtt = None if mqtt is None else dataclasses.replace(
            mqtt, thing_name=thing_name, spool_dir=mqtt.spool_dir or self.layout.mqtt_spool)
        # Tags this runtime's processes, telling them from an earlier one's orphans.
        self.instance = uuid.uuid4().hex
        # Each component's processes in a cgroup of its own (or the process-group
        # fallback), as its RunWith user (``run_with``: the runtime-wide default).
        self.processes = runtime_containment(self.root, self.instance, containment, run_with)

    async def __aenter__(self) -> Nucleus:
        await anyio.Path(self.root).mkdir(parents=True, exist_ok=True)
        self._lock = lock_root(self.layout)
        sweep(self.root, self.instance)
        await anyio.to_thread.run_sync(prepare_component_user, self.processes)
        try:
            await self.system.__aenter__()
        except BaseException:
            self._lock.close()
            raise
        try:
            # A fresh broker actor (and MQTT bridge) on each start.
            await self.system.spawn(lambda: BrokerActor.for_runtime(self.ipc, self.root,
                                                                    self.mqtt),
                                    name=IPC, shutdown=10.0)
            self._serve_operations()
            # A host that fails takes its components down with it; the deployment
            # queue restarts after it and starts the deployed components again.
            await self.system.spawn(lambda: Supervisor([
                ChildSpec(COMPONENTS, self._new_host, kind="supervisor", shutdown=None),
                ChildSpec(DEPLOYMENTS, self._new_deployments, shutdown=60.0,
                          depends_on=(COMPONENTS,)),
            ], strategy=Strategy.REST_FOR_ONE, max_restarts=3, period=60.0),
                name=RUNTIME, kind="supervisor", shutdown=None)
            self._components = self.system.lookup(COMPONENTS)
            self._deployments = self.system.lookup(DEPLOYMENTS)
            await self.system.spawn(lambda: OrphanSweeper(self.root, self.instance),
                                    name="orphan-sweeper", shutdown="brutal")
            # Last: a CLI that finds the token finds a runtime that is up.
            write_cli_token(self.ipc, self.layout.cli_token)
        except BaseException as exc:
            stopping = self.system.stopping
            try:
                await self.system.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                await self._release()  # what a failed start left
            if stopping and isinstance(exc, ActorsError):
                raise StartInterrupted(f"{self.root}: the runtime was asked to stop while "
                                       "it was starting; it stopped") from None
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        try:
            return await self.system.__aexit__(exc_type, exc, tb)
        finally:
            await self._release()

    async def _release(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.processes.close()
        finally:
            self._lock.close()

    def _new_host(self) -> ComponentHost:
        self._host = ComponentHost(
            self.layout, self.ipc, self.configuration, thing_name=self.thing_name,
            instance=self.instance, on_state=self._state,
            on_output=functools.partial(self._emit, "output"),
            publish=self.publish, error_reset_time=self.error_reset_time,
            on_configured=lambda name, version, config: self._tell(
                self._deployments, ConfigurationUpdated(name, version, config)))
        return self._host

    def _new_deployments(self) -> DeploymentActor:
        return DeploymentActor(self.layout, self.device, self.system.lookup(COMPONENTS),
                               s3=self.s3, progress=self._progress, pending=self.pending,
                               updates=self.ipc, deferrals=self.deferrals,
                               cancellations=self.cancellations)

    def _serve_operations(self) -> None:
        """The CLI's operations, served by the rooms that own their data."""
        deployment_operations(self.ipc, submit=self.submit, history=self.history,
                              pending=self.pending, cancellations=self.cancellations)
        component_operations(self.ipc, layout=self.layout, configuration=self.configuration,
                             table=lambda: self.status, control=self.control,
                             pause=self.processes.pause, resume=self.processes.resume)
        inference_operations(self.ipc, ask=self.ask)
        # What components report and defer goes to its owners.
        self.ipc.on_state(lambda name, state: self._tell(self._components,
                                                         ReportState(name, state)))
        self.ipc.on_deferral(self.deferrals.add)

    @staticmethod
    def _tell(ref: ActorRef | None, message: Any) -> None:
        if ref is not None and ref.alive:
            try:
                ref.tell_nowait(message)
            except ActorsError as exc:
                log.warning("could not pass on %r: %s", message, exc)

    # -- deployments -------------------------------------------------------

    def _queue(self, request: DeploymentRequest) -> ActorRef:
        assert self._deployments is not None, "use the Nucleus inside `async with`"
        self.processes.set_run_with(request.run_with)
        self.pending.add(request.deployment_id)  # the deployment actor takes it out
        return self._deployments

    async def deploy(self, request: DeploymentRequest) -> DeploymentRecord:
        """Queue a deployment and wait for its outcome (deployments apply one at a time)."""
        record: DeploymentRecord = await self._queue(request).ask(request, timeout=None)
        return record

    async def submit(self, request: DeploymentRequest) -> None:
        """Queue a deployment without waiting for it (its outcome lands in :meth:`history`;
        until then its id is in :attr:`pending`)."""
        await self._queue(request).tell(request)

    async def control(self, message: RestartComponent | StopComponent) -> str:
        """Restart or stop a deployed component, in turn with the deployments."""
        assert self._deployments is not None, "use the Nucleus inside `async with`"
        result: str = await self._deployments.ask(message, timeout=None)
        if isinstance(message, StopComponent) and result == "SUCCEEDED" \
                and not await self.processes.stop_component(message.name):
            return "FAILED"  # something of it is still running
        return result

    async def ask(self, component: str, message: Any, timeout: float | None = 60.0) -> Any:
        """A running component's reply to ``message`` (what its entry point serves with
        ``ctx.serve``, an ``Infer`` say). Raises ComponentNotServing (not deployed, or
        serves nothing), the handler's own error, or AskTimeout."""
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

    def groups(self) -> dict[str, tuple[str | None, dict[str, str]]]:
        """Each group deployed here: the id of the deployment in place (its roots were
        set by it, or kept by a rollback to it) and its root components by name."""
        return DeploymentActor.groups_at(self.root)

    # -- components --------------------------------------------------------

    @property
    def status(self) -> Mapping[str, ComponentStatus]:
        """The component host's records, by name (read only)."""
        return MappingProxyType(self._host.table if self._host is not None else {})

    async def publish(self, topic: str, payload: Any, component: str | None = None) -> None:
        """Publish on the local bus; as ``component``, its accessControl must allow it
        (PublishToTopic), else :class:`~actors.ipc.UnauthorizedError`."""
        if component is None:
            await self.ipc.broker.publish("$nucleus", topic, payload)
        else:
            await self.ipc.publish_to_topic(component, topic, payload)
        self._emit("message", topic, payload)

    def _progress(self, report: Progress) -> None:
        self.ipc.broker.publish_nowait("$nucleus", "$nucleus/artifacts/progress", {
            "component": report.component, "uri": report.uri, "done": report.done,
            "total": report.total, "rate": report.rate, "finished": report.finished})
        self._emit("progress", report)

    async def wait_states(self, names: Iterable[str], states: Iterable[State],
                          timeout: float | None = None) -> None:
        """Wait until every named component is in one of ``states``."""
        names, wanted = list(names), set(states)
        await self._until(lambda: all(n in self.status and self.status[n].state in wanted
                                      for n in names), timeout)
