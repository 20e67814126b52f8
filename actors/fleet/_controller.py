"""The fleet controller: creates a deployment and rolls it out to its target's devices.

Creating: the roots and their dependencies are resolved against the registry
(the recipes go into the document), the document is written to
``deployments/<id>/deployment.json`` and the target's pointer to the new
deployment (a new deployment to a group replaces the previous one).

Rolling out, as IoT Jobs does for Greengrass: devices are notified at the
rollout rate (``maximumPerMinute``; with an exponential rate, from
``baseRatePerMinute`` multiplied by ``incrementFactor`` each time the
notified or succeeded devices reach the criterion); each notice is the
group's retained notice on the device's topic, QoS 1. The controller follows
the devices' status updates, marks a device TIMED_OUT when it stays
IN_PROGRESS past the timeout, and stops notifying (the rest CANCELED, never
touched) when an abort criterion is met or ``fleet cancel`` is asked. Its
view is written to ``deployments/<id>/status.json`` as it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from . import _topics as topics
from ._errors import FleetError, NotInRegistry
from ._link import BrokerSettings, Link
from ._model import INLINE_LIMIT, ExecutionStatus, FleetDeployment, canceled_notice, notice
from ._registry import Registry

log = logging.getLogger("actors.fleet.controller")


def cancel_topic(deployment_id: str) -> str:
    return f"fleet/deployments/{deployment_id}/cancel"


@dataclass
class Execution:
    """One device's part in a deployment, as the controller sees it."""

    thing: str
    status: ExecutionStatus | None = None  # None: not notified yet
    notified: float | None = None
    started: float | None = None
    finished: float | None = None
    detailed: str = ""
    cause: str = ""
    components: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"thingName": self.thing, "status": str(self.status or "NOT_NOTIFIED"),
                "detailedDeploymentStatus": self.detailed, "failureCause": self.cause,
                "components": self.components, "notifiedOn": self.notified,
                "startedOn": self.started, "finishedOn": self.finished}


@dataclass
class RolloutResult:
    deployment: FleetDeployment
    executions: dict[str, Execution]
    aborted: str = ""  # the criterion met, or "canceled"
    started: float = 0.0
    finished: float = 0.0
    messages_sent: int = 0
    messages_received: int = 0
    s3_requests: int = 0

    def counts(self) -> Counter[str]:
        return Counter(str(e.status or "NOT_NOTIFIED") for e in self.executions.values())

    def to_json(self) -> dict[str, Any]:
        return {"deploymentId": self.deployment.deployment_id,
                "targetArn": self.deployment.target, "aborted": self.aborted,
                "startedOn": self.started, "finishedOn": self.finished,
                "summary": dict(sorted(self.counts().items())),
                "devices": {t: e.to_json() for t, e in sorted(self.executions.items())}}


class Controller:
    """Creates and rolls out fleet deployments through ``registry`` and the broker."""

    def __init__(self, registry: Registry, broker: BrokerSettings, *,
                 inline_limit: int = INLINE_LIMIT) -> None:
        """``inline_limit``: the largest document (bytes of JSON) sent inside each notice;
        devices read a larger one from the registry (0: always from the registry)."""
        self.registry = registry
        self.broker = broker
        self.inline_limit = inline_limit

    async def things(self, target: str) -> list[str]:
        kind, _, name = target.partition("/")
        if kind == "thing":
            return [name]
        things = await self.registry.group(name)
        if not things:
            raise FleetError(f"thing group {name} has no things; add some with "
                             f"`edge-actors fleet group add {name} THING...`")
        return things

    async def create(self, target: str, components: Mapping[str, str], **policies: Any
                     ) -> FleetDeployment:
        """Resolve, write the document and point the target at it (nothing is notified)."""
        recipes = await self.registry.closure(components)
        deployment = FleetDeployment(target=target, components=dict(components),
                                     recipes=recipes, **policies)
        await self.registry.put_json(self.registry.document_key(deployment.deployment_id),
                                     deployment.to_json(), create_only=True)
        previous = None
        try:
            previous = (await self.registry.get_json(self.registry.target_key(target)))\
                .get("deploymentId")
        except NotInRegistry:
            pass
        await self.registry.put_json(self.registry.target_key(target), {
            "deploymentId": deployment.deployment_id, "previousDeploymentId": previous})
        return deployment

    async def rollout(self, deployment: FleetDeployment, things: Sequence[str], *,
                      wait: float | None = None,
                      on_change: Callable[[Execution], None] | None = None) -> RolloutResult:
        """Notify ``things`` at the rollout rate and follow them until each has finished
        (or ``wait`` seconds passed, or the rollout was aborted or canceled and every
        notified device finished)."""
        run = _Rollout(self, deployment, things, on_change)
        return await run.run(wait)


