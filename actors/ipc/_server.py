"""The IPC socket server: a Unix domain socket for component processes.

Each connection first sends ``Connect`` with the component's token (env
``SVCUID``); afterwards it acts only as that component. Frames are handled in
order by one worker per connection; streaming operations (SubscribeToTopic...)
get a forwarding task each, which writes queued messages in batches and stops
pulling while the peer does not read (the subscription's own bounded queue
then applies its overflow policy, so a stuck reader costs bounded memory).

A bad token, an oversize or malformed frame gets one error frame and closes
that connection only; everything else keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc

from ._errors import IpcError
from ._service import CallContext, IpcService, StreamResult
from ._wire import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame

log = logging.getLogger("actors.ipc")

ENV_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
ENV_TOKEN = "SVCUID"
_MAX_PENDING = 1000
_BATCH = 512
_BAD_FRAME: dict[str, Any] = {}  # marks where the stream went bad (compared by identity)


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    connections: int
    accepted: int
    refused: int
    protocol_errors: int
    requests: int


class IpcServer:
    """Serves ``service`` on a Unix socket at ``path`` (mode 0600) while :meth:`serve` runs."""

    def __init__(self, service: IpcService, path: Path | str, *,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.service = service
        self.path = Path(path)
        self.max_frame = max_frame
        self._connections: set[_Connection] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self.accepted = 0
        self.refused = 0
        self.protocol_errors = 0
        self.requests = 0

    def environment(self, component: str) -> dict[str, str]:
        """The environment a component process needs: a fresh token and the socket path."""
        return {ENV_TOKEN: self.service.register_component(component),
                ENV_SOCKET: str(self.path)}

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen until cancelled; closes every connection and removes the socket file."""
        loop = asyncio.get_running_loop()
        sock = _bind(self.path)
        server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            server.close()
            for conn in list(self._connections):
                conn.abort()
            with anyio.CancelScope(shield=True):
                await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(len(self._connections), self.accepted, self.refused,
                                self.protocol_errors, self.requests)


def _bind(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # a stale socket from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The socket file's mode comes from the umask at bind time: never let it be
    # reachable by other users, even for the instant before the chmod.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.setblocking(False)
    return sock


class _Connection(asyncio.Protocol):
    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.decoder = FrameDecoder(server.max_frame)
        self.transport: asyncio.Transport | None = None
        self.component: str | None = None
        self.pending: deque[dict[str, Any]] = deque()
        self.wakeup: asyncio.Event = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.streams: dict[int, StreamResult] = {}
        self.scope = anyio.CancelScope()
        self.closing = False
        self.reading_paused = False

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tg = self.server._tg
        if tg is None:
            self.transport.abort()
            return
        self.server._connections.add(self)
        self.server.accepted += 1
        tg.start_soon(self._run)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        decoder = self.decoder
        self.pending.extend(decoder.feed(data))
        if decoder.error is not None:
            # Frames before the bad one are still handled, then the connection closes.
            self.pending.append(_BAD_FRAME)
        self.wakeup.set()
        if len(self.pending) > _MAX_PENDING and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.can_write.set()
        self.scope.cancel()
        self._close_streams()
        self.server._connections.discard(self)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    # -- helpers ---------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(encode_frame(frame))

    def fail(self, message: str, kind: str = "ProtocolError") -> None:
        """Send one error frame and close this connection (nothing else is affected)."""
        log.info("IPC connection (%s) closed: %s", self.component or "unauthenticated", message)
        self.send({"id": None, "error": {"type": kind, "message": message}})
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close_streams(self) -> None:
        for result in self.streams.values():
            result.stream.close()
        self.streams.clear()

    # -- the worker ------------------------------------------------------------

    async def _run(self) -> None:
        with self.scope:
            try:
                async with anyio.create_task_group() as tg:
                    await self._work(tg)
            finally:
                self._close_streams()

    async def _work(self, tg: anyio.abc.TaskGroup) -> None:
        pending = self.pending
        service = self.server.service
        while not self.closing:
            if not pending:
                if self.reading_paused and self.transport is not None:
                    self.reading_paused = False
                    self.transport.resume_reading()
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            frame = pending.popleft()
            if frame is _BAD_FRAME:
                self.server.protocol_errors += 1
                self.fail(str(self.decoder.error.args[0] if self.decoder.error else "bad frame"))
                return
            if self.component is None:
                self._connect(frame)
                continue
            ident = frame.get("id")
            if frame.get("close"):
                stream = self.streams.pop(ident, None) if isinstance(ident, int) else None
                if stream is not None:
                    stream.stream.close()
                continue
            op = frame.get("op")
            if not isinstance(ident, int) or isinstance(ident, bool) or not isinstance(op, str):
                self.server.protocol_errors += 1
                self.fail("a request frame needs an integer 'id' and a string 'op'")
                return
            self.server.requests += 1
            try:
                request = frame.get("request", {})
                result = await service.call(CallContext(self.component), op, request)
            except IpcError as exc:
                self.send({"id": ident, "error": {"type": exc.wire_name, "message": str(exc)}})
                continue
            except Exception as exc:
                log.exception("IPC operation %s of %s failed", op, self.component)
                self.send({"id": ident, "error": {"type": "ServiceError",
                                                  "message": f"{op} failed: {exc}"}})
                continue
            if isinstance(result, StreamResult):
                self.streams[ident] = result
                self.send({"id": ident, "response": result.response})
                tg.start_soon(self._forward, ident, result)
            else:
                self.send({"id": ident, "response": result})

    def _connect(self, frame: dict[str, Any]) -> None:
        request = frame.get("request")
        if frame.get("op") != "Connect" or not isinstance(request, dict):
            self.server.refused += 1
            self.fail("the first frame must be Connect with the component's authToken",
                      "UnauthorizedError")
            return
        try:
            self.component = self.server.service.authenticate(
                request.get("authToken"), request.get("componentName"))
        except IpcError as exc:
            self.server.refused += 1
            self.fail(str(exc), exc.wire_name)
            return
        self.send({"id": frame.get("id"), "response": {"componentName": self.component}})

    async def _forward(self, ident: int, result: StreamResult) -> None:
        sub, to_event = result.stream, result.to_event
        transport = self.transport
        assert transport is not None
        try:
            while True:
                await sub.wait()
                if not sub:
                    break  # closed and drained
                await self.can_write.wait()
                if self.closing:
                    return
                items = sub.drain(_BATCH)
                transport.write(b"".join(
                    [encode_frame({"id": ident, "event": to_event(item)}) for item in items]))
            self.send({"id": ident, "end": {}})
        finally:
            self.streams.pop(ident, None)
            sub.close()
