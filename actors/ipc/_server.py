"""The IPC socket server: Greengrass's eventstream RPC on a Unix domain socket.

A component process (the AWS IoT Device SDK, or :mod:`actors.ipc.client`)
connects to ``$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and
sends CONNECT with ``{"authToken": "<SVCUID>"}``; a known token gets a
CONNECT_ACK with the accepted flag and the connection acts as that component
only; any other gets a CONNECT_ACK without it and is closed. Then each stream
(ids 1, 2, 3 ... in order) is one operation: the request, the response
(ending the stream for a unary operation) and, for a streaming one, events
until either side ends it (the client's cancel is an empty message with
TERMINATE_STREAM). Requests of one connection are handled in order.

Bad input never reaches further than its own connection: a malformed message
(CRC, length, headers, a stream id out of order, a message type where it does
not belong) gets PROTOCOL_ERROR and the connection is closed; an unexpected
failure INTERNAL_ERROR. Memory per connection and overall is bounded
(:class:`Limits`): a connection must authenticate within a deadline and may
send only small messages before it has; buffered input and queued output
have per-connection and global byte budgets (events for a subscriber that
does not read are dropped, counted and logged, as MQTT brokers do); and a
connection may hold only so many open streams.
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
import orjson

from ..kernel._errors import WouldBlock
from . import _rpc
from ._errors import (
    InvalidArgumentsError,
    IpcError,
    ServiceError,
    UnauthorizedError,
    error_shape,
)
from ._eventstream import MAX_MESSAGE, Decoder
from ._model import Operation, operation
from ._service import CallContext, IpcService, StreamResult

log = logging.getLogger("actors.ipc")

ENV_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
ENV_TOKEN = "SVCUID"
DEFAULT_MAX_FRAME = MAX_MESSAGE
_BATCH = 512


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection, and all of them together, may cost the runtime."""

    #: seconds a new connection has to send a valid CONNECT
    auth_timeout: float = 5.0
    #: the largest first message, CONNECT (the SDK's is ~113 bytes)
    max_message_unauthenticated: int = 16 << 10
    #: the largest message afterwards (eventstream's own limit: 24 MiB)
    max_message: int = MAX_MESSAGE
    #: decoded requests waiting for the connection's worker before reading pauses
    input_per_connection: int = 1 << 20
    #: input held by all connections (incomplete and waiting messages)
    input_total: int = 64 << 20
    #: the kernel-side write buffer before a connection counts as not reading
    write_buffer: int = 256 << 10
    #: events queued for a connection that does not read before they are dropped
    output_per_connection: int = 4 << 20
    #: events queued for all connections that do not read
    output_total: int = 64 << 20
    #: open streams (subscriptions) per connection
    streams_per_connection: int = 1000


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    connections: int
    accepted: int
    refused: int
    protocol_errors: int
    requests: int
    dropped_events: int = 0
    input_bytes: int = 0
    output_bytes: int = 0


class IpcServer:
    """Serves ``service`` on a Unix socket at ``path`` (mode 0600) while :meth:`serve` runs."""

    def __init__(self, service: IpcService, path: Path | str, *,
                 max_frame: int = DEFAULT_MAX_FRAME, limits: Limits | None = None) -> None:
        self.service = service
        self.path = Path(path)
        limits = limits or Limits()
        if max_frame != limits.max_message:
            limits = Limits(**{**{f: getattr(limits, f) for f in Limits.__dataclass_fields__},
                               "max_message": min(max_frame, MAX_MESSAGE)})
        self.limits = limits
        self.max_frame = limits.max_message
        self._connections: set[_Connection] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self.accepted = 0
        self.refused = 0
        self.protocol_errors = 0
        self.requests = 0
        self.dropped_events = 0
        self.input_bytes = 0
        self.output_bytes = 0

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
                                self.protocol_errors, self.requests, self.dropped_events,
                                self.input_bytes, self.output_bytes)


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


class _Stream:
    __slots__ = ("op", "result", "stream_id")

    def __init__(self, stream_id: int, op: Operation, result: StreamResult) -> None:
        self.stream_id = stream_id
        self.op = op
        self.result = result


