"""IpcService: the IPC operations, authorized, behind one handler registry by operation name.

Both doors use it: the socket server (component processes) and the
in-process client (components that are actors). The typed methods
(``publish_to_topic``...) are the fast path for in-process callers; the
registry (:meth:`IpcService.call`) maps Greengrass operation names to handlers
that take and return JSON shapes, and is the extension point for the
operations the nucleus adds later (deployments, component list/restart/stop,
logs): ``service.register_operation("CreateLocalDeployment", handler)``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _wire
from ._auth import (
    MQTTPROXY,
    PUBLISH_TO_IOT_CORE,
    PUBLISH_TO_TOPIC,
    PUBSUB,
    SUBSCRIBE_TO_IOT_CORE,
    SUBSCRIBE_TO_TOPIC,
    Authorizer,
)
from ._broker import Broker, Overflow, ReceiveMode, Subscription
from ._config import ConfigurationProvider, InMemoryConfiguration, now_ms
from ._errors import (
    InvalidArgumentsError,
    InvalidTokenError,
    ServiceError,
    UnauthorizedError,
)
from ._message import MqttProperties
from ._model import COMPONENT_METRIC, STREAM_MANAGER, TRUSTED
from ._model import operation as model_operation
from ._topics import check_topic_filter, check_topic_name

if TYPE_CHECKING:
    from ._bridge import MqttBridge

log = logging.getLogger("actors.ipc")

#: The states a component may report with UpdateState.
REPORTABLE_STATES = ("RUNNING", "ERRORED")


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling: the component a token or an in-process client stands for."""

    component: str
    #: set by the dispatch when an accessControl policy allowed this call (the
    #: operations of aws.greengrass.Cli are then open to the component)
    authorized: bool = False


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What a streaming operation returns: the first response, then ``stream``'s items,
    each turned into a wire event by ``to_event``."""

    response: dict[str, Any]
    stream: Subscription
    to_event: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Deferral:
    """A DeferComponentUpdate request, as the deployment work will consume it."""

    component: str
    deployment_id: str
    message: str
    recheck_after_ms: int


Handler = Callable[[CallContext, dict[str, Any]], Awaitable[dict[str, Any] | StreamResult]]


class IotCore(Protocol):
    """What PublishToIoTCore/SubscribeToIoTCore need (the MQTT bridge implements it)."""

    async def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False,
                      properties: MqttProperties | None = None) -> None: ...

    def subscribe(self, component: str, topic_filter: str, qos: int) -> Subscription: ...


class IpcService:
    """The IPC operations of one runtime (see the module docstring).

    ``access_control`` maps component names to their configuration (or to its
    ``accessControl`` mapping); ``configuration`` is the configuration store
    (an :class:`InMemoryConfiguration` when not given); ``iot_core`` the MQTT
    bridge, if any.
    """

    def __init__(self, *, access_control: Mapping[str, Any] | None = None,
                 configuration: ConfigurationProvider | None = None,
                 iot_core: IotCore | MqttBridge | None = None, broker: Broker | None = None,
                 thing_name: str = "", queue_size: int = 1000) -> None:
        self.broker = broker or Broker(queue_size=queue_size)
        self.authorizer = Authorizer(access_control, thing_name=thing_name)
        self.configuration: ConfigurationProvider = configuration or InMemoryConfiguration()
        self.iot_core = iot_core
        self.queue_size = queue_size
        self._tokens: dict[str, str] = {}
        self._token_of: dict[str, str] = {}
        self._state_listeners: list[Callable[[str, str], None]] = []
        self._deferral_listeners: list[Callable[[Deferral], None]] = []
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        #: PutComponentMetric: component -> metric name -> {"unit", "value" (sum), "count"}
        self.metrics: dict[str, dict[str, dict[str, Any]]] = {}
        self._validators: list[Subscription] = []
        self._reports: dict[tuple[str, str], asyncio.Future[tuple[str, str]]] = {}
        self._update_listeners: list[Subscription] = []
        self._register_builtins()

    # -- components and tokens -----------------------------------------------

    def register_component(self, name: str) -> str:
        """A fresh secret token for ``name`` (its previous token stops working).

        Hand it to the component's process in env ``SVCUID``.
        """
        self.unregister_component(name)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = name
        self._token_of[name] = token
        return token

    def token_of(self, name: str) -> str | None:
        """``name``'s current token (None when it has none)."""
        return self._token_of.get(name)

    def unregister_component(self, name: str) -> None:
        """Revoke ``name``'s token (connections already open keep their identity)."""
        token = self._token_of.pop(name, None)
        if token is not None:
            self._tokens.pop(token, None)

    def authenticate(self, token: object, claimed: object = None) -> str:
        """The component ``token`` belongs to; raises :class:`UnauthorizedError`.

        A token is bound to one component: a connection that presents it acts
        only as that component, and one that claims another name is refused.
        """
        if not isinstance(token, str) or not token:
            raise UnauthorizedError("no authToken given: set SVCUID to the component's token")
        name = self._tokens.get(token)
        # compare_digest keeps the refusal of a near-miss token as slow as a hit
        if name is None or not hmac.compare_digest(self._token_of.get(name, ""), token):
            raise UnauthorizedError("the authToken (SVCUID) is not valid for any component")
        if claimed not in (None, "", name):
            raise UnauthorizedError(
                f"the authToken (SVCUID) does not belong to component {claimed}")
        return name

    def set_access_control(self, component: str, configuration: Mapping[str, Any] | str | None
                           ) -> None:
        """Replace ``component``'s policies after a configuration update."""
        self.authorizer.set_policies(component, configuration)

    # -- listeners for the nucleus -------------------------------------------

    def on_state(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(component, state)`` on every UpdateState."""
        self._state_listeners.append(listener)

    def on_deferral(self, listener: Callable[[Deferral], None]) -> None:
        """Call ``listener(deferral)`` on every DeferComponentUpdate."""
        self._deferral_listeners.append(listener)

    # -- the operations (typed fast path) ------------------------------------

    async def publish_to_topic(self, component: str, topic: str, payload: Any) -> None:
        """PublishToTopic: waits only while a backpressure subscriber's queue is full."""
        self.authorizer.check(component, PUBSUB, PUBLISH_TO_TOPIC, topic)
        broker = self.broker
        if broker._has_backpressure:
            await broker.publish(component, topic, payload)
        else:
            broker.publish_nowait(component, topic, payload)

    def publish_to_topic_nowait(self, component: str, topic: str, payload: Any) -> None:
        """PublishToTopic without waiting; raises SubscriberFull when a backpressure
        subscriber's queue is full (and then delivers to no one)."""
        self.authorizer.check(component, PUBSUB, PUBLISH_TO_TOPIC, topic)
        self.broker.publish_nowait(component, topic, payload)

    def subscribe_to_topic(self, component: str, topic: str,
                           receive_mode: ReceiveMode | str | None = None, *,
                           queue_size: int | None = None,
                           overflow: Overflow | str = Overflow.DROP_OLDEST) -> Subscription:
        check_topic_filter(topic)
        self.authorizer.check(component, PUBSUB, SUBSCRIBE_TO_TOPIC, topic)
        try:
            return self.broker.subscribe(component, topic, receive_mode=receive_mode,
                                         queue_size=queue_size, overflow=overflow)
        except ValueError as exc:
            raise InvalidArgumentsError(str(exc)) from None

    def _bridge(self) -> IotCore:
        if self.iot_core is None:
            raise ServiceError("no MQTT connection is configured in this runtime: give the "
                               "runtime an MQTT bridge (host, port, certificates)")
        return self.iot_core

    async def publish_to_iot_core(self, component: str, topic: str, payload: bytes,
                                  qos: int = 0, *, retain: bool = False,
                                  properties: MqttProperties | None = None) -> None:
        """PublishToIoTCore: ``retain`` and the MQTT 5 ``properties`` go to the broker with
        the message (the properties only over an MQTT 5 connection)."""
        check_topic_name(topic)
        _wire.check_mqtt_string(topic, "topicName")
        self.authorizer.check(component, MQTTPROXY, PUBLISH_TO_IOT_CORE, topic)
        if properties is not None:
            _wire.check_mqtt_properties(properties, payload)
        await self._bridge().publish(topic, bytes(payload), qos, retain=retain,
                                     properties=properties)

    def subscribe_to_iot_core(self, component: str, topic: str, qos: int = 0) -> Subscription:
        check_topic_filter(topic)
        self.authorizer.check(component, MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, topic)
        return self._bridge().subscribe(component, topic, qos)

    async def get_configuration(self, component: str, key_path: Sequence[str],
                                of: str | None = None) -> dict[str, Any]:
        """Greengrass's GetConfiguration: a leaf comes back as ``{leaf_key: value}``."""
        target = of or component
        value = await self.configuration.get(target, list(key_path))
        if not isinstance(value, dict):
            value = {str(key_path[-1]) if key_path else "": value}
        return {"componentName": target, "value": value}

    async def update_configuration(self, component: str, key_path: Sequence[str],
                                   value_to_merge: Mapping[str, Any],
                                   timestamp: float | None = None) -> None:
        """Merge into the caller's own configuration (Greengrass's timestamp rule applies)."""
        if not isinstance(value_to_merge, Mapping):
            raise InvalidArgumentsError("valueToMerge must be an object")
        await self.configuration.update(component, list(key_path), value_to_merge,
                                        now_ms() if timestamp is None else float(timestamp))

    def subscribe_to_configuration_update(self, component: str, key_path: Sequence[str],
                                          of: str | None = None) -> Subscription:
        """A stream of ``{"componentName", "keyPath"}`` events, one per change."""
        target = of or component
        sub = Subscription(None, component, "/".join(key_path), ReceiveMode.RECEIVE_ALL_MESSAGES,
                           self.queue_size, Overflow.DROP_OLDEST)
        unsubscribe = self.configuration.subscribe(
            target, list(key_path),
            lambda name, path: sub.deliver({"componentName": name, "keyPath": list(path)}))
        sub._on_close = unsubscribe
        return sub

    def update_state(self, component: str, state: str) -> None:
        """UpdateState: passed to the listeners (the component host keeps it)."""
        if state not in REPORTABLE_STATES:
            raise InvalidArgumentsError(
                f"state must be one of {', '.join(REPORTABLE_STATES)}, got {state!r}")
        for listener in list(self._state_listeners):
            listener(component, state)

    def defer_component_update(self, component: str, deployment_id: str, message: str = "",
                               recheck_after_ms: int = 0) -> None:
        deferral = Deferral(component, deployment_id, message, int(recheck_after_ms))
        for listener in list(self._deferral_listeners):
            listener(deferral)

    # -- the registry ----------------------------------------------------------

    def register_operation(self, name: str, handler: Handler, *, replace: bool = False) -> None:
        """Serve operation ``name`` with ``handler(context, request)``, which returns the
        response object or a :class:`StreamResult` for a streaming operation."""
        if name in self._handlers and not replace:
            raise ValueError(f"IPC operation {name} is already registered")
        self._handlers[name] = (handler, True)

    def call_nowait(self, context: CallContext, operation: str, request: dict[str, Any]
                    ) -> dict[str, Any] | None:
        """The answer of a unary operation that can be served without waiting (the
        socket's fast path, which saves a task switch per request), or None: then
        use :meth:`call`. Raises the operation's IpcError as :meth:`call` does."""
        if operation == "PublishToTopic" and not self.broker._has_backpressure \
                and self._handlers.get(operation) is self._builtin_publish:
            payload = _wire.publish_message_payload(request.get("publishMessage"))
            self.publish_to_topic_nowait(context.component, _str(request, "topic"), payload)
            return {}
        return None

    def operations(self) -> list[str]:
        return sorted(self._handlers)

    async def call(self, context: CallContext, operation: str, request: dict[str, Any]
                   ) -> dict[str, Any] | StreamResult:
        """Run ``operation`` for ``context.component``; raises the operation's IpcError.

        The service model (:mod:`._model`) says which accessControl service guards
        the operation and which request field is the resource; an operation the
        runtime does not serve answers as the nucleus does.
        """
        op = model_operation(operation)
        entry = self._handlers.get(op.name)
        if not isinstance(request, dict):
            raise InvalidArgumentsError(f"{op.name}: request must be an object")
        if entry is None:
            if op.provider is not None:
                raise ServiceError(f"Operation {op.full_name} is not supported by Greengrass: "
                                   f"component {op.provider}, which provides it, is not "
                                   "deployed")
            raise ServiceError(f"Operation {op.full_name} is not supported by this runtime; "
                               f"it serves {', '.join(self.operations())}")
        if op.service is not None and context.component not in TRUSTED \
                and context.component != op.service:
            resource = request.get(op.resource, "") if op.resource else "*"
            self.authorizer.check(context.component, op.service, op.full_name, str(resource))
            context = CallContext(context.component, True)
        return await entry[0](context, request)

    def _register_builtins(self) -> None:
        builtins: dict[str, Handler] = {
            "PublishToTopic": self._h_publish_to_topic,
            "SubscribeToTopic": self._h_subscribe_to_topic,
            "PublishToIoTCore": self._h_publish_to_iot_core,
            "SubscribeToIoTCore": self._h_subscribe_to_iot_core,
            "GetConfiguration": self._h_get_configuration,
            "UpdateConfiguration": self._h_update_configuration,
            "SubscribeToConfigurationUpdate": self._h_subscribe_to_configuration_update,
            "UpdateState": self._h_update_state,
            "DeferComponentUpdate": self._h_defer_component_update,
            "SubscribeToIoTCoreConnectionStatus": self._h_subscribe_to_connection_status,
            "ValidateAuthorizationToken": self._h_validate_authorization_token,
            "PutComponentMetric": self._h_put_component_metric,
            "SubscribeToValidateConfigurationUpdates": self._h_subscribe_to_validate,
            "SendConfigurationValidityReport": self._h_send_validity_report,
            "SubscribeToComponentUpdates": self._h_subscribe_to_component_updates,
        }
        for name, handler in builtins.items():
            self.register_operation(name, handler)
        self._builtin_publish = self._handlers["PublishToTopic"]

    async def _h_publish_to_topic(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        payload = _wire.publish_message_payload(req.get("publishMessage"))
        await self.publish_to_topic(ctx.component, _str(req, "topic"), payload)
        return {}

    async def _h_subscribe_to_topic(self, ctx: CallContext, req: dict[str, Any]) -> StreamResult:
        mode = req.get("receiveMode")
        if mode is not None and (not isinstance(mode, str) or mode not in ReceiveMode.__members__):
            raise InvalidArgumentsError(f"receiveMode must be one of "
                                        f"{', '.join(ReceiveMode.__members__)}, got {mode!r}")
        sub = self.subscribe_to_topic(ctx.component, _str(req, "topic"), mode)
        return StreamResult({}, sub, _wire.message_event)

    async def _h_publish_to_iot_core(self, ctx: CallContext, req: dict[str, Any]
                                     ) -> dict[str, Any]:
        payload = _wire.b64decode(req.get("payload", ""), "payload")
        await self.publish_to_iot_core(ctx.component, _str(req, "topicName"), payload,
                                       _wire.parse_qos(req.get("qos")),
                                       retain=_wire.parse_retain(req.get("retain")),
                                       properties=_wire.parse_mqtt_properties(req, payload))
        return {}

    async def _h_subscribe_to_iot_core(self, ctx: CallContext, req: dict[str, Any]
                                       ) -> StreamResult:
        sub = self.subscribe_to_iot_core(ctx.component, _str(req, "topicName"),
                                         _wire.parse_qos(req.get("qos")))
        return StreamResult({}, sub, _wire.iot_core_event)

    async def _h_get_configuration(self, ctx: CallContext, req: dict[str, Any]
                                   ) -> dict[str, Any]:
        return await self.get_configuration(ctx.component, _key_path(req),
                                            _opt_str(req, "componentName"))

    async def _h_update_configuration(self, ctx: CallContext, req: dict[str, Any]
                                      ) -> dict[str, Any]:
        timestamp = req.get("timestamp")
        if timestamp is not None and (not isinstance(timestamp, int | float)
                                      or isinstance(timestamp, bool)):
            raise InvalidArgumentsError("timestamp must be seconds since the epoch (a number)")
        if timestamp is not None:
            timestamp = float(timestamp) * 1000.0  # the wire's seconds, the store's ms
        value = req.get("valueToMerge")
        if not isinstance(value, dict):
            raise InvalidArgumentsError("valueToMerge must be an object")
        await self.update_configuration(ctx.component, _key_path(req), value, timestamp)
        return {}

    async def _h_subscribe_to_configuration_update(self, ctx: CallContext, req: dict[str, Any]
                                                   ) -> StreamResult:
        sub = self.subscribe_to_configuration_update(ctx.component, _key_path(req),
                                                     _opt_str(req, "componentName"))
        return StreamResult({}, sub, lambda event: {"configurationUpdateEvent": event})

    async def _h_update_state(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        self.update_state(ctx.component, _str(req, "state"))
        return {}

    async def _h_defer_component_update(self, ctx: CallContext, req: dict[str, Any]
                                        ) -> dict[str, Any]:
        recheck = req.get("recheckAfterMs", 0)
        if not isinstance(recheck, int):
            raise InvalidArgumentsError("recheckAfterMs must be an integer")
        self.defer_component_update(ctx.component, _str(req, "deploymentId"),
                                    str(req.get("message", "")), recheck)
        return {}

    # -- connection status, tokens, metrics --------------------------------------

    def subscribe_to_iot_core_connection_status(self, component: str) -> Subscription:
        """A stream of ``"CONNECTED"`` / ``"DISCONNECTED"``, one per change of the bridge's
        connection to the MQTT broker."""
        bridge = self._bridge()
        sub = Subscription(None, component, "$iotcore/connection", ReceiveMode.RECEIVE_ALL_MESSAGES,
                           self.queue_size, Overflow.DROP_OLDEST)
        listeners: list[Callable[[bool], None]] | None = getattr(bridge, "status_listeners",
                                                                  None)
        if listeners is None:
            raise ServiceError("this MQTT connection does not report its status")

        def listener(connected: bool) -> None:
            sub.deliver("CONNECTED" if connected else "DISCONNECTED")
        listeners.append(listener)
        sub._on_close = lambda: listeners.remove(listener) if listener in listeners else None
        return sub

    async def _h_subscribe_to_connection_status(self, ctx: CallContext, req: dict[str, Any]
                                                ) -> StreamResult:
        sub = self.subscribe_to_iot_core_connection_status(ctx.component)
        return StreamResult({}, sub,
                            lambda status: {"connectionStatusEvent": {"status": status}})

    async def _h_validate_authorization_token(self, ctx: CallContext, req: dict[str, Any]
                                              ) -> dict[str, Any]:
        # The nucleus lets only the stream manager validate tokens.
        if ctx.component != STREAM_MANAGER:
            raise UnauthorizedError(f"{ctx.component} is not authorized to perform "
                                    "aws.greengrass#ValidateAuthorizationToken")
        token = req.get("token")
        try:
            self.authenticate(token)
        except UnauthorizedError:
            raise InvalidTokenError("Invalid token used by stream manager when trying to "
                                    "authorize access to a resource") from None
        return {"isValid": True}

    def put_component_metric(self, component: str, metrics: object) -> None:
        """Keep ``component``'s metrics (summed per name), as the nucleus's telemetry does."""
        if not isinstance(metrics, list) or not metrics:
            raise InvalidArgumentsError("Null or Empty list of metrics found in "
                                        "PutComponentMetricRequest")
        checked: list[tuple[str, str, float]] = []
        for metric in metrics:
            if not isinstance(metric, dict):
                raise InvalidArgumentsError("Invalid argument found in PutComponentMetricRequest")
            name, unit, value = metric.get("name"), metric.get("unit"), metric.get("value")
            if not isinstance(name, str) or not name or len(name.encode()) > 32 \
                    or not isinstance(unit, str) or not unit \
                    or not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentsError("Invalid argument found in PutComponentMetricRequest")
            if re.sub(r"[^A-Za-z0-9]", "", unit).lower() not in _METRIC_UNITS:
                raise InvalidArgumentsError(f"Invalid telemetry unit {unit!r}: one of "
                                            "Seconds, Bytes, Count, Percent, ... (CloudWatch's)")
            if not component.startswith("aws.") and not self.authorizer.is_authorized(
                    component, COMPONENT_METRIC, "aws.greengrass#PutComponentMetric", name):
                raise UnauthorizedError(
                    f"Principal {component} is not authorized to perform {COMPONENT_METRIC}:"
                    f"aws.greengrass#PutComponentMetric with metric name {name}")
            checked.append((name, unit, float(value)))
        mine = self.metrics.setdefault(component, {})
        for name, unit, value in checked:
            entry = mine.setdefault(name, {"unit": unit, "value": 0.0, "count": 0})
            entry["unit"] = unit
            entry["value"] += value
            entry["count"] += 1

    async def _h_put_component_metric(self, ctx: CallContext, req: dict[str, Any]
                                      ) -> dict[str, Any]:
        self.put_component_metric(ctx.component, req.get("metrics"))
        return {}

    # -- configuration validation and component updates (for deployments) -------

    def _listener(self, component: str, kind: str, into: list[Subscription]) -> Subscription:
        sub = Subscription(None, component, kind, ReceiveMode.RECEIVE_ALL_MESSAGES,
                           self.queue_size, Overflow.DROP_OLDEST)
        into.append(sub)
        sub._on_close = lambda: into.remove(sub) if sub in into else None
        return sub

    async def _h_subscribe_to_validate(self, ctx: CallContext, req: dict[str, Any]
                                       ) -> StreamResult:
        sub = self._listener(ctx.component, "$validate", self._validators)
        return StreamResult({}, sub, lambda event: {"validateConfigurationUpdateEvent": event})

    def validation_subscribers(self) -> set[str]:
        return {sub.component for sub in self._validators}

    async def validate_configuration(self, component: str, configuration: Mapping[str, Any],
                                     deployment_id: str, timeout: float = 60.0
                                     ) -> tuple[str, str] | None:
        """Ask ``component`` (if it subscribed to SubscribeToValidateConfigurationUpdates)
        whether ``configuration`` is valid; ``(status, message)`` of its
        SendConfigurationValidityReport (``ACCEPTED``/``REJECTED``), or None when it
        did not subscribe. Raises TimeoutError after ``timeout`` s without a report."""
        subs = [s for s in self._validators if s.component == component]
        if not subs:
            return None
        key = (component, deployment_id)
        future = self._reports[key] = asyncio.get_running_loop().create_future()
        try:
            event = {"configuration": dict(configuration), "deploymentId": deployment_id}
            for sub in subs:
                sub.deliver(event)
            async with asyncio.timeout(timeout):
                status, text = await future
                return status, text
        finally:
            self._reports.pop(key, None)

    async def _h_send_validity_report(self, ctx: CallContext, req: dict[str, Any]
                                      ) -> dict[str, Any]:
        report = req.get("configurationValidityReport")
        if not isinstance(report, dict) or report.get("status") not in ("ACCEPTED", "REJECTED"):
            raise InvalidArgumentsError("configurationValidityReport must hold a status "
                                        "ACCEPTED or REJECTED and a deploymentId")
        deployment_id = str(report.get("deploymentId") or "")
        future = self._reports.get((ctx.component, deployment_id))
        if future is None:
            raise InvalidArgumentsError(f"Validation request either timed out or was never "
                                        f"made for deployment {deployment_id!r}")
        if not future.done():
            future.set_result((str(report["status"]), str(report.get("message") or "")))
        return {}

    async def _h_subscribe_to_component_updates(self, ctx: CallContext, req: dict[str, Any]
                                                ) -> StreamResult:
        sub = self._listener(ctx.component, "$updates", self._update_listeners)
        return StreamResult({}, sub, lambda event: event)

    def notify_component_update(self, deployment_id: str, *, post: bool = False,
                                is_ggc_restarting: bool = False) -> set[str]:
        """Tell every SubscribeToComponentUpdates stream that a deployment is about to
        update components (``post``: has updated them); the names of the components
        told. Their answers come as DeferComponentUpdate (see :meth:`on_deferral`)."""
        event: dict[str, Any] = (
            {"postUpdateEvent": {"deploymentId": deployment_id}} if post else
            {"preUpdateEvent": {"deploymentId": deployment_id,
                                "isGgcRestarting": is_ggc_restarting}})
        for sub in self._update_listeners:
            sub.deliver(event)
        return {sub.component for sub in self._update_listeners}


def _str(req: Mapping[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentsError(f"request field {key!r} must be a non-empty string")
    return value


def _opt_str(req: Mapping[str, Any], key: str) -> str | None:
    value = req.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentsError(f"request field {key!r} must be a string")
    return value


def _key_path(req: Mapping[str, Any]) -> list[str]:
    path = req.get("keyPath", [])
    if not isinstance(path, list) or not all(isinstance(k, str) for k in path):
        raise InvalidArgumentsError("keyPath must be a list of strings")
    return path


_METRIC_UNITS = frozenset(u.lower() for u in (
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "BytesPerSecond", "KilobytesPerSecond", "MegabytesPerSecond", "GigabytesPerSecond",
    "TerabytesPerSecond", "BitsPerSecond", "KilobitsPerSecond", "MegabitsPerSecond",
    "GigabitsPerSecond", "TerabitsPerSecond", "CountPerSecond", "None"))
