"""Authorization from each component's ``accessControl`` configuration, the Greengrass way.

A component's configuration holds, per IPC service, policies keyed by a policy
id that is unique across all components::

    accessControl:
      aws.greengrass.ipc.pubsub:
        com.example.Consumer:pubsub:1:
          policyDescription: Allows access to the inference results.
          operations: [aws.greengrass#SubscribeToTopic]
          resources: [ml/dlr/image-classification, ml/+/status]

An operation is allowed when one of the component's policies for that service
names the operation (or ``*``) and a resource pattern matches the resource.
Patterns follow the nucleus's MQTT-style lookup: ``*`` matches any run of
characters (``/`` included); ``+`` as a whole level matches one level; ``#``
as the last whole level matches that level and everything below (so
``ml/#`` also allows ``ml`` and the filter ``ml/#`` itself); elsewhere ``+``
and ``#`` are literal. ``${*}``, ``${?}`` and ``${$}`` stand for a literal
``*``, ``?`` and ``$``, and ``${iot:thingName}`` for the device's thing name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._errors import AccessControlError, UnauthorizedError

PUBSUB = "aws.greengrass.ipc.pubsub"
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"

PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"

_ESCAPES = {"${*}": "\x01", "${?}": "\x02", "${$}": "\x03"}
_LITERALS = {"\x01": "*", "\x02": "?", "\x03": "$"}


@dataclass(frozen=True, slots=True)
class Policy:
    """One accessControl policy of one component for one IPC service."""

    component: str
    service: str
    policy_id: str
    operations: frozenset[str]
    resources: tuple[str, ...]
    description: str = ""


def compile_resource(pattern: str, thing_name: str = "") -> re.Pattern[str]:
    """The regular expression a resource pattern stands for (see the module docstring)."""
    text = pattern.replace("${iot:thingName}", thing_name)
    for escape, mark in _ESCAPES.items():
        text = text.replace(escape, mark)
    if text == "#":
        return re.compile(r".*", re.DOTALL)
    levels = text.split("/")
    parts: list[str] = []
    for i, level in enumerate(levels):
        last = i == len(levels) - 1
        if level == "+":
            piece = r"[^/]*"
        elif level == "#" and last:
            # "a/#" allows "a", "a/" and everything under "a/"
            parts.append(r"(?:/.*)?" if parts else r".*")
            break
        else:
            piece = "".join(
                ".*" if ch == "*" else re.escape(_LITERALS.get(ch, ch)) for ch in level)
        parts.append(piece if i == 0 else "/" + piece)
    return re.compile("".join(parts), re.DOTALL)


def parse_access_control(component: str, configuration: Mapping[str, Any] | str | None
                         ) -> list[Policy]:
    """The policies in one component's configuration (its ``accessControl`` key, or the
    accessControl mapping itself (keys ``aws.greengrass.*``), or that mapping as JSON text).

    Raises :class:`AccessControlError` naming the component and policy when malformed.
    """
    if configuration is None:
        return []
    access: Any = configuration
    if isinstance(access, Mapping):
        if "accessControl" in access:
            access = access["accessControl"]
        elif not all(str(key).startswith("aws.greengrass.") for key in access):
            return []  # a configuration without accessControl: no policies
    if isinstance(access, str | bytes):
        try:
            access = orjson.loads(access)
        except orjson.JSONDecodeError as exc:
            raise AccessControlError(
                f"component {component}: accessControl is not valid JSON: {exc}") from None
    if access is None:
        return []
    if not isinstance(access, Mapping):
        raise AccessControlError(
            f"component {component}: accessControl must map IPC service names to policies, "
            f"got {type(access).__name__}")
    policies: list[Policy] = []
    for service, by_id in access.items():
        if not isinstance(by_id, Mapping):
            raise AccessControlError(
                f"component {component}: accessControl.{service} must map policy ids to "
                f"policies")
        for policy_id, body in by_id.items():
            where = f"component {component}: accessControl.{service}.{policy_id}"
            if not isinstance(body, Mapping):
                raise AccessControlError(f"{where} must be a mapping with operations/resources")
            operations = body.get("operations")
            resources = body.get("resources", ["*"])
            if (not isinstance(operations, list) or not operations
                    or not all(isinstance(o, str) for o in operations)):
                raise AccessControlError(f"{where}: 'operations' must be a non-empty list of "
                                         f"operation names such as aws.greengrass#PublishToTopic")
            if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
                raise AccessControlError(f"{where}: 'resources' must be a list of strings")
            policies.append(Policy(component, str(service), str(policy_id),
                                   frozenset(operations), tuple(resources),
                                   str(body.get("policyDescription", ""))))
    return policies


class Authorizer:
    """Holds every component's policies and answers "may this component do this?".

    Answers are cached per (component, service, operation, resource) until the
    policies change, so the check on the publish path is one dictionary lookup.
    """

    def __init__(self, access_control: Mapping[str, Any] | None = None, *,
                 thing_name: str = "") -> None:
        self.thing_name = thing_name
        self._policies: dict[str, list[Policy]] = {}
        self._compiled: dict[tuple[str, str], list[tuple[frozenset[str], list[re.Pattern[str]]]]]
        self._compiled = {}
        self._cache: dict[tuple[str, str, str, str], bool] = {}
        for component, configuration in (access_control or {}).items():
            self.set_policies(component, configuration)

    def set_policies(self, component: str, configuration: Mapping[str, Any] | str | None
                     ) -> None:
        """Replace ``component``'s policies (on a configuration update); ``None`` removes them.

        Raises :class:`AccessControlError` (and keeps the old policies) when the new
        ones are malformed or reuse a policy id of another component.
        """
        policies = parse_access_control(component, configuration)
        owners = {p.policy_id: p.component for c, ps in self._policies.items() if c != component
                  for p in ps}
        seen: set[str] = set()
        for policy in policies:
            other = owners.get(policy.policy_id)
            if other is not None:
                raise AccessControlError(
                    f"component {component}: policy id {policy.policy_id!r} is already used by "
                    f"component {other}; policy ids must be unique across components")
            if policy.policy_id in seen:
                raise AccessControlError(
                    f"component {component}: policy id {policy.policy_id!r} appears twice")
            seen.add(policy.policy_id)
        self._policies[component] = policies
        for key in [k for k in self._compiled if k[0] == component]:
            del self._compiled[key]
        for policy in policies:
            self._compiled.setdefault((component, policy.service), []).append(
                (policy.operations,
                 [compile_resource(r, self.thing_name) for r in policy.resources]))
        self._cache.clear()

    def remove(self, component: str) -> None:
        self._policies.pop(component, None)
        for key in [k for k in self._compiled if k[0] == component]:
            del self._compiled[key]
        self._cache.clear()

    def policies(self, component: str) -> list[Policy]:
        return list(self._policies.get(component, ()))

    def is_authorized(self, component: str, service: str, operation: str, resource: str) -> bool:
        key = (component, service, operation, resource)
        answer = self._cache.get(key)
        if answer is None:
            answer = any(
                (operation in ops or "*" in ops) and any(p.fullmatch(resource) for p in patterns)
                for ops, patterns in self._compiled.get((component, service), ()))
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[key] = answer
        return answer

    def check(self, component: str, service: str, operation: str, resource: str) -> None:
        """Raise :class:`UnauthorizedError` naming component, operation and resource if denied."""
        if self._cache.get((component, service, operation, resource)):
            return  # the publish path: one lookup
        if not self.is_authorized(component, service, operation, resource):
            raise UnauthorizedError(
                f"Principal {component} is not authorized to perform {service}:{operation} on "
                f"resource {resource} (component {component} needs a policy for it in its "
                "accessControl configuration)")

    def all_policies(self) -> Iterable[Policy]:
        for policies in self._policies.values():
            yield from policies
