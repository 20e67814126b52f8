"""The device side of fleet deployments: notices in, the runtime's deployment queue, status out.

A :class:`DeviceAgent` runs beside a :class:`~actors.nucleus.Nucleus` and uses
only its embedding API. For each notice (the current deployment of one of the
device's groups) it takes the deployment document (inside the notice when it
is small, as IoT Jobs carries it; else read from the registry) and hands a
:class:`~actors.deploy.DeploymentRequest` for that group, the document's
recipes inside (no recipe folder written), to
:meth:`Nucleus.deploy`: the same queue, plan, artifact cache and rollback as a
local deployment, under the document's ``deploymentPolicies`` (failure
handling; the component update action and timeout: whether running components
are told first and may defer; the configuration validation timeout). The
group's previous root components that the new deployment does not name are
removed (a new deployment to a group replaces the previous one); the device's
components are the union of its groups'.

It reports on ``fleet/things/<thing>/jobs/<id>/update``: IN_PROGRESS, then
SUCCEEDED or FAILED with the detailed status, the cause and each component's
version and state, or REJECTED (nothing changed) when the document is not one
it can take; and its health on ``fleet/things/<thing>/status``.

Notices are handled once: a deployment already reported (while this agent runs),
in the runtime's history (e.g. one rolled back after a kill -9) or in place as
its group's deployment is reported again, or left as it was, never applied
again. Of several notices for one group waiting, only the newest is applied;
the ones it replaced are reported CANCELED.

The agent keeps no file of its own: what it must know across a restart is the
runtime's, written with each deployment (crash-safe, rolled back with it): each
group's deployment in place and root components (:meth:`Nucleus.groups`) and
the deployments' records (:meth:`Nucleus.history`). A device hosting many
simulated devices, or a real one, pays no disk write of the agent's per
deployment.

A canceled deployment's notice is replaced by one that says ``"canceled":
true`` (``fleet cancel``, or a rollout stopped): a device that has not started
it never does and reports CANCELED; one whose runtime is applying it cancels it
there (CANCELED while nothing changed yet, else it finishes); a result already
reported stands.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson

from ..artifacts import S3Settings
from . import _topics as topics
from ._errors import FleetError
from ._link import BrokerSettings, Link
from ._model import TARGET_KINDS, ExecutionStatus, FleetDeployment
from ._registry import Registry
from ._s3 import RegistryUrl

if TYPE_CHECKING:
    from ..deploy import DeploymentRecord
    from ..nucleus import Nucleus

log = logging.getLogger("actors.fleet.agent")

REPORTED_KEEP = 50


class DeviceAgent:
    """Takes fleet deployments for ``nucleus``'s thing; run with ``await tg.start(agent.run)``."""

    def __init__(self, nucleus: Nucleus, broker: BrokerSettings, registry: RegistryUrl | str,
                 s3: S3Settings | None = None, *, health_interval: float = 0.5,
                 registry_client: Registry | None = None) -> None:
        """``registry_client``: an open registry client to use instead of one of its own
        (devices simulated by the dozen in one process share one)."""
        self.nucleus = nucleus
        self.thing = nucleus.thing_name
        self.registry_url = RegistryUrl.parse(registry) if isinstance(registry, str) \
            else registry
        self.s3 = s3
        # In memory only: "groups" is read from the runtime at start and follows its
        # deployments; "reported" answers a notice sent again while this agent runs.
        self.state: dict[str, Any] = {"groups": {}, "reported": {}}
        self.health_interval = health_interval
        self.link = Link(
            dataclasses.replace(broker, client_id=broker.client_id or self.thing),
            [topics.notify_filter(self.thing)], self._on_message,
            will=(topics.connection(self.thing), orjson.dumps({"connected": False})),
            on_connect=self._on_connect)
        self._waiting: dict[str, dict[str, Any]] = {}  # group -> newest notice not yet applied
        self._cancels: dict[str, str] = {}  # deployment id -> group: canceled, not yet recorded
        self._cancel_asked: set[str] = set()  # every deployment canceled while this runs
        self._deploying: str | None = None  # the deployment in the runtime's queue
        self._wake = anyio.Event()
        self._health_due = anyio.Event()
        self.applied = 0
        self.s3_requests = 0
        self.last: dict[str, Any] | None = None
        self._registry: Registry | None = registry_client
        self._stack = AsyncExitStack()

    # -- running -----------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        self.state = {"groups": await anyio.to_thread.run_sync(self._groups), "reported": {}}
        self.nucleus.on_state(lambda name, state, reason: self._health_due.set())
        async with self._stack, anyio.create_task_group() as tg:
            # One S3 client for the agent's life, made and connected (one HEAD request)
            # before any notice: that costs 0.1-0.4 s of CPU (botocore's models, aiohttp's
            # session), paid once at start-up rather than in every device's first deployment.
            if self._registry is None:
                self._registry = await self._stack.enter_async_context(
                    Registry(self.registry_url, self.s3))
                try:
                    await self._registry.exists(self._registry.url.key("deployments", ".ready"))
                except FleetError as exc:  # unreachable now: the first deployment says so
                    log.warning("%s: the registry %s: %s", self.thing, self.registry_url, exc)
            await tg.start(self.link.run)
            tg.start_soon(self._work)
            tg.start_soon(self._health)
            task_status.started()

    def _groups(self) -> dict[str, dict[str, Any]]:
        """The fleet groups deployed here, from the runtime: each one's deployment in
        place and root components."""
        history = None
        out = {}
        for group, (deployment_id, roots) in self.nucleus.groups().items():
            if group.partition("/")[0] not in TARGET_KINDS:
                continue  # a local deployment's
            if deployment_id is None:  # deployed before the runtime recorded it
                history = self.nucleus.history() if history is None else history
                deployment_id = next((r.deployment_id for r in reversed(history)
                                      if r.group == group and r.detailed_status in (
                                          "SUCCESSFUL", "FAILED_ROLLBACK_NOT_REQUESTED")),
                                     None)
            out[group] = {"deploymentId": deployment_id, "roots": roots}
        return out

    def _on_connect(self) -> None:
        self.link.publish(topics.connection(self.thing), orjson.dumps({"connected": True}),
                          retain=True)
        self._health_due.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained notice
        try:
            notice = orjson.loads(payload)
            group, deployment_id = str(notice["groupName"]), str(notice["deploymentId"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.error("%s: ignoring a notice that is not a fleet notice on %s", self.thing, topic)
            return
        if notice.get("thingName") != self.thing:
            log.error("%s: ignoring a notice for %s on %s", self.thing, notice.get("thingName"),
                      topic)
            return
        if notice.get("canceled"):
            self._cancel(group, deployment_id)
            return
        replaced = self._waiting.get(group)
        if replaced is not None and replaced["deploymentId"] != deployment_id:
            self._report_now(str(replaced["deploymentId"]), ExecutionStatus.CANCELED,
                             cause=f"replaced by deployment {deployment_id} before it started")
        self._waiting[group] = notice
        self._wake.set()

    def _cancel(self, group: str, deployment_id: str) -> None:
        """A deployment canceled (``fleet cancel``, or a rollout aborted): not started
        here, it never is (CANCELED); in the runtime's queue, it is stopped while it has
        changed nothing (CANCELED), else it finishes; done, its result stands."""
        waiting = self._waiting.get(group)
        if waiting is not None and waiting["deploymentId"] == deployment_id:
            del self._waiting[group]
        self._cancel_asked.add(deployment_id)
        if self._deploying == deployment_id:
            self.nucleus.cancellations.cancel(deployment_id)
        self._cancels[deployment_id] = group
        self._wake.set()

    async def _work(self) -> None:
        while True:
            if self._cancels:
                deployment_id, group = next(iter(self._cancels.items()))
                del self._cancels[deployment_id]
                await self._canceled(group, deployment_id)
                continue
            if not self._waiting:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            group = next(iter(self._waiting))
            notice = self._waiting.pop(group)
            try:
                await self._handle(group, notice)
            except Exception as exc:  # a bad document fails this deployment, not the agent
                log.exception("%s: deployment %s failed", self.thing, notice["deploymentId"])
                self._report_now(str(notice["deploymentId"]), ExecutionStatus.FAILED,
                                 cause=str(exc))

    # -- one deployment ----------------------------------------------------

    async def _handle(self, group: str, notice: Mapping[str, Any]) -> None:
        deployment_id = str(notice["deploymentId"])
        reported = self.state["reported"].get(deployment_id)
        if reported is not None:  # seen before: say it again (the broker may have lost it)
            self._publish_update(deployment_id, reported)
            return
        earlier = next((r for r in self.nucleus.history()
                        if r.deployment_id == deployment_id), None)
        if earlier is not None:  # e.g. rolled back at start after a kill -9 mid-deployment
            await self._finish(group, deployment_id, None, earlier)
            return
        if self.state["groups"].get(group, {}).get("deploymentId") == deployment_id:
            # In place, its record gone from the runtime's short history: its retained
            # report (acknowledged by the broker long ago) stands; nothing to do.
            log.info("%s: deployment %s is in place already", self.thing, deployment_id)
            return
        if deployment_id in self._cancel_asked:
            await self._canceled(group, deployment_id)
            return
        self._report_now(deployment_id, ExecutionStatus.IN_PROGRESS)
        data = await self._document(notice)  # the registry unreachable: FAILED, tried again
        try:
            document = FleetDeployment.from_json(data)
            if document.target != group:
                raise FleetError(f"it targets {document.target}, the notice {group}")
        except (FleetError, KeyError, TypeError, ValueError) as exc:
            # A document this device cannot take is REJECTED (IoT Jobs' word for a job
            # its device refuses), once: nothing was changed, nothing is tried again.
            cause = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            report = self._report(deployment_id, ExecutionStatus.REJECTED,
                                  cause=f"the deployment document is not valid: {cause}",
                                  detailed="REJECTED")
            await self._record(group, deployment_id, ExecutionStatus.REJECTED, report)
            return
        request = self._request(group, document)
        if deployment_id in self._cancel_asked:  # canceled while the document came
            await self._canceled(group, deployment_id)
            return
        self._deploying = deployment_id
        try:
            record = await self.nucleus.deploy(request)
        finally:
            self._deploying = None
        await self._finish(group, deployment_id, document, record)

    async def _canceled(self, group: str, deployment_id: str) -> None:
        """Report a canceled deployment CANCELED, unless this device has a result for it
        already (it stands, and is said again)."""
        reported = self.state["reported"].get(deployment_id)
        if reported is not None:
            self._publish_update(deployment_id, reported)
            return
        earlier = next((r for r in self.nucleus.history()
                        if r.deployment_id == deployment_id), None)
        if earlier is not None:
            await self._finish(group, deployment_id, None, earlier)
            return
        report = self._report(deployment_id, ExecutionStatus.CANCELED, detailed="CANCELED",
                              cause="the deployment was canceled before this device started it")
        await self._record(group, deployment_id, ExecutionStatus.CANCELED, report)

    async def _document(self, notice: Mapping[str, Any]) -> Any:
        """The deployment document's JSON, from the notice or the registry."""
        inline = notice.get("deploymentDocument")
        if isinstance(inline, dict) and inline.get("deploymentId") == notice["deploymentId"]:
            return inline  # small ones travel in the notice
        if self._registry is None:
            self._registry = await self._stack.enter_async_context(
                Registry(self.registry_url, self.s3))
        before = self._registry.requests
        try:
            return await self._registry.document(str(notice["deploymentId"]))
        finally:
            self.s3_requests += self._registry.requests - before

    def _request(self, group: str, document: FleetDeployment) -> Any:
        from ..deploy import ComponentUpdatePolicy, DeploymentRequest, FailureHandling

        # The recipes go in the request (the runtime stores what it uses); after a crash
        # the notice brings the document again.
        previous = self.state["groups"].get(group, {}).get("roots", {})
        return DeploymentRequest(
            merge=dict(document.components),
            remove=[n for n in previous if n not in document.components],
            configuration_update={n: {k: v for k, v in u.items() if v is not None}
                                  for n, u in document.configuration_update.items()},
            recipes=list(document.recipes.values()),
            failure_handling=FailureHandling(document.failure_handling),
            group=group, deployment_id=document.deployment_id,
            component_update_policy=ComponentUpdatePolicy(document.component_update_action),
            component_update_timeout=float(document.component_update_timeout),
            configuration_validation_timeout=float(document.configuration_validation_timeout))

    async def _finish(self, group: str, deployment_id: str, document: FleetDeployment | None,
                      record: DeploymentRecord) -> None:
        status = ExecutionStatus.SUCCEEDED if record.status == "SUCCEEDED" \
            else ExecutionStatus.CANCELED if record.status == "CANCELED" \
            else ExecutionStatus.FAILED
        report = self._report(deployment_id, status, cause=record.cause,
                              detailed=str(record.detailed_status or ""),
                              components=self._components(record.components))
        groups = self.state["groups"]
        if document is not None and (status is ExecutionStatus.SUCCEEDED or (
                status is ExecutionStatus.FAILED and document.failure_handling == "DO_NOTHING")):
            replaced = groups.get(group, {}).get("deploymentId")
            if replaced and replaced != deployment_id:
                # The group's previous deployment is over for this device: its retained
                # report goes (the controller's view of it stays in the registry), so the
                # broker keeps one report per device and group, not one per deployment.
                self.link.publish(topics.update(self.thing, replaced), b"", retain=True)
            if document.components:
                groups[group] = {"deploymentId": deployment_id,
                                 "roots": dict(document.components)}
            else:
                groups.pop(group, None)
        await self._record(group, deployment_id, status, report)

    async def _record(self, group: str, deployment_id: str, status: ExecutionStatus,
                      report: dict[str, Any]) -> None:
        """Send ``report`` and keep it in memory (a notice sent again is answered with
        it). Nothing is written here: after a restart the notice comes again and the
        runtime's history or groups (written with the deployment, before its result
        came back) give the same report, or, for a document refused or a deployment
        canceled before it started, the same decision is made again."""
        reported = self.state["reported"]
        reported[deployment_id] = report
        for old in list(reported)[:-REPORTED_KEEP]:
            del reported[old]
        self._publish_update(deployment_id, report)
        self.applied += 1
        self.last = {"deploymentId": deployment_id, "groupName": group, "status": str(status)}
        self._health_due.set()

    def _components(self, versions: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: {"version": version,
                       "state": str(self.nucleus.status[name].state)
                       if name in self.nucleus.status else "NEW"}
                for name, version in sorted(versions.items())}

    # -- reports -----------------------------------------------------------

    def _report(self, deployment_id: str, status: ExecutionStatus, *, cause: str = "",
                detailed: str = "", components: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
        return {"thingName": self.thing, "deploymentId": deployment_id, "status": str(status),
                "statusDetails": {"detailedDeploymentStatus": detailed, "failureCause": cause,
                                  "components": dict(components or {})},
                "timestamp": time.time()}

    def _report_now(self, deployment_id: str, status: ExecutionStatus, cause: str = "") -> None:
        self._publish_update(deployment_id, self._report(deployment_id, status, cause=cause))

    def _publish_update(self, deployment_id: str, report: Mapping[str, Any]) -> None:
        self.link.publish(topics.update(self.thing, deployment_id), orjson.dumps(report),
                          retain=True)

    def health(self) -> dict[str, Any]:
        return {"thingName": self.thing,
                "components": {n: {"version": s.version, "state": str(s.state)}
                               for n, s in sorted(self.nucleus.status.items())},
                "groups": {g: e["deploymentId"] for g, e in self.state["groups"].items()},
                "lastDeployment": self.last, "timestamp": time.time()}

    async def _health(self) -> None:
        # At most one health message per interval, whatever the number of state changes.
        while True:
            await self._health_due.wait()
            self._health_due = anyio.Event()
            self.link.publish(topics.status(self.thing), orjson.dumps(self.health()),
                              retain=True)
            await anyio.sleep(self.health_interval)

