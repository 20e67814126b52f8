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

A subscription (SubscribeToTopic, SubscribeToIoTCore) to a filter with MQTT
wildcards is allowed only when every topic the filter can match is allowed by
the patterns of the component's policies for that operation, taken together
(filter ⊆ policy): ``ml/+`` allows the filters ``ml/+`` and ``ml/+/x`` but
not ``ml/#``, which would also receive ``ml/deep/secret/topic``; ``ml/*``
does not allow ``ml/#`` either (that filter also matches ``ml``), while
``ml/#`` or ``ml`` with ``ml/*`` does. The nucleus matches the filter's text
against the patterns instead, so there ``ml/+`` admits ``ml/#``; that is the
hole this closes. A refusal names a topic the filter would have received.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._errors import AccessControlError, InvalidArgumentsError, UnauthorizedError
from ._topics import check_topic_filter, is_wildcard

PUBSUB = "aws.greengrass.ipc.pubsub"
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"

PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"

_ESCAPES = {"${*}": "\x01", "${?}": "\x02", "${$}": "\x03"}
_LITERALS = {"\x01": "*", "\x02": "?", "\x03": "$"}


#: The operations whose resource is an MQTT topic filter.
SUBSCRIPTIONS = frozenset({SUBSCRIBE_TO_TOPIC, SUBSCRIBE_TO_IOT_CORE})


@dataclass(frozen=True, slots=True)
class Policy:
    """One accessControl policy of one component for one IPC service."""

    component: str
    service: str
    policy_id: str
    operations: frozenset[str]
    resources: tuple[str, ...]
    description: str = ""


#: Pattern items besides single characters: a run of any characters ("/" included)
#: and a run of characters within one level.
_ANY = 0
_LEVEL = 1
Items = tuple[str | int, ...]


def resource_alternatives(pattern: str, thing_name: str = "") -> list[Items]:
    """What a resource pattern allows, as alternatives of items (characters, :data:`_ANY`,
    :data:`_LEVEL`); ``a/#`` is the two alternatives ``a`` and ``a/<any>``."""
    text = pattern.replace("${iot:thingName}", thing_name)
    for escape, mark in _ESCAPES.items():
        text = text.replace(escape, mark)
    if text == "#":
        return [(_ANY,)]
    levels = text.split("/")
    items: list[str | int] = []
    for i, level in enumerate(levels):
        if i:
            items.append("/")
        if level == "+":
            items.append(_LEVEL)
        elif level == "#" and i == len(levels) - 1:
            # "a/#" allows "a", "a/" and everything under "a/"
            parent = tuple(items[:-1])
            return [parent, (*items, _ANY)] if i else [(_ANY,)]
        else:
            items.extend(_ANY if ch == "*" else _LITERALS.get(ch, ch) for ch in level)
    return [tuple(items)]


def compile_resource(pattern: str, thing_name: str = "") -> re.Pattern[str]:
    """The regular expression a resource pattern stands for (see the module docstring)."""
    pieces = {_ANY: ".*", _LEVEL: "[^/]*"}
    return re.compile("|".join(
        "".join(re.escape(item) if isinstance(item, str) else pieces[item] for item in items)
        for items in resource_alternatives(pattern, thing_name)), re.DOTALL)


def filter_alternatives(topic_filter: str) -> list[Items] | None:
    """The topics an MQTT subscription filter matches, as alternatives of items; ``None``
    when ``topic_filter`` is not a valid filter."""
    try:
        check_topic_filter(topic_filter)
    except InvalidArgumentsError:
        return None
    levels = topic_filter.split("/")
    items: list[str | int] = []
    for i, level in enumerate(levels):
        if i:
            items.append("/")
        if level == "+":
            items.append(_LEVEL)
        elif level == "#":  # the last level (checked): the parent and everything below
            return [tuple(items[:-1]), (*items, _ANY)] if i else [(_ANY,)]
        else:
            items.extend(level)
    return [tuple(items)]


_NOT_IN_TOPICS = frozenset("+#\x00")  # no topic name holds these (MQTT 3.1.1, 4.7.3)
#: How many states :func:`filter_witness` explores before it gives up (and refuses).
MAX_FILTER_STATES = 2_000
_OTHERS = "xyzq0123456789_" + "".join(map(chr, range(0xE000, 0xF900)))  # private use
_States = frozenset[tuple[int, int]]


def _closure(alternatives: list[Items], states: Iterable[tuple[int, int]]) -> _States:
    # A run item may match nothing: its state also stands at the next item.
    out: set[tuple[int, int]] = set()
    for alt, pos in states:
        items = alternatives[alt]
        out.add((alt, pos))
        while pos < len(items) and not isinstance(items[pos], str):
            pos += 1
            out.add((alt, pos))
    return frozenset(out)


def _step(alternatives: list[Items], states: _States, ch: str) -> _States:
    nxt: list[tuple[int, int]] = []
    for alt, pos in states:
        items = alternatives[alt]
        if pos == len(items):
            continue
        item = items[pos]
        if item == ch:
            nxt.append((alt, pos + 1))
        elif item == _ANY or (item == _LEVEL and ch != "/"):
            nxt.append((alt, pos))
    return _closure(alternatives, nxt)


def _universal(alternatives: list[Items], states: _States) -> bool:
    # A state before only "any run" items accepts every continuation.
    return any(pos < len(alternatives[alt])
               and all(item == _ANY for item in alternatives[alt][pos:]) for alt, pos in states)


def _accepts(alternatives: list[Items], states: _States) -> bool:
    return any(pos == len(alternatives[alt]) for alt, pos in states)