class _Connection(asyncio.Protocol):
    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.limits = server.limits
        # the first message (CONNECT) is small; a refused one closes the connection
        self.decoder = Decoder(self.limits.max_message_unauthenticated,
                               then_max=self.limits.max_message)
        self.transport: asyncio.Transport | None = None
        self.component: str | None = None
        self.context: CallContext | None = None  # the component's, once it is known
        self.pending: deque[tuple[dict[str, Any], bytes]] = deque()
        self.pending_bytes = 0
        self.held = 0  # this connection's share of server.input_bytes
        self.wakeup = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.outbox: deque[tuple[bytes, int]] = deque()
        self.outbox_bytes = 0
        self.dropped = 0
        self.streams: dict[int, _Stream] = {}
        self.latest_stream = 0
        self.scope = anyio.CancelScope()
        self.closing = False
        self.busy = False  # the worker is handling a request
        self.reading_paused = False
        self.deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        tg = self.server._tg
        if tg is None:
            self.transport.abort()
            return
        self.transport.set_write_buffer_limits(high=self.limits.write_buffer)
        self.server._connections.add(self)
        self.server.accepted += 1
        self.deadline = asyncio.get_running_loop().call_later(
            self.limits.auth_timeout, self._auth_expired)
        tg.start_soon(self._run)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        decoder = self.decoder
        messages = decoder.feed(data)
        if messages and not self.pending and not self.busy and self.component is not None:
            messages = self._serve_now(messages)
        if messages:
            self.pending.extend(messages)
            self.pending_bytes += sum(len(p) + 64 for _, p in messages)
            self.wakeup.set()
        if decoder.error is not None:
            # Messages before the bad one are still handled, then the connection closes.
            self.pending.append(({}, b""))
            self.wakeup.set()
            return
        if not self.held and not self.pending_bytes and not decoder.buffered:
            return  # every request answered, nothing held before or now: no budget moved
        self._account()
        limits = self.limits
        server = self.server
        while server.input_bytes > limits.input_total:
            # Over the global budget: the connection holding the largest incomplete
            # message goes (a hog parking data, not whoever arrives next).
            hog = max(server._connections, key=lambda c: c.decoder.buffered, default=None)
            if hog is None or hog.decoder.buffered == 0:
                break  # only complete requests waiting: reading pauses per connection
            server.protocol_errors += 1
            hog.fail(_rpc.INTERNAL_ERROR,
                     f"the runtime's IPC input budget ({limits.input_total} bytes for all "
                     f"connections) is used up; this connection held the largest incomplete "
                     f"message ({hog.decoder.buffered} bytes)")
            hog.release_input()
            if hog is self:
                return
        if self.pending_bytes > limits.input_per_connection and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _serve_now(self, messages: list[tuple[dict[str, Any], bytes]]
                   ) -> list[tuple[dict[str, Any], bytes]]:
        """Answer the leading requests that need no waiting right here (in order: only
        while the worker has nothing queued); the rest go to the worker."""
        service = self.server.service
        for i, (headers, payload) in enumerate(messages):
            stream_id = headers.get(":stream-id")
            message_type = headers.get(":message-type")
            if (type(message_type) is not int or message_type != _rpc.APPLICATION_MESSAGE
                    or type(stream_id) is not int or stream_id != self.latest_stream + 1
                    or type(headers.get(":message-flags")) is not int
                    or not self.can_write.is_set()):
                return messages[i:]
            op = operation(str(headers.get("operation", "")))
            assert self.context is not None
            result: dict[str, Any] | IpcError | None
            try:
                request = orjson.loads(payload) if payload else {}
                if not isinstance(request, dict):
                    return messages[i:]
                result = service.call_nowait(self.context, op.name, request)
            except (orjson.JSONDecodeError, WouldBlock):
                return messages[i:]
            except IpcError as exc:
                result = exc
            if result is None:
                return messages[i:]
            self.latest_stream = stream_id
            self.server.requests += 1
            if isinstance(result, IpcError):
                self.send(_rpc.error(stream_id, error_shape(result), str(result)))
            else:
                self.send(_rpc.response(op).message(stream_id, orjson.dumps(result)))
        return []

    def release_input(self) -> None:
        """Forget buffered input (the connection is closing)."""
        self.pending.clear()
        self.pending_bytes = 0
        self.decoder = Decoder(0)
        self._account()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.can_write.set()
        self.scope.cancel()
        self._close_streams()
        self.release_input()
        self._drop_outbox()
        if self.deadline is not None:
            self.deadline.cancel()
        self.server._connections.discard(self)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()
        self._flush_outbox()

    # -- budgets ---------------------------------------------------------------

    def _account(self) -> None:
        held = self.decoder.buffered + self.pending_bytes
        self.server.input_bytes += held - self.held
        self.held = held

    def _queue_output(self, data: bytes, count: int) -> None:
        """Write events now, or queue them while the peer does not read (within budget)."""
        transport = self.transport
        if transport is None or self.closing:
            return
        if self.can_write.is_set() and not self.outbox:
            transport.write(data)
            return
        self.outbox.append((data, count))
        self.outbox_bytes += len(data)
        self.server.output_bytes += len(data)
        limits = self.limits
        dropped = 0
        while self.outbox and (self.outbox_bytes > limits.output_per_connection
                               or self.server.output_bytes > limits.output_total):
            old, n = self.outbox.popleft()
            self.outbox_bytes -= len(old)
            self.server.output_bytes -= len(old)
            dropped += n
        if dropped:
            before = self.dropped
            self.dropped += dropped
            self.server.dropped_events += dropped
            if before == 0 or before // 1000 != self.dropped // 1000:
                log.warning("IPC: component %s does not read its streams; %d events dropped "
                            "so far (output budget %d bytes per connection, %d in all)",
                            self.component, self.dropped, limits.output_per_connection,
                            limits.output_total)

    def _flush_outbox(self) -> None:
        transport = self.transport
        while self.outbox and self.can_write.is_set() and transport is not None \
                and not self.closing:
            data, _ = self.outbox.popleft()
            self.outbox_bytes -= len(data)
            self.server.output_bytes -= len(data)
            transport.write(data)

    def _drop_outbox(self) -> None:
        self.server.output_bytes -= self.outbox_bytes
        self.outbox_bytes = 0
        self.outbox.clear()

    # -- helpers ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def fail(self, message_type: int, message: str) -> None:
        """Send PROTOCOL_ERROR / INTERNAL_ERROR and close this connection (only this one)."""
        log.info("IPC connection (%s) closed: %s", self.component or "unauthenticated", message)
        self.send(_rpc.connection_error(message_type, message))
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _auth_expired(self) -> None:
        if self.component is None and not self.closing:
            self.server.refused += 1
            self.fail(_rpc.PROTOCOL_ERROR, f"no CONNECT with a valid authToken within "
                                           f"{self.limits.auth_timeout:g} s")

    def _close_streams(self) -> None:
        for stream in self.streams.values():
            stream.result.stream.close()
        self.streams.clear()

    # -- the worker ------------------------------------------------------------

    async def _run(self) -> None:
        with self.scope:
            try:
                async with anyio.create_task_group() as tg:
                    await self._work(tg)
            except Exception:
                log.exception("IPC connection of %s failed", self.component)
                self.fail(_rpc.INTERNAL_ERROR, "the runtime failed handling this connection")
            finally:
                self._close_streams()

    async def _work(self, tg: anyio.abc.TaskGroup) -> None:
        pending = self.pending
        while not self.closing:
            if not pending:
                if self.reading_paused and self.transport is not None:
                    self.reading_paused = False
                    self.transport.resume_reading()
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            if not self.can_write.is_set():
                await self.can_write.wait()  # replies wait for a peer that reads
                continue
            headers, payload = pending.popleft()
            self.pending_bytes -= len(payload) + 64
            self._account()
            if not headers:
                error = self.decoder.error
                self.server.protocol_errors += 1
                self.fail(_rpc.PROTOCOL_ERROR, str(error) if error else "malformed message")
                return
            try:
                message_type, flags, stream_id = _rpc.rpc_fields(headers)
            except ValueError as exc:
                self._protocol_error(str(exc))
                return
            if self.component is None:
                if message_type != _rpc.CONNECT or stream_id != 0:
                    self.server.refused += 1
                    self._protocol_error("the first message must be CONNECT on stream 0")
                    return
                self._connect(payload)
                continue
            if stream_id == 0:
                if message_type == _rpc.PING:
                    self.send(_rpc.message(_rpc.PING_RESPONSE, 0, payload))
                elif message_type == _rpc.PING_RESPONSE:
                    pass
                elif message_type == _rpc.CONNECT:
                    self._protocol_error("only one CONNECT is allowed per connection")
                    return
                else:
                    self._protocol_error(f"{_type_name(message_type)} is not allowed on "
                                         "stream 0")
                    return
                continue
            if message_type not in (_rpc.APPLICATION_MESSAGE, _rpc.APPLICATION_ERROR):
                self._protocol_error(f"{_type_name(message_type)} is not allowed on stream "
                                     f"{stream_id}")
                return
            stream = self.streams.get(stream_id)
            if stream is not None:
                if flags & _rpc.TERMINATE_STREAM:  # the client's cancel
                    del self.streams[stream_id]
                    stream.result.stream.close()
                continue
            if stream_id <= self.latest_stream:
                continue  # a stream that already ended (e.g. a cancel crossing its end)
            if stream_id != self.latest_stream + 1:
                self._protocol_error(f"stream id {stream_id} is not the next one "
                                     f"({self.latest_stream + 1})")
                return
            name = headers.get("operation")
            if not isinstance(name, str) or not name:
                self._protocol_error(f"stream {stream_id} starts without an operation header")
                return
            self.latest_stream = stream_id
            if message_type == _rpc.APPLICATION_MESSAGE:
                self.busy = True
                try:
                    await self._request(tg, stream_id, name, payload)
                finally:
                    self.busy = False

    def _protocol_error(self, message: str) -> None:
        self.server.protocol_errors += 1
        self.fail(_rpc.PROTOCOL_ERROR, message)

    def _connect(self, payload: bytes) -> None:
        try:
            request = orjson.loads(payload) if payload else {}
            if not isinstance(request, dict):
                raise UnauthorizedError("CONNECT's payload must be {\"authToken\": ...}")
            self.component = self.server.service.authenticate(
                request.get("authToken"), request.get("componentName"))
        except (IpcError, orjson.JSONDecodeError) as exc:
            self.server.refused += 1
            log.info("IPC connection refused: %s", exc)
            # the SDK reads only the flags; our client shows the reason
            self.send(_rpc.message(_rpc.CONNECT_ACK, 0, orjson.dumps({"message": str(exc)}), 0))
            self.closing = True
            if self.transport is not None:
                self.transport.close()
            return
        self.context = CallContext(self.component)
        if self.deadline is not None:
            self.deadline.cancel()
        self.send(_rpc.message(_rpc.CONNECT_ACK, 0, orjson.dumps({"componentName": self.component}),
                               _rpc.CONNECTION_ACCEPTED))

    async def _request(self, tg: anyio.abc.TaskGroup, stream_id: int, name: str,
                       payload: bytes) -> None:
        op = operation(name)
        self.server.requests += 1
        assert self.component is not None
        try:
            try:
                request = orjson.loads(payload) if payload else {}
            except orjson.JSONDecodeError as exc:
                raise InvalidArgumentsError(
                    f"{op.name}: the request is not valid JSON: {exc}") from None
            if op.streaming and len(self.streams) >= self.limits.streams_per_connection:
                raise ServiceError(
                    f"{op.name}: this connection has {len(self.streams)} open streams, the "
                    f"most one connection may hold; close some or use another connection")
            assert self.context is not None
            result = await self.server.service.call(self.context, op.name, request)
        except IpcError as exc:
            self.send(_rpc.error(stream_id, error_shape(exc), str(exc)))
            return
        except Exception as exc:
            log.exception("IPC operation %s of %s failed", op.name, self.component)
            self.send(_rpc.error(stream_id, "aws.greengrass#ServiceError",
                                 f"{op.name} failed: {exc}"))
            return
        if isinstance(result, StreamResult):
            if self.closing:
                result.stream.close()
                return
            stream = _Stream(stream_id, op, result)
            self.streams[stream_id] = stream
            self.send(_rpc.application(stream_id, op.response_shape, result.response))
            tg.start_soon(self._forward, stream)
        else:
            self.send(_rpc.application(stream_id, op.response_shape, result,
                                       _rpc.TERMINATE_STREAM))

    async def _forward(self, stream: _Stream) -> None:
        sub, to_event = stream.result.stream, stream.result.to_event
        stream_id = stream.stream_id
        event = _rpc.template(_rpc.APPLICATION_MESSAGE, 0, stream.op.event_shape or "").message
        dumps = orjson.dumps
        try:
            while True:
                await sub.wait()
                if not sub:
                    break  # closed and drained
                if self.closing:
                    return
                items = sub.drain(_BATCH)
                self._queue_output(b"".join([event(stream_id, dumps(to_event(item)))
                                             for item in items]), len(items))
            if self.streams.pop(stream_id, None) is not None:
                # ended by the runtime (not cancelled by the client): say so
                self.send(_rpc.message(_rpc.APPLICATION_MESSAGE, stream_id, b"",
                                       _rpc.TERMINATE_STREAM))
        finally:
            self.streams.pop(stream_id, None)
            sub.close()


def _type_name(message_type: int) -> str:
    if 0 <= message_type < len(_rpc.MESSAGE_TYPES):
        return _rpc.MESSAGE_TYPES[message_type]
    return f"message type {message_type}"