class _Rollout:
    def __init__(self, controller: Controller, deployment: FleetDeployment,
                 things: Sequence[str], on_change: Callable[[Execution], None] | None) -> None:
        self.controller = controller
        self.deployment = deployment
        self.executions = {t: Execution(t) for t in things}
        self.on_change = on_change
        self.result = RolloutResult(deployment, self.executions)
        # Reused (clear, wait): the main loop wakes when a device finishes (done? an abort
        # criterion met?), starts under a timeout, or the rollout is canceled.
        self.changed = asyncio.Event()
        self.counts: Counter[ExecutionStatus] = Counter()
        self.next_timeout_check = 0.0
        self.stop_reason = ""
        did = deployment.deployment_id
        # A session of its own per rollout, dropped at the end: what it missed while
        # disconnected comes back as the devices' retained reports.
        broker = dataclasses.replace(controller.broker, clean_session=True, client_id=(
            f"{controller.broker.client_id or 'fleet-controller'}-{did[:8]}"))
        self.link = Link(broker, [topics.update_filter(did), cancel_topic(did)],
                         self._on_message)
        self.document_uri = controller.registry.url.uri("deployments", did, "deployment.json")
        document = deployment.to_json()
        self.inline = document if len(orjson.dumps(document)) <= controller.inline_limit \
            else None

    def _set(self, execution: Execution, status: ExecutionStatus) -> None:
        # Counted as they change: a rollout's bookkeeping stays O(1) per report.
        if execution.status is not None:
            self.counts[execution.status] -= 1
        self.counts[status] += 1
        execution.status = status
        if status is ExecutionStatus.IN_PROGRESS and execution.started is None:
            execution.started = time.time()
        if status.terminal:
            execution.finished = time.time()
        if self.on_change is not None:
            self.on_change(execution)
        if status.terminal or (status is ExecutionStatus.IN_PROGRESS
                               and self.deployment.timeout_seconds is not None):
            self.changed.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == cancel_topic(self.deployment.deployment_id):
            if payload and not self.stop_reason:
                self.stop_reason = "canceled"
                self.changed.set()
            return
        thing = topics.thing_of(topic)
        execution = self.executions.get(thing)
        try:
            report = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            report = None
        if execution is None or not isinstance(report, dict) \
                or report.get("thingName") != thing:
            log.warning("ignoring a status update on %s", topic)
            return
        try:
            status = ExecutionStatus(str(report.get("status")))
        except ValueError:
            log.warning("ignoring status %r from %s", report.get("status"), thing)
            return
        current = execution.status
        # Terminal is final, but for a cancel the device did not hear in time.
        if current is not None and current.terminal and current is not ExecutionStatus.CANCELED:
            return
        if current is ExecutionStatus.CANCELED and not status.terminal:
            return
        details = report.get("statusDetails") or {}
        execution.detailed = str(details.get("detailedDeploymentStatus", ""))
        execution.cause = str(details.get("failureCause", ""))
        execution.components = dict(details.get("components") or {})
        if execution.notified is None:  # a retained report of a device that caught up
            execution.notified = time.time()
        self._set(execution, status)

    def _check_abort(self) -> None:
        if self.stop_reason:
            return
        counts = self.counts
        for criterion in self.deployment.abort:
            if criterion.met(counts):
                self.stop_reason = (f"abort criterion met: {criterion.failure_type} "
                                    f">= {criterion.threshold_percentage:g}% of at least "
                                    f"{criterion.min_executed} executed devices")
                log.warning("deployment %s: %s", self.deployment.deployment_id,
                            self.stop_reason)
                return

    def _check_timeouts(self) -> float:
        """Mark overdue devices TIMED_OUT; the seconds until the next may be."""
        timeout = self.deployment.timeout_seconds
        if timeout is None or not self.counts[ExecutionStatus.IN_PROGRESS]:
            return 1.0
        now, soonest = time.time(), 1.0
        if now < self.next_timeout_check:  # a scan per 0.1 s at most, not per report
            return self.next_timeout_check - now
        self.next_timeout_check = now + 0.1
        for e in self.executions.values():
            if e.status is ExecutionStatus.IN_PROGRESS and e.started is not None:
                left = e.started + timeout - now
                if left <= 0:
                    e.cause = f"no result within {timeout:g} s of IN_PROGRESS"
                    self._set(e, ExecutionStatus.TIMED_OUT)
                else:
                    soonest = min(soonest, left)
        return soonest

    def _stop(self) -> None:
        """Aborted or canceled: the devices not notified are never touched; those notified
        that have not started get their notice withdrawn."""
        for e in self.executions.values():
            if e.status is None:
                e.cause = self.stop_reason
                self._set(e, ExecutionStatus.CANCELED)
            elif e.status is ExecutionStatus.QUEUED:
                # Its notice is replaced (retained): a device that has not started the
                # deployment never does, and reports CANCELED.
                self.link.publish(topics.notify(e.thing, self.deployment.target),
                                  canceled_notice(self.deployment.deployment_id,
                                                  self.deployment.target, e.thing),
                                  retain=True)
                e.cause = self.stop_reason
                self._set(e, ExecutionStatus.CANCELED)

    def _done(self) -> bool:
        finished = sum(n for status, n in self.counts.items() if status.terminal)
        return finished == len(self.executions)

    async def run(self, wait: float | None) -> RolloutResult:
        self.result.started = time.time()
        deadline = None if wait is None else time.monotonic() + wait
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await tg.start(self.link.run)
                await self.link.wait_connected()
                tg.start_soon(self._notify)
                while True:
                    self._check_abort()
                    if self.stop_reason and not self.result.aborted:
                        self.result.aborted = self.stop_reason
                        self._stop()
                    if self._done():
                        break
                    soonest = self._check_timeouts()
                    if deadline is not None:
                        if time.monotonic() >= deadline:
                            break
                        soonest = min(soonest, deadline - time.monotonic())
                    self.changed.clear()
                    with anyio.move_on_after(max(soonest, 0.01)):
                        await self.changed.wait()
                with anyio.move_on_after(self.controller.broker.timeout):
                    await self.link.wait_sent()
                scope.cancel()
        self.result.finished = time.time()
        self.result.messages_sent = self.link.sent
        self.result.messages_received = self.link.received
        registry = self.controller.registry
        await registry.put_json(registry.status_key(self.deployment.deployment_id),
                                self.result.to_json())
        self.result.s3_requests = registry.requests
        return self.result

    async def _notify(self) -> None:
        rollout = self.deployment.rollout
        maximum = max(rollout.maximum_per_minute, 1)
        rate = float(min(rollout.base_rate_per_minute or maximum, maximum))
        queue = [t for t, e in self.executions.items() if e.status is None]
        tokens, last = 1.0, time.monotonic()
        notified_mark = succeeded_mark = 0
        while queue and not self.stop_reason:
            now = time.monotonic()
            tokens = min(tokens + (now - last) * rate / 60.0, max(rate / 60.0, 1.0))
            last = now
            while tokens >= 1.0 and queue and not self.stop_reason:
                thing = queue.pop(0)
                execution = self.executions[thing]
                if execution.status is not None:
                    continue  # it reported already (a retained report)
                tokens -= 1.0
                self.link.publish(topics.notify(thing, self.deployment.target),
                                  notice(self.deployment, thing, self.document_uri,
                                         self.inline),
                                  retain=True)
                execution.notified = time.time()
                self._set(execution, ExecutionStatus.QUEUED)
            if rollout.base_rate_per_minute is not None and rate < maximum:
                notified = sum(self.counts.values())
                succeeded = self.counts[ExecutionStatus.SUCCEEDED]
                if (rollout.notified_to_increase and
                        notified - notified_mark >= rollout.notified_to_increase) or \
                        (rollout.succeeded_to_increase and
                         succeeded - succeeded_mark >= rollout.succeeded_to_increase):
                    rate = min(rate * rollout.increment_factor, float(maximum))
                    notified_mark, succeeded_mark = notified, succeeded
                    log.info("deployment %s: rollout rate now %.3g per minute",
                             self.deployment.deployment_id, rate)
            await anyio.sleep(max((1.0 - tokens) * 60.0 / rate, 0.001))