class FilterTooComplex(ValueError):
    """A subscription filter whose check against the policies would take too long."""


def filter_witness(topic_filter: str, allowed: list[Items]) -> str | None:
    """A topic that ``topic_filter`` matches and no alternative in ``allowed`` allows, or
    ``None`` when the filter's topics are a subset of the allowed ones (filter ⊆ policy).

    Both sides are small automata over one alphabet: the characters they name, ``/``,
    ``$`` and one character standing for every other; a breadth-first walk of their
    product looks for a topic the filter accepts and the policies do not. MQTT's rule
    that a filter starting with a wildcard does not match ``$`` topics is kept.
    """
    wanted = filter_alternatives(topic_filter)
    if wanted is None:
        raise ValueError(f"not an MQTT topic filter: {topic_filter!r}")
    named = {item for items in wanted + allowed for item in items if isinstance(item, str)}
    other = next(c for c in _OTHERS if c not in named)
    alphabet = sorted((named | {"/", "$", other}) - _NOT_IN_TOPICS)
    no_dollar_first = topic_filter[:1] in ("+", "#")
    _State = tuple[_States, _States, bool]  # filter's, policies', a character read
    start: _State = (_closure(wanted, ((a, 0) for a in range(len(wanted)))),
                     _closure(allowed, ((a, 0) for a in range(len(allowed)))), False)
    # Each state found remembers the state and character it was reached from, so the
    # witness is spelled out once at the end (not copied along every path).
    came_from: dict[_State, tuple[_State, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        mine, theirs, begun = state
        if _universal(allowed, theirs):
            continue  # the policies allow whatever follows
        if _accepts(wanted, mine) and not _accepts(allowed, theirs):
            chars: list[str] = []
            link = came_from[state]
            while link is not None:
                state, ch = link
                chars.append(ch)
                link = came_from[state]
            return "".join(reversed(chars))
        if len(came_from) > MAX_FILTER_STATES:
            raise FilterTooComplex(
                f"topic filter {topic_filter[:80]!r} is too complex to check against the "
                f"policies (more than {MAX_FILTER_STATES} states); use a simpler filter")
        for ch in alphabet:
            if ch == "$" and not begun and no_dollar_first:
                continue
            mine_next = _step(wanted, mine, ch)
            if not mine_next:
                continue
            nxt = (mine_next, _step(allowed, theirs, ch), True)
            if nxt not in came_from:
                came_from[nxt] = (state, ch)
                queue.append(nxt)
    return None


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


@dataclass(frozen=True, slots=True)
class _Compiled:
    operations: frozenset[str]
    patterns: list[re.Pattern[str]]
    alternatives: list[Items]


class Authorizer:
    """Holds every component's policies and answers "may this component do this?".

    Answers are cached per (component, service, operation, resource) until the
    policies change, so the check on the publish path is one dictionary lookup.
    """

    def __init__(self, access_control: Mapping[str, Any] | None = None, *,
                 thing_name: str = "") -> None:
        self.thing_name = thing_name
        self._policies: dict[str, list[Policy]] = {}
        self._compiled: dict[tuple[str, str], list[_Compiled]] = {}
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
            self._compiled.setdefault((component, policy.service), []).append(_Compiled(
                policy.operations,
                [compile_resource(r, self.thing_name) for r in policy.resources],
                [alt for r in policy.resources
                 for alt in resource_alternatives(r, self.thing_name)]))
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
            granted = [c for c in self._compiled.get((component, service), ())
                       if operation in c.operations or "*" in c.operations]
            if (operation in SUBSCRIPTIONS and is_wildcard(resource)
                    and filter_alternatives(resource) is not None):
                # A filter is allowed when every topic it matches is (filter ⊆ policy),
                # not when its text matches a pattern ("ml/#" is not in "ml/+").
                allowed = [alt for c in granted for alt in c.alternatives]
                try:
                    answer = filter_witness(resource, allowed) is None
                except FilterTooComplex:
                    answer = False
            else:
                answer = any(p.fullmatch(resource) for c in granted for p in c.patterns)
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[key] = answer
        return answer

    def check(self, component: str, service: str, operation: str, resource: str) -> None:
        """Raise :class:`UnauthorizedError` naming component, operation and resource if denied."""
        if self._cache.get((component, service, operation, resource)):
            return  # the publish path: one lookup
        if not self.is_authorized(component, service, operation, resource):
            why = ""
            if operation in SUBSCRIPTIONS and is_wildcard(resource):
                try:
                    topic = self.unauthorized_topic(component, service, operation, resource)
                except FilterTooComplex as exc:
                    why = f" ({exc})"
                except ValueError:  # checked before the operation's own argument checks
                    raise InvalidArgumentsError(
                        f"{operation}: {resource!r} is not a valid MQTT topic filter") from None
                else:
                    if topic is not None:
                        why = f" (the filter also matches {topic!r}, which no policy allows)"
            raise UnauthorizedError(
                f"Principal {component} is not authorized to perform {service}:{operation} on "
                f"resource {resource}{why} (component {component} needs a policy for it in its "
                "accessControl configuration)")

    def unauthorized_topic(self, component: str, service: str, operation: str,
                           topic_filter: str) -> str | None:
        """A topic ``topic_filter`` matches that ``component`` may not receive, if any."""
        allowed = [alt for c in self._compiled.get((component, service), ())
                   if operation in c.operations or "*" in c.operations
                   for alt in c.alternatives]
        return filter_witness(topic_filter, allowed)

    def all_policies(self) -> Iterable[Policy]:
        for policies in self._policies.values():
            yield from policies
