"""An aiomqtt client that never registers a reader or writer on a closed socket.

aiomqtt (2.x) registers paho's socket with the event loop through
``call_soon_threadsafe(loop.add_reader / add_writer, fd, ...)``. When a
connection fails right after the socket opened (a TLS handshake the broker
refuses, a broker killed mid-connect), paho closes the socket before the
deferred call runs: the loop then registers a closed descriptor (EBADF in the
loop's exception handler) or, worse, a number the process has meanwhile
reused for another file or socket. The guard below drops such a deferred
registration unless paho still holds the very socket it was made for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt


class _GuardedLoop:
    """The client's view of the event loop: everything passes through except stale
    reader/writer registrations."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: aiomqtt.Client) -> None:
        self._loop = loop
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Any:
        loop = self._loop
        if args and (callback == loop.add_reader or callback == loop.add_writer):
            paho = self._client._client
            sock, fd = paho.socket(), args[0]

            def register_if_still_open() -> None:
                current = paho.socket()
                if current is not None and current is sock and current.fileno() == fd:
                    callback(*args)

            return loop.call_soon_threadsafe(register_if_still_open)
        return loop.call_soon_threadsafe(callback, *args)


class Client(aiomqtt.Client):
    """``aiomqtt.Client`` with the guarded loop (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = _GuardedLoop(self._loop, self)  # type: ignore[assignment]
