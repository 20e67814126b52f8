"""The configuration seam of the IPC operations, and a simple in-memory store behind it.

GetConfiguration, UpdateConfiguration and SubscribeToConfigurationUpdate go
through a :class:`ConfigurationProvider`; the crash-safe configuration store
(``actors.config``) will implement it. :class:`InMemoryConfiguration` is the
small implementation used by tests and by embedders that need nothing more.

Greengrass's timestamp rule: every leaf remembers the timestamp (milliseconds
since the epoch) of the update that wrote it; an update that would overwrite a
leaf written with a newer timestamp is refused as a whole with
:class:`FailedUpdateConditionCheckError`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._errors import FailedUpdateConditionCheckError, InvalidArgumentsError, ResourceNotFoundError

log = logging.getLogger("actors.ipc")

ConfigListener = Callable[[str, tuple[str, ...]], None]
"""Called with (component name, key path of the changed value), once per changed value."""


class ConfigurationProvider(Protocol):
    """What the IPC configuration operations need from a configuration store."""

    async def get(self, component: str, key_path: Sequence[str]) -> Any:
        """The value at ``key_path`` of ``component``'s configuration (a copy).

        Raises :class:`ResourceNotFoundError` when the component or key is unknown.
        """
        ...

    async def update(self, component: str, key_path: Sequence[str],
                     value_to_merge: Mapping[str, Any], timestamp: float) -> None:
        """Merge ``value_to_merge`` into the object at ``key_path`` (created if missing).

        Raises :class:`FailedUpdateConditionCheckError` when ``timestamp`` (ms since
        the epoch) is older than a value it would overwrite.
        """
        ...

    def subscribe(self, component: str, key_path: Sequence[str],
                  listener: ConfigListener) -> Callable[[], None]:
        """Call ``listener`` after every change at or under ``key_path``; returns an
        unsubscribe function."""
        ...


def now_ms() -> float:
    return time.time() * 1000.0


class InMemoryConfiguration:
    """A :class:`ConfigurationProvider` holding configurations in memory."""

    def __init__(self, configurations: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._values: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, dict[tuple[str, ...], float]] = {}
        self._listeners: list[tuple[str, tuple[str, ...], ConfigListener]] = []
        for component, config in (configurations or {}).items():
            self.set_component(component, config)

    def set_component(self, component: str, configuration: Mapping[str, Any],
                      timestamp: float = 0.0) -> None:
        """Replace ``component``'s whole configuration (what a deployment does)."""
        self._values[component] = copy.deepcopy(dict(configuration))
        stamps: dict[tuple[str, ...], float] = {}
        for path, _ in _leaves(self._values[component], ()):
            stamps[path] = timestamp
        self._stamps[component] = stamps
        self._notify(component, ())

    def components(self) -> list[str]:
        return list(self._values)

    async def get(self, component: str, key_path: Sequence[str]) -> Any:
        return self.get_nowait(component, key_path)

    def get_nowait(self, component: str, key_path: Sequence[str]) -> Any:
        if component not in self._values:
            raise ResourceNotFoundError(f"component {component} has no configuration")
        node: Any = self._values[component]
        for i, key in enumerate(key_path):
            if not isinstance(node, dict) or key not in node:
                raise ResourceNotFoundError(
                    f"component {component}: configuration key "
                    f"/{'/'.join(map(str, key_path[:i + 1]))} does not exist")
            node = node[key]
        return copy.deepcopy(node)

    async def update(self, component: str, key_path: Sequence[str],
                     value_to_merge: Mapping[str, Any], timestamp: float) -> None:
        self.update_nowait(component, key_path, value_to_merge, timestamp)

    def update_nowait(self, component: str, key_path: Sequence[str],
                      value_to_merge: Mapping[str, Any], timestamp: float) -> None:
        if not isinstance(value_to_merge, Mapping):
            raise InvalidArgumentsError(
                f"component {component}: valueToMerge must be an object, got "
                f"{type(value_to_merge).__name__}")
        base = tuple(str(k) for k in key_path)
        stamps = self._stamps.setdefault(component, {})
        root = self._values.setdefault(component, {})
        # Check first, write after: a refused update changes nothing.
        node: Any = root
        for i, key in enumerate(base):
            if not isinstance(node, dict):
                raise InvalidArgumentsError(
                    f"component {component}: /{'/'.join(base[:i])} is a value, not an object")
            node = node.get(key, {})
        for path, _ in _leaves(dict(value_to_merge), base):
            for prefix_len in range(len(base) + 1, len(path) + 1):
                stamp = stamps.get(path[:prefix_len])
                if stamp is not None and stamp > timestamp:
                    raise FailedUpdateConditionCheckError(
                        f"component {component}: configuration key /{'/'.join(path)} was "
                        f"updated at {stamp:.0f} ms, after this update's timestamp "
                        f"{timestamp:.0f} ms; send a newer timestamp")
        target = root
        for key in base:
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            target = child
        _merge(target, copy.deepcopy(dict(value_to_merge)))
        changed = [path for path, _ in _leaves(dict(value_to_merge), base)]
        for path in changed:
            stamps[path] = timestamp
        for path in changed:
            self._notify(component, path)

    def subscribe(self, component: str, key_path: Sequence[str],
                  listener: ConfigListener) -> Callable[[], None]:
        entry = (component, tuple(str(k) for k in key_path), listener)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
        return unsubscribe

    def _notify(self, component: str, changed: tuple[str, ...]) -> None:
        for name, path, listener in list(self._listeners):
            # A subscriber to /a hears about changes to /a and below, and about a
            # replacement of a parent of /a.
            n = min(len(path), len(changed))
            if name == component and path[:n] == changed[:n]:
                try:
                    listener(component, changed if len(changed) >= len(path) else path)
                except Exception:
                    log.exception("configuration listener %r failed", listener)


def _leaves(value: dict[str, Any], prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, item in value.items():
        path = (*prefix, str(key))
        if isinstance(item, dict) and item:
            out.extend(_leaves(item, path))
        else:
            out.append((path, item))
    return out


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
