"""What an in-process component's entry point gets: its configuration, its
folders and those of its dependencies, and the bus to publish on."""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..kernel import ActorsError

#: The Setenv key that runs a step in process instead of its Script. The
#: Script stays a real command, so the recipe still works on Greengrass.
IN_PROCESS = "EDGE_ACTORS_IN_PROCESS"

Publisher = Callable[[str, Any], Awaitable[None]]
#: Seconds a request waits for a starting in-process component to call ``serve``.
SERVE_GRACE = 2.0
#: What an in-process component serves: a request message in, the reply out.
RequestHandler = Callable[[Any], Awaitable[Any]]


class EntryPointError(ActorsError, ImportError):
    """An in-process entry point cannot be imported: names the component and the entry point."""


async def _print_publish(topic: str, payload: Any) -> None:
    logging.getLogger("actors.publish").info("%s: %r", topic, payload)


@dataclass
class ComponentContext:
    """Handed to ``async def main(ctx)`` of an in-process component."""

    name: str
    version: str
    configuration: Mapping[str, Any]
    work: Path
    artifacts: Path
    decompressed: Path
    thing_name: str
    dependencies: Mapping[str, ComponentContext] = field(default_factory=dict)
    publish: Publisher = _print_publish
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("actors.component"))
    #: Lines for people, as a subprocess's stdout would be (printed by ``edge-actors run``).
    output: Callable[[str], None] = print
    _changed: anyio.Event = field(default_factory=anyio.Event, repr=False)
    handler: RequestHandler | None = field(default=None, repr=False)
    serving: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def serve(self, handler: RequestHandler | None) -> None:
        """Answer requests sent to this component (``Nucleus.ask``, the component
        actor's ``ask``) with ``await handler(message)``; None stops serving.
        Requests overlap: each runs as it arrives, while the entry point goes on.
        Call it first thing: requests that arrive before wait a moment for it
        (:data:`SERVE_GRACE`), then fail. A handler may itself wait (for a model
        to load, say)."""
        self.handler = handler
        if handler is not None:
            self.serving.set()
        elif self.serving.is_set():
            self.serving = anyio.Event()

    def reconfigure(self, configuration: Mapping[str, Any]) -> None:
        """Take a new configuration (a deployment's update) without a restart."""
        self.configuration = configuration
        self._changed.set()

    async def wait_configuration_change(self, timeout: float = math.inf) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as the configuration changed."""
        with anyio.move_on_after(timeout):
            await self._changed.wait()
        if self._changed.is_set():
            self._changed = anyio.Event()
            return True
        return False


EntryPoint = Callable[[ComponentContext], Awaitable[None]]


def load_entry_point(component: str, spec: str) -> EntryPoint:
    """``package.module:function`` -> the async function."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EntryPointError(f"component {component}: {IN_PROCESS}={spec!r} must be "
                              "'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EntryPointError(f"component {component}: cannot import {module_name} for "
                              f"{IN_PROCESS}={spec!r}: {exc}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise EntryPointError(f"component {component}: {module_name} has no function {attr!r} "
                              f"({IN_PROCESS}={spec!r})")
    entry: EntryPoint = function
    return entry
